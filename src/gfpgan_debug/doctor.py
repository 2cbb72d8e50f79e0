"""The doctor: run every check on an exported model and name the most likely root cause, with the evidence.

    gfpgan-debug doctor --artifact A [--weights W] [--image IMG] [--json OUT] [--html OUT]
    gfpgan-debug layers --artifact A --weights W [--all] [--json [OUT]]    (the first-divergence search alone)

The battery, in the order a person debugging the post's bug would want it:

    load report        the checkpoint loaded strictly into a fresh model (the independent reference), and what
                       the post's load (the whole checkpoint dict, strict=False) would have loaded
    weight parity      every checkpoint entry found in the artefact: identical / different / transformed / absent
    untrained score    do the artefact's weights still look like a random initialisation? (needs no checkpoint)
    determinism        the artefact twice on the same input
    input sensitivity  frames of a simulated camera move over the face: does the output follow?
    output parity      artefact vs the reference, tolerances from the reference's measured noise floor;
                       with the input's (or output's) colour channels reversed, as a hypothesis
    first divergence   each layer of the artefact fed the reference's inputs for it (TorchScript), or the
                       ONNX graph's intermediate outputs (ONNX), walked in execution order

The verdict is the first rule that fires, most fundamental cause first: weights never loaded; weights of
some layers not loaded (or different); fresh noise left on; colour channels swapped; outputs that differ
for another reason (named by their first divergent layer); untrained or insensitive without a checkpoint.
Exit codes: 0 healthy, 1 problems found, 2 could not run.

Limits: a colour swap is found when it happens inside the artefact (a wrapper that preprocesses); a swap in
the calling program, outside the artefact, cannot be seen by checking the artefact. Fresh noise only shows
when the noise strengths are not 0 (trained weights): with untrained ones it changes nothing. ONNX layer
outputs are mapped to module paths through the legacy exporter's node names (``export.module_outputs``).
Building the reference needs GFPGANv1Clean (``weights.model_from_checkpoint``); the checks themselves
(compare, forensics) work on any model.
"""
import argparse
import html
import json
import math
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from gfpgan_debug import compare, export, forensics, runtimes
from gfpgan_debug.errors import ArtifactError, CheckpointError, GfpganDebugError
from gfpgan_debug.images import FACE_PATH, preprocess, read_image

NEVER_LOADED_SHARE = 0.9  # share of checkpoint entries that differ (and of values that look initial)
SENSITIVITY_LOW = 0.2  # untrained GFPGAN: about 0.02; a model that follows the face: about 0.9
CAMERA_FRAMES = 3  # x and two moved views: two frame pairs


@dataclass
class Check:
    name: str
    status: str  # "ok", "problem" or "skipped"
    summary: str
    details: dict = field(default_factory=dict)


