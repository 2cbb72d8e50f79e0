"""compare: metrics, noise floor and tolerances, execution trace, first divergence (GFPGAN and a torchvision net)."""
import copy
import math

import numpy as np
import pytest
import torch
import torchvision

from gfpgan_debug import compare
from gfpgan_debug.arch import GFPGANv1Clean
from gfpgan_debug.compat import torch_deprecations_silenced
from gfpgan_debug.weights import fill_weights_

TINY = dict(out_size=64, num_style_feat=64, channel_multiplier=1, decoder_load_path=None, fix_decoder=False,
            num_mlp=8, input_is_latent=True, different_w=True, narrow=0.25, sft_half=True)


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None).eval()


@pytest.fixture(scope="module")
def gfpgan():
    return fill_weights_(GFPGANv1Clean(**TINY).eval(), seed=3)


def changed(model, path: str, change):
    """A copy of ``model`` whose layer at ``path`` has its kernel changed in place by ``change``."""
    copied = copy.deepcopy(model)
    with torch.no_grad():
        change(copied.get_submodule(path).weight)
    return copied


def image_input(size, seed=0):
    return torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_metrics_match_hand_computed_values():
    reference = np.array([0.0, 1.0, 2.0, 3.0])
    candidate = reference + np.array([0.0, 0.0, 0.0, 1.0])
    m = compare.metrics(reference, candidate)
    assert m["max_abs"] == 1.0
    assert m["mean_abs"] == 0.25
    assert m["rel_err"] == pytest.approx(1 / math.sqrt(14))
    assert m["cosine"] == pytest.approx((0 + 1 + 4 + 12) / (math.sqrt(14) * math.sqrt(21)))
    assert m["psnr_db"] == pytest.approx(10 * math.log10(3.0**2 / 0.25))


def test_identical_outputs_have_zero_error_unit_cosine_infinite_psnr():
    array = np.random.default_rng(0).normal(size=(2, 3, 4))
    m = compare.metrics(array, array.copy())
    assert (m["max_abs"], m["mean_abs"], m["rel_err"], m["cosine"]) == (0.0, 0.0, 0.0, pytest.approx(1.0))
    assert math.isinf(m["psnr_db"])


def test_compare_outputs_flags_missing_misshapen_and_differing_outputs_in_reference_order():
    reference = {"image": np.ones((1, 3, 8, 8)), "rgb_8": np.zeros((1, 3, 8, 8)), "rgb_16": np.ones((1, 3, 16, 16))}
    candidate = {"rgb_16": np.ones((1, 3, 16, 16)) + 0.5, "image": np.ones((1, 3, 8, 8)), "rgb_8": np.zeros((1, 3, 4, 4))}
    frame = compare.compare_outputs(reference, candidate)
    assert list(frame.index) == ["image", "rgb_8", "rgb_16"]
    assert frame.loc["image", "agrees"]
    assert not frame.loc["rgb_8", "agrees"] and "shape" in frame.loc["rgb_8", "note"]
    assert not frame.loc["rgb_16", "agrees"] and frame.loc["rgb_16", "max_abs"] == 0.5
    del candidate["image"]
    assert compare.compare_outputs(reference, candidate).loc["image", "note"] == "missing in candidate"
    table = compare.format_table(frame)
    assert "rgb_16" in table and "✗" in table and table.splitlines()[0].startswith("output")


def test_tolerance_comes_from_the_measured_floor_when_it_exceeds_the_relative_floor():
    reference = {"a": np.ones(4), "b": np.ones(4)}
    floor = compare.NoiseFloor({"a": 0.0, "b": 1e-3}, ["repeat"], reference)
    tolerances = floor.tolerances()
    assert tolerances["a"] == compare.RELATIVE_FLOOR  # max|ref| = 1, floor 0: the relative floor
    assert tolerances["b"] == pytest.approx(compare.FACTOR * 1e-3)


def test_noise_floor_of_a_deterministic_network_is_float_round_off(resnet):
    x = image_input(64)

    def run(threads):
        with compare.torch_threads(threads), torch.no_grad():
            return {"logits": resnet(x).numpy()}

    floor = compare.measure_noise_floor(run, thread_counts=(1,))
    assert floor.runs == ["repeat", "threads=1"]
    scale = np.abs(floor.reference["logits"]).max()
    # float32 summation in another order: far below the 1e-4 relative tolerance the comparison uses
    assert floor.per_output["logits"] <= 1e-5 * scale


def test_noise_floor_exposes_a_nondeterministic_runtime():
    layer = torch.nn.Dropout(0.5).train()  # dropout in training mode: a fresh mask per call
    x = torch.ones(1000)
    floor = compare.measure_noise_floor(lambda threads: {"out": layer(x).numpy()}, thread_counts=())
    assert floor.per_output["out"] >= 1.0  # a dropped element (0) against a kept one (2)


def test_trace_records_execution_order_and_producers_on_resnet(resnet):
    trace = compare.trace_execution(resnet, image_input(64))
    names = list(trace.outputs)
    assert names[:4] == ["input", "conv1", "bn1", "layer1.0.conv1"]
    assert names[-1] == "fc"
    assert trace.inputs_of["conv1"] == ["input"]
    assert trace.inputs_of["bn1"] == ["conv1"]
    # the downsample conv reads layer2's input: layer1's last bn2 output, which torchvision's BasicBlock turns
    # into the block output in place (out += identity; relu(inplace)), so it is the same tensor object,
    # whereas the last output recorded before it is layer2.0.bn2
    assert trace.inputs_of["layer2.0.downsample.0"] == ["layer1.1.bn2"]
    assert names[names.index("layer2.0.downsample.0") - 1] == "layer2.0.bn2"


