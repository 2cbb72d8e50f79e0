"""Fuzzing with hypothesis: random bytes and random structures into the checkpoint loader, the image reader and
the ONNX → module-path mapper give a result or one of the documented errors (a ``GfpganDebugError``
subclass), never another exception, a crash or a hang.

``deadline=None``: the machines this runs on are shared, so one slow example is not a failure; a modest
``max_examples`` keeps the whole file to under a minute (FUZZ_EXAMPLES=1000 for a deeper run). Failures
print a reproducible example.
"""
import io
import os
import tempfile
import zipfile
from pathlib import Path
from unittest import mock

import cv2
import numpy as np
import onnx
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gfpgan_debug import export, images, runtimes
from gfpgan_debug import weights as W
from gfpgan_debug.arch import GFPGANv1Clean
from gfpgan_debug.errors import ArtifactError, CheckpointError, ImageError

FUZZ = settings(deadline=None, max_examples=int(os.environ.get("FUZZ_EXAMPLES", 60)), suppress_health_check=[HealthCheck.too_slow])
TINY = dict(out_size=64, num_style_feat=64, channel_multiplier=1, narrow=0.125, different_w=True, sft_half=True)


@pytest.fixture(scope="module")
def folder():
    with tempfile.TemporaryDirectory(prefix="fuzz-") as name:
        yield Path(name)


def flip(data: bytes, edits, cut=None) -> bytes:
    """``data`` with (position fraction, new byte) edits applied, then cut to the fraction ``cut`` if given."""
    out = bytearray(data)
    for where, value in edits:
        out[int(where * (len(out) - 1))] = value
    return bytes(out if cut is None else out[: int(cut * len(out))])


edits = st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), min_size=1, max_size=8)


# ---------------------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------------------


def load_or_refuse(path):
    """load_checkpoint's only outcomes: a dict of str -> Tensor, or CheckpointError naming the file."""
    try:
        state = W.load_checkpoint(path)
    except CheckpointError as error:
        assert str(error).startswith(f"{path}: "), str(error)
        return None
    assert isinstance(state, dict) and state
    assert all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())
    return state


@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes_into_the_checkpoint_loader(folder, data):
    path = folder / "random.pth"
    path.write_bytes(data)
    assert load_or_refuse(path) is None  # random bytes are never a checkpoint


@pytest.fixture(scope="module")
def small_checkpoint_bytes():
    buffer = io.BytesIO()
    torch.save({"params_ema": {"conv.weight": torch.arange(24.0).reshape(2, 3, 2, 2), "conv.bias": torch.ones(2)},
                "iter": 3}, buffer)
    return buffer.getvalue()


@FUZZ
@given(edits=edits, cut=st.one_of(st.none(), st.floats(0, 1)))
def test_a_damaged_torch_zip_is_loaded_or_refused(folder, small_checkpoint_bytes, edits, cut):
    data = flip(small_checkpoint_bytes, edits, cut)
    path = folder / "damaged.pth"
    path.write_bytes(data)
    load_or_refuse(path)


leaves = st.one_of(st.none(), st.booleans(), st.integers(-10, 10), st.floats(allow_nan=True), st.text(max_size=8),
                   st.builds(lambda shape: torch.zeros(shape), st.lists(st.integers(0, 3), max_size=3)))
keys = st.one_of(st.sampled_from(["params_ema", "params", "module.conv.weight", "conv.weight", "state_dict"]),
                 st.text(max_size=10), st.integers(-3, 3))
structures = st.recursive(leaves, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                          st.dictionaries(keys, inner, max_size=5)), max_leaves=20)


@FUZZ
@given(structures)
def test_random_structures_into_state_dict_from(obj):
    try:
        state = W.state_dict_from(obj, "fuzzed")
    except CheckpointError as error:
        assert str(error).startswith("fuzzed: ")
        return
    assert state and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())


@FUZZ
@given(structures)
def test_random_structures_saved_and_loaded_back(folder, obj):
    path = folder / "structure.pth"
    torch.save(obj, path)
    load_or_refuse(path)


@pytest.fixture(scope="module")
def tiny_shapes():
    return {k: tuple(v.shape) for k, v in GFPGANv1Clean(**TINY).state_dict().items()}


@FUZZ
@given(data=st.data())
def test_random_shapes_for_the_required_keys_give_a_config_or_a_checkpoint_error(tiny_shapes, data):
    """infer_config reads shapes by position: any tensor under a required name must be handled."""
    state = {k: torch.empty(s) for k, s in tiny_shapes.items()}
    for key in data.draw(st.lists(st.sampled_from(sorted(W.REQUIRED_KEYS) + sorted(tiny_shapes)[:40]),
                                  min_size=1, max_size=4)):
        state[key] = torch.empty(data.draw(st.lists(st.integers(0, 5), max_size=5)))
    try:
        config = W.infer_config(state, "fuzzed")
    except CheckpointError as error:
        assert str(error).startswith("fuzzed: ")
        return
    assert W.shape_disagreements(config, {k: tuple(v.shape) for k, v in state.items()}) == []


