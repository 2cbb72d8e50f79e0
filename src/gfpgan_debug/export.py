"""Exports of the model a caller hands us: TorchScript (.pt) and ONNX (.onnx), cached under build/.

Nothing here loads weights. The whole story is that a model whose weights were never loaded exports
faithfully, so the export takes whatever model object it is given and hashes that object's state dict.

The picture::

    model ─► DeployModel: forward(input) -> (image, out_rgbs), stored noise
               ├─► torch.jit.script ─► .pt
               ├─► torch.jit.trace ──► .pt (checked on inputs it was not traced with)
               └─► torch.onnx.export ─► .onnx: input ─► image, rgb_8 … rgb_512
                     (dynamo=False: node names are module paths; dynamo=True: module paths in node metadata)
    .onnx ─► expose_outputs(tensors) ─► the same graph with chosen (or all) node outputs as extra graph outputs
    .onnx ─► module_outputs() ─► {module path: ONNX tensor holding that module's output}

Artefacts are cached by a hash of the weights, the model's structure, the export options and the torch
version; each is written to a temporary file and renamed into place under a file lock, with a manifest that
records its SHA-256, so a stale or half-written artefact is never reused.
"""
import ast
import contextlib
import fcntl
import hashlib
import inspect
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from gfpgan_debug.compat import torch_deprecations_silenced
from gfpgan_debug.errors import ArtifactError
from gfpgan_debug.weights import sha256_file

BUILD_DIR = Path(__file__).resolve().parents[2] / "build"
ARTIFACT_DIR = BUILD_DIR / "artifacts"
ONNX_OPSET = 18
CACHE_FORMAT = 1  # bump when the way artefacts are made changes, so older cache entries are not reused


# ---------------------------------------------------------------------------------------------------------
# The deploy wrapper
# ---------------------------------------------------------------------------------------------------------


class DeployModel(nn.Module):
    """``forward(input) -> (image, out_rgbs)`` with the decoder's *stored* noise maps, always.

    Upstream calls GFPGAN with ``randomize_noise=True``: every StyleConv draws fresh Gaussian noise on every
    call. Two runs of the same model on the same face then differ (by the noise strength times N(0, 1) per
    pixel and layer), so a difference between eager PyTorch and an exported artefact cannot be told apart
    from the noise, and "the output hardly changes when the input changes" cannot be measured either.
    With ``randomize_noise=False`` the buffers ``stylegan_decoder.noises.noise0..`` are used, the forward is a
    pure function of (weights, input), and any difference between runtimes is the runtime's. (The legacy ONNX
    exporter also cannot express fresh noise: it bakes float64 ``RandomNormalLike`` nodes ONNX Runtime refuses.)
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input: Tensor) -> Tuple[Tensor, List[Tensor]]:
        return self.model(input, return_rgb=True, randomize_noise=False)


def deploy(model: nn.Module) -> DeployModel:
    """The model in eval mode, wrapped for export (the wrapper adds no weights: keys gain a ``model.`` prefix)."""
    return DeployModel(model.eval()).eval()


def model_size(model: nn.Module) -> int:
    """The side of the square input (and output) the model is built for: 2 ** log_size."""
    return 2 ** int(model.log_size)


def output_names(size: int) -> List[str]:
    """``image`` then one ``rgb_<side>`` per U-Net level, 8x8 up to size x size."""
    return ["image"] + [f"rgb_{2 ** r}" for r in range(3, size.bit_length())]


def example_input(size: int, seed: int = 0, device="cpu") -> Tensor:
    """A fixed random input in the model's range [-1, 1] (its values do not shape the exported graph)."""
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(1, 3, size, size, generator=generator) * 2 - 1).to(device)


# ---------------------------------------------------------------------------------------------------------
# TorchScript
# ---------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def tracing_quietly():
    """torch's deprecation notices (compat's one filter), plus what tracing adds: a TracerWarning that
    ``int(out.size(1) // 2)`` in the SFT split becomes a constant (it is one: the channel count is fixed by the
    weights; ``trace`` checks on fresh inputs, and the ONNX tests compare with eager), and the dynamo exporter's
    progress lines on stdout."""
    with torch_deprecations_silenced(), warnings.catch_warnings(), contextlib.redirect_stdout(None):
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        yield


