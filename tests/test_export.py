"""Exports: the deploy wrapper, TorchScript (script and checked trace), ONNX (both exporters, exposed
intermediates, the ONNX → module-path mapping), the artefact cache and ``gfpgan-debug export``."""
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import onnx
import pytest
import torch

from gfpgan_debug import export, runtimes
from gfpgan_debug.arch import GFPGANv1Clean
from gfpgan_debug.cli import main as cli_main
from gfpgan_debug.errors import ArtifactError
from gfpgan_debug.weights import fill_weights_

# out_size 64 keeps every ONNX export here under a few seconds; the 512 checks live in test_runtimes.py
TINY = dict(out_size=64, channel_multiplier=1, narrow=0.125, num_style_feat=64, input_is_latent=True,
            different_w=True, sft_half=True, fix_decoder=False)


def tiny_model(seed=0, **overrides):
    return fill_weights_(GFPGANv1Clean(**{**TINY, **overrides}).eval(), seed=seed)


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def onnx_files(model, tmp_path_factory):
    cache = tmp_path_factory.mktemp("onnx")
    return {dynamo: onnx.load(str(export.export_cached(model, "onnx", cache_dir=cache, dynamo=dynamo)))
            for dynamo in (False, True)}


def test_output_names_run_from_8_to_the_model_size():
    assert export.output_names(512) == ["image", "rgb_8", "rgb_16", "rgb_32", "rgb_64", "rgb_128", "rgb_256",
                                        "rgb_512"]
    assert export.output_names(64) == ["image", "rgb_8", "rgb_16", "rgb_32", "rgb_64"]


def test_filled_weights_have_nonzero_noise_strengths_and_finite_outputs(model):
    strengths = [p for n, p in model.named_parameters() if n.startswith("stylegan_decoder.style_conv")
                 and n.endswith(".weight") and p.numel() == 1]
    assert strengths and all(float(p.detach()) != 0 for p in strengths)
    image, rgbs = export.deploy(model)(export.example_input(64))
    assert all(torch.isfinite(t).all() for t in [image, *rgbs])
    assert 0.05 < float(image.std()) < 100  # neither collapsed to a constant nor blown up


def test_deploy_model_uses_stored_noise_so_repeated_calls_are_identical(model):
    x = export.example_input(64)
    wrapper = export.deploy(model)
    with torch.no_grad():
        first, second = wrapper(x)[0], wrapper(x)[0]
        fresh_noise = model(x, randomize_noise=True)[0]
    assert torch.equal(first, second)
    assert not torch.allclose(first, fresh_noise, atol=1e-3)  # the noise strengths are nonzero: it matters


def test_scripted_artefact_holds_exactly_the_weights_of_the_model_it_was_given(tmp_path):
    untrained = GFPGANv1Clean(**TINY).eval()  # default init: export must not load anything itself
    path = export.save_torchscript(untrained, tmp_path / "m.pt")
    loaded = runtimes.load_torchscript(path)
    exported = {k[len("model."):]: v for k, v in loaded.state_dict().items()}
    expected = untrained.state_dict()
    assert exported.keys() == expected.keys()
    assert all(torch.equal(exported[k], expected[k]) for k in expected)


def test_trace_matches_eager_on_inputs_it_was_not_traced_with(model):
    traced = export.trace(model)
    x = export.example_input(64, seed=7)
    with torch.no_grad():
        assert torch.equal(traced(x)[0], export.deploy(model)(x)[0])


class FrozenScale(GFPGANv1Clean):
    """A model whose forward turns an input statistic into a Python number: tracing freezes it."""

    def forward(self, x, return_latents=False, return_rgb=True, randomize_noise=True):
        image, rgbs = super().forward(x, return_rgb=return_rgb, randomize_noise=randomize_noise)
        return image * float(x.abs().max()), rgbs


def test_trace_check_fails_when_the_trace_froze_input_dependent_behaviour():
    frozen = fill_weights_(FrozenScale(**TINY).eval())
    with pytest.raises(ArtifactError, match="not traced with"):
        export.trace(frozen)


