"""Demo weights the project trains itself: a small GFPGANv1Clean that turns a degraded face into a face.

No weights can be downloaded here and the official ones are 349 MB, yet the story needs a model whose output
depends on its input. So this module trains one on the 2-core CPU in about 15 minutes:

    clean picture ─ random view (crop, scale, flip, small rotation) ─┬─────────────────────────► target
                                                                     └─ degrade (blur, down-up,
                                                                        noise, JPEG) ─► model ─► output
    loss = L1(image, target) + Σ_levels L1(out_rgbs[level], target resized to that level)

Both input and target go through ``images.preprocess``, the exact inference preprocessing ([-1, 1], RGB).
The architecture and state_dict keys are the official ones; only the widths are small (``DEMO_CONFIG``).
The result is a teaching model, not GFPGAN's quality: see data/README.md.
"""
import argparse
import hashlib
import io
import json
import math
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from gfpgan_debug import forensics
from gfpgan_debug.arch import GFPGANv1Clean
from gfpgan_debug.errors import GfpganDebugError
from gfpgan_debug.images import FACE_PATH, MODEL_SIZE, postprocess, preprocess, read_image
from gfpgan_debug.weights import DEMO_WEIGHTS



# The official v1.3/v1.4 flags (input_is_latent, different_w, sft_half, trainable decoder) with small widths:
# 1.88 M parameters instead of 86 M, so that a training step takes about a second on 2 CPU cores.
DEMO_CONFIG = dict(out_size=512, num_style_feat=128, channel_multiplier=1, decoder_load_path=None,
                   fix_decoder=False, num_mlp=8, input_is_latent=True, different_w=True, narrow=0.125,
                   sft_half=True)

# Pictures that ship inside scikit-image, with the licence its documentation (the docstring of each
# skimage.data function, https://scikit-image.org/docs/stable/api/skimage.data.html) gives them.
# cameraman (skimage.data.camera, CC0) is left out on purpose: it is the face the model has never seen.
SKIMAGE_PICTURES = {
    "astronaut": "public domain (NASA; 'No known copyright restrictions, released into the public domain')",
    "chelsea": "CC0 (photographer Stefan van der Walt)",
    "coffee": "CC0 (photographer Rachel Michetti)",
    "rocket": "public domain (SpaceX photos released into the public domain)",
}
FACE_SHARE = 0.5  # half the training samples are the data face: the one face we may use, oversampled


# ---------------------------------------------------------------------------------------------------------
# Data: random views of clean pictures, and their degraded copies
# ---------------------------------------------------------------------------------------------------------


def training_pictures() -> dict:
    """name → 8-bit BGR picture: the data face plus the scikit-image pictures listed in SKIMAGE_PICTURES."""
    from skimage import data

    pictures = {"face": read_image(FACE_PATH)}
    for name in SKIMAGE_PICTURES:
        rgb = getattr(data, name)()
        pictures[name] = np.ascontiguousarray(rgb[:, :, ::-1]) if rgb.ndim == 3 else rgb
    return pictures