def script(model: nn.Module) -> torch.jit.ScriptModule:
    """``torch.jit.script`` of the deploy wrapper: the whole control flow is compiled, nothing is traced."""
    with torch_deprecations_silenced():
        return torch.jit.script(deploy(model))


def trace(model: nn.Module, example: Optional[Tensor] = None, check_inputs: int = 2,
          rtol: float = 1e-5, atol: float = 1e-5) -> torch.jit.ScriptModule:
    """``torch.jit.trace`` of the deploy wrapper, checked on inputs it was NOT traced with.

    torch.jit.trace's own check re-runs the trace on the example it recorded, which proves only that the
    recording is repeatable. A trace freezes Python control flow and Python numbers to what the example
    produced, so the check that can fail is: fresh random inputs, traced vs eager. Tolerances: the trace
    executes the same kernels in the same order, so 1e-5 only absorbs float32 reassociation in the JIT.
    """
    wrapper = deploy(model)
    size = model_size(model)
    device = next(model.parameters()).device
    example = example if example is not None else example_input(size, seed=0, device=device)
    with tracing_quietly():
        traced = torch.jit.trace(wrapper, (example,), check_trace=False)
    for seed in range(1, check_inputs + 1):
        fresh = example_input(size, seed=seed, device=device)
        with torch.no_grad():
            expected, got = flatten_outputs(wrapper(fresh)), flatten_outputs(traced(fresh))
        for name, want, have in zip(output_names(size), expected, got):
            if not torch.allclose(have, want, rtol=rtol, atol=atol):
                worst = (have - want).abs().max().item()
                raise ArtifactError(f"torch.jit.trace: output {name} differs from eager on an input it was not "
                                    f"traced with (max |diff| {worst:.3g}); the trace froze input-dependent behaviour")
    return traced


def flatten_outputs(outputs) -> List[Tensor]:
    """(image, [rgb_8, …]) → [image, rgb_8, …], the order of ``output_names``."""
    image, rgbs = outputs
    return [image, *rgbs]


def save_torchscript(model: nn.Module, path, method: str = "script") -> Path:
    """Write ``script(model)`` (or the checked ``trace``) to ``path`` atomically."""
    if method not in ("script", "trace"):
        raise ValueError(f"method must be 'script' or 'trace', got {method!r}")
    module = script(model) if method == "script" else trace(model)
    return write_atomically(Path(path), lambda tmp: module.save(str(tmp)))


# ---------------------------------------------------------------------------------------------------------
# ONNX
# ---------------------------------------------------------------------------------------------------------


def save_onnx(model: nn.Module, path, dynamo: bool = False, opset: int = ONNX_OPSET,
              intermediates: Union[None, str, Sequence[str]] = None) -> Path:
    """The 8-output graph of the post: input ``input`` (1, 3, S, S), outputs ``image``, ``rgb_8`` … ``rgb_S``.

    ``dynamo=False`` is the legacy TorchScript-based exporter the post used; its node names are module paths
    (``/model/conv_body_down.0/conv1/Conv``). ``dynamo=True`` goes through ``torch.export``; its node names are
    flat (``node_conv2d_1``) and the module path is kept in each node's metadata. Batch is fixed at 1:
    modulated convolution folds the batch into conv groups.

    ``intermediates="all"`` also exposes every node output (under its ONNX name) as a graph output: the
    "all intermediates" variant, for a viewer or a full sweep. A list of module paths exposes only those
    modules' outputs (``module_outputs``), which keeps ONNX Runtime's memory to what you look at.
    """
    size = model_size(model)
    wrapper = deploy(model)
    example = example_input(size, device=next(model.parameters()).device)
    names = output_names(size)

    def export(tmp: Path):
        with tracing_quietly():
            kwargs = dict(external_data=False, verbose=False) if dynamo else dict(do_constant_folding=True)
            torch.onnx.export(wrapper, (example,), str(tmp), input_names=["input"], output_names=names,
                              opset_version=opset, dynamo=dynamo, **kwargs)
        if intermediates is not None:
            import onnx

            graph = onnx.load(str(tmp))
            tensors = "all" if intermediates == "all" else module_tensors(graph, intermediates)
            onnx.save(expose_outputs(graph, tensors), str(tmp))

    return write_atomically(Path(path), export)