def test_first_divergence_names_the_one_changed_layer_of_resnet(resnet):
    x = image_input(64)
    broken = changed(resnet, "layer2.0.conv2", lambda w: w.mul_(1.5))
    reference = compare.trace_execution(resnet, x)
    candidate = compare.trace_execution(broken, x)
    divergence = compare.first_divergence(reference.outputs, candidate.outputs, inputs_of=reference.inputs_of)
    assert divergence.name == "layer2.0.conv2"
    assert divergence.inputs_checked
    assert compare.first_divergence(reference.outputs, compare.trace_execution(resnet, x).outputs) is None


def test_first_divergence_is_the_input_when_the_input_differs(resnet):
    x = image_input(64)
    reference = compare.trace_execution(resnet, x)
    candidate = compare.trace_execution(resnet, x.flip(1))  # channels in the other order
    assert compare.first_divergence(reference.outputs, candidate.outputs).name == "input"


def test_first_divergence_names_a_gfpgan_module_path(gfpgan):
    x = image_input(64)
    broken = changed(gfpgan, "conv_body_up.1.conv2", lambda w: w.add_(0.05))
    reference = compare.trace_execution(gfpgan, x, randomize_noise=False)
    candidate = compare.trace_execution(broken, x, randomize_noise=False)
    divergence = compare.first_divergence(reference.outputs, candidate.outputs, inputs_of=reference.inputs_of)
    assert divergence.name == "conv_body_up.1.conv2"
    assert divergence.checked > 5  # the encoder and the first up block were compared and agree


# search_first_divergence: the same answer as trace + first_divergence, without holding the outputs


def test_streamed_search_finds_the_same_layer_as_trace_and_first_divergence_on_resnet(resnet):
    x = image_input(64)
    broken = changed(resnet, "layer2.0.conv2", lambda w: w.mul_(1.5))
    reference = compare.trace_execution(resnet, x)
    candidate = compare.trace_execution(broken, x).outputs
    held = compare.first_divergence(reference.outputs, candidate, inputs_of=reference.inputs_of)
    table = compare.compare_outputs(reference.outputs, candidate)
    search = compare.search_first_divergence(resnet, x, candidate=dict(candidate))
    assert search.divergence.name == held.name == "layer2.0.conv2"
    assert search.divergence.inputs == held.inputs
    assert search.divergence.metrics["max_abs"] == pytest.approx(held.metrics["max_abs"], rel=1e-6)
    # every layer's verdict is the one compare_outputs gives (the input is not a layer)
    assert search.layers["agrees"].to_dict() == table["agrees"].drop("input").to_dict()


def test_streamed_search_releases_each_candidate_output_once_compared(gfpgan):
    x = image_input(64)
    candidate = dict(compare.trace_execution(gfpgan, x, randomize_noise=False).outputs)
    layers = len(candidate) - 1
    search = compare.search_first_divergence(gfpgan, x, candidate=candidate, randomize_noise=False)
    assert search.divergence is None
    assert list(candidate) == ["input"]  # every layer's array was dropped after its comparison
    assert len(search.layers) == layers and search.layers["agrees"].all()
    image, _ = gfpgan(x, randomize_noise=False)
    assert torch.equal(search.outputs[0], image)  # the reference's own outputs come back


def test_streamed_search_lists_layers_the_candidate_lacks_and_flags_nan(gfpgan):
    x = image_input(64)
    candidate = dict(compare.trace_execution(gfpgan, x, randomize_noise=False).outputs)
    del candidate["conv_body_first"]
    candidate["conv_body_down.0.conv1"] = np.full_like(candidate["conv_body_down.0.conv1"], np.nan)
    search = compare.search_first_divergence(gfpgan, x, candidate=candidate, randomize_noise=False)
    assert search.missing == ["conv_body_first"]
    assert search.divergence.name == "conv_body_down.0.conv1"
    assert not search.divergence.inputs_checked  # its input, conv_body_first, had nothing to compare with


def test_layer_runner_replays_a_scripted_model_layer_by_layer(gfpgan):
    x = image_input(64)
    broken = changed(gfpgan, "conv_body_up.1.conv2", lambda w: w.add_(0.05))
    with torch_deprecations_silenced():
        scripted, healthy_scripted = torch.jit.script(broken), torch.jit.script(gfpgan)
    search = compare.search_first_divergence(gfpgan, x, candidate=compare.layer_runner(scripted),
                                             randomize_noise=False)
    assert search.divergence.name == "conv_body_up.1.conv2"
    assert search.divergence.inputs_checked
    # replayed layers each get the reference's inputs, so the layers after it agree again
    after = list(search.layers.index).index("conv_body_up.1.conv2") + 1
    assert search.layers["agrees"].iloc[after:].all()
    healthy = compare.search_first_divergence(gfpgan, x, candidate=compare.layer_runner(healthy_scripted),
                                              randomize_noise=False)
    assert healthy.divergence is None and len(healthy.layers) > 20