def random_view(picture: np.ndarray, rng: np.random.Generator, is_face: bool, size: int = MODEL_SIZE) -> np.ndarray:
    """A random square region of ``picture``, rotated, maybe mirrored, resampled to size x size.

    The face stays roughly where an aligned face sits (side 0.85-1.15 of the picture, centre within 4 %);
    other pictures give any square of 35-100 % of their short side, so the model sees varied texture.
    """
    height, width = picture.shape[:2]
    short = min(height, width)
    if is_face:
        side = short * rng.uniform(0.85, 1.15)
        centre = np.array([width, height]) / 2 + rng.uniform(-0.04, 0.04, size=2) * short
    else:
        side = short * rng.uniform(0.35, 1.0)
        centre = np.array([rng.uniform(side / 2, width - side / 2), rng.uniform(side / 2, height - side / 2)])
    angle = rng.uniform(-10, 10)  # degrees
    # the affine map that takes the region's centre to the output's centre, rotating and scaling about it
    matrix = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), angle, size / side)
    matrix[:, 2] += size / 2 - centre
    view = cv2.warpAffine(picture, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    if rng.random() < 0.5:
        view = view[:, ::-1]
    return np.ascontiguousarray(view)


@dataclass
class Degradation:
    """One degradation, applied in this order: Gaussian blur, down-and-up scaling, Gaussian noise, JPEG."""

    blur_sigma: float  # pixels
    downscale: float  # the picture is shrunk by this factor, then enlarged back
    noise_sigma: float  # in 8-bit grey levels
    jpeg_quality: int


# the fixed degradation of the acceptance tests and the card's metrics: middle of the training ranges
EVAL_DEGRADATION = Degradation(blur_sigma=2.0, downscale=3.0, noise_sigma=6.0, jpeg_quality=50)
EVAL_NOISE_SEED = 2021  # the noise drawn for EVAL_DEGRADATION


def random_degradation(rng: np.random.Generator) -> Degradation:
    return Degradation(blur_sigma=rng.uniform(0.2, 3.0), downscale=rng.uniform(1.0, 4.0),
                       noise_sigma=rng.uniform(0.0, 8.0), jpeg_quality=int(rng.integers(40, 96)))


def degrade(image: np.ndarray, degradation: Degradation, rng: np.random.Generator) -> np.ndarray:
    """8-bit BGR → 8-bit BGR of the same size, degraded as ``degradation`` says (noise drawn from ``rng``)."""
    height, width = image.shape[:2]
    out = cv2.GaussianBlur(image, (0, 0), sigmaX=degradation.blur_sigma)
    small = (max(1, round(width / degradation.downscale)), max(1, round(height / degradation.downscale)))
    out = cv2.resize(out, small, interpolation=cv2.INTER_AREA)
    out = cv2.resize(out, (width, height), interpolation=cv2.INTER_LINEAR)
    noisy = out.astype(np.float32) + rng.normal(0.0, degradation.noise_sigma, out.shape).astype(np.float32)
    out = np.clip(noisy.round(), 0, 255).astype(np.uint8)
    ok, jpeg = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, degradation.jpeg_quality])
    return cv2.imdecode(jpeg, cv2.IMREAD_COLOR)


def eval_pair() -> tuple:
    """(degraded, clean) 8-bit BGR data face: the pair every metric below is measured on."""
    clean = read_image(FACE_PATH)
    return degrade(clean, EVAL_DEGRADATION, np.random.default_rng(EVAL_NOISE_SEED)), clean


def pan_frames(image: np.ndarray, shift: int = 12) -> tuple:
    """Two frames of a simulated camera pan over ``image``: the picture moved ``shift`` pixels apart."""
    def moved(dx):
        matrix = np.float32([[1, 0, dx], [0, 1, 0]])
        return cv2.warpAffine(image, matrix, image.shape[1::-1], borderMode=cv2.BORDER_REFLECT_101)
    return moved(-shift / 2), moved(shift / 2)


def sample(pictures: dict, rng: np.random.Generator) -> tuple:
    """One training pair as model tensors (1, 3, 512, 512) in [-1, 1]: (degraded input, clean target)."""
    names = [name for name in pictures if name != "face"]
    name = "face" if rng.random() < FACE_SHARE else names[rng.integers(len(names))]
    clean = random_view(pictures[name], rng, is_face=name == "face")
    degraded = degrade(clean, random_degradation(rng), rng)
    return preprocess(degraded), preprocess(clean)


# ---------------------------------------------------------------------------------------------------------
# Loss and metrics
# ---------------------------------------------------------------------------------------------------------


def pyramid_loss(image: torch.Tensor, out_rgbs: list, target: torch.Tensor) -> tuple:
    """L1 on the image, plus L1 on every out_rgbs map against the target area-averaged to that map's size.

    The pyramid term is GFPGAN's (its ``pyramid_loss_weight`` 1): it makes the U-Net's 8x8 map a tiny face.
    """
    image_l1 = F.l1_loss(image, target)
    pyramid_l1 = sum(F.l1_loss(rgb, F.adaptive_avg_pool2d(target, rgb.shape[-2:])) for rgb in out_rgbs)
    return image_l1 + pyramid_l1, image_l1


