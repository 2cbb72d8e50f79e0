"""One interface to the four runtimes the story touches: ``run(runtime, artifact, inputs)``.

=============  =============================================  ===========================================
runtime        artifact                                       intermediates (module-path names)
=============  =============================================  ===========================================
eager          the nn.Module itself (GFPGANv1Clean)           any module, via forward hooks
torchscript    a .pt file (or a loaded ScriptModule)          none: the scripted graph has no hooks
libtorch       a .pt file, run by the compiled C++ program    none
onnxruntime    a .onnx file (or an onnx.ModelProto)           any module the ONNX graph maps back to
=============  =============================================  ===========================================

Every runtime returns the same thing: an ordered ``{name: np.ndarray}``, ``image``, ``rgb_8`` … ``rgb_<S>``,
then any intermediates under their PyTorch module paths (``conv_body_up.0.conv2``). An ONNX file saved with
extra outputs (``export.save_onnx(..., intermediates=...)``) gives them back too: module outputs under their
paths, any other tensor as ``onnx:<tensor name>``.

Frames: ``inputs`` is one (1, 3, S, S) tensor/array, an (N, 3, S, S) array, or a sequence of (1, 3, S, S)
frames. The model's batch is fixed at 1, so frames run one after another (the LibTorch runner does them all
in one process, like a camera loop), and every output comes back with the frame index on axis 0: N frames
in, arrays of shape (N, C, h, w) out; a single input gives (1, C, h, w), exactly as the model returns it.

The forward always uses the stored noise (``randomize_noise=False``, see ``export.DeployModel``).
"""
import copy
import time
from collections import OrderedDict
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Union

import numpy as np
import torch
from torch import nn

from gfpgan_debug import export
from gfpgan_debug.compat import torch_deprecations_silenced
from gfpgan_debug.errors import ArtifactError, GfpganDebugError

RUNTIMES = ("eager", "torchscript", "libtorch", "onnxruntime")
Intermediates = Union[None, str, Iterable[str]]