def load_onnx(path):
    """An ONNX file as a ModelProto, with a clear error for a missing or unreadable file."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: no such ONNX file")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # onnx raises DecodeError, ValueError, … for a damaged file
        raise ArtifactError(f"{path}: not a readable ONNX model ({type(error).__name__}: {error})") from None
    check_names_are_text(model, path)
    check_external_data(model, path)
    try:
        onnx.load_external_data_for_model(model, str(path.parent))
    except Exception as error:  # a missing or short external data file
        raise ArtifactError(f"{path}: its external data cannot be read ({type(error).__name__}: {error})") from None
    return model


def check_names_are_text(model, path: Path) -> None:
    """ONNX is proto2, which does not check UTF-8: a damaged name comes back from protobuf as bytes, not str."""
    graph = model.graph
    fields = [value.name for value in list(graph.input) + list(graph.output) + list(graph.initializer)]
    for node in graph.node:
        fields += [node.name, node.op_type, *node.input, *node.output]
        fields += [text for prop in node.metadata_props for text in (prop.key, prop.value)]
    fields += [entry.value for init in graph.initializer for entry in init.external_data]
    if not all(isinstance(field, str) for field in fields):
        raise ArtifactError(f"{path}: a damaged ONNX file: some names in its graph are not valid UTF-8 text")


def external_locations(graph):
    """(tensor name, location) of every tensor stored outside the .onnx file: initializers and constant
    attributes, in subgraphs too."""
    import onnx

    tensors = list(graph.initializer)
    for node in graph.node:
        for attribute in node.attribute:
            tensors += [attribute.t] + list(attribute.tensors)
            for subgraph in [attribute.g] + list(attribute.graphs):
                yield from external_locations(subgraph)
    for tensor in tensors:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            yield tensor.name, {entry.key: entry.value for entry in tensor.external_data}.get("location", "")


def check_external_data(model, path: Path) -> None:
    """Refuse external data that lies outside the model's folder (``../../etc/passwd``, an absolute path, a
    symlink leading out): loading it would read any file the user can read into the model's weights."""
    folder = path.resolve().parent
    for name, location in external_locations(model.graph):
        target = (folder / location).resolve()  # resolve() follows symlinks: a link out is caught too
        if not location or Path(location).is_absolute() or not target.is_relative_to(folder):
            raise ArtifactError(f"{path}: refused: tensor {name!r} keeps its data in {location!r}, outside the "
                                f"model's folder {folder}; external data must be a file beside the model")


def expose_outputs(onnx_model, tensors: Union[str, Iterable[str]] = "all", typed: bool = True,
                   in_place: bool = False):
    """A copy of the graph whose outputs also include the given node outputs (or every node output: "all").

    ``typed``: shape inference runs first so each new output carries its type and shape (what a viewer such as
    netron shows). ONNX Runtime needs no types on outputs; ``typed=False`` skips the inference, which copies
    every weight (on the full model: 2 s and 1 GB more). ``in_place`` (untyped only): add the outputs to
    ``onnx_model`` itself instead of a copy, for a graph the caller owns. Exposing only the tensors you need
    keeps ONNX Runtime from holding every activation of the full 512x512 model at once.
    """
    import onnx

    if typed:
        inferred = onnx.shape_inference.infer_shapes(onnx_model)
    elif in_place:
        inferred = onnx_model
    else:
        inferred = onnx.ModelProto()
        inferred.CopyFrom(onnx_model)
    graph = inferred.graph
    known = {info.name: info for info in list(graph.value_info) + list(graph.output)}
    produced = [name for node in graph.node for name in node.output if name]
    wanted = produced if tensors == "all" else list(tensors)
    unknown = [name for name in wanted if name not in set(produced)]
    if unknown:
        raise ArtifactError(f"ONNX graph has no node output named {unknown[0]!r} ({len(unknown)} unknown)")
    already = {output.name for output in graph.output}
    for name in wanted:
        if name in already:
            continue
        already.add(name)
        graph.output.append(known[name] if name in known else onnx.helper.make_empty_tensor_value_info(name))
    return inferred