def psnr(output_bgr: np.ndarray, reference_bgr: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two 8-bit pictures, in dB: 10 log10(255² / mean squared error)."""
    mse = np.mean((output_bgr.astype(np.float64) - reference_bgr.astype(np.float64)) ** 2)
    return float(10 * math.log10(255.0**2 / max(mse, 1e-12)))


def tensor_psnr(output: torch.Tensor, target: torch.Tensor) -> float:
    """PSNR of two model tensors in [-1, 1] (peak-to-peak 2), after clamping the output to that range."""
    mse = F.mse_loss(output.detach().clamp(-1, 1), target).item()
    return 10 * math.log10(4.0 / max(mse, 1e-12))


def run_model(model, image_bgr: np.ndarray, randomize_noise: bool = False) -> tuple:
    """(output picture 8-bit BGR, out_rgbs) for one picture, without gradients."""
    with torch.no_grad():
        image, out_rgbs = model(preprocess(image_bgr), randomize_noise=randomize_noise)
    return postprocess(image), out_rgbs


def map_correlation(rgb_map: torch.Tensor, clean_bgr: np.ndarray) -> float:
    """Pearson r between a (1, 3, s, s) out_rgbs map and the clean picture area-averaged to s x s."""
    size = rgb_map.shape[-1]
    small = preprocess(cv2.resize(clean_bgr, (size, size), interpolation=cv2.INTER_AREA), size)
    return float(np.corrcoef(rgb_map.flatten().numpy(), small.flatten().numpy())[0, 1])


def input_sensitivity(model, frame_a: np.ndarray, frame_b: np.ndarray) -> float:
    """mean |out(a) - out(b)| / mean |a - b|: about 1 for a model that follows its input, 0 for one that ignores it."""
    def run(x):
        with torch.no_grad():
            return {"image": model(x, randomize_noise=False)[0]}
    return forensics.input_sensitivity(run, [preprocess(frame_a), preprocess(frame_b)]).median


def evaluate(model, fresh_model=None) -> dict:
    """The card's metrics on the degraded data face (and, given a freshly initialised model, its numbers too)."""
    degraded, clean = eval_pair()
    frame_a, frame_b = pan_frames(clean)
    model.eval()
    output, out_rgbs = run_model(model, degraded)
    metrics = {
        "psnr_degraded_input_db": psnr(degraded, clean),
        "psnr_output_db": psnr(output, clean),
        "psnr_output_fresh_noise_db": psnr(run_model(model, degraded, randomize_noise=True)[0], clean),
        "rgb_8_pearson_r": map_correlation(out_rgbs[0], clean),
        "input_sensitivity": input_sensitivity(model, frame_a, frame_b),
    }
    from skimage import data  # the never-seen face: cameraman (CC0), grey, squashed to 512x512

    camera = cv2.cvtColor(cv2.resize(data.camera(), (MODEL_SIZE, MODEL_SIZE)), cv2.COLOR_GRAY2BGR)
    camera_degraded = degrade(camera, EVAL_DEGRADATION, np.random.default_rng(EVAL_NOISE_SEED))
    metrics["unseen_camera_psnr_degraded_input_db"] = psnr(camera_degraded, camera)
    metrics["unseen_camera_psnr_output_db"] = psnr(run_model(model, camera_degraded)[0], camera)
    if fresh_model is not None:
        fresh_model.eval()
        metrics["fresh_psnr_output_db"] = psnr(run_model(fresh_model, degraded)[0], clean)
        metrics["fresh_input_sensitivity"] = input_sensitivity(fresh_model, frame_a, frame_b)
    return {name: round(value, 4) for name, value in metrics.items()}


# ---------------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------------


@dataclass
class TrainSettings:
    seed: int = 0
    lr: float = 2e-3
    # linear warm-up; with a time budget these steps are also timed to fix the step count, and since the
    # warm-up does not depend on that count, `--steps <count>` replays a `--minutes` run exactly
    warmup_steps: int = 30
    grad_clip: float = 1.0  # global gradient norm; keeps the early steps of a small StyleGAN2 from blowing up
    # one thread: on a shared 2-core machine, two OpenMP threads waiting for each other ran 7x slower
    # (9.6 s against 1.4 s per step, measured while other jobs ran); results also depend on the count
    threads: int = 1
    train_with_fresh_noise: bool = True  # see data/README.md: the weights then work with either noise setting


def learning_rate(step: int, total: int, settings: TrainSettings) -> float:
    """Linear warm-up, then a cosine from lr down to lr/50 at the last step."""
    if step < settings.warmup_steps:
        return settings.lr * (step + 1) / settings.warmup_steps
    progress = (step - settings.warmup_steps) / max(1, total - settings.warmup_steps)
    low = settings.lr / 50
    return low + (settings.lr - low) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def new_model(seed: int) -> GFPGANv1Clean:
    torch.manual_seed(seed)
    return GFPGANv1Clean(**DEMO_CONFIG)


def train(steps: int = None, minutes: float = None, out=DEMO_WEIGHTS, settings: TrainSettings = None,
          picture=None) -> dict:
    """Train the demo model, write ``out`` (official layout) and its JSON card beside it; return the card.

    Give ``steps`` (exact, reproducible) or ``minutes`` (the step count is fixed after timing the first
    steps, and written to the card so that ``steps=`` replays the run). ``picture``: where to draw the
    side-by-side comparison PNG (None: none).
    """
    settings = settings or TrainSettings()
    if (steps is None) == (minutes is None):
        raise GfpganDebugError("give exactly one budget: --steps N or --minutes M")
    if (steps is not None and steps < 1) or (minutes is not None and minutes <= 0):
        raise GfpganDebugError(f"the budget must be positive, got steps={steps} minutes={minutes}")
    out = Path(out)
    torch.set_num_threads(settings.threads)
    cv2.setNumThreads(settings.threads)
    model = new_model(settings.seed)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr, betas=(0.9, 0.99))
    pictures = training_pictures()
    rng = np.random.default_rng(settings.seed)

    total = steps  # with a time budget: unknown until the warm-up steps are timed
    bar = tqdm(total=total, desc="train-demo", unit="step")
    started = time.perf_counter()
    step, losses = 0, []
    while total is None or step < total:
        if total is None and step == settings.warmup_steps:
            per_step = (time.perf_counter() - started) / step
            total = max(step + 1, int(minutes * 60 / per_step))
            bar.total = total
            bar.refresh()
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, total or settings.warmup_steps, settings)
        degraded, clean = sample(pictures, rng)
        image, out_rgbs = model(degraded, randomize_noise=settings.train_with_fresh_noise)
        loss, image_l1 = pyramid_loss(image, out_rgbs, clean)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
        optimizer.step()
        losses.append(round(loss.item(), 6))
        bar.set_postfix(loss=f"{loss.item():.4f}", psnr=f"{tensor_psnr(image, clean):.1f}dB")
        bar.update(1)
        step += 1
    bar.close()
    seconds = time.perf_counter() - started

    metrics = evaluate(model, new_model(settings.seed + 1))
    sha256 = save_checkpoint(model, out)
    card = {
        "what": "GFPGANv1Clean demo weights trained by gfpgan_debug.train_demo (a teaching model, not GFPGAN)",
        "config": DEMO_CONFIG,
        "parameters": sum(p.numel() for p in model.parameters()),
        "saved_under_params_ema": "the raw weights at the last step (no moving average; the cosine learning "
                                  "rate ends at lr/50, which does the smoothing an average would)",
        "data": {"face": {"file": "data/faces/astronaut.png", "share_of_samples": FACE_SHARE,
                          "licence": SKIMAGE_PICTURES["astronaut"]},
                 **{f"skimage.data.{name}": {"licence": licence} for name, licence in SKIMAGE_PICTURES.items()}},
        "augmentation": "random square crop and scale, rotation within ±10 degrees, horizontal flip",
        "degradation": "Gaussian blur sigma 0.2-3 px, down-and-up scaling by 1-4, Gaussian noise sigma 0-8, "
                       "JPEG quality 40-95",
        "loss": "L1(image) + sum over out_rgbs levels of L1(map, target area-averaged to the map's size)",
        "optimizer": f"Adam betas (0.9, 0.99), lr {settings.lr} with {settings.warmup_steps} warm-up steps then "
                     f"cosine to lr/50, gradient norm clipped at {settings.grad_clip}, batch 1",
        "settings": asdict(settings),
        "steps": total,
        "seconds": round(seconds, 1),
        "seconds_per_step": round(seconds / total, 3),
        "seed": settings.seed,
        "loss_first_last_20": [float(np.mean(losses[:20])), float(np.mean(losses[-20:]))],
        "eval": {"degradation": asdict(EVAL_DEGRADATION), "noise_seed": EVAL_NOISE_SEED,
                 "fresh_model_seed": settings.seed + 1, "randomize_noise": False},
        "metrics": metrics,
        "environment": {"torch": torch.__version__, "numpy": np.__version__, "opencv": cv2.__version__,
                        "python": platform.python_version(), "machine": platform.machine()},
        "file": out.name,
        "bytes": out.stat().st_size,
        "sha256": sha256,
    }
    card_path(out).write_text(json.dumps(card, indent=2) + "\n")
    if picture is not None:
        comparison_picture(model, new_model(settings.seed + 1), picture)
    return card