@pytest.mark.parametrize("dynamo", [False, True], ids=["legacy", "dynamo"])
def test_onnx_graph_has_one_input_and_the_named_outputs(onnx_files, dynamo):
    graph = onnx_files[dynamo].graph
    assert [i.name for i in graph.input] == ["input"]
    assert [o.name for o in graph.output] == export.output_names(64)
    shapes = {o.name: [d.dim_value for d in o.type.tensor_type.shape.dim] for o in graph.output}
    assert shapes["image"] == [1, 3, 64, 64] and shapes["rgb_8"] == [1, 3, 8, 8]


@pytest.mark.parametrize("dynamo", [False, True], ids=["legacy", "dynamo"])
def test_module_outputs_name_every_computing_module_in_model_terms(model, onnx_files, dynamo):
    called = called_modules(model)
    report = export.coverage(onnx_files[dynamo], called)
    # missing may be: a module whose output is a constant the exporters fold away; and, for legacy names only,
    # the children of the decoder's style convs, which arch.py calls through .forward() (no scope of their own)
    allowed = {"stylegan_decoder.constant_input"}
    if not dynamo:
        allowed |= {p for p in called if p.startswith("stylegan_decoder.style_convs.")}
    assert set(report["missing"]) <= allowed, report["missing"]
    assert report["module_fraction"] > (0.99 if dynamo else 0.7)
    assert report["node_fraction"] > 0.95
    mapping = export.module_outputs(onnx_files[dynamo])
    conv_outputs = {n.output[0] for n in onnx_files[dynamo].graph.node if n.op_type == "Conv"}
    assert mapping["conv_body_down.0.conv1"] in conv_outputs
    scopes = export.tensor_scopes(onnx_files[dynamo])
    assert scopes[mapping["conv_body_down.0.conv1"]] == "conv_body_down.0.conv1"
    assert scopes[mapping["conv_body_down.0"]] == "conv_body_down.0"  # the ResBlock's final add


def called_modules(model):
    """Module paths a forward calls and that return a tensor (input_is_latent=True skips the style MLP;
    the noise bank returns a list)."""
    called = []
    handles = [m.register_forward_hook(lambda mod, a, o, p=p: called.append(p) if torch.is_tensor(o) else None)
               for p, m in model.named_modules() if p]
    with torch.no_grad():
        export.deploy(model)(export.example_input(64))
    for h in handles:
        h.remove()
    return list(dict.fromkeys(called))


def test_expose_outputs_adds_all_or_only_the_chosen_node_outputs(onnx_files):
    graph = onnx_files[False]
    produced = [name for node in graph.graph.node for name in node.output]
    everything = export.expose_outputs(graph, "all")
    assert {o.name for o in everything.graph.output} == set(produced) | set(export.output_names(64))
    chosen = export.module_outputs(graph)["conv_body_up.0"]
    subset = export.expose_outputs(graph, [chosen])
    assert [o.name for o in subset.graph.output] == export.output_names(64) + [chosen]
    dims = [d.dim_value for d in subset.graph.output[-1].type.tensor_type.shape.dim]
    assert dims == [1, 32, 8, 8]  # the U-Net is 512 * narrow / 2 channels wide at 8x8
    with pytest.raises(ArtifactError, match="no node output"):
        export.expose_outputs(graph, ["not_a_tensor"])


def test_untyped_exposure_copies_unless_asked_to_change_the_graph_in_place(onnx_files):
    graph = onnx_files[False]
    before = [o.name for o in graph.graph.output]
    chosen = export.module_outputs(graph)["conv_body_up.0"]
    copied = export.expose_outputs(graph, [chosen], typed=False)
    assert [o.name for o in copied.graph.output] == before + [chosen]
    assert not copied.graph.output[-1].type.HasField("tensor_type")  # no shape inference ran
    assert [o.name for o in graph.graph.output] == before  # the caller's graph is untouched
    mine = onnx.ModelProto()
    mine.CopyFrom(graph)
    assert export.expose_outputs(mine, [chosen], typed=False, in_place=True) is mine
    assert [o.name for o in mine.graph.output] == before + [chosen]