def node_scopes(node, flattened=frozenset()) -> Optional[List[str]]:
    """The modules a node was created in, outermost first, as paths relative to the GFPGAN model
    (``['conv_body_down.0', 'conv_body_down.0.conv1']``; ``[]`` for the model itself); None when the exporter
    recorded nothing. Legacy node names are ``/model/conv_body_down.0/conv1/Conv`` (one component per module);
    dynamo keeps ``pkg.torch.onnx.name_scopes``, a list of the enclosing modules' full paths then the op.
    ``flattened``: legacy scope prefixes whose names cannot be trusted (see ``flattened_scopes``); the chain
    stops above them."""
    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            paths = _scope_list(prop.value)
            if paths is None:  # not the list of strings the exporter writes: no trustworthy scope
                return None
            paths = paths[:-1]  # drop the op's own name
            break
    else:
        if not node.name.startswith("/"):
            return None
        components = node.name.split("/")[1:-1]  # drop the leading '' and the op's own name
        paths, previous = [], ""
        for end, component in enumerate(components, start=1):
            if tuple(components[:end]) in flattened:
                break
            if previous and component.startswith(previous + "."):
                # a Sequential's children come named in full: /model/condition_scale.0/condition_scale.0.0/Conv
                paths.append(paths[-1][: len(paths[-1]) - len(previous)] + component)
            else:
                paths.append(f"{paths[-1]}.{component}" if paths else component)
            previous = component
    if "model" not in paths:  # outside the wrapped model (the wrapper's own ops)
        return None
    return [path[len("model."):] for path in paths if path.startswith("model.")]


def _scope_list(text: str) -> Optional[List[str]]:
    """The dynamo exporter's ``name_scopes`` value, a Python list of strings, or None for anything else
    (``literal_eval`` evaluates literals only, never code)."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        return None
    return value


def flattened_scopes(onnx_model) -> frozenset:
    """Legacy scope prefixes that name no real module.

    The legacy exporter opens a scope when a module is *called*. A module whose ``forward`` is invoked
    directly (arch.py calls the decoder's ``style_convs[i].forward(...)``, a TorchScript interface
    workaround) opens none, so its children land in the parent's scope, and the exporter tells repeated names
    apart with suffixes: ``stylegan_decoder/modulated_conv``, ``modulated_conv_1``, ``modulated_conv/modulation_3``.
    A child name that occurs with such a suffix under the same parent is therefore flattened: it, and all
    below it, is left unmapped rather than mapped to a wrong module.
    """
    children: Dict[tuple, set] = {}
    for node in onnx_model.graph.node:
        if node.name.startswith("/") and not any(p.key == "pkg.torch.onnx.name_scopes" for p in node.metadata_props):
            components = tuple(node.name.split("/")[1:-1])
            for end in range(1, len(components)):
                children.setdefault(components[:end], set()).add(components[end])
    flattened = set()
    for parent, names in children.items():
        for name in names:
            base, _, suffix = name.rpartition("_")
            if (suffix.isdigit() and base in names) or f"{name}_1" in names:
                flattened.add(parent + (name,))
    return frozenset(flattened)


def tensor_scopes(onnx_model) -> Dict[str, str]:
    """Every node output → the innermost module path it was computed in ('' for the model itself)."""
    flattened = flattened_scopes(onnx_model)
    scopes = {}
    for node in onnx_model.graph.node:
        chain = node_scopes(node, flattened)
        if chain is not None:
            for name in node.output:
                scopes[name] = chain[-1] if chain else ""
    return scopes


def module_outputs(onnx_model) -> Dict[str, str]:
    """Module path → the ONNX tensor that is that module's output.

    A module's output is the last value computed inside it: the first output of the last node (graph order
    is topological) created in the module or in one of its children. The model itself is left out: its
    outputs are the graph outputs. Modules folded into constants (``constant_input``, the noise bank) have no
    node, and legacy scopes that were flattened (``flattened_scopes``) no trustworthy name: neither gets an
    entry, and ``coverage`` reports them.
    """
    flattened = flattened_scopes(onnx_model)
    outputs: Dict[str, str] = {}
    for node in onnx_model.graph.node:
        for path in node_scopes(node, flattened) or []:
            if node.output:
                outputs[path] = node.output[0]
    return outputs


def module_tensors(onnx_model, module_paths: Sequence[str]) -> List[str]:
    """The ONNX tensors holding these modules' outputs; a clear error for a module the graph does not map."""
    mapped = module_outputs(onnx_model)
    unmapped = [path for path in module_paths if path not in mapped]
    if unmapped:
        raise ArtifactError(f"the ONNX graph has no tensor for module {unmapped[0]!r} ({len(unmapped)} of "
                            f"{len(module_paths)} unmapped; `coverage` lists what is mapped)")
    return [mapped[path] for path in module_paths]


