"""Hostile and broken inputs, through the public API and the command line: each gets a clear error naming the
file and the problem (exit code 2, one line, no traceback) or its documented handling, and nothing else
changes (no output written, no artefact cached, no code run).

Covered elsewhere, through the API, and not repeated here:
  test_weights.py   code-running pickle (torch.save and pickle.dump), empty, random, text, truncated, tiny,
                    non-torch zip, no tensors, unknown nesting, half precision, NaN, wrong channel_multiplier,
                    non-clean layout, a corrupted download leaving nothing behind
  test_images.py    missing, empty, text, folder, gray / RGBA / 16-bit, 1x1, huge PNG (MAX_PIXELS lowered)
  test_export.py    two processes exporting at once leave one valid artefact; a damaged cache entry is rebuilt
  test_runtimes.py  junk ONNX, missing .pt, intermediates a runtime cannot give, wrong frame shape
  test_forensics.py unreadable .pt and .onnx for artifact_weights
  test_lab.py       JupyterLab on 127.0.0.1 refuses the API without its token
  test_netron_view.py netron served on 127.0.0.1
Here: the command line for all of those, "nothing else changed", and the cases nothing covered (headers that
claim gigapixels in any format, ONNX interface and external data, TorchScript signatures, failed exports,
listening sockets).
"""
import json
import os
import pickle
import re
import resource
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from gfpgan_debug import export, forensics, images, runtimes
from gfpgan_debug import weights as W
from gfpgan_debug.arch import GFPGANv1Clean
from gfpgan_debug.cli import main as cli_main
from gfpgan_debug.compat import torch_deprecations_silenced
from gfpgan_debug.errors import ArtifactError, CheckpointError, ImageError

# out_size 64: every model here builds and runs in well under a second
TINY = dict(out_size=64, num_style_feat=64, channel_multiplier=1, decoder_load_path=None, fix_decoder=False,
            num_mlp=8, input_is_latent=True, different_w=True, narrow=0.125, sft_half=True)


@pytest.fixture(scope="module")
def trained_state():
    return W.fill_weights_(GFPGANv1Clean(**TINY), seed=5).state_dict()


@pytest.fixture
def workspace(tmp_path, monkeypatch, trained_state):
    """A folder with a good checkpoint and a good face, and the artefact cache redirected into it, so that
    'nothing else changed' can be checked on the whole folder."""
    monkeypatch.setattr(export, "ARTIFACT_DIR", tmp_path / "cache")
    torch.save({"params_ema": trained_state}, tmp_path / "good.pth")
    images.write_image(tmp_path / "face.png", images.read_image(images.FACE_PATH))
    return tmp_path


def snapshot(folder: Path) -> dict:
    """Every path under ``folder`` with its size and modification time."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def refused(capsys, argv, expected: str, one_line: bool = True) -> str:
    """Run the command line in-process: exit code 2 and exactly one stderr line, ``expected`` (a prefix when it
    ends with '...'). ``one_line=False``: a strict-load failure, whose message carries the load report."""
    code = cli_main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and (err.count("\n") == 1 or not one_line), err
    line = err.rstrip("\n") if one_line else err
    if expected.endswith("..."):
        assert line.startswith(expected[:-3]), line
    else:
        assert line == expected, line
    return line


# ---------------------------------------------------------------------------------------------------------
# Checkpoints: every bad file, through the three verbs that read one; nothing written, nothing cached
# ---------------------------------------------------------------------------------------------------------


class RunsCode:
    """Unpickling this calls os.system: the classic malicious checkpoint."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def non_clean_state():
    """The key layout of the original GFPGANv1 (StyleGAN2 ops; conv_body_first is a Sequential)."""
    return {"conv_body_first.0.weight": torch.zeros(32, 3, 1, 1), "conv_body_first.1.bias": torch.zeros(32),
            "stylegan_decoder.style_mlp.1.weight": torch.zeros(512, 512)}


