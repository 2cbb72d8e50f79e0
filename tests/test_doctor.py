"""doctor: the verdict on the original bug, a healthy export, and each subtler fault; CLI exit codes and reports.

Artefacts are made here with plain ``torch.jit.script(...).save`` and ``torch.onnx.export(..., dynamo=False)``
from the tiny trained model of test_forensics.py (out_size 32, 300 Adam steps on the face; see there).
"""
import json

import pytest
import torch

from gfpgan_debug import cli, doctor
from gfpgan_debug.compat import torch_deprecations_silenced
from test_forensics import save_onnx, save_torchscript, tiny_model, trained_tiny


class SwapChannels(torch.nn.Module):
    """A deploy wrapper whose preprocessing reverses the colour channels (BGR fed as RGB)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x.flip(1), return_rgb=True, randomize_noise=False)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("doctor")
    trained = trained_tiny()
    torch.save({"params_ema": trained}, folder / "checkpoint.pth")
    # built from the seed the training started from, so the entries training never changes (noise buffers,
    # the unused style MLP) are identical to the checkpoint's: the harder case for "never loaded"
    as_posted = tiny_model(seed=0)
    as_posted.load_state_dict({"params_ema": trained}, strict=False)  # the post's load: no key matches
    one_missing = tiny_model()
    one_missing.load_state_dict({k: v for k, v in trained.items() if not k.startswith("conv_body_up.1.conv2.")},
                                strict=False)
    paths = dict(checkpoint=folder / "checkpoint.pth",
                 healthy=save_torchscript(tiny_model(trained), folder / "healthy.pt"),
                 bug=save_torchscript(as_posted, folder / "bug.pt"),
                 missing=save_torchscript(one_missing, folder / "missing.pt"),
                 noise=save_torchscript(tiny_model(trained), folder / "noise.pt", randomize_noise=True),
                 healthy_onnx=save_onnx(tiny_model(trained), folder / "healthy.onnx"),
                 bug_onnx=save_onnx(as_posted, folder / "bug.onnx"))
    with torch_deprecations_silenced():
        torch.jit.script(SwapChannels(tiny_model(trained))).save(str(folder / "swap.pt"))
    paths["swap"] = folder / "swap.pt"
    return paths


def diagnose(files, name, with_weights=True):
    return doctor.diagnose(files[name], weights=files["checkpoint"] if with_weights else None, progress=False)


def test_the_original_bug_is_diagnosed_as_weights_never_loaded(files):
    diagnosis = diagnose(files, "bug")
    assert diagnosis.cause == "weights_never_loaded" and diagnosis.exit_code == 1
    assert diagnosis.verdict.startswith("weights were never loaded")
    text = "\n".join(diagnosis.evidence)
    assert "first convolution conv_body_first.weight" in text
    assert "0 of 129 entries" in text  # the load report of the post's whole-dict load
    assert "params_ema" in text  # and its hint
    checks = {c.name: c for c in diagnosis.checks}
    assert checks["first divergence"].details["name"] == "conv_body_first"
    assert checks["input sensitivity"].status == "problem"


def test_a_faithful_export_is_healthy(files):
    diagnosis = diagnose(files, "healthy")
    assert diagnosis.cause == "healthy" and diagnosis.exit_code == 0
    assert all(c.status == "ok" for c in diagnosis.checks)


def test_one_layer_left_unloaded_is_named(files):
    diagnosis = diagnose(files, "missing")
    assert diagnosis.cause == "layers_not_loaded"
    assert "conv_body_up.1.conv2 were not loaded" in diagnosis.verdict
    assert {c.name: c for c in diagnosis.checks}["first divergence"].details["name"] == "conv_body_up.1.conv2"


def test_fresh_noise_left_on_is_named(files):
    diagnosis = diagnose(files, "noise")
    assert diagnosis.cause == "fresh_noise"
    assert "fresh noise" in diagnosis.verdict


def test_a_colour_channel_swap_in_preprocessing_is_named(files):
    diagnosis = diagnose(files, "swap")
    assert diagnosis.cause == "channel_swap"
    assert "BGR/RGB" in diagnosis.verdict


def test_onnx_artefacts_healthy_and_the_original_bug(files):
    healthy = diagnose(files, "healthy_onnx")
    assert healthy.cause == "healthy"
    bug = diagnose(files, "bug_onnx")
    assert bug.cause == "weights_never_loaded"
    assert any("conv_body_first.weight" in e and "looks like its initialisation" in e for e in bug.evidence)
    # the ONNX graph's own intermediate outputs, mapped to module paths
    assert {c.name: c for c in bug.checks}["first divergence"].details["name"] == "conv_body_first"
    assert {c.name: c.status for c in healthy.checks}["first divergence"] == "ok"


def test_without_a_checkpoint_the_untrained_score_still_finds_the_bug(files):
    assert diagnose(files, "bug", with_weights=False).cause == "weights_never_loaded"
    healthy = diagnose(files, "healthy", with_weights=False)
    assert healthy.cause == "healthy"
    assert {c.name: c.status for c in healthy.checks}["output parity"] == "skipped"


def test_cli_writes_json_and_html_and_exits_with_the_verdict(files, tmp_path, capsys):
    out_json, out_html = tmp_path / "d.json", tmp_path / "d.html"
    code = cli.main(["doctor", "--artifact", str(files["bug"]), "--weights", str(files["checkpoint"]),
                     "--json", str(out_json), "--html", str(out_html)])
    assert code == 1
    report = json.loads(out_json.read_text())
    assert report["cause"] == "weights_never_loaded" and report["artifact"] == str(files["bug"])
    assert report["verdict"].startswith("weights were never loaded") and report["exit_code"] == 1
    assert "weights were never loaded" in out_html.read_text()
    assert "verdict: weights were never loaded" in capsys.readouterr().out
    assert cli.main(["doctor", "--artifact", str(files["healthy"]), "--weights", str(files["checkpoint"])]) == 0


def test_cli_exits_2_with_a_message_naming_the_file_when_it_cannot_run(files, tmp_path, capsys):
    assert cli.main(["doctor", "--artifact", str(tmp_path / "missing.pt")]) == 2
    assert "missing.pt: no such file" in capsys.readouterr().err
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"this is not a TorchScript archive")
    assert cli.main(["doctor", "--artifact", str(junk)]) == 2
    assert "junk.pt" in capsys.readouterr().err
    bad_weights = tmp_path / "weights.pth"
    bad_weights.write_bytes(b"\x00" * 100)
    assert cli.main(["doctor", "--artifact", str(files["healthy"]), "--weights", str(bad_weights)]) == 2
    assert "weights.pth" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["doctor"])  # --artifact is required: argparse exits with 2
    assert exit_info.value.code == 2


@pytest.mark.slow
def test_demo_weights_the_post_export_and_a_correct_export(tmp_path):
    """The project's demo weights (512x512, 1.9 M parameters), exported with export.save_torchscript."""
    from gfpgan_debug import export
    from gfpgan_debug.arch import GFPGANv1Clean
    from gfpgan_debug.weights import DEMO_WEIGHTS, model_from_checkpoint, read_checkpoint_file

    model, report = model_from_checkpoint(DEMO_WEIGHTS)
    torch.manual_seed(0)
    as_posted = GFPGANv1Clean(**report.config).eval()
    as_posted.load_state_dict(read_checkpoint_file(DEMO_WEIGHTS), strict=False)  # whole dict: nothing loads
    healthy = doctor.diagnose(export.save_torchscript(model, tmp_path / "demo.pt"), weights=DEMO_WEIGHTS,
                              progress=False)
    assert healthy.cause == "healthy"
    bug = doctor.diagnose(export.save_torchscript(as_posted, tmp_path / "bug.pt"), weights=DEMO_WEIGHTS,
                          progress=False)
    assert bug.cause == "weights_never_loaded"
    sensitivity = {c.name: c for c in bug.checks}["input sensitivity"].details
    # fresh initialisations of this config measured 0.015 to 0.12 per frame pair (seed-dependent); the
    # trained demo weights 0.86 to 0.99
    assert max(sensitivity["artifact"]) < doctor.SENSITIVITY_LOW and min(sensitivity["reference"]) > 0.5


