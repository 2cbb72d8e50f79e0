"""run(runtime, artifact, inputs): the same names and (within stated tolerances) the same numbers from eager
PyTorch, TorchScript, the LibTorch C++ program and ONNX Runtime (both exporters), on the small 512 config with
filled random weights and, marked slow, on the official configuration."""
import copy

import numpy as np
import pytest
import torch

from gfpgan_debug.weights import fill_weights_
from gfpgan_debug import export, runtimes
from gfpgan_debug.arch import OFFICIAL_CONFIG, GFPGANv1Clean
from gfpgan_debug.cli import main as cli_main
from gfpgan_debug.errors import ArtifactError, GfpganDebugError
from gfpgan_debug.images import FACE_PATH, load_face, read_image

# 1.9 M parameters, 0.1-0.3 s per 512x512 forward on this CPU
SMALL = dict(out_size=512, channel_multiplier=1, narrow=0.125, num_style_feat=128, input_is_latent=True,
             different_w=True, sft_half=True, fix_decoder=False)
NAMES_512 = ["image", "rgb_8", "rgb_16", "rgb_32", "rgb_64", "rgb_128", "rgb_256", "rgb_512"]
EXPORTERS = [False, True]
EXPORTER_IDS = ["legacy", "dynamo"]


def relative_difference(candidate, reference) -> float:
    """max |candidate - reference| / max |reference|: the error on the scale of the output (an element-wise
    ratio explodes where the reference crosses zero)."""
    return float(np.abs(candidate - reference).max() / max(np.abs(reference).max(), 1e-12))


@pytest.fixture(scope="module")
def model():
    return fill_weights_(GFPGANv1Clean(**SMALL).eval(), seed=0)


@pytest.fixture(scope="module")
def artifacts(model, tmp_path_factory):
    cache = tmp_path_factory.mktemp("artifacts")
    return dict(torchscript=export.export_cached(model, "torchscript", cache_dir=cache),
                legacy=export.export_cached(model, "onnx", cache_dir=cache, dynamo=False),
                dynamo=export.export_cached(model, "onnx", cache_dir=cache, dynamo=True))


@pytest.fixture(scope="module")
def face():
    return load_face()


@pytest.fixture(scope="module")
def reference(model, face):
    return runtimes.run("eager", model, face, intermediates="all")


def test_eager_returns_the_outputs_then_module_intermediates(reference):
    names = list(reference)
    assert names[:8] == NAMES_512
    assert "conv_body_up.0.conv2" in names and "stylegan_decoder.to_rgbs.0" in names
    assert reference["image"].shape == (1, 3, 512, 512) and reference["rgb_8"].shape == (1, 3, 8, 8)
    assert all(np.isfinite(v).all() for v in reference.values())


def test_eager_hooks_see_a_conv_output_before_the_in_place_leaky_relu(reference):
    # conv_body_first's output is passed to F.leaky_relu_, which overwrites it; the hook must keep the original
    assert (reference["conv_body_first"] < 0).any()


def test_torchscript_is_identical_to_eager(artifacts, face, reference):
    out = runtimes.run("torchscript", artifacts["torchscript"], face)
    assert list(out) == NAMES_512
    for name in NAMES_512:
        assert np.array_equal(out[name], reference[name]), name  # same kernels, same order: bit for bit


def test_libtorch_matches_eager_within_1e_5(artifacts, face, reference):
    out = runtimes.run("libtorch", artifacts["torchscript"], face)
    assert list(out) == NAMES_512
    for name in NAMES_512:
        # the same TorchScript graph on the same LibTorch kernels; 1e-5 allows a different thread split
        assert relative_difference(out[name], reference[name]) < 1e-5, name