def write_bad_checkpoint(folder: Path, case: str, trained_state) -> Path:
    path = folder / f"{case}.pth"
    if case == "runs-code":
        torch.save({"params_ema": RunsCode(folder / "code-ran")}, path)
    elif case == "truncated":
        torch.save({"params_ema": trained_state}, path)
        path.write_bytes(path.read_bytes()[:100_000])
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "random":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    elif case == "text":
        path.write_text("# my weights\nconv_body_first.weight = [0.1, 0.2]\n" * 10)
    elif case == "zip":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("weights.txt", "not tensors")
    elif case == "non-clean":
        torch.save({"params_ema": non_clean_state()}, path)
    elif case == "nested":
        torch.save({"generator": trained_state, "step": 10}, path)
    elif case == "a-list":
        torch.save([torch.zeros(3)], path)
    elif case == "a-folder":
        path.mkdir()
    return path


# case -> the problem stated after "<path>: " (a prefix where it ends with "...")
CHECKPOINT_CASES = {
    "runs-code": "refused: unpickling it would run code (it asks for posix.system...",
    "truncated": "a zip archive that is truncated, corrupted or not written by torch.save...",
    "empty": "the file is empty",
    "random": "not a PyTorch checkpoint...",
    "text": "not a PyTorch checkpoint...",
    "zip": "a zip archive that is truncated, corrupted or not written by torch.save...",
    "non-clean": "not a GFPGANv1Clean state dict: no [...",
    "nested": "a nested dict with neither 'params_ema' nor 'params' (top-level keys: ['generator', 'step'] (2 in all))",
    "a-list": "holds a list, not a dict of tensors",
    "a-folder": "not a file",
    "missing": "no such file",
}


def verb_argv(verb: str, path: Path, folder: Path) -> list:
    return {"inspect": ["weights", "inspect", path],
            "export": ["export", "--weights", path, "--out", folder / "out"],
            "run-eager": ["run", "--runtime", "eager", "--artifact", path, "--image", folder / "face.png",
                          "--out", folder / "restored.png"],
            "doctor": ["doctor", "--artifact", folder / "good.onnx", "--weights", path],
            "layers": ["layers", "--artifact", folder / "good.onnx", "--weights", path]}[verb]


@pytest.mark.parametrize("case", list(CHECKPOINT_CASES))
def test_a_bad_checkpoint_is_one_clear_error_from_the_api(tmp_path, trained_state, case):
    path = write_bad_checkpoint(tmp_path, case, trained_state)
    with pytest.raises(CheckpointError) as info:
        W.model_from_checkpoint(path)
    problem = CHECKPOINT_CASES[case]
    assert str(info.value).startswith(f"{path}: {problem.removesuffix('...')}"), str(info.value)
    assert not (tmp_path / "code-ran").exists()


@pytest.mark.parametrize("verb", ["inspect", "export", "run-eager", "doctor", "layers"])
@pytest.mark.parametrize("case", list(CHECKPOINT_CASES))
def test_a_bad_checkpoint_exits_2_with_one_line_and_changes_nothing(workspace, trained_state, good_onnx, capsys,
                                                                    case, verb):
    path = write_bad_checkpoint(workspace, case, trained_state)
    (workspace / "good.onnx").write_bytes(good_onnx)  # doctor and layers check an artefact against the checkpoint
    before = snapshot(workspace)
    prefix = {"inspect": "weights", "run-eager": "run"}.get(verb, verb)
    refused(capsys, verb_argv(verb, path, workspace), f"gfpgan-debug {prefix}: error: {path}: {CHECKPOINT_CASES[case]}")
    assert snapshot(workspace) == before  # no --out folder, no restored image, no cache entry, no marker


