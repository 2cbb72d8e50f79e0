"""One route of the layer-by-layer search, run as a child process (so that its wall time and peak memory are
its own; ``run.py`` starts it under the memory guard).

    python benchmarks/layer_search.py ROUTE --model demo|official --files build/bench --out result.json

Every route answers the same question on the same input: "which layer of the ONNX graph is the first to
differ from eager PyTorch?" by comparing intermediate outputs, and differs only in how it gets them:

library      the library's search, ``runtimes.onnx_first_divergence``: one ONNX Runtime run with one tensor per
             module exposed (``export.module_outputs``), then one eager forward that compares each layer as it
             computes it (``compare.search_first_divergence``), holding neither set of outputs twice.
naive        what one would write by hand with onnx + onnxruntime: every node output of the graph exposed
             (untyped, as a hand-written loop over the nodes adds them) and fetched in one ``session.run``; then
             the eager reference recorded (``compare.trace_execution``) and both walked in execution order
             (``compare.first_divergence``) on the tensors that are module outputs.
polygraphy   the comparison half of Polygraphy's route: read the outputs that
             ``polygraphy run model.onnx --onnxrt --onnx-outputs '*' --save-outputs F`` saved
             (``RunResults.load``), then the same comparison as the naive route. ``run.py`` times the ``polygraphy run`` process
             and this one and adds them.
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ROUTES = ("library", "naive", "polygraphy")


def mapped_modules(graph, model):
    """Module paths that have an output tensor in the ONNX graph, in the model's module order."""
    from gfpgan_debug import export

    outputs_of = export.module_outputs(graph)
    return [path for path, _ in model.named_modules() if path and path in outputs_of], outputs_of


def search(route: str, model_name: str, files: Path, polygraphy_outputs=None) -> dict:
    import numpy as np
    import torch

    from benchmarks.models import build_model
    from gfpgan_debug import compare, export, runtimes

    phases = {}
    start = time.perf_counter()
    model, _ = build_model(model_name)
    paths = json.loads((files / model_name / "files.json").read_text())
    x = torch.from_numpy(np.load(paths["input"]))
    phases["load_model"] = time.perf_counter() - start

    search_start = time.perf_counter()
    if route == "library":
        timings = {}
        search = runtimes.onnx_first_divergence(model, paths["onnx"], x, timings=timings)
        phases.update(candidate=timings["onnxruntime"], reference_and_compare=timings["eager and compare"])
        phases["search"] = time.perf_counter() - search_start
        return dict(route=route, model=model_name, phases=phases, tensors_exposed=len(search.layers) + len(search.missing),
                    tensors_compared=len(search.layers), onnx_nodes=paths["onnx_nodes"],
                    divergence=str(search.divergence) if search.divergence else None)

    graph = export.load_onnx(paths["onnx"])
    modules, outputs_of = mapped_modules(graph, model)
    if route == "naive":
        import onnxruntime as ort

        everything = export.expose_outputs(graph, "all", typed=False, in_place=True)  # as a hand-written loop would
        session = ort.InferenceSession(everything.SerializeToString(), providers=["CPUExecutionProvider"])
        names = [output.name for output in session.get_outputs()]
        values = dict(zip(names, session.run(names, {session.get_inputs()[0].name: x.numpy()})))
        candidate = {path: values[outputs_of[path]] for path in modules}
        exposed = len(names)
        del values, everything, session
    elif route == "polygraphy":
        from polygraphy.comparator import RunResults

        results = RunResults.load(str(polygraphy_outputs))
        _, iterations = list(results.items())[0]
        values = iterations[0]
        candidate = {path: np.asarray(values[outputs_of[path]]) for path in modules if outputs_of[path] in values}
        exposed = len(list(values.keys()))
        del values, iterations, results
    else:
        raise ValueError(f"route must be one of {ROUTES}")
    phases["candidate"] = time.perf_counter() - search_start

    # the peers hold both sets of outputs and compare them afterwards, the usual way
    mark = time.perf_counter()
    trace = compare.trace_execution(model, x, modules=modules, randomize_noise=False)
    phases["reference"] = time.perf_counter() - mark
    mark = time.perf_counter()
    divergence = compare.first_divergence(trace.outputs, candidate, inputs_of=trace.inputs_of)
    phases["compare"] = time.perf_counter() - mark
    phases["search"] = time.perf_counter() - search_start
    compared = sum(1 for name in trace.outputs if name in candidate)
    return dict(route=route, model=model_name, phases=phases, tensors_exposed=exposed, tensors_compared=compared,
                onnx_nodes=paths["onnx_nodes"], divergence=str(divergence) if divergence else None)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("route", choices=ROUTES)
    parser.add_argument("--model", required=True)
    parser.add_argument("--files", required=True, help="the folder run.py prepared (has <model>/files.json)")
    parser.add_argument("--polygraphy-outputs", help="the JSON `polygraphy run --save-outputs` wrote")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    result = search(args.route, args.model, Path(args.files), args.polygraphy_outputs)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result["phases"]))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    sys.exit(main())