@pytest.mark.parametrize("exporter", EXPORTERS, ids=EXPORTER_IDS)
def test_onnxruntime_matches_eager_within_1e_4(artifacts, face, reference, exporter):
    out = runtimes.run("onnxruntime", artifacts[EXPORTER_IDS[EXPORTERS.index(exporter)]], face)
    assert list(out) == NAMES_512
    for name in NAMES_512:
        # other kernels (MLAS convolutions, its own resize): float32 rounding differs, measured ~2e-6
        assert relative_difference(out[name], reference[name]) < 1e-4, name


@pytest.mark.parametrize("exporter", EXPORTERS, ids=EXPORTER_IDS)
def test_onnx_intermediates_come_back_under_module_paths_and_match_eager(artifacts, face, reference, exporter):
    out = runtimes.run("onnxruntime", artifacts[EXPORTER_IDS[EXPORTERS.index(exporter)]], face,
                       intermediates="all")
    intermediates = [name for name in out if name not in NAMES_512]
    assert len(intermediates) > 100
    for name in intermediates:
        # proves the ONNX → module mapping: a wrong tensor would differ by far more than rounding
        assert relative_difference(out[name], reference[name]) < 1e-4, name


def test_onnx_chosen_intermediates_only(artifacts, face, reference):
    chosen = ["conv_body_down.0.conv1", "stylegan_decoder.to_rgbs.2"]
    out = runtimes.run("onnxruntime", artifacts["dynamo"], face, intermediates=chosen)
    assert list(out) == NAMES_512 + chosen
    assert out["conv_body_down.0.conv1"].shape == reference["conv_body_down.0.conv1"].shape


def test_onnx_first_divergence_finds_nothing_in_a_faithful_export(model, artifacts, face):
    timings = {}
    search = runtimes.onnx_first_divergence(model, artifacts["legacy"], face, timings=timings)
    assert search.divergence is None
    assert len(search.layers) > 100 and search.layers["agrees"].all()
    assert set(timings) == {"onnxruntime", "eager and compare"}


def test_onnx_first_divergence_names_the_layer_an_export_changed(model, face, tmp_path):
    # the ONNX graph of a model with one changed kernel, searched against the unchanged eager model
    changed = copy.deepcopy(model)
    with torch.no_grad():
        changed.conv_body_up[2].conv1.weight.mul_(1.1)
    graph = export.export_cached(changed, "onnx", cache_dir=tmp_path, dynamo=False)
    search = runtimes.onnx_first_divergence(model, graph, face)
    assert search.divergence.name == "conv_body_up.2.conv1"
    assert search.divergence.inputs_checked
    assert search.divergence.checked > 10  # the encoder before it was compared and agrees


def test_onnx_intermediates_of_a_caller_s_graph_leave_the_graph_unchanged(artifacts, face):
    graph = export.load_onnx(artifacts["legacy"])
    before = len(graph.graph.output)
    out = runtimes.run("onnxruntime", graph, face, intermediates="all")
    assert len(out) > 100 and len(graph.graph.output) == before


def test_one_frame_comes_back_without_a_copy():
    frame = {"image": np.zeros((1, 3, 4, 4), np.float32)}
    assert runtimes.stack([frame])["image"] is frame["image"]


def test_a_sequence_of_frames_comes_back_stacked_in_order(model, artifacts, face):
    frames = [face, torch.flip(face, dims=[3]), export.example_input(512, seed=5)]
    for runtime, artifact in [("eager", model), ("libtorch", artifacts["torchscript"]),
                              ("onnxruntime", artifacts["legacy"])]:
        timings = []
        out = runtimes.run(runtime, artifact, frames, timings=timings)
        assert out["image"].shape == (3, 3, 512, 512) and out["rgb_8"].shape == (3, 3, 8, 8)
        assert len(timings) == 3
        single = runtimes.run(runtime, artifact, frames[1])
        assert relative_difference(out["image"][1:2], single["image"]) < 1e-5, runtime
        # trained or not, the output must follow the input: different frames, different images
        assert relative_difference(out["image"][0], out["image"][1]) > 1e-2, runtime


