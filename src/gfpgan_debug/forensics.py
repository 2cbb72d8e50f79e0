"""Weight forensics: what is inside an exported model, does it match the checkpoint, does it look trained,
and does the model behave like a trained one.

    artefact (.pt / .onnx) ─► artifact_weights ─┬─► match_weights(…, checkpoint) ─► identical / different /
                                                │                                   transformed / absent, per entry
                                                └─► untrained_evidence ─► per tensor: does it still fit the
                                                                          distribution it was initialised from?
    run(input) -> outputs ─► determinism (same input twice), input_sensitivity (frames of a moving camera)

Nothing here knows GFPGAN except two facts about initialisations that are not PyTorch's defaults, each
marked where it is used: StyleGAN-style layers draw kernels from N(0, 1/fan_in) (modulated convolutions,
kaiming_normal linears, ``randn`` constants) and start biases at 0 (1 for modulations), noise strengths at 0.
"""
import hashlib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import cv2
import numpy as np
import pandas as pd
import torch

from gfpgan_debug.compare import Outputs, to_numpy
from gfpgan_debug.compat import torch_deprecations_silenced
from gfpgan_debug.errors import ArtifactError

# ---------------------------------------------------------------------------------------------------------
# The weights inside an artefact
# ---------------------------------------------------------------------------------------------------------