def test_the_real_command_refuses_a_code_running_pickle_and_the_code_never_runs(tmp_path):
    """The console script as a user runs it, in its own process: exit 2, one line naming the callable."""
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps({"params_ema": RunsCode(tmp_path / "code-ran")}))
    result = subprocess.run([sys.executable, "-m", "gfpgan_debug.cli", "weights", "inspect", str(path)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr.startswith(f"gfpgan-debug weights: error: {path}: refused: unpickling it would run code "
                                    f"(it asks for posix.system)")
    assert result.stderr.count("\n") == 1 and result.stdout == ""
    assert not (tmp_path / "code-ran").exists()


def test_the_wrong_channel_multiplier_is_a_mismatch_report_from_inspect_and_refused_by_export(
        workspace, capsys):
    """Right keys, shapes of channel_multiplier=2, and a card beside the file that says 1: inspect prints the
    report and exits 1 (a problem found); export, which loads strictly, exits 2 and writes nothing."""
    state = GFPGANv1Clean(**dict(TINY, channel_multiplier=2)).state_dict()
    path = workspace / "cm2.pth"
    torch.save({"params_ema": state}, path)
    (workspace / "cm2.json").write_text(json.dumps({"config": TINY}))
    with pytest.warns(W.IncompleteLoadWarning, match="INCOMPLETE LOAD"):
        model, report = W.model_from_checkpoint(path, strict=False)
    assert report.mismatched and all(m != f for _, m, f in report.mismatched)
    assert report.hint.startswith("shapes differ")

    with pytest.warns(W.IncompleteLoadWarning):
        assert cli_main(["weights", "inspect", str(path)]) == 1
    out = capsys.readouterr().out
    assert "shape mismatch (not loaded)" in out and "vs file [" in out and "hint: shapes differ" in out
    before = snapshot(workspace)
    err = refused(capsys, ["export", "--weights", path, "--out", workspace / "out"],
                  "gfpgan-debug export: error: strict load failed:\nloaded ...", one_line=False)
    assert f"from {path};" in err and "shape mismatch (not loaded)" in err
    assert snapshot(workspace) == before


def test_half_precision_is_loaded_as_float32_and_reported_by_inspect(tmp_path, trained_state, capsys):
    path = tmp_path / "half.pth"
    torch.save({"params_ema": {k: v.half() for k, v in trained_state.items()}}, path)
    model, report = W.model_from_checkpoint(path)
    assert model.final_conv.weight.dtype == torch.float32
    assert torch.equal(model.final_conv.weight, trained_state["final_conv.weight"].half().float())
    assert set(report.converted.values()) == {"float16"}
    assert cli_main(["weights", "inspect", str(path)]) == 0
    assert re.search(rf"converted dtype +{len(trained_state)} ", capsys.readouterr().out)


@pytest.mark.parametrize("bad_value", [float("nan"), float("inf")], ids=["nan", "inf"])
def test_nan_or_inf_values_are_named_by_inspect_which_exits_1(tmp_path, trained_state, capsys, bad_value):
    state = dict(trained_state)
    state["final_conv.weight"] = state["final_conv.weight"].clone()
    state["final_conv.weight"][0, 0, 0, 0] = bad_value
    path = tmp_path / "nonfinite.pth"
    torch.save({"params_ema": state}, path)
    assert W.model_from_checkpoint(path)[1].nonfinite == ["final_conv.weight"]
    assert cli_main(["weights", "inspect", str(path)]) == 1
    assert re.search(r"NaN or Inf values +1 +final_conv\.weight\n", capsys.readouterr().out)


# ---------------------------------------------------------------------------------------------------------
# Images: through `gfpgan-debug run`; documented handling for the odd but valid ones
# ---------------------------------------------------------------------------------------------------------


def jpeg_claiming(width: int, height: int) -> bytes:
    """A real 16x16 JPEG whose frame header (SOF0) is edited to claim width x height: a few hundred bytes
    that a decoder would turn into width * height * 3 bytes of memory."""
    data = bytearray(cv2.imencode(".jpg", np.full((16, 16, 3), 128, np.uint8))[1].tobytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 7] = height.to_bytes(2, "big")
    data[sof + 7:sof + 9] = width.to_bytes(2, "big")
    return bytes(data)


def bmp_claiming(width: int, height: int) -> bytes:
    data = bytearray(cv2.imencode(".bmp", np.zeros((4, 4, 3), np.uint8))[1].tobytes())
    data[18:22] = width.to_bytes(4, "little")
    data[22:26] = height.to_bytes(4, "little", signed=True)
    return bytes(data)


def png_claiming(width: int, height: int) -> bytes:
    data = bytearray(cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))[1].tobytes())
    data[16:20], data[20:24] = width.to_bytes(4, "big"), height.to_bytes(4, "big")
    return bytes(data)


