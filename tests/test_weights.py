"""Checkpoint reading, LoadReport, config inference, the official registry and download, choosing weights."""
import functools
import hashlib
import http.server
import os
import pickle
import threading
import warnings
import zipfile

import pytest
import torch

from gfpgan_debug import weights as W
from gfpgan_debug.arch import OFFICIAL_CONFIG, GFPGANv1Clean
from gfpgan_debug.errors import CheckpointError, DownloadError

SMALL = dict(out_size=512, num_style_feat=128, channel_multiplier=1, decoder_load_path=None, fix_decoder=False,
             num_mlp=8, input_is_latent=True, different_w=True, narrow=0.125, sft_half=True)


@pytest.fixture(scope="module")
def trained_state():
    """A state dict that differs from any fresh initialisation (filled, seeded)."""
    return W.fill_weights_(GFPGANv1Clean(**SMALL), seed=3).state_dict()


@pytest.fixture
def checkpoint(tmp_path, trained_state):
    path = tmp_path / "demo.pth"
    torch.save({"params_ema": trained_state}, path)
    return path


def same_weights(model, state):
    return all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


# --- the original bug -------------------------------------------------------------------------------------

def test_strict_false_with_whole_checkpoint_loads_nothing(checkpoint, trained_state):
    whole = torch.load(checkpoint, weights_only=True)  # {'params_ema': {...}}: what the original script passed
    model = GFPGANv1Clean(**SMALL)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # plain torch says nothing: no warning may be raised
        result = model.load_state_dict(whole, strict=False)
    assert len(result.missing_keys) == 285 and result.unexpected_keys == ["params_ema"]
    assert same_weights(model, before)
    assert not same_weights(model, trained_state)


def test_load_into_with_whole_checkpoint_reports_zero_percent_and_warns(checkpoint):
    whole = torch.load(checkpoint, weights_only=True)
    model = GFPGANv1Clean(**SMALL)
    with pytest.warns(W.IncompleteLoadWarning, match="NOTHING was loaded"):
        report = W.load_into(model, whole, strict=False)
    assert report.fraction_loaded == 0.0
    assert len(report.missing) == 285 and report.unexpected == ["params_ema"]
    assert "params_ema" in report.hint
    assert "0 of 285 entries" in str(report)
    assert "<table>" in report._repr_html_()


def test_load_into_strict_raises_with_the_report_and_leaves_the_model_untouched(checkpoint):
    whole = torch.load(checkpoint, weights_only=True)
    model = GFPGANv1Clean(**SMALL)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError, match="285 missing"):
        W.load_into(model, whole, strict=True)
    assert same_weights(model, before)


def test_load_checkpoint_then_strict_load_restores_every_value(checkpoint, trained_state):
    model = GFPGANv1Clean(**SMALL)
    report = W.load_into(model, W.load_checkpoint(checkpoint), strict=True)
    assert report.complete and report.fraction_loaded == 1.0
    assert report.values_total == sum(v.numel() for v in trained_state.values())
    assert same_weights(model, trained_state)


def test_one_missing_layer_is_named_and_counted(trained_state):
    partial = {k: v for k, v in trained_state.items() if not k.startswith("conv_body_first.")}
    model = GFPGANv1Clean(**SMALL)
    with pytest.warns(W.IncompleteLoadWarning, match="partly"):
        report = W.load_into(model, partial, strict=False)
    assert report.missing == ["conv_body_first.weight", "conv_body_first.bias"]
    missing_values = trained_state["conv_body_first.weight"].numel() + trained_state["conv_body_first.bias"].numel()
    assert report.values_total - report.values_loaded == missing_values


# --- reading files ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("wrapper", ["params_ema", "params", None])
def test_load_checkpoint_unwraps_params_ema_params_and_plain_dicts(tmp_path, trained_state, wrapper):
    path = tmp_path / "c.pth"
    torch.save({wrapper: trained_state} if wrapper else trained_state, path)
    assert list(W.load_checkpoint(path)) == list(trained_state)


def test_load_checkpoint_prefers_params_ema_over_params(tmp_path, trained_state):
    other = {k: torch.zeros_like(v) for k, v in trained_state.items()}
    torch.save({"params": other, "params_ema": trained_state}, tmp_path / "c.pth")
    loaded = W.load_checkpoint(tmp_path / "c.pth")
    assert torch.equal(loaded["conv_body_first.weight"], trained_state["conv_body_first.weight"])


def test_load_checkpoint_strips_a_module_prefix(tmp_path, trained_state):
    torch.save({"params": {f"module.{k}": v for k, v in trained_state.items()}}, tmp_path / "c.pth")
    assert list(W.load_checkpoint(tmp_path / "c.pth")) == list(trained_state)


