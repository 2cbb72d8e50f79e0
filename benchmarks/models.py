"""The two models every benchmark runs, and the files the child processes share.

``demo``:     the project's demo weights (data/weights/gfpgan_demo.pth; 1.9 M parameters, narrow 0.125).
``official``: the official GFPGANv1Clean 512 configuration (86 M parameters) with ``weights.fill_weights_``
              (seeded values, not the released checkpoint, which cannot be downloaded here; timings and memory
              depend on the shapes only).

``prepare`` writes, once per model, under ``out_dir/<name>/``: a strict-loadable checkpoint (+ JSON card) for
the official model, the TorchScript (scripted and traced) and ONNX exports (from the artefact cache), the face input as .npy, and
the same input as a Polygraphy ``--load-inputs`` JSON; ``files.json`` lists them for the child processes.
"""
import json
from pathlib import Path

import numpy as np
import torch

from gfpgan_debug import export
from gfpgan_debug.arch import OFFICIAL_CONFIG, GFPGANv1Clean
from gfpgan_debug.images import FACE_PATH, preprocess, read_image
from gfpgan_debug.weights import DEMO_WEIGHTS, fill_weights_, model_from_checkpoint

MODELS = ("demo", "official")


def build_model(name: str):
    """(model in eval mode, its constructor config)."""
    if name == "demo":
        model, report = model_from_checkpoint(DEMO_WEIGHTS, strict=True)
        return model, report.config
    if name == "official":
        torch.manual_seed(0)
        model = fill_weights_(GFPGANv1Clean(**OFFICIAL_CONFIG), seed=0)
        return model.eval(), dict(OFFICIAL_CONFIG)
    raise ValueError(f"model must be one of {MODELS}, got {name!r}")


def face_input(size: int = 512) -> torch.Tensor:
    return preprocess(read_image(FACE_PATH), size)


def prepare(name: str, out_dir) -> dict:
    """Write (or reuse) the files for model ``name``; returns their paths as strings."""
    folder = Path(out_dir).resolve() / name
    folder.mkdir(parents=True, exist_ok=True)
    model, config = build_model(name)
    paths = dict(model=name, config=config, parameters=sum(p.numel() for p in model.parameters()))
    if name == "demo":
        paths["checkpoint"] = str(DEMO_WEIGHTS)
    else:
        checkpoint = folder / "official_filled.pth"
        if not checkpoint.is_file():
            torch.save({"params_ema": model.state_dict()}, checkpoint)
            checkpoint.with_suffix(".json").write_text(json.dumps(dict(config=config, what="fill_weights_(seed=0)")))
        paths["checkpoint"] = str(checkpoint)
    paths["torchscript"] = str(export.export_cached(model, "torchscript", config=config, method="script"))
    paths["torchscript_trace"] = str(export.export_cached(model, "torchscript", config=config, method="trace"))
    paths["onnx"] = str(export.export_cached(model, "onnx", config=config, dynamo=False))
    paths["onnx_nodes"] = len(export.load_onnx(paths["onnx"]).graph.node)  # counted here, outside any timed route
    x = face_input(export.model_size(model)).numpy()
    np.save(folder / "input.npy", x)
    paths["input"] = str(folder / "input.npy")
    try:
        from polygraphy.json import save_json

        save_json([{"input": x}], str(folder / "polygraphy_inputs.json"))  # one iteration, one feed dict
        paths["polygraphy_inputs"] = str(folder / "polygraphy_inputs.json")
    except ImportError:
        paths["polygraphy_inputs"] = None
    (folder / "files.json").write_text(json.dumps(paths, indent=2))
    return paths


def prepare_broken(out_dir) -> str:
    """The post's bug at full size: the official model loaded as the post did (the whole checkpoint dict,
    ``strict=False``: nothing loaded), exported with ``torch.jit.script``; returns the .pt path."""
    from gfpgan_debug.story import broken_model

    folder = Path(out_dir).resolve() / "official"
    files = json.loads((folder / "files.json").read_text())
    broken, _ = broken_model(files["checkpoint"], mode="whole_dict")
    files["broken_torchscript"] = str(export.export_cached(broken, "torchscript", config=files["config"],
                                                           method="script"))
    (folder / "files.json").write_text(json.dumps(files, indent=2))
    return files["broken_torchscript"]


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="write the files the benchmarks of one model share")
    parser.add_argument("--model", required=True, choices=MODELS)
    parser.add_argument("--files", required=True)
    args = parser.parse_args()
    prepare(args.model, args.files)
    if args.model == "official":
        prepare_broken(args.files)