def test_an_n_by_3_array_is_n_frames(model, face):
    batch = np.concatenate([face.numpy(), face.numpy()], axis=0)
    out = runtimes.run("eager", model, batch)
    assert out["image"].shape == (2, 3, 512, 512)
    assert np.array_equal(out["image"][0], out["image"][1])


def test_bad_requests_are_clear_errors(model, artifacts, face, tmp_path):
    with pytest.raises(GfpganDebugError, match="unknown runtime"):
        runtimes.run("tensorrt", model, face)
    with pytest.raises(ArtifactError, match="missing.pt"):
        runtimes.run("torchscript", tmp_path / "missing.pt", face)
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(ArtifactError, match="junk.onnx"):
        runtimes.run("onnxruntime", tmp_path / "junk.onnx", face)
    with pytest.raises(GfpganDebugError, match="intermediate"):
        runtimes.run("torchscript", artifacts["torchscript"], face, intermediates=["conv_body_first"])
    with pytest.raises(GfpganDebugError, match="no module"):
        runtimes.run("eager", model, face, intermediates=["conv_body_nowhere"])
    with pytest.raises(GfpganDebugError, match=r"\(1, 3, S, S\)"):
        runtimes.run("eager", model, np.zeros((1, 4, 512, 512), np.float32))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given when there is no GPU")
def test_cuda_without_a_gpu_is_a_clear_error(model, face):
    with pytest.raises(GfpganDebugError, match="no CUDA device"):
        runtimes.run("eager", model, face, device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
@pytest.mark.parametrize("runtime", ["eager", "torchscript", "libtorch"])
def test_cuda_matches_cpu(model, artifacts, face, reference, runtime):
    artifact = model if runtime == "eager" else artifacts["torchscript"]
    out = runtimes.run(runtime, artifact, face, device="cuda")
    for name in NAMES_512:
        # cuDNN's convolutions (TF32 where allowed) round differently from the CPU's
        assert relative_difference(out[name], reference[name]) < 1e-2, name


def test_cli_run_writes_the_restored_face(artifacts, tmp_path, capsys):
    out = tmp_path / "restored.png"
    code = cli_main(["run", "--runtime", "onnxruntime", "--artifact", str(artifacts["legacy"]),
                     "--image", str(FACE_PATH), "--out", str(out)])
    assert code == 0
    assert read_image(out).shape == (512, 512, 3)
    assert cli_main(["run", "--runtime", "libtorch", "--artifact", str(tmp_path / "none.pt"),
                     "--image", str(FACE_PATH), "--out", str(out)]) == 2
    assert "none.pt" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------
# The official configuration (86 M parameters, ~3 s per forward), filled with random weights
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def official():
    model = fill_weights_(GFPGANv1Clean(**OFFICIAL_CONFIG).eval(), seed=1)
    face = load_face()
    return model, face, runtimes.run("eager", model, face)


@pytest.mark.slow
def test_official_torchscript_identical_and_libtorch_within_1e_5(official, tmp_path):
    model, face, reference = official
    pt = export.export_cached(model, "torchscript", cache_dir=tmp_path)
    scripted = runtimes.run("torchscript", pt, face)
    native = runtimes.run("libtorch", pt, face)
    for name in NAMES_512:
        assert np.array_equal(scripted[name], reference[name]), name
        assert relative_difference(native[name], reference[name]) < 1e-5, name


@pytest.mark.slow
@pytest.mark.parametrize("exporter", EXPORTERS, ids=EXPORTER_IDS)
def test_official_onnxruntime_within_1e_4(official, tmp_path, exporter):
    model, face, reference = official
    out = runtimes.run("onnxruntime", export.export_cached(model, "onnx", cache_dir=tmp_path, dynamo=exporter), face)
    for name in NAMES_512:
        assert relative_difference(out[name], reference[name]) < 1e-4, name