# ---------------------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------------------


def read_or_refuse(path):
    try:
        image = images.read_image(path)
    except ImageError as error:
        assert str(error).startswith(f"{path}: "), str(error)
        return None
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3 and min(image.shape[:2]) >= 2
    assert image.shape[0] * image.shape[1] <= images.MAX_PIXELS
    return image


@FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes_into_the_image_reader(folder, data):
    path = folder / "random.png"
    path.write_bytes(data)
    read_or_refuse(path)


@pytest.fixture(scope="module")
def encoded_images():
    rng = np.random.default_rng(0)
    picture = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    return {ext: cv2.imencode(ext, picture)[1].tobytes() for ext in (".png", ".jpg", ".bmp", ".tiff", ".webp")}


@FUZZ
@given(ext=st.sampled_from([".png", ".jpg", ".bmp", ".tiff", ".webp"]), edits=edits,
       cut=st.one_of(st.none(), st.floats(0, 1)))
def test_damaged_images_of_every_format_are_read_or_refused(folder, encoded_images, ext, edits, cut):
    """Headers included: an edited size field may claim up to 2**32 pixels a side. MAX_PIXELS is lowered to a
    million for the run so an accepted claim costs milliseconds, not seconds."""
    data = flip(encoded_images[ext], edits)
    if cut is not None:
        data = data[: max(int(cut * len(data)), 1)]
    path = folder / f"damaged{ext}"
    path.write_bytes(data)
    with mock.patch.object(images, "MAX_PIXELS", 1_000_000):
        read_or_refuse(path)


# ---------------------------------------------------------------------------------------------------------
# ONNX: the loader and the ONNX → module-path mapper
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def onnx_bytes(folder):
    """A legacy export of a tiny model: node names are module paths, what the mapper parses."""
    model = W.fill_weights_(GFPGANv1Clean(**TINY).eval())
    return Blob(export.save_onnx(model, folder / "tiny.onnx").read_bytes())


class Blob(bytes):
    """Bytes that hypothesis reports by size, not by an 11 MB repr, when it prints a failing example."""

    def __repr__(self):
        return f"<{len(self):,} bytes>"


def map_or_refuse(path):
    try:
        graph = export.load_onnx(path)
    except ArtifactError as error:
        assert str(error).startswith(f"{path}: "), str(error)
        return
    mapping = export.module_outputs(graph)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in mapping.items())
    export.tensor_scopes(graph)
    try:
        runtimes.check_onnx_interface(graph, path, 64)
    except ArtifactError as error:
        assert str(error).startswith(f"{path}: "), str(error)


@FUZZ
@given(edits=edits, cut=st.one_of(st.none(), st.floats(0, 1)))
def test_damaged_onnx_bytes_are_mapped_or_refused(folder, onnx_bytes, edits, cut):
    data = flip(onnx_bytes, edits, cut)
    path = folder / "damaged.onnx"
    path.write_bytes(data)
    map_or_refuse(path)


names = st.one_of(st.text(max_size=30), st.lists(st.sampled_from(["", "model", "conv_body_down.0", "conv1", "Conv",
                                                                   "modulated_conv_1", "x.y", ".", "/"]),
                                                 max_size=6).map("/".join))
scopes = st.one_of(st.text(max_size=40), st.lists(st.text(max_size=12), max_size=4).map(repr),
                   st.sampled_from(["['model', 'model.conv_body_first', 'Conv']", "[", "None", "{1: 2}", "1e999"]))


@FUZZ
@given(node_names=st.lists(names, min_size=1, max_size=12), metadata=st.lists(st.one_of(st.none(), scopes),
                                                                              max_size=12))
def test_random_node_names_and_scope_metadata_into_the_mapper(node_names, metadata):
    """Any names and any ``pkg.torch.onnx.name_scopes`` text (a Python literal the dynamo exporter writes)."""
    nodes = []
    for i, name in enumerate(node_names):
        node = onnx.helper.make_node("Relu", [f"t{i}"], [f"t{i + 1}"], name=name)
        if i < len(metadata) and metadata[i] is not None:
            prop = node.metadata_props.add()
            prop.key, prop.value = "pkg.torch.onnx.name_scopes", metadata[i]
        nodes.append(node)
    graph = onnx.helper.make_graph(nodes, "fuzzed", [], [])
    model = onnx.helper.make_model(graph)
    mapping = export.module_outputs(model)
    assert all(isinstance(k, str) and v.startswith("t") for k, v in mapping.items())
    export.coverage(model, ["conv_body_first"])


def test_a_zip_of_random_members_is_refused_as_a_checkpoint(folder):
    """Not hypothesis: one fixed zip whose members have torch's names but random contents."""
    path = folder / "fake.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", b"\x80\x02}q\x00X\x01")
        archive.writestr("archive/version", b"3\n")
    assert load_or_refuse(path) is None
