"""widgets: the pickers redraw from precomputed arrays, show the right numbers, and display a static copy."""
import base64
import re
from pathlib import Path

import numpy as np
import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.display import display
from IPython.utils.capture import capture_output

from gfpgan_debug.widgets import LayerPicker, WeightPicker

PNG = b"\x89PNG\r\n\x1a\n"
NOTEBOOKS = Path(__file__).parent / "notebooks"


def runtime_outputs():
    rng = np.random.default_rng(0)
    eager = {"image": rng.uniform(-1, 1, (1, 3, 32, 32)), "rgb_8": rng.uniform(-1, 1, (1, 3, 8, 8)),
             "conv_body_up.0.conv2": rng.normal(size=(1, 16, 8, 8))}
    broken = {name: value + (0.25 if name == "rgb_8" else 2.0) for name, value in eager.items()}
    broken["only_here"] = np.zeros((1, 1, 2, 2))
    return {"eager": eager, "libtorch": broken}


def shown_metric(html: str, name: str) -> float:
    return float(re.search(rf"data-metric='{name}'>([^<]+)<", html).group(1))


def test_layer_picker_offers_the_layers_every_runtime_has_in_order():
    picker = LayerPicker(runtime_outputs())
    assert picker.layers == ["image", "rgb_8", "conv_body_up.0.conv2"]
    assert (picker.reference.value, picker.actual.value) == ("eager", "libtorch")


def test_layer_picker_redraws_picture_and_metrics_when_the_layer_changes():
    picker = LayerPicker(runtime_outputs(), layer="rgb_8")
    first_picture = bytes(picker.image.value)
    assert first_picture.startswith(PNG)
    assert "rgb_8: libtorch vs eager" in picker.metrics.value
    assert shown_metric(picker.metrics.value, "max_abs") == pytest.approx(0.25)

    picker.layer.value = "conv_body_up.0.conv2"

    assert bytes(picker.image.value).startswith(PNG) and bytes(picker.image.value) != first_picture
    assert "conv_body_up.0.conv2: libtorch vs eager" in picker.metrics.value
    assert shown_metric(picker.metrics.value, "max_abs") == pytest.approx(2.0)
    picker.layer.value = "rgb_8"
    assert bytes(picker.image.value) == first_picture
    assert len(picker._cache) == 2  # each choice drawn once, then served from the cache


def test_layer_picker_comparing_a_runtime_with_itself_shows_zero_difference():
    picker = LayerPicker(runtime_outputs(), layer="image")
    picker.actual.value = "eager"
    assert shown_metric(picker.metrics.value, "max_abs") == 0.0


def test_layer_picker_summary_has_one_row_of_metrics_per_layer():
    outputs = runtime_outputs()
    summary = LayerPicker(outputs).summary()
    assert list(summary.index) == ["image", "rgb_8", "conv_body_up.0.conv2"]
    for layer in summary.index:
        expected = np.abs(outputs["libtorch"][layer] - outputs["eager"][layer]).max()
        assert summary.loc[layer, "max_abs"] == pytest.approx(expected)


def test_layer_picker_names_an_unknown_layer_and_the_choices():
    with pytest.raises(ValueError, match=r"unknown layer 'conv_body_first'.*rgb_8"):
        LayerPicker(runtime_outputs(), layer="conv_body_first")


def test_displaying_a_layer_picker_shows_a_static_picture_before_the_controls():
    InteractiveShell.instance()
    picker = LayerPicker(runtime_outputs(), layer="rgb_8")
    with capture_output() as captured:
        display(picker)
    kinds = [set(output.data) for output in captured.outputs]
    assert "text/html" in kinds[0] and "rgb_8" in captured.outputs[0].data["text/html"]
    # the same picture as the interactive one, as an ordinary output that an HTML export keeps
    assert base64.b64decode(captured.outputs[1].data["image/png"]) == bytes(picker.image.value)
    assert "application/vnd.jupyter.widget-view+json" in kinds[2]


def state_dicts():
    rng = np.random.default_rng(1)
    checkpoint = {"conv_body_first.weight": rng.normal(size=(8, 3, 1, 1)), "final_linear.weight": rng.normal(size=(4, 6))}
    artefact = {"conv_body_first.weight": rng.uniform(-0.1, 0.1, size=(8, 3, 1, 1)),
                "final_linear.weight": checkpoint["final_linear.weight"].copy()}
    return {"checkpoint": checkpoint, "artefact": artefact}


def test_weight_picker_shows_histogram_and_kernels_of_a_convolution():
    versions = state_dicts()
    picker = WeightPicker(versions)
    assert picker.parameter.value == "conv_body_first.weight"
    assert bytes(picker.histogram.value).startswith(PNG) and bytes(picker.kernels.value).startswith(PNG)
    assert picker.kernels.layout.display is None
    expected = np.abs(versions["artefact"]["conv_body_first.weight"] - versions["checkpoint"]["conv_body_first.weight"]).max()
    assert shown_metric(picker.stats.value, "max_abs") == pytest.approx(expected, rel=1e-5)  # printed with 6 digits
    assert shown_metric(picker.stats.value, "checkpoint std") == pytest.approx(
        versions["checkpoint"]["conv_body_first.weight"].std(), rel=1e-5)


def test_weight_picker_hides_kernels_for_a_linear_layer_and_reports_equal_weights():
    picker = WeightPicker(state_dicts())
    picker.parameter.value = "final_linear.weight"
    assert bytes(picker.kernels.value) == b"" and picker.kernels.layout.display == "none"
    assert shown_metric(picker.stats.value, "max_abs") == 0.0


def test_weight_picker_offers_only_parameters_with_the_same_shape_everywhere():
    versions = state_dicts()
    versions["artefact"]["final_linear.weight"] = np.zeros((6, 4))
    assert WeightPicker(versions).parameters == ["conv_body_first.weight"]


def test_an_executed_notebook_exported_to_html_still_shows_the_layer_picture(tmp_path):
    import nbformat
    from nbclient import NotebookClient
    from nbconvert import HTMLExporter

    notebook = nbformat.read(NOTEBOOKS / "layer_picker.ipynb", as_version=4)
    NotebookClient(notebook, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    html, _ = HTMLExporter().from_notebook_node(notebook)
    picker_cell = notebook.cells[-1]
    pictures = [output for output in picker_cell.outputs if "image/png" in output.get("data", {})]
    assert len(pictures) == 1
    assert pictures[0]["data"]["image/png"].strip() in html  # the picture is inside the HTML page itself
    assert "rgb_8: untrained vs trained (stand-in)" in html  # and so is the metrics table