@dataclass
class Diagnosis:
    artifact: str
    weights: Optional[str]
    image: str
    cause: str  # "healthy", "weights_never_loaded", "layers_not_loaded", ...
    verdict: str
    evidence: List[str]
    checks: List[Check]
    seconds: float = 0.0
    tables: Dict[str, pd.DataFrame] = field(default_factory=dict, repr=False)

    @property
    def exit_code(self) -> int:
        return 0 if self.cause == "healthy" else 1

    def to_dict(self) -> dict:
        return dict(artifact=self.artifact, weights=self.weights, image=self.image, cause=self.cause,
                    verdict=self.verdict, evidence=self.evidence, exit_code=self.exit_code,
                    seconds=round(self.seconds, 2),
                    checks=[dict(name=c.name, status=c.status, summary=c.summary, details=c.details) for c in self.checks])

    def __str__(self) -> str:
        lines = [f"doctor: {self.artifact}" + (f" against {self.weights}" if self.weights else ""), ""]
        width = max(len(c.name) for c in self.checks)
        for check in self.checks:
            mark = {"ok": "ok     ", "problem": "PROBLEM", "skipped": "skipped"}[check.status]
            lines.append(f"  {mark}  {check.name:<{width}}  {check.summary}")
        lines += ["", f"verdict: {self.verdict}"]
        lines += [f"  - {item}" for item in self.evidence]
        lines.append(f"({self.seconds:.1f} s; exit code {self.exit_code})")
        return "\n".join(lines)

    def to_html(self) -> str:
        colour = "#1a7f37" if self.exit_code == 0 else "#cf222e"
        rows = "".join(f"<tr><td>{html.escape(c.name)}</td><td>{c.status}</td><td>{html.escape(c.summary)}</td></tr>"
                       for c in self.checks)
        evidence = "".join(f"<li>{html.escape(e)}</li>" for e in self.evidence)
        tables = "".join(f"<h3>{html.escape(name)}</h3>{frame.to_html(float_format=lambda v: f'{v:.4g}')}"
                         for name, frame in self.tables.items())
        return (f"<!doctype html><html><head><meta charset='utf-8'><title>doctor: {html.escape(self.artifact)}</title>"
                "<style>body{font-family:sans-serif;max-width:70em;margin:2em auto}table{border-collapse:collapse}"
                "td,th{border:1px solid #ccc;padding:2px 6px;font-size:90%}</style></head><body>"
                f"<h1>Doctor: {html.escape(self.artifact)}</h1>"
                f"<p>weights: {html.escape(str(self.weights))} &middot; image: {html.escape(self.image)} &middot; "
                f"{self.seconds:.1f} s</p><h2 style='color:{colour}'>{html.escape(self.verdict)}</h2>"
                f"<ul>{evidence}</ul><h2>Checks</h2><table><tr><th>check</th><th>status</th><th>result</th></tr>"
                f"{rows}</table>{tables}</body></html>")


# ---------------------------------------------------------------------------------------------------------
# Running an artefact
# ---------------------------------------------------------------------------------------------------------


class Artifact:
    """A TorchScript or ONNX file that maps a (1, 3, S, S) input to named outputs ``image``, ``rgb_8`` …"""

    def __init__(self, path):
        self.path = Path(path)
        if not self.path.is_file():
            raise ArtifactError(f"{self.path}: no such file")
        self.kind = "onnxruntime" if self.path.suffix == ".onnx" else "torchscript"
        self.weights = forensics.artifact_weights(self.path)  # raises ArtifactError for an unreadable file
        if self.kind == "torchscript":  # the deploy signature is checked before anything runs
            self.module = runtimes.load_torchscript(self.path)
        else:
            import onnxruntime as ort

            export.load_onnx(self.path)  # refuses damaged files and external data outside the model's folder
            try:
                self.session = ort.InferenceSession(str(self.path), providers=["CPUExecutionProvider"])
            except Exception as error:  # onnxruntime's own exception types
                raise ArtifactError(f"{self.path}: onnxruntime cannot load it ({str(error).splitlines()[0][:160]})") from None

    def input_size(self) -> Optional[int]:
        if self.kind == "onnxruntime":
            side = self.session.get_inputs()[0].shape[-1]
            return side if isinstance(side, int) else None
        return None

    def __call__(self, x: torch.Tensor) -> Dict[str, np.ndarray]:
        if self.kind == "onnxruntime":
            names = [o.name for o in self.session.get_outputs()]
            values = self.session.run(names, {self.session.get_inputs()[0].name: compare.to_numpy(x)})
            return OrderedDict(zip(names, values))
        with torch.no_grad():
            result = self.module(x)
        return runtimes.named_outputs(result)