class RunsCode:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("via", ["torch.save", "pickle.dump"])
def test_a_pickle_that_would_run_code_is_refused_and_the_code_never_runs(tmp_path, via):
    marker = tmp_path / "code-ran"
    payload = RunsCode()
    payload.marker = marker
    path = tmp_path / "evil.pth"
    if via == "torch.save":
        torch.save({"params_ema": payload}, path)
    else:
        path.write_bytes(pickle.dumps(payload))
    with pytest.raises(CheckpointError, match=r"evil\.pth: refused: unpickling it would run code .*system"):
        W.load_checkpoint(path)
    assert not marker.exists()


def test_bad_files_get_errors_naming_the_file_and_the_problem(tmp_path, checkpoint):
    cases = {
        "missing.pth": (None, "no such file"),
        "empty.pth": (b"", "the file is empty"),
        "random.pth": (os.urandom(4096), "not a PyTorch checkpoint"),
        "text.pth": (b"these are not weights\n" * 20, "not a PyTorch checkpoint"),
        "truncated.pth": (checkpoint.read_bytes()[: checkpoint.stat().st_size // 2], "truncated, corrupted"),
        "tiny.pth": (b"\x80\x02", "too short"),
    }
    for name, (content, problem) in cases.items():
        path = tmp_path / name
        if content is not None:
            path.write_bytes(content)
        with pytest.raises(CheckpointError) as info:
            W.load_checkpoint(path)
        assert str(path) in str(info.value) and problem in str(info.value), (name, str(info.value))


def test_a_zip_that_is_not_a_torch_file_is_named_as_such(tmp_path):
    path = tmp_path / "archive.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", "hello")
    with pytest.raises(CheckpointError, match="zip archive that is truncated, corrupted or not written by torch.save"):
        W.load_checkpoint(path)


def test_a_checkpoint_without_tensors_or_with_an_unknown_nesting_is_refused(tmp_path, trained_state):
    torch.save({"epoch": 3, "lr": 0.1}, tmp_path / "none.pth")
    with pytest.raises(CheckpointError, match="no tensors inside"):
        W.load_checkpoint(tmp_path / "none.pth")
    torch.save({"model": trained_state, "optimizer": {"lr": torch.tensor(0.1)}}, tmp_path / "nested.pth")
    with pytest.raises(CheckpointError, match="neither 'params_ema' nor 'params'.*'model'"):
        W.load_checkpoint(tmp_path / "nested.pth")


def test_half_precision_is_loaded_and_reported(tmp_path, trained_state):
    torch.save({"params_ema": {k: v.half() for k, v in trained_state.items()}}, tmp_path / "half.pth")
    model, report = W.model_from_checkpoint(tmp_path / "half.pth")
    assert report.complete and len(report.converted) == 285
    assert set(report.converted.values()) == {"float16"}
    assert model.conv_body_first.weight.dtype == torch.float32


def test_nan_values_are_flagged_in_the_report(trained_state):
    broken = dict(trained_state)
    broken["final_conv.weight"] = broken["final_conv.weight"].clone()
    broken["final_conv.weight"][0, 0, 0, 0] = float("nan")
    report = W.load_into(GFPGANv1Clean(**SMALL), broken)
    assert report.nonfinite == ["final_conv.weight"]


# --- the configuration ------------------------------------------------------------------------------------

def test_infer_config_recovers_official_and_small_configs():
    official_shapes = GFPGANv1Clean(**OFFICIAL_CONFIG).state_dict()
    assert W.infer_config(official_shapes) == OFFICIAL_CONFIG
    for config in [SMALL, dict(SMALL, out_size=256, channel_multiplier=2, sft_half=False, different_w=False,
                               num_mlp=4, narrow=0.25, num_style_feat=64)]:
        assert W.infer_config(GFPGANv1Clean(**config).state_dict()) == config


def test_a_checkpoint_no_config_explains_names_the_shapes_that_disagree(trained_state):
    broken = dict(trained_state)
    broken["toRGB.2.weight"] = torch.zeros(3, 7, 1, 1)
    with pytest.raises(CheckpointError, match=r"toRGB\.2\.weight: file \[3, 7, 1, 1\] vs model \[3, 32, 1, 1\]"):
        W.infer_config(broken, "mine.pth")


def test_the_wrong_channel_multiplier_gives_a_shape_mismatch_report(trained_state):
    model = GFPGANv1Clean(**dict(SMALL, channel_multiplier=2))
    with pytest.raises(CheckpointError, match="shape mismatch") as info:
        W.load_into(model, trained_state, strict=True)
    assert "model [" in str(info.value) and "vs file [" in str(info.value)


def test_the_non_clean_gfpgan_layout_is_recognised():
    state = {"conv_body_first.0.weight": torch.zeros(32, 3, 1, 1), "conv_body_first.1.bias": torch.zeros(32)}
    with pytest.raises(CheckpointError, match="original GFPGANv1 architecture"):
        W.infer_config(state, "GFPGANv1.pth")


def test_model_from_checkpoint_infers_the_config_and_loads_strictly(checkpoint, trained_state):
    model, report = W.model_from_checkpoint(checkpoint)
    assert report.complete and report.config == SMALL
    assert not model.training
    assert same_weights(model, trained_state)


# --- official weights: registry and download --------------------------------------------------------------

def test_the_registry_lists_the_three_official_versions():
    assert list(W.OFFICIAL) == ["v1.2", "v1.3", "v1.4"]
    assert W.official("1.3").filename == "GFPGANv1.3.pth"
    with pytest.raises(DownloadError, match="unknown official version"):
        W.official("v9")


@pytest.fixture
def file_server(tmp_path):
    """A real HTTP server on 127.0.0.1 serving tmp_path/www."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_download_verifies_sha256_and_writes_the_file(file_server, tmp_path):
    root, url = file_server
    content = os.urandom(300_000)
    (root / "good.pth").write_bytes(content)
    dest = tmp_path / "out" / "good.pth"
    W.download(f"{url}/good.pth", dest, hashlib.sha256(content).hexdigest(), progress=False)
    assert dest.read_bytes() == content
    assert os.listdir(dest.parent) == ["good.pth"]  # no temporary file left behind


def test_a_corrupted_download_leaves_nothing_behind(file_server, tmp_path):
    root, url = file_server
    (root / "bad.pth").write_bytes(os.urandom(100_000))
    dest = tmp_path / "out" / "bad.pth"
    with pytest.raises(DownloadError, match="does not match the published"):
        W.download(f"{url}/bad.pth", dest, "0" * 64, progress=False)
    assert os.listdir(dest.parent) == []


def test_fetch_official_from_a_mirror_with_the_wrong_file_is_refused(file_server, tmp_path):
    root, url = file_server
    (root / "GFPGANv1.3.pth").write_bytes(b"not the real weights" * 1000)
    with pytest.raises(DownloadError, match="SHA-256"):
        W.fetch_official("v1.3", dest_dir=tmp_path / "w", url=f"{url}/GFPGANv1.3.pth", progress=False)
    assert not (tmp_path / "w" / "GFPGANv1.3.pth").exists()


def test_an_unreachable_server_gives_a_clear_offline_error(tmp_path):
    with pytest.raises(DownloadError, match="could not download .* offline"):
        W.download("http://127.0.0.1:9/none.pth", tmp_path / "x.pth", "0" * 64, progress=False, timeout=5)
    assert list(tmp_path.iterdir()) == []


# --- choosing the weights ---------------------------------------------------------------------------------

def test_choose_weights_order_explicit_environment_official_demo(tmp_path, monkeypatch):
    demo = tmp_path / W.DEMO_WEIGHTS.name
    demo.write_bytes(b"x")
    monkeypatch.delenv(W.ENV_VAR, raising=False)
    assert W.choose_weights(weights_dir=tmp_path).kind == "demo"
    (tmp_path / "GFPGANv1.3.pth").write_bytes(b"x")
    choice = W.choose_weights(weights_dir=tmp_path)
    assert choice.kind == "official" and "v1.3" in choice.reason
    env_file = tmp_path / "env.pth"
    env_file.write_bytes(b"x")
    monkeypatch.setenv(W.ENV_VAR, str(env_file))
    assert W.choose_weights(weights_dir=tmp_path).path == env_file
    assert W.choose_weights(demo, weights_dir=tmp_path).kind == "explicit"


def test_choose_weights_names_a_missing_choice(tmp_path, monkeypatch):
    monkeypatch.delenv(W.ENV_VAR, raising=False)
    with pytest.raises(CheckpointError, match="train-demo"):
        W.choose_weights(weights_dir=tmp_path)
    monkeypatch.setenv(W.ENV_VAR, str(tmp_path / "gone.pth"))
    with pytest.raises(CheckpointError, match=r"gone\.pth: no such file; chosen because \$GFPGAN_DEBUG_WEIGHTS"):
        W.choose_weights(weights_dir=tmp_path)