def run(runtime: str, artifact, inputs, device: str = "cpu", intermediates: Intermediates = None,
        timings: Optional[list] = None) -> Dict[str, np.ndarray]:
    """Run ``artifact`` in ``runtime`` on ``inputs``; see the module docstring for names and shapes.

    ``intermediates``: None, "all" (every module the runtime can report) or module paths. ``timings``: a list
    that receives each frame's forward time in seconds (for LibTorch measured inside the C++ program, so it
    excludes process start and model load).
    """
    if runtime not in RUNNERS:
        raise GfpganDebugError(f"unknown runtime {runtime!r}: choose one of {', '.join(RUNTIMES)}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise GfpganDebugError(f"device {device!r} asked for, but torch sees no CUDA device on this machine")
    frames = as_frames(inputs)
    per_frame, seconds = RUNNERS[runtime](artifact, frames, device, intermediates)
    if timings is not None:
        timings.extend(seconds)
    return stack(per_frame)


def as_frames(inputs) -> List[np.ndarray]:
    """Inputs as a list of float32 (1, 3, S, S) arrays."""
    if isinstance(inputs, (torch.Tensor, np.ndarray)):
        batch = to_numpy(inputs)
        if batch.ndim == 3:
            batch = batch[None]
        frames = [batch[i:i + 1] for i in range(batch.shape[0])]
    else:
        frames = [to_numpy(frame) for frame in inputs]
        frames = [frame[None] if frame.ndim == 3 else frame for frame in frames]
    if not frames:
        raise GfpganDebugError("no input frames given")
    for frame in frames:
        if frame.ndim != 4 or frame.shape[:2] != (1, 3) or frame.shape[2] != frame.shape[3]:
            raise GfpganDebugError(f"each frame must be a (1, 3, S, S) tensor, got shape {tuple(frame.shape)}")
    return [np.ascontiguousarray(frame, dtype=np.float32) for frame in frames]


def to_numpy(value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", torch.float32).numpy()
    return np.asarray(value, dtype=np.float32)


def stack(per_frame: List[Dict[str, np.ndarray]]) -> Dict[str, np.ndarray]:
    """[{name: (1, …)}, …] → {name: (N, …)}, in the first frame's order."""
    if len(per_frame) == 1:  # one frame: already (1, …); no copy (the full model's layer outputs are ~1 GB)
        return per_frame[0]
    names = list(per_frame[0])
    return OrderedDict((name, np.concatenate([frame[name] for frame in per_frame], axis=0)) for name in names)


def named_outputs(outputs) -> "OrderedDict[str, np.ndarray]":
    """(image, [rgb, …]) → {'image': …, 'rgb_8': …, …}, each rgb named by its side."""
    image, rgbs = outputs
    named = OrderedDict(image=to_numpy(image))
    for rgb in rgbs:
        named[f"rgb_{rgb.shape[-1]}"] = to_numpy(rgb)
    return named


# ---------------------------------------------------------------------------------------------------------
# eager: the nn.Module, with forward hooks for intermediates
# ---------------------------------------------------------------------------------------------------------


def module_paths(model: nn.Module, wanted: Intermediates) -> List[str]:
    modules = dict(model.named_modules())
    if wanted is None:
        return []
    paths = [path for path in modules if path] if wanted == "all" else list(wanted)
    unknown = [path for path in paths if path not in modules]
    if unknown:
        raise GfpganDebugError(f"the model has no module {unknown[0]!r} (module paths look like "
                               f"'conv_body_up.0.conv2')")
    return paths


def run_eager(model, frames, device, intermediates):
    model = model.model if isinstance(model, export.DeployModel) else model
    if not isinstance(model, nn.Module):
        raise ArtifactError(f"eager runs an nn.Module, got {type(model).__name__}")
    if next(model.parameters()).device.type != torch.device(device).type:
        model = copy.deepcopy(model).to(device)  # leave the caller's model where it is
    model.eval()
    captured: Dict[str, np.ndarray] = OrderedDict()

    def hook_for(path):
        def hook(module, args, output):
            if isinstance(output, torch.Tensor):  # clone now: some outputs are changed in place later (leaky_relu_)
                captured[path] = output.detach().to("cpu", torch.float32).clone().numpy()
        return hook

    requested = module_paths(model, intermediates)
    handles = [model.get_submodule(path).register_forward_hook(hook_for(path)) for path in requested]
    results, seconds = [], []
    try:
        for frame in frames:
            captured.clear()
            x = torch.from_numpy(frame).to(device)
            with torch.inference_mode():
                start = time.perf_counter()
                outputs = model(x, return_rgb=True, randomize_noise=False)
                named = named_outputs(outputs)  # to_numpy copies to the CPU, which waits for a GPU
                seconds.append(time.perf_counter() - start)
            silent = [path for path in requested if path not in captured] if intermediates != "all" else []
            if silent:
                raise GfpganDebugError(f"module {silent[0]!r} gave no tensor output: it was not called through "
                                       f"__call__ (forward hooks only see those) or returns no tensor")
            named.update(captured)
            results.append(named)
    finally:
        for handle in handles:
            handle.remove()
    return results, seconds


# ---------------------------------------------------------------------------------------------------------
# torchscript: torch.jit.load in Python
# ---------------------------------------------------------------------------------------------------------


DEPLOY_SIGNATURE = "forward(Tensor input) -> (Tensor, List[Tensor])"


def load_torchscript(artifact, device: str = "cpu"):
    """A TorchScript file (or module) whose forward has the deploy signature, ``DEPLOY_SIGNATURE``."""
    if isinstance(artifact, torch.jit.ScriptModule):
        return check_signature(artifact.to(device), "the module")
    path = Path(artifact)
    if not path.is_file():
        raise ArtifactError(f"{path}: no such TorchScript file")
    try:
        with torch_deprecations_silenced():
            module = torch.jit.load(str(path), map_location=device).eval()
    except Exception as error:  # RuntimeError for most damage; a torch.save checkpoint lacks constants.pkl
        first = (str(error).splitlines() or [""])[0].split(". ")[0][:160]
        raise ArtifactError(f"{path}: not a loadable TorchScript file ({first}); a torch.save checkpoint is "
                            f"not TorchScript: export it with `gfpgan-debug export`") from None
    return check_signature(module, path)


def check_signature(module, source):
    """Refuse, before running anything, a module whose forward takes other inputs or returns something else
    than the deploy wrapper's (image, [rgb_8, ...]): TorchScript would otherwise fail deep inside the call."""
    forward = getattr(module, "forward", None)
    schema = getattr(forward, "schema", None)
    if schema is None:
        raise ArtifactError(f"{source}: the TorchScript module has no compiled forward method")
    required = [a for a in schema.arguments[1:] if not a.has_default_value()]
    returns = [str(r.type) for r in schema.returns]
    if len(required) != 1 or str(required[0].type) != "Tensor" or returns != ["Tuple[Tensor, List[Tensor]]"]:
        shown = ", ".join(f"{a.type} {a.name}" for a in schema.arguments[1:])
        raise ArtifactError(f"{source}: its forward is forward({shown}) -> {', '.join(returns)}; this tool runs "
                            f"the deploy wrapper, {DEPLOY_SIGNATURE} (export it with `gfpgan-debug export`)")
    return module


def no_intermediates(runtime: str, intermediates: Intermediates) -> None:
    if intermediates:
        raise GfpganDebugError(f"{runtime} cannot report intermediate outputs (a scripted module has no forward "
                               f"hooks); use eager or onnxruntime for those")


def run_torchscript(artifact, frames, device, intermediates):
    no_intermediates("torchscript", intermediates)
    module = load_torchscript(artifact, device)
    source = artifact if isinstance(artifact, (str, Path)) else "the TorchScript module"
    results, seconds = [], []
    for frame in frames:
        with torch.inference_mode():
            start = time.perf_counter()
            try:
                outputs = module(torch.from_numpy(frame).to(device))
            except RuntimeError as error:  # e.g. an input size the module was not built for
                first = (str(error).splitlines() or [""])[0][:200]
                raise ArtifactError(f"{source}: forward failed on a {tuple(frame.shape)} input ({first})") from None
            named = named_outputs(outputs)
            seconds.append(time.perf_counter() - start)
        results.append(named)
    return results, seconds


# ---------------------------------------------------------------------------------------------------------
# libtorch: the compiled C++ program, all frames in one process
# ---------------------------------------------------------------------------------------------------------


def run_libtorch(artifact, frames, device, intermediates):
    from gfpgan_debug.libtorch import run_runner

    no_intermediates("libtorch", intermediates)
    if not isinstance(artifact, (str, Path)):
        raise ArtifactError("libtorch runs a TorchScript file: pass the path of the .pt")
    return run_runner(Path(artifact), frames, device=device, size=frames[0].shape[-1])


# ---------------------------------------------------------------------------------------------------------
# onnxruntime
# ---------------------------------------------------------------------------------------------------------


def providers_for(device: str) -> List[str]:
    import onnxruntime as ort

    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise GfpganDebugError("onnxruntime on cuda: this onnxruntime build has no CUDAExecutionProvider "
                                   "(install onnxruntime-gpu)")
        return ["CUDAExecutionProvider"]
    raise GfpganDebugError(f"unknown device {device!r}: use 'cpu' or 'cuda'")


def onnx_inputs(graph):
    """The graph's real inputs: older exporters also list every initializer as an input."""
    initializers = {init.name for init in graph.graph.initializer}
    return [value for value in graph.graph.input if value.name not in initializers]


def onnx_input_shape(graph, source) -> list:
    """The shape of the one input named ``input`` (0 or a name for a dynamic dimension)."""
    inputs = onnx_inputs(graph)
    if [value.name for value in inputs] != ["input"]:
        raise ArtifactError(f"{source}: the graph's inputs are {[value.name for value in inputs]}; this tool runs "
                            f"graphs with one input named 'input' of shape (1, 3, S, S), as `gfpgan-debug export` "
                            f"writes them")
    dims = inputs[0].type.tensor_type.shape.dim
    return [d.dim_value or d.dim_param or 0 for d in dims]


def check_onnx_interface(graph, source, size: int) -> None:
    """One input 'input' of shape (1, 3, size, size) and an output 'image', or a clear error before ORT runs."""
    shape = onnx_input_shape(graph, source)
    fixed = [d if isinstance(d, int) and d else None for d in shape]
    if len(shape) != 4 or any(f is not None and f != w for f, w in zip(fixed, (1, 3, size, size))):
        raise ArtifactError(f"{source}: input 'input' has shape {shape}; these frames are (1, 3, {size}, {size})")
    if "image" not in [output.name for output in graph.graph.output]:
        raise ArtifactError(f"{source}: the graph has no output named 'image' (its outputs: "
                            f"{[output.name for output in graph.graph.output][:8]})")


def release_freed_memory() -> None:
    """Hand memory freed by the C++ libraries back to the system (glibc's ``malloc_trim``). Reading and
    serialising the full model's graph leaves a few hundred MB of freed protobuf blocks inside the heap, which
    would otherwise count towards the peak when ONNX Runtime then allocates its outputs. No-op off glibc."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        ctypes.CDLL(name).malloc_trim(0)
    except (OSError, AttributeError, TypeError):  # not glibc (musl, macOS): nothing to trim
        pass


def run_onnxruntime(artifact, frames, device, intermediates):
    import onnx
    import onnxruntime as ort

    read_here = not isinstance(artifact, onnx.ModelProto)  # a caller's ModelProto is never changed
    graph = export.load_onnx(artifact) if read_here else artifact
    source = artifact if read_here else "the graph"
    check_onnx_interface(graph, source, frames[0].shape[-1])
    outputs_of = export.module_outputs(graph)  # module path → ONNX tensor
    options = ort.SessionOptions()
    if intermediates is not None:
        paths = list(outputs_of) if intermediates == "all" else list(intermediates)
        tensors = sorted(set(export.module_tensors(graph, paths)))
        # untyped outputs (ORT needs no types: no shape inference, no copy of the weights), added in place to a
        # graph read here; and no memory arena: every exposed output lives to the end of the run anyway, and the
        # arena would keep its high-water mark afterwards. Full model: 2 s and about 1.5 GB less.
        graph = export.expose_outputs(graph, tensors, typed=False, in_place=read_here)
        options.enable_cpu_mem_arena = False
    else:
        paths = []
    serialized = graph.SerializeToString()
    del graph  # a graph read from a file: its weights go before the session makes its own copy
    try:
        session = ort.InferenceSession(serialized, options, providers=providers_for(device))
    except Exception as error:  # onnxruntime raises its own Fail/InvalidGraph types
        raise ArtifactError(f"onnxruntime cannot load {source}: {str(error).splitlines()[0]}") from None
    del serialized
    release_freed_memory()
    if device.startswith("cuda") and "CUDAExecutionProvider" not in session.get_providers():
        raise GfpganDebugError("onnxruntime fell back to the CPU: the CUDA provider did not load")

    output_names = [output.name for output in session.get_outputs()]
    paths_of: Dict[str, List[str]] = {}  # ONNX tensor → the module paths whose output it is
    for path, tensor in outputs_of.items():
        paths_of.setdefault(tensor, []).append(path)
    input_name = session.get_inputs()[0].name
    results, seconds = [], []
    for frame in frames:
        start = time.perf_counter()
        values = dict(zip(output_names, session.run(output_names, {input_name: frame})))
        seconds.append(time.perf_counter() - start)
        named = OrderedDict((name, values[name]) for name in export.output_names(frame.shape[-1]) if name in values)
        if intermediates is not None:
            named.update((path, values[outputs_of[path]]) for path in paths)
        else:  # a graph saved with extra outputs: module outputs by path, the rest as onnx:<tensor name>
            for name in output_names:
                if name not in named:
                    for path in paths_of.get(name, [f"onnx:{name}"]):
                        named[path] = values[name]
        results.append(named)
    return results, seconds


def onnx_first_divergence(model: nn.Module, artifact, x, tolerances=None, timings: Optional[dict] = None
                          ) -> "compare.LayerSearch":
    """The library's first-divergence search of an ONNX graph against the eager ``model``, on input ``x``.

    One ONNX Runtime run with every module output the graph maps back to exposed (``intermediates="all"``),
    then one eager forward that compares each of those layers as it computes it and drops both copies
    (``compare.search_first_divergence``). Cost on the full 512x512 model: about one plain forward of each
    runtime; memory: the exposed outputs once (about 0.8 GB), not twice plus every node output.
    ``timings``: a dict that receives the seconds of each half (``onnxruntime``, ``eager and compare``).
    """
    from gfpgan_debug import compare

    start = time.perf_counter()
    candidate = run("onnxruntime", artifact, x, intermediates="all")
    middle = time.perf_counter()
    modules = [path for path, _ in model.named_modules() if path and path in candidate]
    search = compare.search_first_divergence(model, torch.as_tensor(x), candidate=candidate, modules=modules,
                                             tolerances=tolerances, randomize_noise=False)
    if timings is not None:
        timings.update({"onnxruntime": middle - start, "eager and compare": time.perf_counter() - middle})
    return search


RUNNERS = dict(eager=run_eager, torchscript=run_torchscript, libtorch=run_libtorch, onnxruntime=run_onnxruntime)


# ---------------------------------------------------------------------------------------------------------
# gfpgan-debug run --runtime R --artifact A --image IMG --out OUT.png
# ---------------------------------------------------------------------------------------------------------


def add_cli(verbs) -> None:
    parser = verbs.add_parser("run", help="run an exported model on one face image in one of the four runtimes")
    parser.add_argument("--runtime", required=True, choices=RUNTIMES)
    parser.add_argument("--artifact", help="the .pt (torchscript, libtorch) or .onnx (onnxruntime); for eager, "
                                           "a checkpoint (default: the weights `weights which` picks)")
    parser.add_argument("--image", required=True, help="a face image (resized to the model's size)")
    parser.add_argument("--out", required=True, help="where to write the restored face (PNG, JPEG, …)")
    parser.add_argument("--device", default="cpu")
    parser.set_defaults(func=cli_run)


def cli_run(args) -> int:
    from gfpgan_debug.images import postprocess, preprocess, read_image, write_image

    if args.runtime == "eager":
        from gfpgan_debug.weights import choose_weights, model_from_checkpoint

        artifact, _ = model_from_checkpoint(args.artifact or choose_weights(None).path, strict=True)
        size = export.model_size(artifact)
    else:
        if not args.artifact:
            raise GfpganDebugError(f"--artifact is required for runtime {args.runtime}")
        artifact = args.artifact
        size = artifact_size(args.runtime, artifact)
    seconds = []
    outputs = run(args.runtime, artifact, preprocess(read_image(args.image), size), device=args.device,
                  timings=seconds)
    path = write_image(args.out, postprocess(torch.from_numpy(outputs["image"])))
    print(f"{path} ({args.runtime}, forward {seconds[0] * 1000:.0f} ms)")
    return 0


def artifact_size(runtime: str, artifact) -> int:
    """The input side an artefact expects: the ONNX input shape, or the .pt's (DeployModel's) log_size."""
    if runtime == "onnxruntime":
        shape = onnx_input_shape(export.load_onnx(artifact), artifact)
        if len(shape) != 4 or not isinstance(shape[-1], int) or not shape[-1]:
            raise ArtifactError(f"{artifact}: input 'input' has shape {shape}, not (1, 3, S, S) with a fixed S")
        return shape[-1]
    module = load_torchscript(artifact)
    if not hasattr(module, "model") or not hasattr(module.model, "log_size"):
        raise ArtifactError(f"{artifact}: not an export of this project's model (no model.log_size to say its "
                            f"input size)")
    return 2 ** int(module.model.log_size)
