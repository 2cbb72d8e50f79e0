"""Comparing what two runtimes produced: metrics per output, a measured noise floor, the first divergent layer.

Every runtime hands back the same thing, an ordered mapping ``name -> array`` (``image``, ``rgb_8`` …
``rgb_512``, or module paths such as ``conv_body_up.0.conv2`` in execution order). Everything here works on
those mappings and knows nothing about the runtime or the model that made them.

    reference ─┐                         noise floor (same runtime twice, other thread count)
               ├─► compare_outputs ─► table ◄── tolerances = max(FACTOR x floor, RELATIVE_FLOOR x max|ref|)
    candidate ─┘          │
                          └─► first_divergence: the first output, in execution order, that differs beyond
                              tolerance while the outputs that feed it agree

``trace_execution`` records, for any ``nn.Module``, the outputs of its submodules in execution order and
which recorded outputs feed which module, so that "its inputs agree" can be checked.

``search_first_divergence`` is the same walk streamed: each layer is compared the moment the reference computes
it and then dropped, so neither set of outputs is held twice (the doctor and ``runtimes.onnx_first_divergence``
use it on the full model); its candidate can also be another implementation run layer by layer
(``layer_runner``: a TorchScript archive's layers fed the reference's inputs).
"""
import contextlib
import math
import weakref
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

Outputs = Mapping[str, np.ndarray]

# A difference is "real" when it exceeds FACTOR times the round-off measured for the same runtime, and in
# any case RELATIVE_FLOOR times the output's largest magnitude. float32 has a 1.2e-7 epsilon; a 50-layer
# network summed in another order (another thread count, another runtime's kernels) moves outputs by about
# 1e-6 to 1e-5 of their scale (ONNX Runtime vs eager GFPGAN: about 1e-5, ../shared/notes/stack.md), so
# 1e-4 leaves a factor of ten above that; every fault this project studies moves outputs by 1e-2 or more.
FACTOR = 10.0
RELATIVE_FLOOR = 1e-4
INPUT_NAME = "input"  # the name trace_execution gives the model's own input


# ---------------------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------------------