def coverage(onnx_model, module_paths: Sequence[str]) -> dict:
    """How much of the model the ONNX → module mapping covers: modules (of those given, typically those a
    forward calls) with an output tensor in the graph, and nodes attributed to a module below the model."""
    mapped = module_outputs(onnx_model)
    covered = [path for path in module_paths if path in mapped]
    nodes = list(onnx_model.graph.node)
    flattened = flattened_scopes(onnx_model)
    scoped = sum(bool(node_scopes(node, flattened)) for node in nodes)
    return dict(modules=len(module_paths), modules_covered=len(covered),
                module_fraction=len(covered) / max(len(module_paths), 1),
                missing=[path for path in module_paths if path not in mapped],
                nodes=len(nodes), nodes_scoped=scoped, node_fraction=scoped / max(len(nodes), 1))


# ---------------------------------------------------------------------------------------------------------
# The artefact cache
# ---------------------------------------------------------------------------------------------------------


def state_dict_sha256(model: nn.Module) -> str:
    """SHA-256 over every state-dict entry's name, dtype, shape and bytes, in order."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def structure_sha256(model: nn.Module) -> str:
    """SHA-256 of what the weights do not say: each module's class source and its plain settings
    (``input_is_latent``, ``sft_half``, scale factors, …), so two configs with equal shapes get different keys."""
    digest = hashlib.sha256()
    sources = {}
    for path, module in model.named_modules():
        cls = type(module)
        settings = {k: v for k, v in sorted(vars(module).items())
                    if not k.startswith("_") and isinstance(v, (bool, int, float, str, type(None)))}
        digest.update(f"{path}|{cls.__module__}.{cls.__qualname__}|{settings}\n".encode())
        if cls not in sources:
            try:
                sources[cls] = inspect.getsource(cls)
            except (OSError, TypeError):
                sources[cls] = ""
            digest.update(sources[cls].encode())
    return digest.hexdigest()


def artifact_key(model: nn.Module, options: dict) -> str:
    parts = dict(weights=state_dict_sha256(model), structure=structure_sha256(model), options=options,
                 torch=torch.__version__, format=CACHE_FORMAT)
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def write_atomically(path: Path, write: Callable[[Path], None]) -> Path:
    """Let ``write`` fill a temporary file beside ``path``, then rename it into place (atomic on POSIX): a
    reader sees the old file or the whole new one, never half of it. The temporary file keeps the suffix
    because the ONNX exporter looks at it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


@contextlib.contextmanager
def file_lock(path: Path):
    """An exclusive advisory lock (``flock``) held for the block: a second process waits, then finds the
    artefact the first one wrote."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def manifest_path(artifact: Path) -> Path:
    return artifact.with_name(artifact.name + ".json")


def is_valid(artifact: Path) -> bool:
    """True when the artefact and its manifest exist and the file's SHA-256 is the one recorded."""
    manifest = manifest_path(artifact)
    if not (artifact.is_file() and manifest.is_file()):
        return False
    try:
        recorded = json.loads(manifest.read_text()).get("sha256")
    except (OSError, ValueError):
        return False
    return recorded == sha256_file(artifact)


EXPORTERS = {
    # kind: (file suffix, function(model, path, **options))
    "torchscript": (".pt", lambda model, path, method="script": save_torchscript(model, path, method)),
    "onnx": (".onnx", lambda model, path, dynamo=False, opset=ONNX_OPSET, intermediates=None:
             save_onnx(model, path, dynamo, opset, intermediates)),
}


