"""forensics: weights inside artefacts, matching them to a checkpoint, the untrained-weights score, behaviour.

"Trained" weights here are a tiny GFPGANv1Clean (out_size 32, 0.65 M parameters) trained for 300 Adam steps
to reproduce frames of the project's face (``trained_tiny``; about 25 s on one core, cached under build/).
"""
import hashlib
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from torch import nn
from torch.nn import functional as F

from gfpgan_debug import forensics
from gfpgan_debug.arch import GFPGANv1Clean
from gfpgan_debug.compat import torch_deprecations_silenced
from gfpgan_debug.errors import ArtifactError
from gfpgan_debug.images import FACE_PATH, preprocess, read_image

SIZE = 32
TINY = dict(out_size=SIZE, num_style_feat=32, channel_multiplier=1, num_mlp=2, narrow=0.125, decoder_load_path=None,
            fix_decoder=False, input_is_latent=True, different_w=True, sft_half=True)
TRAIN_STEPS = 300
CACHE = Path(__file__).resolve().parents[1] / "build" / "test-cache"


# ---------------------------------------------------------------------------------------------------------
# Helpers shared with test_doctor.py
# ---------------------------------------------------------------------------------------------------------


def trained_tiny() -> dict:
    """State dict of TINY trained for TRAIN_STEPS Adam steps to reproduce camera frames of the face (L1 on the
    image and on every out_rgbs level, fresh noise on), seeded; cached by a hash of this recipe."""
    recipe = f"{TINY}{TRAIN_STEPS}{torch.__version__}v1".encode()
    path = CACHE / f"trained_tiny_{hashlib.sha256(recipe).hexdigest()[:12]}.pth"
    if path.is_file():
        return torch.load(path, weights_only=True)
    torch.manual_seed(0)
    model = GFPGANv1Clean(**TINY).train()
    optimiser = torch.optim.Adam(model.parameters(), lr=2e-3)
    frames = [preprocess(f, SIZE) for f in forensics.camera_frames(read_image(FACE_PATH), count=40, size=SIZE, seed=5)]
    order = np.random.default_rng(0).integers(len(frames), size=TRAIN_STEPS)
    for index in order:
        x = frames[index]
        image, out_rgbs = model(x, randomize_noise=True)
        loss = (image - x).abs().mean() + sum((rgb - F.interpolate(x, size=rgb.shape[-2:], mode="area")).abs().mean()
                                              for rgb in out_rgbs)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    CACHE.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    torch.save(state, path)
    return state


def tiny_model(state_dict=None, seed=1) -> GFPGANv1Clean:
    torch.manual_seed(seed)
    model = GFPGANv1Clean(**TINY).eval()
    if state_dict is not None:
        model.load_state_dict(state_dict)
    return model


class Deploy(nn.Module):
    """forward(input) -> (image, out_rgbs), with the stored noise unless told otherwise."""

    def __init__(self, model, randomize_noise: bool = False):
        super().__init__()
        self.model = model
        self.randomize_noise = randomize_noise

    def forward(self, x):
        return self.model(x, return_rgb=True, randomize_noise=self.randomize_noise)


def save_torchscript(model, path, randomize_noise=False) -> Path:
    with torch_deprecations_silenced():
        torch.jit.script(Deploy(model, randomize_noise).eval()).save(str(path))
    return Path(path)


