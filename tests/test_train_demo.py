"""The committed demo weights do what the workbook needs, and the trainer that made them works.

The acceptance numbers are issue 3's. Every metric is computed here with plain numpy/torch, not with the
module's own metric functions; only the inputs (the degraded face, the pan frames) come from train_demo.
"""
import hashlib
import json

import cv2
import numpy as np
import pytest
import torch

from gfpgan_debug import train_demo
from gfpgan_debug.arch import GFPGANv1Clean
from gfpgan_debug.errors import GfpganDebugError
from gfpgan_debug.images import FACE_PATH, read_image

WEIGHTS = train_demo.DEMO_WEIGHTS
CARD = WEIGHTS.with_suffix(".json")


def to_model_input(image_bgr):
    """The inference preprocessing, spelled out: BGR uint8 → RGB float in [-1, 1], (1, 3, H, W)."""
    rgb = image_bgr[:, :, ::-1].astype(np.float32) / 255.0
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))[None] * 2 - 1


def to_bgr8(output):
    rgb = ((output[0].clamp(-1, 1) + 1) / 2 * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return np.ascontiguousarray(rgb[:, :, ::-1])


def psnr_db(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0**2 / mse)


@pytest.fixture(scope="module")
def card():
    return json.loads(CARD.read_text())


@pytest.fixture(scope="module")
def demo_model(card):
    checkpoint = torch.load(WEIGHTS, map_location="cpu", weights_only=True)
    model = GFPGANv1Clean(**card["config"])
    model.load_state_dict(checkpoint["params_ema"], strict=True)
    return model.eval()


@pytest.fixture(scope="module")
def fresh_model(card):
    torch.manual_seed(1234)  # any seed: nothing is loaded into these weights
    return GFPGANv1Clean(**card["config"]).eval()


@pytest.fixture(scope="module")
def face_pair():
    degraded, _ = train_demo.eval_pair()
    return degraded, read_image(FACE_PATH)


def forward(model, image_bgr):
    with torch.no_grad():
        return model(to_model_input(image_bgr), randomize_noise=False)


def sensitivity(model, frame_a, frame_b):
    a, b = to_model_input(frame_a), to_model_input(frame_b)
    with torch.no_grad():
        out_a = model(a, randomize_noise=False)[0]
        out_b = model(b, randomize_noise=False)[0]
    return float((out_a - out_b).abs().mean() / (a - b).abs().mean())


def test_committed_weights_are_official_layout_float32_under_12_mb(card):
    checkpoint = torch.load(WEIGHTS, map_location="cpu", weights_only=True)
    assert list(checkpoint) == ["params_ema"]
    assert all(t.dtype == torch.float32 for t in checkpoint["params_ema"].values())
    assert WEIGHTS.stat().st_size <= 12 * 1024 * 1024
    official_keys = list(GFPGANv1Clean(**card["config"]).state_dict())
    assert list(checkpoint["params_ema"]) == official_keys


def test_card_sha256_matches_committed_weights(card):
    assert hashlib.sha256(WEIGHTS.read_bytes()).hexdigest() == card["sha256"]
    for field in ("config", "data", "steps", "seconds", "seed", "metrics", "saved_under_params_ema"):
        assert field in card


def test_demo_output_is_at_least_24_db_from_the_clean_face(demo_model, face_pair):
    degraded, clean = face_pair
    image, _ = forward(demo_model, degraded)
    assert psnr_db(to_bgr8(image), clean) >= 24.0


def test_rgb_8_map_is_a_tiny_face(demo_model, face_pair):
    degraded, clean = face_pair
    _, out_rgbs = forward(demo_model, degraded)
    assert out_rgbs[0].shape == (1, 3, 8, 8)
    tiny = to_model_input(cv2.resize(clean, (8, 8), interpolation=cv2.INTER_AREA))
    r = np.corrcoef(out_rgbs[0].flatten().numpy(), tiny.flatten().numpy())[0, 1]
    assert r >= 0.85


def test_fresh_weights_give_garbage(fresh_model, face_pair):
    degraded, clean = face_pair
    image, _ = forward(fresh_model, degraded)
    assert psnr_db(to_bgr8(image), clean) < 12.0


def test_demo_output_follows_a_camera_pan_and_fresh_output_does_not(demo_model, fresh_model, face_pair):
    frame_a, frame_b = train_demo.pan_frames(face_pair[1])
    assert np.abs(frame_a.astype(int) - frame_b.astype(int)).mean() > 1  # the frames really differ
    demo = sensitivity(demo_model, frame_a, frame_b)
    fresh = sensitivity(fresh_model, frame_a, frame_b)
    assert demo >= 0.5
    assert fresh <= demo / 10


def test_degradation_is_reproducible_and_really_degrades():
    clean = read_image(FACE_PATH)
    first = train_demo.degrade(clean, train_demo.EVAL_DEGRADATION, np.random.default_rng(7))
    second = train_demo.degrade(clean, train_demo.EVAL_DEGRADATION, np.random.default_rng(7))
    assert first.shape == clean.shape and first.dtype == np.uint8
    assert np.array_equal(first, second)
    assert psnr_db(first, clean) < 35  # blur, down-up scaling, noise and JPEG cost at least a few dB


def test_random_views_are_model_sized_and_vary():
    picture = read_image(FACE_PATH)
    rng = np.random.default_rng(0)
    views = [train_demo.random_view(picture, rng, is_face=True) for _ in range(2)]
    assert all(view.shape == (512, 512, 3) for view in views)
    assert not np.array_equal(views[0], views[1])


def test_trainer_writes_a_loadable_checkpoint_and_matching_card(tmp_path):
    out = tmp_path / "tiny.pth"
    card = train_demo.train(steps=3, out=out, picture=tmp_path / "picture.png")
    assert card["steps"] == 3
    assert hashlib.sha256(out.read_bytes()).hexdigest() == card["sha256"]
    on_disk = json.loads(out.with_suffix(".json").read_text())
    assert on_disk["sha256"] == card["sha256"]
    model = GFPGANv1Clean(**on_disk["config"])
    model.load_state_dict(torch.load(out, weights_only=True)["params_ema"], strict=True)
    picture = cv2.imread(str(tmp_path / "picture.png"))
    assert picture is not None and picture.shape[1] > 3 * picture.shape[0]  # four panels side by side


def test_same_seed_and_steps_give_the_same_checkpoint(tmp_path):
    first = train_demo.train(steps=2, out=tmp_path / "a.pth")
    second = train_demo.train(steps=2, out=tmp_path / "b.pth")
    assert first["sha256"] == second["sha256"]


@pytest.mark.parametrize("budget", [dict(), dict(steps=2, minutes=1.0), dict(steps=0)])
def test_a_missing_or_bad_budget_is_a_clear_error(tmp_path, budget):
    with pytest.raises(GfpganDebugError, match="budget"):
        train_demo.train(out=tmp_path / "x.pth", **budget)


def test_project_loader_reads_demo_weights_fully_and_shapes_give_the_card_config(card):
    from gfpgan_debug.weights import infer_config, load_checkpoint, model_from_checkpoint

    _, report = model_from_checkpoint(WEIGHTS, strict=True)
    assert report.fraction_loaded == 1.0
    assert infer_config(load_checkpoint(WEIGHTS)) == card["config"]


def test_cli_verb_reports_a_bad_budget_with_exit_code_2(tmp_path, capsys):
    from gfpgan_debug import cli

    assert cli.main(["train-demo", "--steps", "0", "--out", str(tmp_path / "x.pth")]) == 2
    assert "budget must be positive" in capsys.readouterr().err
    assert not (tmp_path / "x.pth").exists()