def strip_wrapper_prefix(weights: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """Remove a dotted prefix every name shares (``model.`` from a deploy wrapper)."""
    names = list(weights)
    while names and all("." in n for n in names) and len({n.split(".", 1)[0] for n in names}) == 1:
        names = [n.split(".", 1)[1] for n in names]
    return dict(zip(names, weights.values()))


# ---------------------------------------------------------------------------------------------------------
# The battery
# ---------------------------------------------------------------------------------------------------------


def diagnose(artifact, weights=None, image=None, progress: bool = True) -> Diagnosis:
    """Run every check on ``artifact`` (a .pt or .onnx path) and return the Diagnosis."""
    start = time.perf_counter()
    # every input is opened first: a bad file is one clear error, before any progress bar is drawn
    found = Artifact(artifact)
    own_weights = strip_wrapper_prefix(found.weights)
    reference, checkpoint, report = None, None, None
    config = None
    if weights is not None:
        from gfpgan_debug.weights import load_checkpoint, model_from_checkpoint

        checkpoint = load_checkpoint(weights)
        reference, report = model_from_checkpoint(weights, strict=True)
        config = report.config
    size = found.input_size() or (config or {}).get("out_size") or _size_from_weights(own_weights)
    picture = read_image(image or FACE_PATH)
    x = preprocess(picture, size)

    with tqdm(total=7, desc="doctor", disable=not progress, leave=False) as steps:
        checks, tables, facts = run_checks(found, own_weights, reference, checkpoint, report, weights, picture, x,
                                           size, steps)
    cause, verdict, evidence = decide(checks, facts, checkpoint, report, weights)
    return Diagnosis(str(artifact), str(weights) if weights else None, str(image or FACE_PATH), cause, verdict,
                     evidence, checks, time.perf_counter() - start, tables)


def run_checks(found, own_weights, reference, checkpoint, report, weights, picture, x, size, steps):
    """The battery, in order; (checks, tables, facts). ``steps``: the progress bar."""
    running = []

    def step(label):  # the bar counts finished checks and names the one running
        if running:
            steps.update(1)
        running.append(label)
        steps.set_postfix_str(label)

    checks, tables, facts = [], {}, {"kind": found.kind}
    step("load report")
    checks.append(load_check(weights, reference, report))

    step("weight parity")
    if checkpoint is not None:
        parity = forensics.match_weights(own_weights, checkpoint)
        tables["weight parity (not identical)"] = parity[parity["status"] != "identical"].head(40)
        checks.append(parity_check(parity, found.kind))
        facts["parity"] = parity
    else:
        checks.append(Check("weight parity", "skipped", "no checkpoint given (--weights)"))

    step("untrained score")
    untrained = forensics.untrained_evidence(own_weights)
    facts["untrained"] = untrained
    tables["untrained evidence"] = untrained.frame[["values", "looks_initial", "evidence"]].head(40)
    checks.append(Check("untrained score", "problem" if untrained.score >= 0.25 else "ok",
                        f"{untrained.score:.3f} of parameter values look like their initialisation ({untrained.verdict})",
                        dict(score=untrained.score, initial_tensors=untrained.initial_tensors()[:20])))

    step("determinism")
    first, second = found(x), found(x)
    drift = {n: float(np.abs(second[n].astype(np.float64) - first[n]).max()) for n in first}
    tolerance = {n: compare.default_tolerance(first[n]) for n in first}
    nondeterministic = {n: d for n, d in drift.items() if d > tolerance[n]}
    facts["nondeterministic"] = nondeterministic
    determinism = Check("determinism", "problem" if nondeterministic else "ok",
                        f"same input twice: max |difference| {max(drift.values()):.3g} "
                        f"({'differs' if nondeterministic else 'identical up to round-off'})", dict(max_abs=drift))

    # The reference's layer-by-layer run comes first: it also gives the reference's outputs on x, which the
    # sensitivity and output checks reuse (on the full model every forward saved is about 4 s).
    step("first divergence")
    if reference is not None:
        divergence, reference_x = divergence_check(found, reference, x, facts)
    else:
        divergence = Check("first divergence", "skipped", "no reference without a checkpoint (--weights)")
        reference_x = None

    step("input sensitivity")
    # x and CAMERA_FRAMES - 1 moved views of the face (the camera's first view is x up to a hand shake)
    moved = [preprocess(f, size) for f in forensics.camera_frames(picture, count=CAMERA_FRAMES, size=size)[1:]]
    frames = [x] + moved
    sensitivity = frame_sensitivity(frames, [first] + [found(f) for f in moved])
    details = dict(artifact=sensitivity.ratios)
    if reference is not None:
        run_reference = eager_runner(reference)
        reference_sensitivity = frame_sensitivity(frames, [reference_x] + [run_reference(f) for f in moved])
        details["reference"] = reference_sensitivity.ratios
        facts["reference_sensitivity"] = reference_sensitivity.median
    facts["sensitivity"] = sensitivity.median
    summary = f"median {sensitivity.median:.3f} (mean|f(a)-f(b)| / mean|a-b| over {len(sensitivity.ratios)} camera-frame pairs)"
    if "reference_sensitivity" in facts:
        summary += f"; reference {facts['reference_sensitivity']:.3f}"
    input_check = Check("input sensitivity", "problem" if sensitivity.median < SENSITIVITY_LOW else "ok", summary,
                        details)

    step("output parity")
    if reference is not None:
        parity_of_outputs = output_check(found, reference, x, first, reference_x, facts, tables)
    else:
        parity_of_outputs = Check("output parity", "skipped", "no reference without a checkpoint (--weights)")
    checks += [determinism, input_check, parity_of_outputs, divergence]
    steps.update(1)
    return checks, tables, facts


def _size_from_weights(weights) -> int:
    from gfpgan_debug.weights import infer_config

    try:
        return infer_config({k: torch.from_numpy(np.asarray(v)) for k, v in weights.items()})["out_size"]
    except CheckpointError:
        return 512  # GFPGAN's size; a wrong guess shows as a clear shape error from the artefact


def eager_runner(model) -> Callable:
    def run(x):
        with torch.no_grad():
            return runtimes.named_outputs(model(x, randomize_noise=False))
    return run


def load_check(weights, reference, report) -> Check:
    if reference is None:
        return Check("load report", "skipped", "no checkpoint given (--weights)")
    from gfpgan_debug.weights import compare_state_dicts, read_checkpoint_file

    raw = read_checkpoint_file(weights)
    details = dict(strict=report.to_dict())
    summary = f"reference: {report.summary()}"
    if isinstance(raw, dict) and any(isinstance(raw.get(k), dict) for k in ("params_ema", "params")):
        as_posted = compare_state_dicts(reference, raw, source=f"the whole dict of {weights}")
        details["as_in_the_post"] = as_posted.to_dict()
        summary += (f". Loaded as the post did (whole dict, strict=False): {len(as_posted.matched)} of "
                    f"{as_posted.entries_total} entries")
    if report.nonfinite:
        summary += f". NaN or Inf values in {len(report.nonfinite)} entries: {', '.join(report.nonfinite[:3])}"
    return Check("load report", "problem" if report.nonfinite else "ok", summary, details)


def parity_check(parity: pd.DataFrame, kind: str) -> Check:
    counts = forensics.match_summary(parity)
    bad = bad_entries(parity, kind)
    summary = ", ".join(f"{n} {status}" for status, n in counts.items() if n)
    if bad:
        first = bad[0]
        row = parity.loc[first]
        summary += f"; first mismatch {first} (max |diff| {row['max_abs']:.3g}, cosine {row['cosine']:.3f})"
    return Check("weight parity", "problem" if bad else "ok", summary, dict(counts=counts, mismatched=bad[:50]))


def bad_entries(parity: pd.DataFrame, kind: str) -> List[str]:
    """Entries that differ; absent ones too for TorchScript (ONNX drops weights its graph never reads)."""
    bad = parity["status"] == "different"
    if kind == "torchscript":
        bad |= parity["status"] == "absent"
    return list(parity.index[bad])


def frame_sensitivity(frames, outputs) -> "forensics.Sensitivity":
    """Input sensitivity of the image output, from each frame's outputs already computed."""
    return forensics.frame_sensitivity(frames, {"image": np.concatenate([o["image"] for o in outputs])})


def output_check(found: Artifact, reference, x, artifact_outputs, reference_outputs, facts, tables) -> Check:
    run_reference = eager_runner(reference)

    def on_threads(threads):
        with compare.torch_threads(threads):
            return run_reference(x)

    floor = compare.measure_noise_floor(on_threads, thread_counts=(1,), repeat=False, first=reference_outputs)
    tolerances = floor.tolerances()
    frame = compare.compare_outputs(floor.reference, artifact_outputs, tolerances)
    tables["output parity"] = frame
    facts["output_frame"] = frame
    facts["tolerances"] = tolerances
    agrees = bool(frame["agrees"].all())
    facts["outputs_agree"] = agrees
    details = dict(table=json.loads(frame.reset_index().to_json(orient="records")),
                   noise_floor=floor.per_output)
    if not agrees:  # hypotheses: the colour channels reversed on the way in, or on the way out
        swapped_in = compare.compare_outputs(run_reference(x.flip(1)), artifact_outputs, tolerances)
        swapped_out = compare.compare_outputs({k: v[:, ::-1] for k, v in floor.reference.items()}, artifact_outputs,
                                              tolerances)
        facts["swap_input"] = bool(swapped_in["agrees"].all())
        facts["swap_output"] = bool(swapped_out["agrees"].all())
        details.update(swap_input_agrees=facts["swap_input"], swap_output_agrees=facts["swap_output"])
    worst = frame["max_abs"].max()
    summary = (f"{int(frame['agrees'].sum())} of {len(frame)} outputs agree with the reference (worst max |diff| "
               f"{worst:.3g}; tolerances from a noise floor of {max(floor.per_output.values()):.3g})")
    return Check("output parity", "ok" if agrees else "problem", summary, details)


def layer_search(found: Artifact, reference, x):
    """(the LayerSearch, how the candidate's layers were obtained), or (None, why not): one reference forward,
    each layer compared as it runs (``compare.search_first_divergence``) with the artefact's layer fed the same
    inputs (TorchScript) or the ONNX graph's intermediate outputs (ONNX)."""
    if found.kind == "onnxruntime":
        try:
            return runtimes.onnx_first_divergence(reference, found.path, x), "the ONNX graph's intermediate outputs"
        except GfpganDebugError:
            return None, "this ONNX graph's intermediate outputs could not be mapped to module paths"
    prefix = "model." if hasattr(found.module, "model") else ""
    search = compare.search_first_divergence(reference, x, candidate=compare.layer_runner(found.module, prefix),
                                             randomize_noise=False)
    return search, "each layer of the artefact fed the reference's inputs"


def divergence_check(found: Artifact, reference, x, facts):
    """(the check, the reference's named outputs on x, from the same forward as the search)."""
    search, how = layer_search(found, reference, x)
    if search is None:
        return Check("first divergence", "skipped", how), eager_runner(reference)(x)
    reference_x = runtimes.named_outputs(search.outputs)
    divergence = search.divergence
    facts["divergence"] = divergence
    if divergence is None:
        return Check("first divergence", "ok", f"none: {len(search.layers)} layer outputs agree ({how})"), reference_x
    return Check("first divergence", "problem", f"{divergence} ({how})",
                 dict(name=divergence.name, inputs=divergence.inputs, metrics=divergence.metrics)), reference_x


# ---------------------------------------------------------------------------------------------------------
# The verdict
# ---------------------------------------------------------------------------------------------------------


def decide(checks, facts, checkpoint, report, weights):
    """(cause, verdict, evidence): the first rule that fires, most fundamental cause first."""
    by_name = {c.name: c for c in checks}
    if report is not None and report.nonfinite:
        return ("nonfinite_weights", f"the checkpoint holds NaN or Inf values in {len(report.nonfinite)} entries",
                [f"non-finite entries: {', '.join(report.nonfinite[:5])}" + (", ..." if len(report.nonfinite) > 5 else ""),
                 "every output computed through them is NaN or Inf, whatever the runtime"])
    untrained = facts["untrained"]
    evidence = []
    sensitivity = f"input sensitivity {facts['sensitivity']:.3f}" + (
        f" (reference {facts['reference_sensitivity']:.3f})" if "reference_sensitivity" in facts else "")

    parity = facts.get("parity")
    if parity is not None:
        bad = bad_entries(parity, facts["kind"])
        # The share that decides "never loaded" counts parameters only: buffers (noise maps) are never trained,
        # so a fresh model built from the training's seed holds the same ones. ONNX graphs drop weights their
        # computation never reads: those absences are not counted either.
        parameters = [k for k in parity.index if not forensics.DEFAULT_SKIP.search(k)
                      and not (facts["kind"] == "onnxruntime" and parity.loc[k, "status"] == "absent")]
        compared = len(parameters)
        bad_parameters = [k for k in bad if k in set(parameters)]
        first_conv = next((k for k in parity.index if len(checkpoint[k].shape) == 4 and k.endswith("weight")), parity.index[0])
        if len(bad_parameters) >= NEVER_LOADED_SHARE * max(compared, 1) and untrained.score >= NEVER_LOADED_SHARE:
            row = parity.loc[first_conv]
            evidence.append(f"first convolution {first_conv}: artefact vs checkpoint max |diff| {row['max_abs']:.3g}, "
                            f"cosine {row['cosine']:.3f}; "
                            + _initial_evidence(untrained, first_conv, parity))
            if "weak evidence" in _initial_evidence(untrained, first_conv, parity):  # too small to test
                strong = next((k for k in parity.index if checkpoint[k].numel() >= 1000
                               and _looks_initial(untrained, k, parity)), None)
                if strong:
                    evidence.append(f"first large kernel {strong}: " + _initial_evidence(untrained, strong, parity))
            evidence.append(f"weight parity: {by_name['weight parity'].summary.split(';')[0]}")
            evidence.append(f"untrained score {untrained.score:.3f}: the artefact's weights fit their random "
                            "initialisation (zero biases, kernels inside ±1/sqrt(fan_in), noise strengths exactly 0)")
            evidence.append(f"load report: {by_name['load report'].summary}")
            as_posted = by_name["load report"].details.get("as_in_the_post")
            if as_posted and as_posted["hint"]:
                evidence.append(f"hint: {as_posted['hint']}")
            evidence.append(sensitivity + ": the output hardly follows the camera")
            return ("weights_never_loaded", "weights were never loaded: the artefact runs on its random "
                    "initialisation (a load that matched no key, e.g. load_state_dict(whole_checkpoint, strict=False))",
                    evidence + _divergence_evidence(facts))
        if bad:
            initial = [k for k in bad if parity.loc[k, "status"] == "different"
                       and _looks_initial(untrained, k, parity)]
            layers = sorted({k.rsplit(".", 1)[0] for k in bad})
            for key in bad[:5]:
                row = parity.loc[key]
                evidence.append(f"{key}: {row['status']} (max |diff| {row['max_abs']:.3g}, cosine {row['cosine']:.3f}); "
                                + _initial_evidence(untrained, key, parity))
            evidence += _divergence_evidence(facts)
            if len(bad_parameters) >= NEVER_LOADED_SHARE * max(compared, 1):
                return ("weights_differ", "the artefact's weights are not this checkpoint's (another checkpoint?)", evidence)
            if initial and len(initial) == len(bad):
                return ("layers_not_loaded", f"weights of {', '.join(layers)} were not loaded: "
                        f"{len(bad)} entr{'y' if len(bad) == 1 else 'ies'} still hold their random initialisation "
                        "while the rest match the checkpoint", evidence)
            return ("weights_differ", f"weights of {', '.join(layers[:5])} differ from the checkpoint", evidence)
    elif untrained.score >= NEVER_LOADED_SHARE:
        evidence.append(f"untrained score {untrained.score:.3f}: " + _initial_evidence(untrained, untrained.frame.index[0]))
        evidence.append(sensitivity + ": the output hardly follows the camera")
        return ("weights_never_loaded", "weights were never loaded: the artefact's weights are their random "
                "initialisation (no checkpoint given to confirm against)", evidence)

    if facts["nondeterministic"]:
        worst = max(facts["nondeterministic"].items(), key=lambda kv: kv[1])
        evidence.append(f"two runs on the same input differ: {worst[0]} max |diff| {worst[1]:.3g}")
        evidence.append("the stored noise maps are not used: the model draws fresh noise on every call "
                        "(randomize_noise=True); export with randomize_noise=False")
        return ("fresh_noise", "fresh noise left on: the artefact draws new random noise on every call", evidence)

    if facts.get("outputs_agree") is False:
        frame = facts["output_frame"]
        worst = frame["max_abs"].idxmax()
        evidence.append(f"{worst}: max |diff| {frame.loc[worst, 'max_abs']:.3g} > tolerance "
                        f"{frame.loc[worst, 'tolerance']:.3g}, cosine {frame.loc[worst, 'cosine']:.3f}")
        if facts.get("swap_input"):
            evidence.append("the artefact's outputs equal the reference's on the same input with its colour channels "
                            "reversed: the artefact (or its preprocessing) swaps BGR and RGB")
            evidence += _divergence_evidence(facts) or [
                "fed the reference's inputs, every layer computes what the reference computes: the difference "
                "enters before the first layer"]
            return ("channel_swap", "BGR/RGB swap in preprocessing: the model sees the colour channels reversed",
                    evidence)
        if facts.get("swap_output"):
            evidence.append("the artefact's outputs equal the reference's with its colour channels reversed")
            return ("channel_swap_output", "BGR/RGB swap on the output side", evidence)
        evidence += _divergence_evidence(facts)
        where = facts.get("divergence")
        return ("outputs_differ", "the outputs differ from the reference" +
                (f", first at {where.name}" if where else " (no single layer found)"), evidence)

    if checkpoint is None and untrained.score >= 0.25:
        evidence.append(f"untrained score {untrained.score:.3f}; tensors at init: "
                        + ", ".join(untrained.initial_tensors()[:8]))
        return ("partly_untrained", "many weights still look like their random initialisation", evidence)
    if facts["sensitivity"] < SENSITIVITY_LOW:
        evidence.append(sensitivity)
        if checkpoint is not None:
            return ("insensitive_checkpoint", "the artefact matches the checkpoint, but the output hardly follows its "
                    "input: the checkpoint itself may be untrained", evidence)
        return ("insensitive", "the output hardly follows its input", evidence)

    evidence.append(sensitivity)
    if checkpoint is not None:
        evidence.append(by_name["weight parity"].summary)
        evidence.append(by_name["output parity"].summary)
    else:
        evidence.append("no checkpoint given: weight and output parity were not checked")
    return "healthy", "healthy: no problem found", evidence


def _artifact_name(parity, key) -> str:
    """The artefact's own name for a checkpoint entry (the untrained report is keyed by those names)."""
    name = parity.loc[key, "artifact_name"] if parity is not None and key in parity.index else None
    return name if isinstance(name, str) else key


def _looks_initial(untrained, key, parity=None) -> bool:
    name = _artifact_name(parity, key)
    return name in untrained.frame.index and bool(untrained.frame.loc[name, "looks_initial"])


def _initial_evidence(untrained, key, parity=None) -> str:
    name = _artifact_name(parity, key)
    if name not in untrained.frame.index:
        return "not scored"
    row = untrained.frame.loc[name]
    return f"{'looks like its initialisation' if row['looks_initial'] else 'moved from initialisation'}: {row['evidence']}"


def _divergence_evidence(facts) -> List[str]:
    divergence = facts.get("divergence")
    return [str(divergence)] if divergence else []


# ---------------------------------------------------------------------------------------------------------
# gfpgan-debug doctor
# ---------------------------------------------------------------------------------------------------------


def add_cli(verbs) -> None:
    parser = verbs.add_parser("doctor", help="run every check on an exported model and name the root cause",
                              description=__doc__.split("\n\n")[0])
    parser.add_argument("--artifact", required=True, help="a TorchScript .pt or an ONNX .onnx file")
    parser.add_argument("--weights", help="the checkpoint the artefact should hold (enables parity checks)")
    parser.add_argument("--image", help="a face image (default: the project's face)")
    parser.add_argument("--json", metavar="OUT", help="write the diagnosis as JSON ('-' for stdout)")
    parser.add_argument("--html", metavar="OUT", help="write the diagnosis as an HTML page")
    parser.set_defaults(func=cli_doctor)
    add_layers_cli(verbs)


def cli_doctor(args) -> int:
    diagnosis = diagnose(args.artifact, weights=args.weights, image=args.image, progress=args.json != "-")
    if args.json:
        from gfpgan_debug.cli import emit_json

        emit_json(diagnosis.to_dict(), args.json)
    if args.html:
        Path(args.html).parent.mkdir(parents=True, exist_ok=True)
        Path(args.html).write_text(diagnosis.to_html())
    if args.json != "-":
        print(diagnosis)
    return diagnosis.exit_code


# ---------------------------------------------------------------------------------------------------------
# gfpgan-debug layers --artifact A --weights W: the first-divergence search alone
# ---------------------------------------------------------------------------------------------------------


def add_layers_cli(verbs) -> None:
    parser = verbs.add_parser("layers", help="find the first layer of an exported model that computes differently "
                                             "from the checkpoint loaded in eager PyTorch",
                              description="Compare every layer of an artefact (TorchScript: each layer fed the "
                                          "reference's inputs; ONNX: the graph's intermediate outputs) with the "
                                          "checkpoint loaded strictly into GFPGANv1Clean, in execution order. "
                                          "Exit 0: every layer agrees; 1: a first divergence was found.")
    parser.add_argument("--artifact", required=True, help="a TorchScript .pt or an ONNX .onnx file")
    parser.add_argument("--weights", required=True, help="the checkpoint the artefact should hold")
    parser.add_argument("--image", help="a face image (default: the project's face)")
    parser.add_argument("--all", action="store_true", help="list every layer, not only those up to the divergence")
    parser.add_argument("--json", nargs="?", const="-", metavar="OUT", help="write JSON (to stdout if no file)")
    parser.set_defaults(func=cli_layers)


def cli_layers(args) -> int:
    from gfpgan_debug.cli import emit_json, print_table
    from gfpgan_debug.weights import model_from_checkpoint

    found = Artifact(args.artifact)
    reference, report = model_from_checkpoint(args.weights, strict=True)
    size = found.input_size() or report.config["out_size"]
    x = preprocess(read_image(args.image or FACE_PATH), size)
    search, how = layer_search(found, reference, x)
    if search is None:
        raise ArtifactError(f"{args.artifact}: {how}")
    rows = layer_rows(search)
    divergence = search.divergence
    if args.json:
        emit_json(dict(artifact=args.artifact, weights=args.weights, how=how, missing=search.missing,
                       divergence=None if divergence is None else dict(
                           name=divergence.name, inputs=divergence.inputs, metrics=divergence.metrics,
                           tolerance=divergence.tolerance),
                       layers=rows), args.json)
        if args.json == "-":
            return 0 if divergence is None else 1
    shown = rows if args.all else shown_rows(rows, divergence)
    print(f"{args.artifact} vs {args.weights} ({how}):")
    print_table([[r["layer"], "x".join(map(str, r["shape"])), _short(r["max_abs"]), _short(r["tolerance"]), r["status"]]
                 for r in shown], ["layer", "shape", "max abs", "tolerance", ""])
    if len(shown) < len(rows):
        print(f"... {len(rows) - len(shown)} more layers (--all lists them)")
    print(f"\n{search}")
    return 0 if divergence is None else 1


def layer_rows(search) -> List[dict]:
    """One dict per compared layer, with a status: ok, FIRST DIVERGENCE, differs (an input already differed), ..."""
    first = search.divergence.name if search.divergence else None
    rows = []
    for name, row in search.layers.iterrows():
        if row["note"]:
            status = row["note"]
        elif row["agrees"]:
            status = "ok"
        else:
            status = "FIRST DIVERGENCE" if name == first else "differs"
        rows.append(dict(layer=name, shape=list(row["shape"]), max_abs=row["max_abs"], tolerance=row["tolerance"],
                         agrees=bool(row["agrees"]), inputs=list(row["inputs"]), status=status))
    return rows


def shown_rows(rows: List[dict], divergence, after: int = 5, healthy: int = 10) -> List[dict]:
    """Every layer up to the divergence and a few after it; without one, the first few."""
    if divergence is None:
        return rows[:healthy]
    index = next(i for i, r in enumerate(rows) if r["layer"] == divergence.name)
    return rows[:index + 1 + after]


def _short(value) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3g}"