def to_numpy(value) -> np.ndarray:
    if isinstance(value, Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def metrics(reference, candidate) -> dict:
    """How far ``candidate`` is from ``reference`` (same shape), in five numbers.

    max_abs  = max |c - r|                 mean_abs = mean |c - r|
    rel_err  = ||c - r||_2 / ||r||_2        cosine   = <c, r> / (||c|| ||r||)
    psnr_db  = 10 log10(peak^2 / mean((c - r)^2)), peak = max(r) - min(r) (the reference's range)
    """
    r = to_numpy(reference).astype(np.float64).ravel()
    c = to_numpy(candidate).astype(np.float64).ravel()
    diff = c - r
    norm_r, norm_c = np.linalg.norm(r), np.linalg.norm(c)
    mse = float(np.mean(diff**2)) if diff.size else 0.0
    peak = float(r.max() - r.min()) if r.size else 0.0
    return dict(
        max_abs=float(np.abs(diff).max()) if diff.size else 0.0,
        mean_abs=float(np.abs(diff).mean()) if diff.size else 0.0,
        rel_err=float(np.linalg.norm(diff) / norm_r) if norm_r > 0 else (0.0 if not diff.any() else math.inf),
        cosine=float(r @ c / (norm_r * norm_c)) if norm_r > 0 and norm_c > 0 else float(norm_r == norm_c),
        psnr_db=math.inf if mse == 0 else (10 * math.log10(peak**2 / mse) if peak > 0 else -math.inf),
    )


def compare_outputs(reference: Outputs, candidate: Outputs, tolerances: Optional[Mapping[str, float]] = None
                    ) -> pd.DataFrame:
    """One row per output of ``reference`` (in its order): shape, the five metrics, tolerance, ``agrees``.

    An output the candidate lacks, or has with another shape, gets ``agrees = False`` and a ``note``.
    Without ``tolerances``, each output's tolerance is ``RELATIVE_FLOOR x max|reference|``.
    """
    rows = []
    for name, ref in reference.items():
        ref = to_numpy(ref)
        tolerance = (tolerances or {}).get(name, default_tolerance(ref))
        row = dict(name=name, shape=tuple(ref.shape), tolerance=tolerance, note="")
        if name not in candidate:
            row.update(agrees=False, note="missing in candidate")
        elif tuple(to_numpy(candidate[name]).shape) != tuple(ref.shape):
            row.update(agrees=False, note=f"shape {tuple(to_numpy(candidate[name]).shape)} in candidate")
        else:
            row.update(metrics(ref, candidate[name]))
            row["agrees"] = bool(row["max_abs"] <= tolerance)
        rows.append(row)
    columns = ["name", "shape", "max_abs", "mean_abs", "rel_err", "cosine", "psnr_db", "tolerance", "agrees", "note"]
    return pd.DataFrame(rows).reindex(columns=columns).set_index("name")


def format_table(frame: pd.DataFrame, max_rows: int = 60) -> str:
    """The comparison as an aligned text table for a terminal; differing rows are marked with ``✗``."""
    headers = ["output", "shape", "max abs", "mean abs", "rel err", "cosine", "PSNR dB", "tol", ""]
    rows = []
    for name, row in list(frame.iterrows())[:max_rows]:
        shape = "x".join(str(s) for s in row["shape"])
        numbers = [_number(row[k]) for k in ("max_abs", "mean_abs", "rel_err")]
        cosine = "" if pd.isna(row["cosine"]) else f"{row['cosine']:.6f}"
        psnr = "" if pd.isna(row["psnr_db"]) else ("inf" if math.isinf(row["psnr_db"]) else f"{row['psnr_db']:.1f}")
        mark = "ok" if row["agrees"] else "✗ " + (row["note"] or "differs")
        rows.append([str(name), shape, *numbers, cosine, psnr, _number(row["tolerance"]), mark])
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    if len(frame) > max_rows:
        lines.append(f"... {len(frame) - max_rows} more rows")
    return "\n".join(lines)


def _number(value) -> str:
    return "" if value is None or pd.isna(value) else f"{value:.3g}"


# ---------------------------------------------------------------------------------------------------------
# Noise floor and tolerances
# ---------------------------------------------------------------------------------------------------------


def default_tolerance(reference) -> float:
    ref = to_numpy(reference)
    return RELATIVE_FLOOR * float(np.abs(ref).max()) if ref.size else 0.0


@dataclass
class NoiseFloor:
    """The largest difference seen, per output, between runs that should agree (same runtime, same input)."""

    per_output: Dict[str, float]
    runs: List[str]  # what was compared with the first run, e.g. ["repeat", "threads=1"]
    reference: Dict[str, np.ndarray] = field(repr=False, default_factory=dict)

    def tolerances(self, factor: float = FACTOR, relative_floor: float = RELATIVE_FLOOR) -> Dict[str, float]:
        """tolerance = max(factor x floor, relative_floor x max|reference|), per output."""
        return {name: max(factor * floor, relative_floor * float(np.abs(self.reference[name]).max()))
                for name, floor in self.per_output.items()}

    def frame(self) -> pd.DataFrame:
        tolerances = self.tolerances()
        return pd.DataFrame([dict(name=n, floor=f, tolerance=tolerances[n]) for n, f in self.per_output.items()]
                            ).set_index("name")


@contextlib.contextmanager
def torch_threads(count: Optional[int]):
    """Run the block with ``torch.set_num_threads(count)`` (None: leave it), restoring the old count after."""
    before = torch.get_num_threads()
    if count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def measure_noise_floor(run: Callable[[Optional[int]], Outputs], thread_counts: Sequence[int] = (1,),
                        repeat: bool = True, first: Optional[Outputs] = None) -> NoiseFloor:
    """Call ``run(None)`` twice (default threads) and ``run(n)`` for each ``n`` in ``thread_counts``, and keep
    the largest max-abs difference from the first run per output.

    ``first``: outputs of ``run(None)`` already computed (saves a forward). ``repeat=False``: skip the second
    ``run(None)``; eager PyTorch on a CPU repeats itself bit for bit, and another thread count (a different
    summation order) moves outputs at least as much as a repeat would, so the doctor skips it.

    ``run(threads)`` must produce the outputs of one runtime on one fixed input, using ``threads`` intra-op
    threads (``torch_threads`` for PyTorch; ``SessionOptions.intra_op_num_threads`` for ONNX Runtime).
    A non-deterministic runtime shows up here as a large floor: look at the floor before trusting tolerances.
    """
    first = {k: to_numpy(v) for k, v in (run(None) if first is None else first).items()}
    others = ([("repeat", run(None))] if repeat else []) + [(f"threads={n}", run(n)) for n in thread_counts]
    floor = {name: 0.0 for name in first}
    for _, outputs in others:
        for name, ref in first.items():
            if name in outputs and to_numpy(outputs[name]).shape == ref.shape:
                floor[name] = max(floor[name], float(np.abs(to_numpy(outputs[name]).astype(np.float64) - ref).max()))
    return NoiseFloor(floor, [label for label, _ in others], first)


# ---------------------------------------------------------------------------------------------------------
# Execution order and producers (PyTorch modules)
# ---------------------------------------------------------------------------------------------------------


@dataclass
class Trace:
    """What ``trace_execution`` recorded.

    outputs:   module path -> output, in the order the modules *finished* (a parent after its children);
               ``input`` first (the model's input).
    inputs_of: module path -> the recorded names whose tensors it received as positional inputs; when it
               received none of them (its input was computed by code between modules, e.g. ``feat + skip``),
               the name recorded last before it started.
    """

    outputs: Dict[str, np.ndarray]
    inputs_of: Dict[str, List[str]]


def default_modules(model: nn.Module) -> List[str]:
    """The modules that own parameters directly (convolutions, linears, modulated convs): the layers."""
    return [name for name, module in model.named_modules()
            if name and any(True for _ in module.parameters(recurse=False))]


@torch.no_grad()
def trace_execution(model: nn.Module, *inputs: Tensor, modules: Optional[Sequence[str]] = None,
                    **kwargs) -> Trace:
    """Run ``model(*inputs, **kwargs)`` once with forward hooks on ``modules`` (default: ``default_modules``).

    Limits: a module called more than once is recorded as ``path``, ``path#2``, ...; only tensors passed as
    positional arguments count as inputs; work done between modules (functional ops, in-place activations,
    additions) is attributed to the next recorded module, which is where a divergence in it will show.
    """
    wanted = set(default_modules(model) if modules is None else modules)
    outputs: Dict[str, np.ndarray] = {INPUT_NAME: to_numpy(inputs[0]).copy()}
    inputs_of: Dict[str, List[str]] = {}
    producer = {id(inputs[0]): INPUT_NAME}  # id(tensor) -> recorded name
    alive = list(inputs)  # keeps recorded tensors alive so that their ids are not reused during the run
    calls: Dict[str, int] = {}
    pending: Dict[int, Tuple[str, List[str]]] = {}
    handles = []

    def before(name):
        def hook(module, args):
            calls[name] = calls.get(name, 0) + 1
            label = name if calls[name] == 1 else f"{name}#{calls[name]}"
            feeders = [producer[id(a)] for a in args if isinstance(a, Tensor) and id(a) in producer]
            pending[id(module)] = (label, feeders or [list(outputs)[-1]])
        return hook

    def after(module, args, output):
        label, feeders = pending.pop(id(module))
        if isinstance(output, Tensor):
            outputs[label] = to_numpy(output).copy()  # copy now: in-place activations change it next
            inputs_of[label] = feeders
            producer[id(output)] = label
            alive.append(output)

    try:
        for name, module in model.named_modules():
            if name in wanted:
                handles.append(module.register_forward_pre_hook(before(name)))
                handles.append(module.register_forward_hook(after))
        model(*inputs, **kwargs)
    finally:
        for handle in handles:
            handle.remove()
    return Trace(outputs, inputs_of)


# ---------------------------------------------------------------------------------------------------------
# First divergence
# ---------------------------------------------------------------------------------------------------------


@dataclass
class Divergence:
    """The first output that differs beyond tolerance while its inputs agree."""

    name: str
    inputs: List[str]
    inputs_checked: bool  # False when some input was not available in the candidate to check
    metrics: dict
    tolerance: float
    checked: int  # how many outputs were compared before it, all agreeing

    def __str__(self):
        inputs = ", ".join(self.inputs) if self.inputs else "none recorded"
        checked = "agree" if self.inputs_checked else "were not all available to check"
        return (f"first divergence at {self.name}: max abs {self.metrics['max_abs']:.3g} > tolerance "
                f"{self.tolerance:.3g} (cosine {self.metrics['cosine']:.4f}); its inputs ({inputs}) {checked}; "
                f"{self.checked} earlier outputs agree")


def first_divergence(reference: Outputs, candidate: Outputs, tolerances: Optional[Mapping[str, float]] = None,
                     inputs_of: Optional[Mapping[str, Sequence[str]]] = None) -> Optional[Divergence]:
    """Walk ``reference`` in its (execution) order; return the first output that differs beyond tolerance and
    whose inputs agree, or None when everything comparable agrees.

    ``inputs_of`` maps a name to the names that feed it (``Trace.inputs_of``). Without it, the input of each
    output is taken to be the output before it in execution order: right for a chain, an approximation for
    skips and branches. Names the candidate lacks are skipped; an output whose inputs differ is not the origin
    of a divergence (it only inherits one), so the walk goes on past it.
    """
    frame = compare_outputs(reference, {k: v for k, v in candidate.items() if k in reference}, tolerances)
    comparable = frame[frame["note"] == ""]
    agrees = comparable["agrees"].to_dict()
    names = list(reference)
    for position, (name, row) in enumerate(comparable.iterrows()):
        if row["agrees"]:
            continue
        index = names.index(name)
        feeders = list(inputs_of[name]) if inputs_of and name in inputs_of else names[max(index - 1, 0):index]
        if any(agrees.get(f) is False for f in feeders):
            continue  # inherited from a differing input
        return Divergence(name=name, inputs=feeders, inputs_checked=all(f in agrees for f in feeders),
                          metrics={k: row[k] for k in ("max_abs", "mean_abs", "rel_err", "cosine", "psnr_db")},
                          tolerance=float(row["tolerance"]), checked=position)
    return None


def _submodule(module, path: str):
    """``module.get_submodule(path)``, walking attributes (ScriptModules do not support get_submodule)."""
    for part in path.split("."):
        module = getattr(module, part, None)
        if module is None:
            return None
    return module


# ---------------------------------------------------------------------------------------------------------
# First divergence, streamed: compare each layer as the reference computes it
# ---------------------------------------------------------------------------------------------------------


@dataclass
class LayerSearch:
    """What ``search_first_divergence`` found.

    divergence: the first layer that differs while its inputs agree (None: every compared layer agrees).
    layers:     one row per compared layer, in execution order: shape, max_abs, tolerance, agrees, inputs.
    missing:    layers the reference ran that the candidate has no output for (not compared).
    outputs:    what the model returned, so the caller need not run the reference again for final outputs.
    """

    divergence: Optional[Divergence]
    layers: pd.DataFrame
    missing: List[str]
    outputs: object = field(repr=False, default=None)

    def __str__(self):
        found = str(self.divergence) if self.divergence else "no divergence: every compared layer agrees"
        return f"{found} ({len(self.layers)} layers compared, {len(self.missing)} without a candidate output)"


Candidate = Union[Mapping[str, np.ndarray], Callable[[str, tuple], Optional[Tensor]]]


@torch.no_grad()
def search_first_divergence(model: nn.Module, *inputs: Tensor, candidate: Candidate,
                            modules: Optional[Sequence[str]] = None,
                            tolerances: Optional[Mapping[str, float]] = None, release: bool = True,
                            **kwargs) -> LayerSearch:
    """``first_divergence(trace_execution(model, ...).outputs, candidate)`` without holding either set of outputs:
    each layer's output is compared with the candidate's the moment the reference computes it, then dropped.

    ``candidate`` is either a mapping ``layer name -> array`` (e.g. ONNX Runtime's intermediates from
    ``runtimes.run``; with ``release`` each array is removed from the mapping once compared, so its memory
    goes as the forward proceeds), or a function ``(layer name, positional args) -> output`` called just before
    the reference layer runs with the same arguments (another implementation of the layer, ``layer_runner``: every
    layer then sees exactly the reference's inputs, so the first differing layer is the first that computes
    differently). Names, ``inputs_of`` and execution order are those of ``trace_execution``.

    Each layer is checked with one float32 max |difference| against its tolerance (``tolerances[name]``, else
    ``RELATIVE_FLOOR x max|reference|``); the five ``metrics`` (float64) are computed for the divergent layer
    only. On the full 512x512 model this is what makes the search cost about one forward of each runtime.
    The model's input counts as agreeing: both sides are fed the same tensor.
    """
    wanted = set(default_modules(model) if modules is None else modules)
    producer: Dict[int, Tuple[weakref.ref, str]] = {id(inputs[0]): (weakref.ref(inputs[0]), INPUT_NAME)}
    agrees: Dict[str, bool] = {INPUT_NAME: True}
    rows: List[dict] = []
    missing: List[str] = []
    found: List[Divergence] = []
    calls: Dict[str, int] = {}
    pending: Dict[int, Tuple[str, List[str], object]] = {}
    last = [INPUT_NAME]
    handles = []

    def recorded(tensor) -> Optional[str]:
        entry = producer.get(id(tensor))  # the weak reference guards against a freed tensor's id being reused
        return entry[1] if entry is not None and entry[0]() is tensor else None

    def before(name):
        def hook(module, args):
            calls[name] = calls.get(name, 0) + 1
            label = name if calls[name] == 1 else f"{name}#{calls[name]}"
            feeders = [n for n in (recorded(a) for a in args if isinstance(a, Tensor)) if n is not None]
            theirs = candidate(label, args) if callable(candidate) else None  # before the layer can change args
            pending[id(module)] = (label, feeders or [last[0]], theirs)
        return hook

    def after(module, args, output):
        label, feeders, theirs = pending.pop(id(module))
        if not isinstance(output, Tensor):
            return
        producer[id(output)] = (weakref.ref(output), label)
        last[0] = label
        if not callable(candidate):
            theirs = candidate.pop(label, None) if release else candidate.get(label)
        if theirs is None:
            missing.append(label)
            return
        theirs = torch.as_tensor(theirs)
        row = dict(name=label, shape=tuple(output.shape), inputs=feeders)
        if tuple(theirs.shape) != tuple(output.shape):
            row.update(max_abs=math.nan, tolerance=math.nan, agrees=False, note=f"shape {tuple(theirs.shape)} in candidate")
        else:
            ours = output.detach().float()
            max_abs = float((ours - theirs.float()).abs().max()) if ours.numel() else 0.0
            tolerance = (tolerances or {}).get(label)
            if tolerance is None:
                tolerance = RELATIVE_FLOOR * float(ours.abs().max()) if ours.numel() else 0.0
            row.update(max_abs=max_abs, tolerance=tolerance, agrees=bool(max_abs <= tolerance), note="")
        rows.append(row)
        if row["note"]:  # not comparable: like first_divergence, neither an origin nor a differing input
            return
        if not row["agrees"] and not found and not any(agrees.get(f) is False for f in feeders):
            found.append(Divergence(name=label, inputs=feeders, inputs_checked=all(f in agrees for f in feeders),
                                    metrics=metrics(output, theirs), tolerance=row["tolerance"],
                                    checked=len(agrees) - 1))  # compared before it (the input is not counted)
        agrees[label] = row["agrees"]

    try:
        for name, module in model.named_modules():
            if name in wanted:
                handles.append(module.register_forward_pre_hook(before(name)))
                handles.append(module.register_forward_hook(after))
        outputs = model(*inputs, **kwargs)
    finally:
        for handle in handles:
            handle.remove()
    columns = ["name", "shape", "max_abs", "tolerance", "agrees", "inputs", "note"]
    layers = pd.DataFrame(rows).reindex(columns=columns).set_index("name")
    return LayerSearch(found[0] if found else None, layers, missing, outputs)


def layer_runner(module: nn.Module, prefix: str = "") -> Callable[[str, tuple], Optional[Tensor]]:
    """A ``candidate`` for ``search_first_divergence`` that runs the layer at the same path inside ``module``
    (a loaded TorchScript archive, a differently loaded model) on the reference's arguments. ``prefix`` is
    prepended to each path (``"model."`` for a deploy wrapper). Paths the module lacks, or that cannot be called
    on their own, give None (and are not compared)."""
    def run(label: str, args: tuple) -> Optional[Tensor]:
        layer = _submodule(module, prefix + label.split("#")[0])
        if layer is None:
            return None
        # copies: an in-place activation inside the candidate must not change the reference's inputs
        args = [a.clone() if isinstance(a, Tensor) else a for a in args]
        try:
            result = layer(*args)
        except (RuntimeError, TypeError):  # e.g. a scripted method that was never compiled
            return None
        return result if isinstance(result, Tensor) else None
    return run