def test_nan_in_the_checkpoint_is_the_verdict(files, tmp_path):
    state = torch.load(files["checkpoint"], weights_only=True)["params_ema"]
    state["final_conv.weight"] = state["final_conv.weight"].clone()
    state["final_conv.weight"].view(-1)[0] = float("nan")
    torch.save({"params_ema": state}, tmp_path / "nan.pth")
    diagnosis = doctor.diagnose(files["healthy"], weights=tmp_path / "nan.pth", progress=False)
    assert diagnosis.cause == "nonfinite_weights" and diagnosis.exit_code == 1
    assert "final_conv.weight" in "\n".join(diagnosis.evidence)
    assert {c.name: c for c in diagnosis.checks}["load report"].status == "problem"


def test_a_torchscript_file_with_another_signature_exits_2(tmp_path, capsys):
    class TwoInputs(torch.nn.Module):
        def forward(self, image, mask):
            return image * mask

    with torch_deprecations_silenced():
        torch.jit.script(TwoInputs()).save(str(tmp_path / "other.pt"))
    assert cli.main(["doctor", "--artifact", str(tmp_path / "other.pt")]) == 2
    assert "other.pt: its forward is forward(Tensor image, Tensor mask)" in capsys.readouterr().err


# gfpgan-debug layers: the first-divergence search alone


def test_layers_names_the_first_divergent_layer_of_the_post_export_and_exits_1(files, capsys):
    code = cli.main(["layers", "--artifact", str(files["bug"]), "--weights", str(files["checkpoint"])])
    out = capsys.readouterr().out
    assert code == 1
    first_row = next(line for line in out.splitlines() if line.startswith("conv_body_first "))
    assert first_row.rstrip().endswith("FIRST DIVERGENCE")
    assert "first divergence at conv_body_first" in out


def test_layers_finds_the_one_unloaded_layer_and_every_other_layer_agrees(files, capsys):
    code = cli.main(["layers", "--artifact", str(files["missing"]), "--weights", str(files["checkpoint"]),
                     "--json", "-"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1 and report["divergence"]["name"] == "conv_body_up.1.conv2"
    # each TorchScript layer is fed the reference's inputs, so only the unloaded layer differs
    assert [row["layer"] for row in report["layers"] if not row["agrees"]] == ["conv_body_up.1.conv2"]


def test_layers_on_a_faithful_onnx_export_exits_0(files, capsys):
    code = cli.main(["layers", "--artifact", str(files["healthy_onnx"]), "--weights", str(files["checkpoint"]),
                     "--all"])
    out = capsys.readouterr().out
    assert code == 0 and "no divergence: every compared layer agrees" in out
    assert "more layers" not in out  # --all lists every layer


def test_layers_exits_2_naming_a_missing_artifact(files, tmp_path, capsys):
    code = cli.main(["layers", "--artifact", str(tmp_path / "gone.onnx"), "--weights", str(files["checkpoint"])])
    assert code == 2 and "gone.onnx: no such file" in capsys.readouterr().err