def write_bad_image(folder: Path, case: str) -> Path:
    face = images.read_image(images.FACE_PATH)
    paths = {"missing": "missing.png", "a-folder": "folder.png", "empty": "empty.png", "text": "notes.png",
             "truncated-png": "half.png", "truncated-jpeg": "half.jpg", "one-pixel": "dot.png",
             "huge-jpeg": "huge.jpg", "huge-bmp": "huge.bmp", "huge-png": "huge.png", "float-tiff": "float.tiff"}
    path = folder / paths[case]
    if case == "a-folder":
        path.mkdir()
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "text":
        path.write_text("a face, honestly\n" * 20)
    elif case in ("truncated-png", "truncated-jpeg"):
        encoded = cv2.imencode(path.suffix, face)[1].tobytes()
        path.write_bytes(encoded[: len(encoded) // 2])
    elif case == "one-pixel":
        cv2.imwrite(str(path), np.zeros((1, 1, 3), np.uint8))
    elif case == "huge-jpeg":
        path.write_bytes(jpeg_claiming(30000, 30000))
    elif case == "huge-bmp":
        path.write_bytes(bmp_claiming(30000, 30000))
    elif case == "huge-png":
        path.write_bytes(png_claiming(100000, 100000))
    elif case == "float-tiff":
        cv2.imwrite(str(path), np.zeros((8, 8, 3), np.float32))
    return path


IMAGE_CASES = {
    "missing": "no such file",
    "a-folder": "not a file",
    "empty": "the file is empty",
    "text": "not an image OpenCV can decode (PNG, JPEG, BMP, TIFF, WebP, ...)",
    "truncated-png": "not an image OpenCV can decode (PNG, JPEG, BMP, TIFF, WebP, ...)",
    "truncated-jpeg": "not an image OpenCV can decode (PNG, JPEG, BMP, TIFF, WebP, ...)",
    "one-pixel": "1x1 pixels is too small to be a face",
    "huge-jpeg": "30000x30000 pixels is more than the 64,000,000 this tool reads",
    "huge-bmp": "30000x30000 pixels is more than the 64,000,000 this tool reads",
    "huge-png": "100000x100000 pixels is more than the 64,000,000 this tool reads",
    "float-tiff": "pixel type float32 is not supported (8 or 16-bit integers only)",
}


@pytest.mark.parametrize("case", list(IMAGE_CASES))
def test_a_bad_image_is_one_clear_error_and_run_writes_nothing(workspace, capsys, case):
    path = write_bad_image(workspace, case)
    with pytest.raises(ImageError) as info:
        images.read_image(path)
    assert str(info.value) == f"{path}: {IMAGE_CASES[case]}"
    before = snapshot(workspace)
    refused(capsys, verb_argv("run-eager", workspace / "good.pth", workspace)[:5] + [
        "--image", path, "--out", workspace / "restored.png"], f"gfpgan-debug run: error: {path}: {IMAGE_CASES[case]}")
    assert snapshot(workspace) == before


def test_a_header_claiming_gigapixels_is_refused_without_allocating_them(tmp_path):
    """30000 x 30000 x 3 bytes would be 2.7 GB; the refusal comes from the header, so the process's peak
    memory does not move by anything near that (100 MB allows for the interpreter's own churn)."""
    path = tmp_path / "bomb.jpg"
    path.write_bytes(jpeg_claiming(30000, 30000))
    peak_before_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ImageError, match="is more than the"):
        images.read_image(path)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before_kib < 100 * 1024


@pytest.mark.parametrize("case", ["gray", "gray-16-bit", "rgba", "rgb-16-bit", "not-square", "large-jpeg"])
def test_odd_but_valid_images_are_converted_and_resized_as_documented(workspace, capsys, case):
    """Gray becomes three equal channels, alpha is dropped, 16-bit is scaled by 1/257, any size (up to
    MAX_PIXELS) and any aspect ratio is resized to the model's size; `run` writes the restored face."""
    rng = np.random.default_rng(1)
    arrays = {"gray": rng.integers(0, 256, (90, 90), dtype=np.uint8),
              "gray-16-bit": rng.integers(0, 65536, (90, 90), dtype=np.uint16),
              "rgba": rng.integers(0, 256, (90, 90, 4), dtype=np.uint8),
              "rgb-16-bit": rng.integers(0, 65536, (90, 90, 3), dtype=np.uint16),
              "not-square": rng.integers(0, 256, (120, 70, 3), dtype=np.uint8),
              "large-jpeg": cv2.resize(images.read_image(images.FACE_PATH), (3000, 2000))}
    array = arrays[case]
    path = workspace / (f"{case}.jpg" if case == "large-jpeg" else f"{case}.png")
    cv2.imwrite(str(path), array)
    image = images.read_image(path)
    assert image.dtype == np.uint8 and image.shape == (*array.shape[:2], 3)
    if case == "gray":
        assert np.array_equal(image, np.dstack([array] * 3))
    if case == "rgba":
        assert np.array_equal(image, array[:, :, :3])
    if case == "rgb-16-bit":
        assert np.array_equal(image, np.round(array / 257.0).astype(np.uint8))
    assert images.preprocess(image, 64).shape == (1, 3, 64, 64)
    out = workspace / "restored.png"
    assert cli_main(["run", "--runtime", "eager", "--artifact", str(workspace / "good.pth"), "--image", str(path),
                     "--out", str(out)]) == 0, capsys.readouterr().err
    assert images.read_image(out).shape == (64, 64, 3)


# ---------------------------------------------------------------------------------------------------------
# Exported models
# ---------------------------------------------------------------------------------------------------------


def identity_onnx(input_name="input", shape=(1, 3, 64, 64), output_name="image", initializer=None) -> onnx.ModelProto:
    """A one-node ONNX graph (input + w -> output), small enough to write by hand, real enough for ORT."""
    weight = initializer if initializer is not None else numpy_helper.from_array(np.zeros(1, np.float32), "w")
    graph = helper.make_graph([helper.make_node("Add", [input_name, "w"], [output_name])], "hand_made",
                              [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, list(shape))],
                              [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, list(shape))],
                              [weight])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def external_weight(location: str) -> TensorProto:
    weight = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[1], data_location=TensorProto.EXTERNAL)
    for key, value in {"location": location, "offset": "0", "length": "4"}.items():
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    return weight