def test_onnx_variants_with_all_or_chosen_intermediates(model, tmp_path):
    everything = onnx.load(str(export.export_cached(model, "onnx", cache_dir=tmp_path, intermediates="all")))
    produced = {name for node in everything.graph.node for name in node.output}
    assert {o.name for o in everything.graph.output} == produced | set(export.output_names(64))
    chosen_path = export.export_cached(model, "onnx", cache_dir=tmp_path, dynamo=True,
                                       intermediates=["conv_body_up.1", "final_conv"])
    out = runtimes.run("onnxruntime", chosen_path, export.example_input(64))
    assert list(out) == export.output_names(64) + ["conv_body_up.1", "final_conv"]
    assert out["conv_body_up.1"].shape == (1, 32, 16, 16)  # U-Net: 512 * narrow / 2 channels at 16x16
    with pytest.raises(ArtifactError, match="no tensor for module 'nowhere'"):
        export.export_cached(model, "onnx", cache_dir=tmp_path, intermediates=["nowhere"])


def test_cache_reuses_an_artefact_until_the_weights_change(tmp_path):
    first = tiny_model()
    path = export.export_cached(first, "torchscript", cache_dir=tmp_path)
    stamp = path.stat().st_mtime_ns
    again = export.export_cached(tiny_model(), "torchscript", cache_dir=tmp_path)  # equal weights, new object
    assert again == path and path.stat().st_mtime_ns == stamp
    changed = tiny_model()
    with torch.no_grad():
        changed.final_linear.bias[0] += 1e-3
    assert export.export_cached(changed, "torchscript", cache_dir=tmp_path) != path
    assert export.export_cached(first, "torchscript", cache_dir=tmp_path, method="trace") != path


def test_cache_key_separates_configs_whose_weights_have_the_same_shapes():
    latent = tiny_model()
    mapped = GFPGANv1Clean(**{**TINY, "input_is_latent": False}).eval()
    mapped.load_state_dict(latent.state_dict())
    assert export.state_dict_sha256(mapped) == export.state_dict_sha256(latent)
    assert export.artifact_key(mapped, {}) != export.artifact_key(latent, {})


def test_cache_never_reuses_a_damaged_artefact(tmp_path, model):
    path = export.export_cached(model, "onnx", cache_dir=tmp_path)
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])  # as if a writer had died half way
    assert export.export_cached(model, "onnx", cache_dir=tmp_path) == path
    assert path.read_bytes() == good
    export.load_onnx(path)


def test_two_processes_exporting_at_once_leave_one_valid_artefact(tmp_path):
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(__file__.rsplit('/', 1)[0])!r})
        from test_export import tiny_model
        from gfpgan_debug import export
        print(export.export_cached(tiny_model(), "onnx", cache_dir={str(tmp_path)!r}))
    """)
    writers = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
               for _ in range(2)]
    paths = {w.communicate()[0].strip() for w in writers}
    assert all(w.returncode == 0 for w in writers)
    assert len(paths) == 1
    (path,) = paths
    assert export.is_valid(Path(path))
    leftovers = [p.name for p in tmp_path.iterdir() if ".tmp" in p.name]
    assert leftovers == []
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == \
        sorted([path.rsplit("/", 1)[1], path.rsplit("/", 1)[1] + ".json"])


def test_cli_export_writes_pt_onnx_and_a_record_of_the_weights(tmp_path, capsys):
    from gfpgan_debug.weights import fill_weights_, sha256_file

    checkpoint = tmp_path / "tiny.pth"
    torch.save({"params_ema": tiny_model(seed=3).state_dict()}, checkpoint)
    assert cli_main(["export", "--weights", str(checkpoint), "--out", str(tmp_path / "out")]) == 0
    record = json.loads((tmp_path / "out" / "gfpgan.json").read_text())
    assert record["weights_sha256"] == sha256_file(checkpoint)
    assert record["config"]["out_size"] == 64 and record["options"]["randomize_noise"] is False
    graph = onnx.load(str(tmp_path / "out" / "gfpgan.onnx")).graph
    assert [o.name for o in graph.output] == export.output_names(64)
    scripted = runtimes.load_torchscript(tmp_path / "out" / "gfpgan.pt")
    x = export.example_input(64)
    with torch.no_grad():
        assert torch.equal(scripted(x)[0], export.deploy(tiny_model(seed=3))(x)[0])


def test_cli_export_of_a_missing_checkpoint_is_a_one_line_error(tmp_path, capsys):
    assert cli_main(["export", "--weights", str(tmp_path / "nope.pth"), "--out", str(tmp_path)]) == 2
    assert "nope.pth" in capsys.readouterr().err