def card_path(weights_path) -> Path:
    return Path(weights_path).with_suffix(".json")


def save_checkpoint(model, out: Path) -> str:
    """Write ``{'params_ema': float32 state_dict}``, as the official .pth files are laid out; return its SHA-256."""
    state = {name: tensor.detach().to(torch.float32).clone() for name, tensor in model.state_dict().items()}
    buffer = io.BytesIO()
    torch.save({"params_ema": state}, buffer)
    payload = buffer.getvalue()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(payload)
    return hashlib.sha256(payload).hexdigest()


def comparison_picture(model, fresh_model, path) -> Path:
    """degraded input | demo output | fresh-weights output | clean face, titled, as one PNG."""
    from gfpgan_debug.images import write_image

    degraded, clean = eval_pair()
    panels = [("degraded input", degraded), ("demo weights", run_model(model.eval(), degraded)[0]),
              ("fresh weights", run_model(fresh_model.eval(), degraded)[0]), ("clean face", clean)]
    side, title_height = 256, 30
    tiles = []
    for title, image in panels:
        tile = np.full((side + title_height, side, 3), 255, np.uint8)
        tile[title_height:] = cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA)
        (text_width, _), _ = cv2.getTextSize(title, cv2.FONT_HERSHEY_SIMPLEX, 0.6, 1)
        cv2.putText(tile, title, ((side - text_width) // 2, 21), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1,
                    cv2.LINE_AA)
        tiles.append(tile)
    gap = np.full((side + title_height, 4, 3), 255, np.uint8)
    row = np.concatenate([part for tile in tiles for part in (tile, gap)][:-1], axis=1)
    return write_image(path, row)


# ---------------------------------------------------------------------------------------------------------
# Command line: gfpgan-debug train-demo
# ---------------------------------------------------------------------------------------------------------


def add_cli(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("train-demo", help="train the small demo weights on this CPU (~15 minutes)",
                                   description=__doc__.split("\n")[0])
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=float, help="time budget (default 15 when --steps is not given)")
    budget.add_argument("--steps", type=int, help="exact number of steps (reproducible)")
    parser.add_argument("--out", type=Path, default=DEMO_WEIGHTS, help="where to write the .pth (card beside it)")
    parser.add_argument("--picture", type=Path, default=None,
                        help="where to write the side-by-side PNG (default: demo_comparison.png beside --out)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=TrainSettings.lr)
    parser.add_argument("--threads", type=int, default=TrainSettings.threads)
    parser.set_defaults(func=run_cli)
    return parser


def run_cli(args) -> int:
    minutes = args.minutes if (args.minutes is not None or args.steps is not None) else 15.0
    picture = args.picture or Path(args.out).with_name("demo_comparison.png")
    settings = TrainSettings(seed=args.seed, lr=args.lr, threads=args.threads)
    card = train(steps=args.steps, minutes=minutes, out=args.out, settings=settings, picture=picture)
    print(json.dumps({"out": str(args.out), "steps": card["steps"], "seconds": card["seconds"],
                      "sha256": card["sha256"], **card["metrics"]}, indent=2))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gfpgan_debug.train_demo")
    subparsers = parser.add_subparsers(required=True)
    add_cli(subparsers)
    args = parser.parse_args(["train-demo", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
