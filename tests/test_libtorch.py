"""The LibTorch runner: built with g++ against the wheel's LibTorch, cached by source hash, clear errors when
the tool chain is missing, exact .npy output, a camera loop in one process, and C++ (OpenCV) preprocessing
that gives the model the same tensor as the Python preprocessing."""
import cv2
import numpy as np
import pytest
import torch

from gfpgan_debug.weights import fill_weights_
from gfpgan_debug import export, libtorch
from gfpgan_debug.arch import GFPGANv1Clean
from gfpgan_debug.errors import ArtifactError, GfpganDebugError, ImageError
from gfpgan_debug.images import FACE_PATH, load_face, read_image, write_image

TINY = dict(out_size=64, channel_multiplier=1, narrow=0.125, num_style_feat=64, input_is_latent=True,
            different_w=True, sft_half=True, fix_decoder=False)


@pytest.fixture(scope="module")
def runner():
    return libtorch.build_runner()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    model = fill_weights_(GFPGANv1Clean(**TINY).eval(), seed=2)
    return model, export.save_torchscript(model, tmp_path_factory.mktemp("pt") / "tiny.pt")


def test_runner_is_built_once_and_reused(runner):
    assert runner.is_file() and libtorch.build_seconds(runner) > 0
    stamp = runner.stat().st_mtime_ns
    assert libtorch.build_runner() == runner and runner.stat().st_mtime_ns == stamp


def test_a_changed_source_gets_a_new_binary_name(tmp_path):
    edited = tmp_path / "runner.cpp"
    edited.write_text(libtorch.SOURCE.read_text() + "\n// edited\n")
    assert libtorch.build_key(edited) != libtorch.build_key(libtorch.SOURCE)


def test_a_missing_compiler_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("CXX", "g++-that-is-not-installed")
    with pytest.raises(GfpganDebugError, match="no C\\+\\+ compiler.*apt-get install"):
        libtorch.build_runner()


def test_missing_opencv_headers_are_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("PKG_CONFIG_LIBDIR", str(tmp_path))  # pkg-config then finds no opencv4.pc
    monkeypatch.setenv("PKG_CONFIG_PATH", str(tmp_path))
    with pytest.raises(GfpganDebugError, match="OpenCV.*libopencv-dev"):
        libtorch.build_runner()


def test_outputs_come_back_exactly_and_frames_run_in_one_process(runner, tiny):
    model, pt = tiny
    frames = [export.example_input(64, seed=s).numpy() for s in range(4)]
    results, seconds = libtorch.run_runner(pt, frames, size=64)
    assert len(results) == 4 and len(seconds) == 4
    wrapper = export.deploy(model)
    for frame, result in zip(frames, results):
        assert list(result) == export.output_names(64)
        with torch.no_grad():
            expected = export.flatten_outputs(wrapper(torch.from_numpy(frame)))
        for name, want in zip(export.output_names(64), expected):
            assert result[name].dtype == np.float32 and result[name].shape == tuple(want.shape)
            # the same TorchScript graph on the same LibTorch kernels; 1e-5 allows a different thread split
            assert np.abs(result[name] - want.numpy()).max() <= 1e-5 * np.abs(want.numpy()).max(), name
    assert not np.allclose(results[0]["image"], results[1]["image"])


def test_cpp_preprocessing_of_the_data_face_is_the_python_tensor(runner):
    (cpp,) = libtorch.preprocess_cpp([FACE_PATH])
    python = load_face().numpy()
    assert cpp.shape == python.shape == (1, 3, 512, 512) and cpp.dtype == np.float32
    # measured: bit for bit (OpenCV decodes the PNG identically; the float math runs in the same order)
    assert np.array_equal(cpp, python)


@pytest.mark.parametrize("side", [300, 777])
def test_cpp_resize_to_512_matches_python(runner, tmp_path, side):
    # Debian's OpenCV (C++) and opencv-python are different builds; INTER_LINEAR on 8-bit is fixed-point in
    # both, so the resize is expected, and measured, to agree exactly
    path = write_image(tmp_path / f"face_{side}.png", cv2.resize(read_image(FACE_PATH), (side, side),
                                                                interpolation=cv2.INTER_AREA))
    (cpp,) = libtorch.preprocess_cpp([path])
    assert np.array_equal(cpp, load_face(path).numpy())


def test_runner_errors_name_the_file(runner, tiny, tmp_path):
    _, pt = tiny
    with pytest.raises(ImageError, match="nowhere.png"):
        libtorch.run_runner(pt, [tmp_path / "nowhere.png"])
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(ArtifactError, match="text.png.*not an image"):
        libtorch.run_runner(pt, [tmp_path / "text.png"])
    (tmp_path / "broken.pt").write_bytes(b"no zip here")
    with pytest.raises(ArtifactError, match="broken.pt.*cannot load"):
        libtorch.run_runner(tmp_path / "broken.pt", [export.example_input(64).numpy()], size=64)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_runner_on_cuda_matches_cpu(runner, tiny):
    _, pt = tiny
    frame = export.example_input(64).numpy()
    (cpu,), _ = libtorch.run_runner(pt, [frame], size=64)
    (gpu,), _ = libtorch.run_runner(pt, [frame], device="cuda", size=64)
    for name in cpu:
        # cuDNN convolutions (TF32 where allowed) round differently from the CPU's
        assert np.abs(gpu[name] - cpu[name]).max() <= 1e-2 * np.abs(cpu[name]).max(), name

