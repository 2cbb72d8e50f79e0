"""Checkpoints: reading them safely, loading them into a model with a report, and choosing which to use.

The bug this project re-lives began here. The export script passed the *whole* checkpoint dict
(``{'params_ema': {...}}``) to ``model.load_state_dict(..., strict=False)``. No key matched, nothing was
loaded, and ``strict=False`` said nothing. ``load_into`` returns a ``LoadReport`` instead, and warns (or,
with ``strict=True``, raises) whenever anything is left out.
"""
import hashlib
import math
import json
import os
import tempfile
import urllib.error
import urllib.request
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

from gfpgan_debug.arch import OFFICIAL_CONFIG, GFPGANv1Clean, channel_table
from gfpgan_debug.errors import CheckpointError, DownloadError

DATA_DIR = Path(__file__).resolve().parents[2] / "data"
WEIGHTS_DIR = DATA_DIR / "weights"
DEMO_WEIGHTS = WEIGHTS_DIR / "gfpgan_demo.pth"
ENV_VAR = "GFPGAN_DEBUG_WEIGHTS"
CHECKPOINT_KEYS = ("params_ema", "params")  # upstream prefers the exponential moving average


class IncompleteLoadWarning(UserWarning):
    """Some of the model's weights were not loaded: the model runs partly on its random initialisation."""


# ---------------------------------------------------------------------------------------------------------
# Reading a checkpoint
# ---------------------------------------------------------------------------------------------------------