def save_onnx(model, path) -> Path:
    names = ["image"] + [f"rgb_{2**i}" for i in range(3, int(math.log2(SIZE)) + 1)]
    with torch_deprecations_silenced(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's tracer warnings about constant shapes
        torch.onnx.export(Deploy(model), (face_input(),), str(path), input_names=["input"], output_names=names,
                          opset_version=18, dynamo=False)
    return Path(path)


def face_input(size=SIZE) -> torch.Tensor:
    return preprocess(read_image(FACE_PATH), size)


def eager_runner(model, randomize_noise=False):
    def run(x):
        with torch.no_grad():
            image, _ = model(x, randomize_noise=randomize_noise)
        return {"image": image.numpy()}
    return run


@pytest.fixture(scope="module")
def trained():
    return trained_tiny()


@pytest.fixture(scope="module")
def camera_inputs():
    return [preprocess(f, SIZE) for f in forensics.camera_frames(read_image(FACE_PATH), count=6, size=SIZE)]


# ---------------------------------------------------------------------------------------------------------
# Extracting weights
# ---------------------------------------------------------------------------------------------------------


def test_torchscript_weights_keep_their_names_under_the_wrapper_prefix(trained, tmp_path):
    path = save_torchscript(tiny_model(trained), tmp_path / "m.pt")
    weights = forensics.artifact_weights(path)
    assert set(weights) == {f"model.{k}" for k in trained}
    assert np.array_equal(weights["model.conv_body_first.weight"], trained["conv_body_first.weight"].numpy())


def test_onnx_weights_are_its_initializers(trained, tmp_path):
    weights = forensics.artifact_weights(save_onnx(tiny_model(trained), tmp_path / "m.onnx"))
    assert np.array_equal(weights["model.conv_body_first.weight"], trained["conv_body_first.weight"].numpy())
    assert any(name.startswith("onnx::") for name in weights)  # folded constants get exporter names


def test_unreadable_artefacts_raise_an_error_naming_the_file(tmp_path):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a zip archive at all")
    with pytest.raises(ArtifactError, match="broken.pt"):
        forensics.artifact_weights(bad)
    bad_onnx = tmp_path / "broken.onnx"
    bad_onnx.write_bytes(b"\x00\x01garbage")
    with pytest.raises(ArtifactError, match="broken.onnx"):
        forensics.artifact_weights(bad_onnx)
    with pytest.raises(ArtifactError, match="no such file"):
        forensics.artifact_weights(tmp_path / "missing.pt")


# ---------------------------------------------------------------------------------------------------------
# Artefact vs checkpoint
# ---------------------------------------------------------------------------------------------------------


def test_a_faithful_torchscript_export_matches_every_entry_by_name(trained, tmp_path):
    weights = forensics.artifact_weights(save_torchscript(tiny_model(trained), tmp_path / "m.pt"))
    frame = forensics.match_weights(weights, trained)
    assert forensics.match_summary(frame) == dict(identical=len(trained), different=0, transformed=0, absent=0)


def test_the_original_bug_shows_every_entry_different(trained, tmp_path):
    model = tiny_model()
    result = model.load_state_dict({"params_ema": trained}, strict=False)  # the post's load: nothing matches
    assert len(result.unexpected_keys) == 1
    weights = forensics.artifact_weights(save_torchscript(model, tmp_path / "bug.pt"))
    frame = forensics.match_weights(weights, trained)
    identical = list(frame.index[frame["status"] == "identical"])
    # only the style MLP's biases agree: input_is_latent leaves that MLP unused, so training never moved its
    # biases from their initial 0
    assert identical == [k for k in trained if ".style_mlp." in k and k.endswith("bias")]
    assert forensics.match_summary(frame)["different"] == len(trained) - len(identical)
    first = frame.loc["conv_body_first.weight"]
    assert first["max_abs"] > 0.1 and abs(first["cosine"]) < 0.5  # unrelated random values


def test_onnx_folds_noise_into_constants_and_drops_the_unused_style_mlp(trained, tmp_path):
    weights = forensics.artifact_weights(save_onnx(tiny_model(trained), tmp_path / "m.onnx"))
    frame = forensics.match_weights(weights, trained)
    status = frame["status"].to_dict()
    noises = [k for k in trained if ".noises." in k]
    strengths = [k for k in trained if k.endswith(("style_conv1.weight",)) or
                 (".style_convs." in k and k.endswith(".weight") and trained[k].numel() == 1)]
    assert all(status[k] == "transformed" for k in noises + strengths)
    assert frame.loc["stylegan_decoder.noises.noise0", "how"].startswith("scaled by")
    assert frame.loc["stylegan_decoder.noises.noise0", "max_abs"] < 1e-6  # after the scaling: float round-off
    assert all(status[k] == "absent" for k in trained if ".style_mlp." in k)  # input_is_latent: never read
    others = [k for k in trained if k not in noises + strengths and ".style_mlp." not in k]
    assert all(status[k] == "identical" for k in others)


def test_renamed_tensors_are_matched_by_value_and_transposes_as_transformed(trained):
    renamed = {f"onnx::Conv_{i}": v.numpy() for i, v in enumerate(trained.values())}
    linear = "final_linear.weight"
    renamed["onnx::Gemm_t"] = trained[linear].numpy().T.copy()
    del renamed[f"onnx::Conv_{list(trained).index(linear)}"]
    frame = forensics.match_weights(renamed, trained)
    assert frame.loc["conv_body_first.weight", "how"] == "value"
    assert frame.loc[linear, "status"] == "transformed" and frame.loc[linear, "how"] == "transpose"


def test_one_changed_entry_under_a_new_name_is_paired_by_its_unique_shape(trained):
    renamed = {f"w{i}": v.numpy() for i, v in enumerate(trained.values())}
    key = "final_linear.weight"
    renamed[f"w{list(trained).index(key)}"] = renamed[f"w{list(trained).index(key)}"] + 0.5
    frame = forensics.match_weights(renamed, trained)
    assert frame.loc[key, "status"] == "different"
    assert frame.loc[key, "max_abs"] == pytest.approx(0.5, rel=1e-5)


# ---------------------------------------------------------------------------------------------------------
# Untrained-weights score
# ---------------------------------------------------------------------------------------------------------


def test_fresh_gfpgan_scores_untrained_with_evidence_per_tensor():
    report = forensics.untrained_evidence(tiny_model().state_dict())
    assert report.score > 0.95
    assert "untrained" in report.verdict and not report.verdict.startswith("partly")
    evidence = report.frame["evidence"]
    assert "exactly 0" in evidence["stylegan_decoder.style_conv1.weight"]  # the noise strength
    assert "exactly 1" in evidence["stylegan_decoder.style_conv1.modulated_conv.modulation.bias"]
    assert "U(±1/√3)" in evidence["conv_body_first.weight"] and "100.00% within" in evidence["conv_body_first.weight"]
    assert "N(0, 1/fan_in)" in evidence["stylegan_decoder.style_conv1.modulated_conv.weight"]
    assert "stylegan_decoder.noises.noise0" in report.skipped  # buffers are never trained


def test_trained_gfpgan_scores_trained(trained):
    report = forensics.untrained_evidence(trained)
    assert report.score < 0.25
    assert report.verdict.startswith("trained")
    assert not report.frame.loc["conv_body_first.weight", "looks_initial"]


def test_a_torchvision_resnet_is_scored_untrained_fresh_and_trained_when_moved():
    torch.manual_seed(0)
    fresh = torchvision.models.resnet18(weights=None).state_dict()
    assert forensics.untrained_evidence(fresh).score > 0.95
    generator = torch.Generator().manual_seed(1)
    # "trained" stand-in: every float tensor moved by noise of its own scale, far outside the init fits
    moved = {k: (v + v.float().std().clamp(min=0.1) * torch.randn(v.shape, generator=generator)
                 if v.is_floating_point() else v) for k, v in fresh.items()}
    assert forensics.untrained_evidence(moved).score < 0.05


# ---------------------------------------------------------------------------------------------------------
# Behaviour
# ---------------------------------------------------------------------------------------------------------


def test_camera_frames_move_smoothly_and_keep_the_size():
    frames = forensics.camera_frames(read_image(FACE_PATH), count=5, size=64)
    assert all(f.shape == (64, 64, 3) and f.dtype == np.uint8 for f in frames)
    steps = [np.abs(a.astype(float) - b).mean() for a, b in zip(frames, frames[1:])]
    assert all(step > 1.0 for step in steps)  # every frame differs from the one before


def test_input_sensitivity_is_one_for_identity_and_zero_for_a_constant(camera_inputs):
    identity = forensics.input_sensitivity(lambda x: {"image": x.numpy()}, camera_inputs)
    constant = forensics.input_sensitivity(lambda x: {"image": np.zeros((1, 3, SIZE, SIZE))}, camera_inputs)
    assert identity.median == pytest.approx(1.0)
    assert constant.median == 0.0


def test_input_sensitivity_shows_the_original_symptom(trained, camera_inputs):
    fresh = forensics.input_sensitivity(eager_runner(tiny_model()), camera_inputs)
    learned = forensics.input_sensitivity(eager_runner(tiny_model(trained)), camera_inputs)
    assert fresh.median < 0.1  # the output hardly follows the camera
    assert learned.median > 0.5


def test_frame_sensitivity_of_stacked_outputs_equals_input_sensitivity_frame_by_frame(camera_inputs):
    half = lambda x: {"image": 0.5 * torch.as_tensor(x).numpy() + 0.25}  # moves half as much as its input
    stacked = {"image": np.concatenate([half(x)["image"] for x in camera_inputs])}
    at_once = forensics.frame_sensitivity(camera_inputs, stacked)
    assert at_once.ratios == pytest.approx(forensics.input_sensitivity(half, camera_inputs).ratios)
    assert at_once.median == pytest.approx(0.5)


def test_frame_sensitivity_refuses_inputs_and_outputs_of_different_lengths(camera_inputs):
    with pytest.raises(ValueError, match="6 input frames but 5 outputs"):
        forensics.frame_sensitivity(camera_inputs, {"image": np.zeros((5, 3, SIZE, SIZE))})


def test_determinism_separates_stored_noise_from_fresh_noise(trained, tmp_path):
    x = face_input()
    stored = torch.jit.load(str(save_torchscript(tiny_model(trained), tmp_path / "a.pt")))
    fresh = torch.jit.load(str(save_torchscript(tiny_model(trained), tmp_path / "b.pt", randomize_noise=True)))

    def runner(module):
        return lambda x: {"image": module(x)[0].detach().numpy()}

    assert forensics.determinism(runner(stored), x)["image"] == 0.0
    assert forensics.determinism(runner(fresh), x)["image"] > 1e-4  # trained noise strengths are not 0


def test_forensics_on_a_scripted_torchvision_network(tmp_path):
    torch.manual_seed(0)
    checkpoint = torchvision.models.resnet18(weights=None).eval()
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():  # "trained" stand-in: every parameter moved well away from its initialisation
        for parameter in checkpoint.parameters():
            parameter.add_(0.1 * torch.randn(parameter.shape, generator=generator))
    fresh = torchvision.models.resnet18(weights=None).eval()
    with torch_deprecations_silenced():
        torch.jit.script(checkpoint).save(str(tmp_path / "good.pt"))
        torch.jit.script(fresh).save(str(tmp_path / "fresh.pt"))
    state = checkpoint.state_dict()
    good = forensics.match_weights(forensics.artifact_weights(tmp_path / "good.pt"), state)
    assert forensics.match_summary(good)["identical"] == len(state)
    bad_weights = forensics.artifact_weights(tmp_path / "fresh.pt")
    bad = forensics.match_weights(bad_weights, state)
    counts = forensics.match_summary(bad)
    # batch-norm running statistics are buffers that the "training" above did not move: identical
    assert counts["different"] == len(list(checkpoint.parameters())) and counts["absent"] == 0
    assert forensics.untrained_evidence(bad_weights).score > 0.9
    assert forensics.untrained_evidence(state).score < 0.1