@pytest.fixture
def secret(tmp_path):
    """A file outside the model's folder that external data could point at."""
    path = tmp_path / "secret.bin"
    path.write_bytes(np.float32(1234.5).tobytes())
    return path


def write_bad_artifact(folder: Path, case: str, secret: Path, good_onnx: bytes = b"") -> Path:
    models = folder / "models"
    models.mkdir(exist_ok=True)
    if case == "onnx-junk":
        path = models / "junk.onnx"
        path.write_bytes(b"\x08\x07garbage that protobuf will not parse" * 4)
    elif case == "onnx-truncated":
        path = models / "half.onnx"
        path.write_bytes(good_onnx[: len(good_onnx) // 2])
    elif case == "onnx-input-name":
        path = models / "named_x.onnx"
        onnx.save(identity_onnx(input_name="x"), str(path))
    elif case == "onnx-input-channels":
        path = models / "one_channel.onnx"
        onnx.save(identity_onnx(shape=(1, 1, 64, 64)), str(path))
    elif case == "onnx-no-image-output":
        path = models / "no_image.onnx"
        onnx.save(identity_onnx(output_name="result"), str(path))
    elif case.startswith("onnx-external"):
        path = models / "leaky.onnx"
        location = {"onnx-external-relative": "../secret.bin", "onnx-external-absolute": str(secret),
                    "onnx-external-symlink": "link.bin"}[case]
        if case == "onnx-external-symlink":
            (models / "link.bin").symlink_to(secret)
        path.write_bytes(identity_onnx(initializer=external_weight(location)).SerializeToString())
    elif case == "pt-checkpoint":
        path = models / "weights.pt"
        torch.save({"params_ema": {"w": torch.zeros(3)}}, path)
    elif case == "pt-two-inputs":
        path = models / "two_inputs.pt"
        scripted(TwoInputs()).save(str(path))
    elif case == "pt-one-output":
        path = models / "one_output.pt"
        scripted(OneOutput()).save(str(path))
    return path


def scripted(module):
    with torch_deprecations_silenced():
        return torch.jit.script(module)


class TwoInputs(torch.nn.Module):
    def forward(self, image: torch.Tensor, mask: torch.Tensor):
        return image * mask, [image]


class OneOutput(torch.nn.Module):
    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return input * 2


ARTIFACT_CASES = {
    # case: (runtime, the problem stated after "<path>: ")
    "onnx-junk": ("onnxruntime", "not a readable ONNX model (DecodeError: Error parsing message..."),
    "onnx-truncated": ("onnxruntime", "not a readable ONNX model (DecodeError: Error parsing message..."),
    "onnx-input-name": ("onnxruntime", "the graph's inputs are ['x']; this tool runs graphs with one input named "
                                       "'input' of shape (1, 3, S, S), as `gfpgan-debug export` writes them"),
    "onnx-input-channels": ("onnxruntime", "input 'input' has shape [1, 1, 64, 64]; these frames are (1, 3, 64, 64)"),
    "onnx-no-image-output": ("onnxruntime", "the graph has no output named 'image' (its outputs: ['result'])"),
    "onnx-external-relative": ("onnxruntime", "refused: tensor 'w' keeps its data in '../secret.bin', outside the "
                                              "model's folder..."),
    "onnx-external-absolute": ("onnxruntime", "refused: tensor 'w' keeps its data in '/..."),
    "onnx-external-symlink": ("onnxruntime", "refused: tensor 'w' keeps its data in 'link.bin', outside the "
                                             "model's folder..."),
    "pt-checkpoint": ("torchscript", "not a loadable TorchScript file (PytorchStreamReader failed locating file "
                                     "constants.pkl: file not found); a torch.save checkpoint is not TorchScript: "
                                     "export it with `gfpgan-debug export`"),
    "pt-two-inputs": ("torchscript", "its forward is forward(Tensor image, Tensor mask) -> Tuple[Tensor, "
                                     "List[Tensor]]; this tool runs the deploy wrapper, forward(Tensor input) -> "
                                     "(Tensor, List[Tensor]) (export it with `gfpgan-debug export`)"),
    "pt-one-output": ("torchscript", "its forward is forward(Tensor input) -> Tensor; this tool runs the deploy "
                                     "wrapper, forward(Tensor input) -> (Tensor, List[Tensor]) (export it with "
                                     "`gfpgan-debug export`)"),
}


@pytest.fixture(scope="module")
def good_onnx(tmp_path_factory, trained_state) -> bytes:
    model = GFPGANv1Clean(**TINY).eval()
    model.load_state_dict(trained_state)
    return export.save_onnx(model, tmp_path_factory.mktemp("onnx") / "good.onnx").read_bytes()


def matches(text: str, expected: str) -> bool:
    return text.startswith(expected[:-3]) if expected.endswith("...") else text == expected


@pytest.mark.parametrize("case", list(ARTIFACT_CASES))
def test_a_bad_artefact_is_one_clear_error_from_run_and_the_cli(workspace, secret, good_onnx, capsys, case):
    path = write_bad_artifact(workspace, case, secret, good_onnx)
    runtime, problem = ARTIFACT_CASES[case]
    face = images.load_face(workspace / "face.png", 64)
    with pytest.raises(ArtifactError) as info:
        runtimes.run(runtime, path, face)
    assert matches(str(info.value), f"{path}: {problem}"), str(info.value)
    before = snapshot(workspace)
    refused(capsys, ["run", "--runtime", runtime, "--artifact", path, "--image", workspace / "face.png",
                     "--out", workspace / "restored.png"], f"gfpgan-debug run: error: {path}: {problem}")
    assert snapshot(workspace) == before


@pytest.mark.parametrize("case", ["onnx-external-relative", "onnx-external-absolute", "onnx-external-symlink"])
def test_external_data_outside_the_folder_is_never_read_into_the_weights(tmp_path, secret, case):
    path = write_bad_artifact(tmp_path, case, secret)
    for read in (export.load_onnx, forensics.artifact_weights):
        with pytest.raises(ArtifactError, match="refused: tensor 'w' keeps its data in"):
            read(path)


def test_external_data_beside_the_model_is_loaded(tmp_path):
    """The refusal is about the folder, not about external data: a file beside the model is fine."""
    (tmp_path / "w.bin").write_bytes(np.float32(2.5).tobytes())
    path = tmp_path / "beside.onnx"
    path.write_bytes(identity_onnx(initializer=external_weight("w.bin")).SerializeToString())
    assert forensics.artifact_weights(path)["w"].tolist() == [2.5]
    out = runtimes.run("onnxruntime", path, np.zeros((1, 3, 64, 64), np.float32))
    assert np.all(out["image"] == 2.5)


def test_a_script_module_object_with_another_signature_is_refused_before_it_runs():
    with pytest.raises(ArtifactError, match=r"the module: its forward is forward\(Tensor input\) -> Tensor"):
        runtimes.run("torchscript", scripted(OneOutput()), np.zeros((1, 3, 64, 64), np.float32))


def test_a_deploy_module_given_frames_of_the_wrong_size_is_a_clear_error(tmp_path, trained_state):
    model = GFPGANv1Clean(**TINY).eval()
    model.load_state_dict(trained_state)
    path = export.save_torchscript(model, tmp_path / "tiny.pt")
    with pytest.raises(ArtifactError, match=r"tiny\.pt: forward failed on a \(1, 3, 32, 32\) input"):
        runtimes.run("torchscript", path, np.zeros((1, 3, 32, 32), np.float32))


def test_a_failed_export_leaves_no_artefact_no_manifest_and_no_temporary_file(tmp_path):
    """An exporter that fails half way (here: the trace check) leaves the cache folder as it was, apart from
    the lock file, and the next call tries again instead of reusing anything."""
    class FrozenScale(GFPGANv1Clean):  # the output scales with the input's maximum: a trace freezes that
        def forward(self, x, return_rgb=True, randomize_noise=True):
            image, rgbs = super().forward(x, return_rgb=return_rgb, randomize_noise=randomize_noise)
            return image * float(x.abs().max()), rgbs

    frozen = W.fill_weights_(FrozenScale(**TINY).eval())
    for _ in range(2):
        with pytest.raises(ArtifactError, match="not traced with"):
            export.export_cached(frozen, "torchscript", cache_dir=tmp_path, method="trace")
        assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []


# ---------------------------------------------------------------------------------------------------------
# Servers: listening on the loopback interface only
# ---------------------------------------------------------------------------------------------------------


def listening_addresses(port: int) -> set:
    """Local addresses with a socket in LISTEN state on ``port``, read from /proc/net/tcp and tcp6."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if int(hex_port, 16) == port and state == "0A":  # 0A: TCP_LISTEN
                found.add(address)
    return found


def other_addresses() -> list:
    """This machine's non-loopback IPv4 addresses (none on a machine without a network)."""
    try:
        names = subprocess.run(["hostname", "-I"], capture_output=True, text=True, timeout=10).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return []
    return [name for name in names if "." in name and not name.startswith("127.")]


def refuses_connection(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex((host, port)) != 0


@pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="reads the kernel's socket table (Linux)")
def test_netron_listens_on_loopback_only(tmp_path):
    from gfpgan_debug.netron_view import show_in_netron

    path = tmp_path / "m.onnx"
    onnx.save(identity_onnx(), str(path))
    view = show_in_netron(path)
    try:
        assert listening_addresses(view.address[1]) == {"0100007F"}  # 127.0.0.1, little-endian hex
        for host in other_addresses():
            assert refuses_connection(host, view.address[1]), host
    finally:
        view.stop()


@pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="reads the kernel's socket table (Linux)")
def test_jupyterlab_listens_on_loopback_only_and_wants_its_token(tmp_path):
    import urllib.error
    import urllib.request

    from gfpgan_debug.lab import start_lab

    (tmp_path / "root").mkdir()
    lab = start_lab(tmp_path / "root", state_dir=tmp_path / "state")
    try:
        assert listening_addresses(lab.port) == {"0100007F"}
        for host in other_addresses():
            assert refuses_connection(host, lab.port), host
        assert len(lab.token) == 32
        with pytest.raises(urllib.error.HTTPError) as wrong:
            urllib.request.urlopen(f"{lab.base_url}/api/contents?token={'0' * 32}", timeout=10)
        assert wrong.value.code == 403
    finally:
        lab.stop()