def sha256_file(path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_checkpoint_file(path) -> object:
    """``torch.load(path, weights_only=True)`` with errors that name the file and say what is wrong."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file")
    if not path.is_file():
        raise CheckpointError(f"{path}: not a file")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{path}: the file is empty")
    with open(path, "rb") as f:
        magic = f.read(4)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch's pickle-protocol notices; errors still raise
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types here; each is turned into one clear sentence
        raise CheckpointError(f"{path}: {_why_unreadable(path, error, magic, size)}") from None


def _why_unreadable(path: Path, error: Exception, magic: bytes, size: int) -> str:
    message = str(error)
    first_line = (message.splitlines() or [""])[0].split(". ")[0][:160]
    if not isinstance(error, RuntimeError) or not first_line:
        first_line = "not a pickle stream or torch zip archive"
    code = _code_globals(message, path, is_zip=magic == b"PK\x03\x04")
    if code:
        return (f"refused: unpickling it would run code (it asks for {', '.join(code[:3])}), which weights_only "
                "loading forbids. A weights file needs nothing but tensors; do not load this one unless you trust "
                "its origin and know why it needs code.")
    if magic == b"PK\x03\x04":
        return f"a zip archive that is truncated, corrupted or not written by torch.save ({first_line})"
    if size < 64:
        return f"only {size} bytes, too short to be a checkpoint"
    return f"not a PyTorch checkpoint ({first_line})"


def _code_globals(message: str, path: Path, is_zip: bool) -> List[str]:
    """Python callables a refused pickle asks for: from torch's message, or (for a bare pickle, which torch
    rejects before naming them) from a scan of its opcodes. Scanning with pickletools runs nothing."""
    named = [line.split("GLOBAL", 1)[1].split()[0] for line in message.splitlines() if "GLOBAL" in line]
    if named or is_zip or path.stat().st_size > 64 * 1024 * 1024:
        return named
    import pickletools

    found, strings = [], []
    try:
        with open(path, "rb") as f:
            for opcode, arg, _ in pickletools.genops(f):
                if opcode.name == "GLOBAL":
                    found.append(str(arg).replace(" ", "."))
                elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                    found.append(f"{strings[-2]}.{strings[-1]}")
                elif isinstance(arg, str):
                    strings.append(arg)
    except Exception:  # not a pickle at all: nothing it could run
        pass
    return [name for name in found if not name.startswith(("torch.", "collections.OrderedDict"))]


def state_dict_from(obj, source: str = "checkpoint") -> Dict[str, Tensor]:
    """The model state dict inside what ``torch.load`` returned.

    Accepts ``{'params_ema': sd}`` and ``{'params': sd}`` (preferring ``params_ema``, as upstream does) and a plain
    state dict; strips a ``module.`` prefix (left by DataParallel / DistributedDataParallel).
    """
    if not isinstance(obj, dict):
        raise CheckpointError(f"{source}: holds a {type(obj).__name__}, not a dict of tensors")
    for key in CHECKPOINT_KEYS:
        if isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    else:
        nested = [k for k, v in obj.items() if isinstance(v, dict)]
        if nested and not any(isinstance(v, Tensor) for v in obj.values()):
            raise CheckpointError(f"{source}: a nested dict with neither 'params_ema' nor 'params' "
                                  f"(top-level keys: {_short_list(list(obj))})")
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, Tensor)}
    if not tensors:
        raise CheckpointError(f"{source}: no tensors inside (keys: {_short_list(list(obj))})")
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module."):]: v for k, v in tensors.items()}
    return tensors


def load_checkpoint(path) -> Dict[str, Tensor]:
    """Read a checkpoint file safely and return its model state dict (see ``state_dict_from``)."""
    return state_dict_from(read_checkpoint_file(path), source=str(path))


def _short_list(items, limit: int = 6) -> str:
    shown = ", ".join(repr(i) for i in items[:limit])
    return f"[{shown}{', ...' if len(items) > limit else ''}] ({len(items)} in all)"


# ---------------------------------------------------------------------------------------------------------
# Loading into a model, with a report
# ---------------------------------------------------------------------------------------------------------


@dataclass
class LoadReport:
    """What a state dict did to a model: which entries were loaded, which were not, and why."""

    source: str
    matched: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)  # in the model, not in the dict: left at random init
    unexpected: List[str] = field(default_factory=list)  # in the dict, not in the model: ignored
    mismatched: List[Tuple[str, tuple, tuple]] = field(default_factory=list)  # (key, model shape, dict shape)
    converted: Dict[str, str] = field(default_factory=dict)  # key -> dtype it had in the dict
    nonfinite: List[str] = field(default_factory=list)  # entries holding NaN or Inf
    values_loaded: int = 0
    values_total: int = 0
    hint: str = ""
    config: dict = field(default_factory=dict)  # the model's constructor arguments, where known

    @property
    def entries_total(self) -> int:
        return len(self.matched) + len(self.missing) + len(self.mismatched)

    @property
    def fraction_loaded(self) -> float:
        return self.values_loaded / self.values_total if self.values_total else 0.0

    @property
    def complete(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def summary(self) -> str:
        return (f"loaded {len(self.matched)} of {self.entries_total} entries "
                f"({100 * self.fraction_loaded:.1f}% of {self.values_total:,} values) from {self.source}; "
                f"{len(self.missing)} missing, {len(self.unexpected)} unexpected, {len(self.mismatched)} shape "
                f"mismatches")

    def rows(self) -> List[Tuple[str, int, str]]:
        """(what, count, examples) for each non-empty category."""
        rows = [("loaded", len(self.matched), _examples(self.matched)),
                ("missing (left at random init)", len(self.missing), _examples(self.missing)),
                ("unexpected (ignored)", len(self.unexpected), _examples(self.unexpected)),
                ("shape mismatch (not loaded)", len(self.mismatched),
                 _examples([f"{k}: model {list(m)} vs file {list(f)}" for k, m, f in self.mismatched])),
                ("converted dtype", len(self.converted),
                 _examples([f"{k} ({d})" for k, d in self.converted.items()])),
                ("NaN or Inf values", len(self.nonfinite), _examples(self.nonfinite))]
        return [row for row in rows if row[1] or row[0] == "loaded"]

    def __str__(self) -> str:
        lines = [self.summary()]
        for what, count, examples in self.rows():
            lines.append(f"  {what:<31} {count:>5}  {examples}")
        if self.hint:
            lines.append(f"  hint: {self.hint}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        colour = "#1a7f37" if self.complete and not self.nonfinite else "#cf222e"
        body = "".join(f"<tr><td>{w}</td><td style='text-align:right'>{c}</td><td><code>{_html(e)}</code></td></tr>"
                       for w, c, e in self.rows())
        hint = f"<p><b>Hint:</b> {_html(self.hint)}</p>" if self.hint else ""
        return (f"<div><p style='color:{colour}'><b>{_html(self.summary())}</b></p>"
                f"<table><tr><th>entries</th><th>count</th><th>examples</th></tr>{body}</table>{hint}</div>")

    def to_dict(self) -> dict:
        return {"source": self.source, "fraction_loaded": self.fraction_loaded, "values_loaded": self.values_loaded,
                "values_total": self.values_total, "matched": self.matched, "missing": self.missing,
                "unexpected": self.unexpected, "mismatched": [[k, list(m), list(f)] for k, m, f in self.mismatched],
                "converted": self.converted, "nonfinite": self.nonfinite, "hint": self.hint,
                "complete": self.complete, "config": self.config}


def _examples(keys: List[str], limit: int = 3) -> str:
    return ", ".join(keys[:limit]) + (", ..." if len(keys) > limit else "")


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def compare_state_dicts(model: nn.Module, state_dict: Dict[str, object], source: str = "state dict") -> LoadReport:
    """The report of loading ``state_dict`` into ``model``, computed without touching the model."""
    expected = model.state_dict()
    report = LoadReport(source=source)
    for key, target in expected.items():
        report.values_total += target.numel()
        value = state_dict.get(key)
        if not isinstance(value, Tensor):
            report.missing.append(key)
        elif tuple(value.shape) != tuple(target.shape):
            report.mismatched.append((key, tuple(target.shape), tuple(value.shape)))
        else:
            report.matched.append(key)
            report.values_loaded += target.numel()
            if value.dtype != target.dtype:
                report.converted[key] = str(value.dtype).replace("torch.", "")
            if value.is_floating_point() and not bool(torch.isfinite(value).all()):
                report.nonfinite.append(key)
    report.unexpected = [k for k in state_dict if k not in expected]
    report.hint = _hint(report, state_dict)
    return report


def _hint(report: LoadReport, state_dict: Dict[str, object]) -> str:
    wrappers = [k for k in CHECKPOINT_KEYS if isinstance(state_dict.get(k), dict)]
    if wrappers:
        return (f"this is a whole checkpoint: its weights sit under {wrappers[0]!r}. Pass "
                f"checkpoint[{wrappers[0]!r}] (or use load_checkpoint(path)), not the whole dict.")
    if report.missing and all(k.startswith("module.") for k in report.unexpected) and report.unexpected:
        return "the keys carry a 'module.' prefix (saved from DataParallel): strip it, as load_checkpoint does."
    if report.mismatched:
        return "shapes differ: the checkpoint was trained with another configuration (see infer_config)."
    return ""


def load_into(model: nn.Module, state_dict: Dict[str, object], strict: bool = True,
              source: Optional[str] = None) -> LoadReport:
    """Load ``state_dict`` into ``model`` and return a ``LoadReport``.

    ``strict=True`` raises ``CheckpointError`` (with the report) before touching the model if anything is
    missing, unexpected or of the wrong shape. ``strict=False`` loads every entry that fits and warns
    (``IncompleteLoadWarning``) when any of the model's entries were left at their random initialisation.
    """
    report = compare_state_dicts(model, state_dict, source or "state dict")
    if strict and not report.complete:
        raise CheckpointError(f"strict load failed:\n{report}")
    fitting = {k: state_dict[k] for k in report.matched}
    model.load_state_dict(fitting, strict=False)
    if report.missing or report.mismatched:
        consequence = ("NOTHING was loaded: the model runs entirely on its random initialisation." if not report.matched
                       else "The model runs partly on its random initialisation.")
        warnings.warn(f"INCOMPLETE LOAD: {report.summary()}. {consequence}"
                      + (f" Hint: {report.hint}" if report.hint else ""), IncompleteLoadWarning, stacklevel=2)
    return report


# ---------------------------------------------------------------------------------------------------------
# The configuration a state dict was trained with
# ---------------------------------------------------------------------------------------------------------

REQUIRED_KEYS = ("conv_body_first.weight", "final_linear.weight",
                 "stylegan_decoder.constant_input.weight",
                 "stylegan_decoder.style_conv1.modulated_conv.modulation.weight",
                 "condition_scale.0.2.weight")


def infer_config(state_dict: Dict[str, Tensor], source: str = "state dict") -> dict:
    """GFPGANv1Clean constructor arguments that explain every shape in ``state_dict``.

    ``input_is_latent`` changes no shape and cannot be inferred: it is set to True, as in every official clean
    checkpoint. ``decoder_load_path`` and ``fix_decoder`` only matter for training (None and False).
    """
    absent = [k for k in REQUIRED_KEYS if k not in state_dict]
    if absent:
        raise CheckpointError(f"{source}: not a GFPGANv1Clean state dict: no {_short_list(absent)}"
                              + _layout_guess(state_dict))
    shape = {k: tuple(v.shape) for k, v in state_dict.items() if isinstance(v, Tensor)}
    wrong_rank = [f"{k} {list(shape.get(k, ()))} (expected {rank} dimensions)" for k, rank in RANKS.items()
                  if k in state_dict and len(shape.get(k, ())) != rank]
    if wrong_rank or "condition_scale.0.0.weight" not in shape:
        raise CheckpointError(f"{source}: not a GFPGANv1Clean state dict: "
                              + ("; ".join(wrong_rank[:3]) or "no 'condition_scale.0.0.weight'"))
    try:
        config = _config_from_shapes(shape)
        disagreements = shape_disagreements(config, shape)
    except (ArithmeticError, ValueError, RuntimeError, KeyError, IndexError) as error:  # sizes no model can have
        raise CheckpointError(f"{source}: its shapes give no buildable GFPGANv1Clean "
                              f"({type(error).__name__}: {str(error)[:120]})") from None
    if disagreements:
        raise CheckpointError(f"{source}: no GFPGANv1Clean configuration explains its shapes; the closest "
                              f"({config_summary(config)}) disagrees on {len(disagreements)} entries: "
                              + "; ".join(disagreements[:5]))
    return config


RANKS = {"conv_body_first.weight": 4, "final_linear.weight": 2, "stylegan_decoder.constant_input.weight": 4,
         "stylegan_decoder.style_conv1.modulated_conv.modulation.weight": 2, "condition_scale.0.2.weight": 4,
         "condition_scale.0.0.weight": 4, "stylegan_decoder.to_rgbs.3.modulated_conv.weight": 5}


def _config_from_shapes(shape: Dict[str, tuple]) -> dict:
    num_to_rgb = len([k for k in shape if k.startswith("toRGB.") and k.endswith(".weight")])
    log_size = num_to_rgb + 2
    num_style_feat = shape["stylegan_decoder.style_conv1.modulated_conv.modulation.weight"][1]
    decoder_4 = shape["stylegan_decoder.constant_input.weight"][1]
    narrow = decoder_4 / 512
    level_64 = "stylegan_decoder.to_rgbs.3.modulated_conv.weight"  # the 64x64 level sets channel_multiplier
    channel_multiplier = round(shape[level_64][2] / (256 * narrow)) if level_64 in shape else 1
    config = dict(out_size=2**log_size, num_style_feat=num_style_feat, channel_multiplier=max(channel_multiplier, 1),
                  decoder_load_path=None, fix_decoder=False,
                  num_mlp=len([k for k in shape if k.startswith("stylegan_decoder.style_mlp.") and k.endswith(".weight")]),
                  input_is_latent=True,
                  different_w=shape["final_linear.weight"][0] != num_style_feat,
                  narrow=int(narrow) if narrow == int(narrow) else narrow,
                  sft_half=shape["condition_scale.0.2.weight"][0] == shape["condition_scale.0.0.weight"][0])
    return config


def expected_shapes(config: dict) -> Dict[str, tuple]:
    """Every state-dict shape of a model built with ``config``, without allocating its weights."""
    with torch.device("meta"):
        model = GFPGANv1Clean(**config)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def shape_disagreements(config: dict, shapes: Dict[str, tuple]) -> List[str]:
    expected = expected_shapes(config)
    problems = [f"{k}: file {list(shapes[k])} vs model {list(s)}" for k, s in expected.items()
                if k in shapes and shapes[k] != s]
    return problems  # keys present on one side only are the load report's business, not the config's


def _layout_guess(state_dict: Dict[str, object]) -> str:
    keys = list(state_dict)
    if any(k.startswith("conv_body_first.0.") for k in keys):
        return ("; its keys (conv_body_first.0.weight, ...) look like the original GFPGANv1 architecture, which needs "
                "compiled StyleGAN2 ops; this project handles the clean architecture (GFPGANCleanv1-NoCE-C2, v1.3, v1.4)")
    return f"; its keys begin {_short_list(keys, 3)}"


def config_summary(config: dict) -> str:
    return ", ".join(f"{k}={config[k]}" for k in ("out_size", "channel_multiplier", "narrow", "num_style_feat",
                                                   "num_mlp", "different_w", "sft_half"))


def card_config(path) -> Optional[dict]:
    """The constructor config stored in a JSON card beside a checkpoint (``name.json``), if there is one."""
    card = Path(path).with_suffix(".json")
    if not card.is_file():
        return None
    try:
        return json.loads(card.read_text())["config"]
    except (ValueError, KeyError, TypeError):
        raise CheckpointError(f"{card}: a JSON card beside the checkpoint, but without a readable 'config'") from None


def model_from_checkpoint(source, strict: bool = True, config: Optional[dict] = None,
                          device: str = "cpu") -> Tuple[GFPGANv1Clean, LoadReport]:
    """Build a GFPGANv1Clean for a checkpoint (path or state dict), load it, and return ``(model, report)``.

    The config comes from the argument, else a JSON card beside the file, else the shapes (``infer_config``).
    """
    if isinstance(source, (str, os.PathLike)):
        state_dict, name = load_checkpoint(source), str(source)
        config = config or card_config(source)
    else:
        state_dict, name = state_dict_from(source, "state dict"), "state dict"
    config = config or infer_config(state_dict, name)
    model = GFPGANv1Clean(**config)
    report = load_into(model, state_dict, strict=strict, source=name)
    report.config = dict(config)
    return model.to(device).eval(), report


# ---------------------------------------------------------------------------------------------------------
# Official weights: registry and download
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OfficialWeights:
    version: str
    filename: str
    url: str
    sha256: str  # published by third parties; upstream publishes none (shared/reference/official-weights.md)


OFFICIAL = {w.version: w for w in [
    OfficialWeights("v1.2", "GFPGANCleanv1-NoCE-C2.pth",
                    "https://github.com/TencentARC/GFPGAN/releases/download/v0.2.0/GFPGANCleanv1-NoCE-C2.pth",
                    "29e25ee90c170f4231163f4c83df6b59c968b73f3ce00cb884015ae005db083c"),
    OfficialWeights("v1.3", "GFPGANv1.3.pth",
                    "https://github.com/TencentARC/GFPGAN/releases/download/v1.3.0/GFPGANv1.3.pth",
                    "c953a88f2727c85c3d9ae72e2bd4846bbaf59fe6972ad94130e23e7017524a70"),
    OfficialWeights("v1.4", "GFPGANv1.4.pth",
                    "https://github.com/TencentARC/GFPGAN/releases/download/v1.3.0/GFPGANv1.4.pth",
                    "e2cd4703ab14f4d01fd1383a8a8b266f9a5833dacee8e6a79d3bf21a1b6be5ad"),
]}


def official(version: str) -> OfficialWeights:
    key = version if version.startswith("v") else f"v{version}"
    if key not in OFFICIAL:
        raise DownloadError(f"unknown official version {version!r}; known: {', '.join(OFFICIAL)}")
    return OFFICIAL[key]


def download(url: str, dest, sha256: str, progress: bool = True, timeout: float = 30.0) -> Path:
    """Download ``url`` to ``dest``, verifying its SHA-256; the file appears only once it is complete and right.

    The bytes go to a temporary file in the same folder, renamed over ``dest`` only after the hash matches, so a
    broken or corrupted download never looks like a checkpoint.
    """
    from tqdm.auto import tqdm

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                response = urllib.request.urlopen(url, timeout=timeout)
            except (urllib.error.URLError, OSError) as error:
                reason = getattr(error, "reason", error)
                raise DownloadError(f"could not download {url}: {reason}. If this machine is offline, fetch the "
                                    f"file elsewhere and pass its path with --weights or put it in {dest.parent}") from None
            with response, tqdm(total=int(response.headers.get("Content-Length") or 0) or None, unit="B",
                                unit_scale=True, desc=dest.name, disable=not progress) as bar:
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
        if digest.hexdigest() != sha256:
            raise DownloadError(f"{url}: SHA-256 {digest.hexdigest()} does not match the published {sha256}; "
                                f"the download was discarded, nothing was written to {dest}")
        os.replace(tmp_name, dest)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return dest


def fetch_official(version: str, dest_dir=None, url: Optional[str] = None, progress: bool = True) -> Path:
    """Download an official checkpoint (from its release URL or a mirror) into ``dest_dir``, verified."""
    weights = official(version)
    dest = Path(dest_dir or WEIGHTS_DIR) / weights.filename
    if dest.is_file() and sha256_file(dest) == weights.sha256:
        return dest
    return download(url or weights.url, dest, weights.sha256, progress=progress)


# ---------------------------------------------------------------------------------------------------------
# Which weights the workbook uses
# ---------------------------------------------------------------------------------------------------------


@dataclass
class WeightsChoice:
    path: Path
    kind: str  # "explicit", "environment", "official", "demo"
    reason: str

    def __str__(self):
        return f"{self.path} ({self.reason})"


def choose_weights(path=None, weights_dir=None) -> WeightsChoice:
    """An explicit path, else $GFPGAN_DEBUG_WEIGHTS, else an official file in data/weights/, else the demo weights."""
    weights_dir = Path(weights_dir or WEIGHTS_DIR)
    if path:
        return _existing(WeightsChoice(Path(path), "explicit", "the path you gave"))
    if os.environ.get(ENV_VAR):
        return _existing(WeightsChoice(Path(os.environ[ENV_VAR]), "environment", f"${ENV_VAR} is set"))
    for version in sorted(OFFICIAL, reverse=True):  # the newest official file present wins
        candidate = weights_dir / OFFICIAL[version].filename
        if candidate.is_file():
            return WeightsChoice(candidate, "official", f"official {version} weights found in {weights_dir}")
    demo = weights_dir / DEMO_WEIGHTS.name
    return _existing(WeightsChoice(demo, "demo", "no official weights found: the project's demo weights"))


def _existing(choice: WeightsChoice) -> WeightsChoice:
    if not choice.path.is_file():
        extra = " (train them with `gfpgan-debug train-demo`)" if choice.kind == "demo" else ""
        raise CheckpointError(f"{choice.path}: no such file; chosen because {choice.reason}{extra}")
    return choice


# ---------------------------------------------------------------------------------------------------------
# Filled weights: a stand-in for trained ones where the real ones cannot be downloaded
# ---------------------------------------------------------------------------------------------------------


@torch.no_grad()
def fill_weights_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Overwrite every entry with seeded random values that keep activations finite and O(1), and that
    look nothing like PyTorch's initialisation (no zero biases, noise strengths and modulation biases moved).

    Used to test the official configuration without its 349 MB checkpoint: parity between runtimes needs
    weights that exercise every path, not trained ones.
    """
    generator = torch.Generator().manual_seed(seed)
    for name, tensor in model.state_dict().items():
        noise = torch.randn(tensor.shape, generator=generator)
        if name.endswith("modulation.bias"):
            value = 1.0 + 0.1 * noise
        elif ".noises." in name or name.endswith("constant_input.weight"):
            value = noise
        elif name.endswith("modulated_conv.weight") or tensor.dim() >= 2:  # scale by fan-in
            value = noise / math.sqrt(tensor[0].numel() if tensor.dim() != 5 else tensor[0, 0].numel())
        elif tensor.numel() == 1:  # noise strength of a style conv
            value = 0.1 * noise
        else:  # biases
            value = 0.05 * noise
        tensor.copy_(value.to(tensor.dtype))
    return model