def export_cached(model: nn.Module, kind: str, cache_dir=None, config: Optional[dict] = None,
                  extra: Optional[dict] = None, **options) -> Path:
    """The artefact of ``kind`` ("torchscript": method="script"|"trace"; "onnx": dynamo=False|True, opset,
    intermediates=None|"all"|[module paths]) for this exact model, made once and reused while weights,
    structure, options and torch stay the same.

    ``config`` and ``extra`` (e.g. the weights file's SHA-256) are recorded in the manifest, not in the key.
    """
    if kind not in EXPORTERS:
        raise ValueError(f"kind must be one of {sorted(EXPORTERS)}, got {kind!r}")
    suffix, exporter = EXPORTERS[kind]
    options = {"kind": kind, **options}
    key = artifact_key(model, options)
    cache_dir = Path(cache_dir or ARTIFACT_DIR)
    label = kind if kind == "torchscript" else ("onnx-dynamo" if options.get("dynamo") else "onnx-legacy")
    if options.get("intermediates") is not None:
        label += "-all" if options["intermediates"] == "all" else "-chosen"
    artifact = cache_dir / f"gfpgan-{label}-{key[:16]}{suffix}"
    with file_lock(cache_dir / f".{artifact.name}.lock"):
        if is_valid(artifact):
            return artifact
        exporter(model, artifact, **{k: v for k, v in options.items() if k != "kind"})
        manifest = dict(artifact=artifact.name, sha256=sha256_file(artifact), key=key, options=options,
                        weights_state_dict_sha256=state_dict_sha256(model), config=config, torch=torch.__version__,
                        outputs=output_names(model_size(model)), **(extra or {}))
        write_atomically(manifest_path(artifact),
                         lambda tmp: tmp.write_text(json.dumps(manifest, indent=2, default=str) + "\n"))
    return artifact


# ---------------------------------------------------------------------------------------------------------
# gfpgan-debug export --weights W --out DIR
# ---------------------------------------------------------------------------------------------------------


def export_bundle(model: nn.Module, out_dir, weights_sha256: Optional[str] = None, config: Optional[dict] = None,
                  dynamo: bool = False) -> Dict[str, Path]:
    """Write ``gfpgan.pt`` (scripted), ``gfpgan.onnx`` (8 outputs) and ``gfpgan.json`` into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    extra = dict(weights_sha256=weights_sha256)
    pt = export_cached(model, "torchscript", config=config, extra=extra, method="script")
    onnx_file = export_cached(model, "onnx", config=config, extra=extra, dynamo=dynamo)
    paths = dict(torchscript=out_dir / "gfpgan.pt", onnx=out_dir / "gfpgan.onnx", manifest=out_dir / "gfpgan.json")
    for source, target in ((pt, paths["torchscript"]), (onnx_file, paths["onnx"])):
        write_atomically(target, lambda tmp, source=source: tmp.write_bytes(source.read_bytes()))
    record = dict(weights_sha256=weights_sha256, weights_state_dict_sha256=state_dict_sha256(model), config=config,
                  options=dict(torchscript="torch.jit.script", onnx=dict(dynamo=dynamo, opset=ONNX_OPSET),
                               randomize_noise=False),
                  files={k: dict(name=p.name, sha256=sha256_file(p)) for k, p in paths.items() if k != "manifest"},
                  outputs=output_names(model_size(model)),
                  input=dict(name="input", shape=[1, 3, model_size(model), model_size(model)]),
                  torch=torch.__version__)
    write_atomically(paths["manifest"], lambda tmp: tmp.write_text(json.dumps(record, indent=2, default=str) + "\n"))
    return paths


def add_cli(verbs) -> None:
    parser = verbs.add_parser("export", help="write the TorchScript .pt, the 8-output .onnx and a JSON record")
    parser.add_argument("--weights", help="checkpoint to load (default: the weights `weights which` picks)")
    parser.add_argument("--out", required=True, help="folder to write gfpgan.pt, gfpgan.onnx, gfpgan.json into")
    parser.add_argument("--dynamo", action="store_true", help="use the torch.export-based ONNX exporter")
    parser.add_argument("--json", nargs="?", const="-", metavar="OUT", help="write the record as JSON")
    parser.set_defaults(func=cli_export)


def cli_export(args) -> int:
    from gfpgan_debug.cli import emit_json
    from gfpgan_debug.weights import choose_weights, model_from_checkpoint

    weights = Path(args.weights) if args.weights else Path(choose_weights(None).path)
    model, report = model_from_checkpoint(weights, strict=True)
    paths = export_bundle(model, args.out, weights_sha256=sha256_file(weights), config=report.config,
                          dynamo=args.dynamo)
    if args.json:
        emit_json(json.loads(paths["manifest"].read_text()), args.json)
    else:
        for kind, path in paths.items():
            print(f"{kind:12s} {path}")
    return 0