def artifact_weights(path) -> Dict[str, np.ndarray]:
    """name -> array for every weight stored in a TorchScript ``.pt`` (its state dict: names survive) or an
    ONNX file (its initializers and ``Constant`` nodes: names survive with the legacy exporter where a weight
    is used as is, and become ``onnx::Conv_123``-like where the exporter folded or renamed it)."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: no such file")
    if path.suffix == ".onnx":
        return _onnx_weights(path)
    return _torchscript_weights(path)


def _torchscript_weights(path: Path) -> Dict[str, np.ndarray]:
    try:
        with torch_deprecations_silenced():
            module = torch.jit.load(str(path), map_location="cpu")
    except Exception as error:  # torch raises RuntimeError/ValueError/zipfile errors for a bad archive
        first = (str(error).splitlines() or [""])[0][:160]
        raise ArtifactError(f"{path}: not a TorchScript archive torch.jit.load can read ({first})") from None
    return {name: tensor.detach().numpy().copy() for name, tensor in module.state_dict().items()}


def _onnx_weights(path: Path) -> Dict[str, np.ndarray]:
    from onnx import numpy_helper

    from gfpgan_debug.export import load_onnx

    model = load_onnx(path)  # clear errors for a damaged file; external data outside its folder refused
    weights = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attribute in node.attribute:
                if attribute.name == "value":
                    array = numpy_helper.to_array(attribute.t)
                    if array.size > 1:  # scalars here are shapes and literals, not weights
                        weights[node.output[0]] = array
    return weights


# ---------------------------------------------------------------------------------------------------------
# Artefact vs checkpoint
# ---------------------------------------------------------------------------------------------------------

STATUSES = ("identical", "different", "transformed", "absent")


def _digest(array: np.ndarray) -> Tuple[tuple, str]:
    array = np.ascontiguousarray(array, dtype=np.float32)
    return array.shape, hashlib.sha256(array.tobytes()).hexdigest()


def _difference(expected: np.ndarray, found: np.ndarray) -> Tuple[float, float]:
    e, f = expected.astype(np.float64).ravel(), found.astype(np.float64).ravel()
    norms = np.linalg.norm(e) * np.linalg.norm(f)
    cosine = float(e @ f / norms) if norms > 0 else float(np.array_equal(e, f))
    return float(np.abs(e - f).max()) if e.size else 0.0, cosine


def _scale_of(expected: np.ndarray, found: np.ndarray) -> Optional[float]:
    """The c with found = c * expected, when one exists (to float32 round-off); else None."""
    e, f = expected.astype(np.float64).ravel(), found.astype(np.float64).ravel()
    energy = e @ e
    if energy == 0:
        return None
    c = float(e @ f / energy)
    residual = np.abs(f - c * e).max()
    return c if residual <= 1e-5 * max(np.abs(f).max(), 1e-12) + 1e-7 else None


def match_weights(artifact: Mapping[str, np.ndarray], checkpoint: Mapping[str, object]) -> pd.DataFrame:
    """One row per checkpoint entry: ``status`` (identical / different / transformed / absent), the artefact
    tensor it was matched to, ``how`` it was matched, ``max_abs`` and ``cosine`` (artefact vs checkpoint).

    Matching, in this order:
    1. by name: the same key, or a key under a wrapper prefix (``model.conv_body_first.weight``);
    2. by value: a tensor whose bytes equal the entry's, whatever its name (``onnx::Conv_123``);
    3. transformed: a tensor equal to the entry times a constant (a noise map folded with its strength),
       or its transpose; a one-value entry equal to such a constant is "folded into" that tensor;
    4. different: the only remaining unmatched tensor with the entry's shape (exporter renamed it and the
       values differ);
    else absent. ONNX graphs drop weights their computation never reads (``style_mlp`` when
    ``input_is_latent``): absent there is expected, in a TorchScript state dict it is not.
    """
    expected = {k: to_numpy(v) for k, v in checkpoint.items()}
    found = {k: to_numpy(v) for k, v in artifact.items()}
    rows: Dict[str, dict] = {}
    used = set()

    def record(key, status, name, how, note="", transform=lambda array: array):
        """``transform`` maps the checkpoint entry to what the artefact should hold (identity, c x, transpose):
        max_abs and cosine compare the artefact tensor with that."""
        want = transform(expected[key])
        max_abs, cosine = _difference(want, found[name].reshape(want.shape))
        rows[key] = dict(entry=key, shape=tuple(expected[key].shape), status=status, artifact_name=name, how=how,
                         max_abs=max_abs, cosine=cosine, note=note)
        used.add(name)

    by_suffix = {}
    for name in found:
        parts = name.split(".")
        for i in range(len(parts)):
            by_suffix.setdefault(".".join(parts[i:]), []).append(name)
    for key, value in expected.items():  # 1. by name
        names = [n for n in by_suffix.get(key, []) if found[n].shape == value.shape]
        if names:
            name = min(names, key=len)
            identical = np.array_equal(found[name], value)
            record(key, "identical" if identical else "different", name, "name")

    by_digest: Dict[Tuple[tuple, str], List[str]] = {}
    for name, array in found.items():
        if name not in used:
            by_digest.setdefault(_digest(array), []).append(name)
    for key, value in expected.items():  # 2. by value
        if key not in rows and value.size > 1:
            names = [n for n in by_digest.get(_digest(value), []) if n not in used]
            if names:
                record(key, "identical", names[0], "value")

    for key, value in expected.items():  # 3. transformed: scaled or transposed copies
        if key in rows or value.size <= 1:
            continue
        for name, array in found.items():
            if name in used or array.size != value.size:
                continue
            if value.ndim == 2 and array.shape == value.T.shape and np.array_equal(array.T, value):
                record(key, "transformed", name, "transpose", transform=lambda a: a.T)
                break
            c = _scale_of(value, array)
            if c is not None and c not in (0.0, 1.0):  # c = 0 would "match" any all-zero tensor
                record(key, "transformed", name, f"scaled by {c:.6g}", note=f"scale {c:.6g}",
                       transform=lambda a, c=c: c * a.astype(np.float64))
                break
    scales = {row["artifact_name"]: float(row["note"].split()[1]) for row in rows.values()
              if row["note"].startswith("scale ")}
    for key, value in expected.items():  # ... and the one-value entries folded in as those scales
        if key not in rows and value.size == 1:
            hosts = [n for n, c in scales.items() if math.isclose(c, float(value.ravel()[0]), rel_tol=1e-5, abs_tol=1e-12)]
            if hosts:
                rows[key] = dict(entry=key, shape=tuple(value.shape), status="transformed", artifact_name=hosts[0],
                                 how=f"folded into {hosts[0]}", max_abs=0.0, cosine=1.0, note="")

    free_by_shape: Dict[tuple, List[str]] = {}
    for name, array in found.items():
        if name not in used:
            free_by_shape.setdefault(array.shape, []).append(name)
    for key, value in expected.items():  # 4. different values under a new name, paired by a unique shape
        candidates = free_by_shape.get(value.shape, [])
        wanting = [k for k, v in expected.items() if k not in rows and v.shape == value.shape]
        if key not in rows and len(candidates) == 1 and wanting == [key] and value.size > 1:
            record(key, "different", candidates[0], "unique shape")

    for key in expected:
        if key not in rows:
            rows[key] = dict(entry=key, shape=tuple(expected[key].shape), status="absent", artifact_name=None,
                             how="", max_abs=math.nan, cosine=math.nan, note="not found by name, value or shape")
    return pd.DataFrame([rows[k] for k in expected]).set_index("entry")


def match_summary(frame: pd.DataFrame) -> Dict[str, int]:
    return {status: int((frame["status"] == status).sum()) for status in STATUSES}


# ---------------------------------------------------------------------------------------------------------
# Untrained weights, without a checkpoint
# ---------------------------------------------------------------------------------------------------------

# Buffers are never trained (batch-norm statistics are, but not by gradient; StyleGAN noise maps are fixed
# random draws): leave them out of the score.
DEFAULT_SKIP = re.compile(r"(running_mean|running_var|num_batches_tracked|noises\.noise\d+)$")
KS_SAMPLE = 20_000  # values per tensor used for the Kolmogorov-Smirnov statistic (critical D about 0.02)
# c(alpha) = sqrt(-ln(alpha / 2) / 2) for alpha = 1e-6: reject the fit when D > 2.7 / sqrt(n). A model has
# hundreds of tensors, so a looser alpha would call some fresh tensors "moved" by chance; training moves
# weights by far more than this (D of 0.1 and above after a few hundred Adam steps).
KS_CRITICAL = 2.7
FEW_VALUES = 16  # below this a distribution test has no power: only the bound is checked
LEAKY_GAIN = math.sqrt(2 / (1 + 0.2**2))  # kaiming gain for leaky ReLU with slope 0.2


def fan_in(shape: Sequence[int]) -> int:
    """Inputs per output value: prod(shape[1:]), or prod(shape[2:]) for StyleGAN's 5-D modulated kernels
    (1, out, in, k, k), whose leading axis is a batch axis of one."""
    shape = tuple(shape)
    if len(shape) == 5 and shape[0] == 1:
        shape = shape[1:]
    return int(np.prod(shape[1:])) if len(shape) >= 2 else 1


def sorted_sample(values: np.ndarray) -> torch.Tensor:
    """The values (a seeded sample of at most KS_SAMPLE of them), sorted, as float64."""
    flat = np.ascontiguousarray(values, dtype=np.float64).ravel()
    if flat.size > KS_SAMPLE:
        flat = flat[np.random.default_rng(0).choice(flat.size, KS_SAMPLE, replace=False)]
    return torch.from_numpy(np.sort(flat))


def ks_statistic(ordered: torch.Tensor, cdf: Callable[[torch.Tensor], torch.Tensor]) -> float:
    """Kolmogorov-Smirnov D = sup |F_empirical - F| for sorted values and a CDF."""
    n = ordered.numel()
    f = cdf(ordered)
    i = torch.arange(1, n + 1, dtype=torch.float64)
    return float(torch.maximum(i / n - f, f - (i - 1) / n).max())


def _uniform_cdf(bound: float):
    return lambda x: ((x + bound) / (2 * bound)).clamp(0, 1)


def _normal_cdf(std: float):
    return lambda x: 0.5 * (1 + torch.erf(x / (std * math.sqrt(2))))


def initial_distributions(name: str, shape: Sequence[int], weights: Mapping[str, np.ndarray]) -> List[Tuple[str, Callable, Optional[float]]]:
    """(label, CDF, bound or None) for each initialisation this tensor could have been drawn from."""
    shape = tuple(shape)
    if name.endswith("bias") or len(shape) == 1:
        sibling = weights.get(name[: -len("bias")] + "weight") if name.endswith("bias") else None
        if sibling is not None and sibling.ndim >= 2:  # PyTorch's default bias: U(±1/sqrt(fan_in))
            bound = 1 / math.sqrt(fan_in(sibling.shape))
            return [(f"U(±1/√{fan_in(sibling.shape)})", _uniform_cdf(bound), bound)]
        return []
    n_in = fan_in(shape)
    bound = 1 / math.sqrt(n_in)  # kaiming_uniform_(a=sqrt(5)): gain sqrt(1/3) x sqrt(3/fan_in) = 1/sqrt(fan_in)
    options = [(f"U(±1/√{n_in})", _uniform_cdf(bound), bound)]
    he_bound = math.sqrt(6 / n_in)  # kaiming_uniform_ with its default a=0 (He uniform; torchvision's SqueezeNet)
    options.append((f"U(±√(6/{n_in}))", _uniform_cdf(he_bound), he_bound))
    # StyleGAN-style initialisations (GFPGAN's arch.py): randn / sqrt(fan_in) for modulated kernels and
    # kaiming_normal (gain 1 or leaky 0.2) for the style linears; randn for a learned constant input.
    for label, gain in (("N(0, 1/fan_in)", 1.0), ("N(0, 2/1.04/fan_in)", LEAKY_GAIN)):
        options.append((label, _normal_cdf(gain / math.sqrt(n_in)), None))
    if shape[0] == 1:
        options.append(("N(0, 1)", _normal_cdf(1.0), None))
    if len(shape) == 4:  # torchvision's ResNets: kaiming_normal_(mode="fan_out", nonlinearity="relu")
        n_out = shape[0] * int(np.prod(shape[2:]))
        options.append((f"N(0, 2/{n_out}) (fan out)", _normal_cdf(math.sqrt(2 / n_out)), None))
    return options


def tensor_evidence(name: str, values: np.ndarray, weights: Mapping[str, np.ndarray]) -> dict:
    """Does this one tensor still look like its initialisation? Returns the evidence and a verdict."""
    values = np.asarray(values, dtype=np.float64)
    row = dict(name=name, shape=tuple(values.shape), values=int(values.size), looks_initial=False, test="",
               evidence="")
    if values.size == 0:
        return dict(row, test="empty", evidence="no values")
    constant = values.ravel()[0]
    if np.all(values == constant) and constant in (0.0, 1.0):
        # exact zeros or ones: StyleGAN biases and noise strengths start at 0, modulation biases and
        # normalisation scales at 1; training moves them off these exact values
        return dict(row, looks_initial=True, test=f"all exactly {constant:g}",
                    evidence=f"all {values.size} values are exactly {constant:g}")
    options = initial_distributions(name, values.shape, weights)
    spread = f"min {values.min():+.4g}, max {values.max():+.4g}"
    if not options:
        return dict(row, test="none", evidence=f"not constant ({spread}); no known initialisation to test")
    if values.size < FEW_VALUES:
        label, _, bound = options[0]  # always PyTorch's uniform, which has a bound
        inside = bool(np.all(np.abs(values) <= bound * (1 + 1e-6)))
        where = "all inside" if inside else "some outside"
        return dict(row, looks_initial=inside, test=f"bound of {label}",
                    evidence=f"only {values.size} values ({spread}), {where} ±{bound:.4g}: weak evidence")
    ordered = sorted_sample(values)
    critical = KS_CRITICAL / math.sqrt(ordered.numel())
    fits = []
    for label, cdf, bound in options:
        d = ks_statistic(ordered, cdf)
        inside = float(np.mean(np.abs(values) <= bound * (1 + 1e-6))) if bound else math.nan
        fits.append((d / critical, label, d, critical, inside, bound))
    ratio, label, d, critical, inside, bound = min(fits)
    fits_it = d <= critical and (bound is None or inside == 1.0)
    evidence = f"closest init {label}: KS D {d:.4f} vs critical {critical:.4f}"
    if bound is not None:
        evidence += f"; {100 * inside:.2f}% within ±{bound:.4g} (max |w| {np.abs(values).max():.4g})"
    return dict(row, looks_initial=bool(fits_it), test=label, evidence=evidence, ks_d=d, ks_critical=critical)


@dataclass
class UntrainedReport:
    """Per-tensor evidence and the share of parameter values that still look like their initialisation."""

    frame: pd.DataFrame
    score: float  # fraction of (non-skipped) values in tensors that look initial: 1 = untouched by training
    skipped: List[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        if self.score >= 0.9:
            return "untrained: the weights are still their random initialisation"
        if self.score >= 0.25:
            return "partly untrained: many tensors still hold their random initialisation"
        # a trained model keeps a few tensors at init: ones its forward never reads (GFPGAN's style MLP when
        # input_is_latent), small ones a short training barely moved
        return "trained: the weights have moved away from their initialisation"

    def initial_tensors(self) -> List[str]:
        return list(self.frame.index[self.frame["looks_initial"]])

    def __str__(self):
        lines = [f"untrained score {self.score:.3f} ({self.verdict})"]
        for name, row in self.frame.head(12).iterrows():
            mark = "INIT " if row["looks_initial"] else "moved"
            lines.append(f"  {mark} {name:<55} {row['evidence']}")
        if len(self.frame) > 12:
            lines.append(f"  ... {len(self.frame) - 12} more tensors")
        return "\n".join(lines)


def untrained_evidence(weights: Mapping[str, object], skip: re.Pattern = DEFAULT_SKIP) -> UntrainedReport:
    """Score how untrained a set of weights looks, with no checkpoint to compare against.

    Each tensor is tested against the initialisations it could have come from (exact 0 or 1; PyTorch's
    default U(±1/sqrt(fan_in)) for conv/linear kernels and biases; the StyleGAN normals); it "looks initial"
    when one fits (Kolmogorov-Smirnov at alpha = 0.001, and inside the bound for a uniform). Training for even
    a few hundred steps moves weights far outside these fits. The score weights tensors by their size.
    """
    arrays = {k: to_numpy(v) for k, v in weights.items()}
    rows, skipped = [], []
    for name, values in arrays.items():
        if skip.search(name) or not np.issubdtype(values.dtype, np.floating):
            skipped.append(name)
            continue
        rows.append(tensor_evidence(name, values, arrays))
    frame = pd.DataFrame(rows).set_index("name")
    total = frame["values"].sum()
    score = float(frame.loc[frame["looks_initial"], "values"].sum() / total) if total else math.nan
    return UntrainedReport(frame, score, skipped)


# ---------------------------------------------------------------------------------------------------------
# Behaviour: determinism and input sensitivity
# ---------------------------------------------------------------------------------------------------------

Run = Callable[[torch.Tensor], Outputs]


def determinism(run: Run, x: torch.Tensor) -> Dict[str, float]:
    """max |f(x) - f(x)| per output over two calls on the same input: 0 for a deterministic model."""
    first, second = run(x), run(x)
    return {name: float(np.abs(to_numpy(second[name]).astype(np.float64) - to_numpy(first[name])).max())
            for name in first}


def camera_frames(image_bgr: np.ndarray, count: int = 6, size: Optional[int] = None, seed: int = 0) -> List[np.ndarray]:
    """Frames a handheld camera might give of the face: the view pans (up to 6% of the side), zooms (up to
    10%) and the exposure drifts (x0.85 to x1.15), smoothly from frame to frame."""
    height, width = image_bgr.shape[:2]
    size = size or min(height, width)
    rng = np.random.default_rng(seed)
    frames = []
    for t in np.linspace(0, 1, count):
        zoom = 1 + 0.1 * t
        cx = width / 2 + 0.06 * width * t * np.cos(3 * t)
        cy = height / 2 + 0.04 * height * t * np.sin(2 * t) + rng.normal(0, 0.5)  # a little hand shake
        s = size * zoom / min(height, width)  # output pixels per input pixel
        matrix = np.array([[s, 0, size / 2 - s * cx], [0, s, size / 2 - s * cy]])
        frame = cv2.warpAffine(image_bgr, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        gain = 1 + 0.15 * np.sin(2 * np.pi * t)
        frames.append(np.clip(frame.astype(np.float32) * gain, 0, 255).astype(np.uint8))
    return frames


@dataclass
class Sensitivity:
    """How much the output moves when the input moves: mean|f(a) - f(b)| / mean|a - b| per frame pair."""

    ratios: List[float]
    output: str

    @property
    def median(self) -> float:
        return float(np.median(self.ratios))

    def __str__(self):
        return (f"input sensitivity of {self.output!r}: median {self.median:.3f} over {len(self.ratios)} frame pairs "
                f"(a model that follows its input: about 1; an untrained one: a few hundredths)")


def input_sensitivity(run: Run, inputs: Sequence[torch.Tensor], output: str = "image") -> Sensitivity:
    """For consecutive inputs a, b: mean|f(a) - f(b)| / mean|a - b| of the named output.

    A face-restoration model reproduces the face, so its output moves about as much as its input (ratio near
    1). A model on untrained weights maps every frame to nearly the same picture: the ratio is near 0.
    """
    outputs = {output: np.concatenate([to_numpy(run(x)[output]) for x in inputs])}
    return frame_sensitivity(inputs, outputs, output)


def frame_sensitivity(inputs, outputs: Outputs, output: str = "image") -> Sensitivity:
    """``input_sensitivity`` for outputs already computed, frame index on axis 0: what ``runtimes.run`` returns
    for N frames (e.g. a LibTorch camera loop, all frames in one process). ``inputs``: (N, 3, S, S) or N frames."""
    frames = [to_numpy(x).astype(np.float64).reshape(-1) for x in inputs]
    results = to_numpy(outputs[output]).astype(np.float64)
    if len(frames) != len(results):
        raise ValueError(f"{len(frames)} input frames but {len(results)} outputs of {output!r}")
    ratios = []
    for i in range(len(frames) - 1):
        moved = float(np.abs(frames[i + 1] - frames[i]).mean())
        if moved > 0:
            ratios.append(float(np.abs(results[i + 1] - results[i]).mean()) / moved)
    return Sensitivity(ratios, output)
