"""Two pickers for the notebooks: a layer picker (one layer, two runtimes) and a weight picker (one
parameter, checkpoint vs artefact).

Both work from arrays computed beforehand (the name -> array mappings every runtime hands back, and state
dicts), so a click only redraws a figure: nothing runs the model again. Pictures are rendered to PNG and
placed in an ``ipywidgets.Image``, which does not depend on the notebook's matplotlib backend; the
rendered PNGs are cached, so going back to a layer is instant.

Displaying a picker (``LayerPicker(outputs)`` as a cell's last line, or ``display(picker)``) shows, first, a
static picture and table of its initial choice (ordinary outputs, which stay in a notebook exported to
HTML), then the interactive controls.
"""
import io
from html import escape
from typing import Mapping

import ipywidgets as widgets
import pandas as pd
from IPython.display import HTML, Image, display

from gfpgan_debug import compare, viz


def figure_png(fig, dpi: int = 80) -> bytes:
    """A matplotlib Figure as PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def metrics_html(metrics: Mapping, caption: str) -> str:
    """A small two-column HTML table: metric, value (names escaped: layer names are user data)."""
    rows = "".join(f"<tr><td>{escape(name)}</td><td class='gfpgan-metric-value' data-metric='{escape(name)}'>"
                   f"{value:.6g}</td></tr>" for name, value in metrics.items())
    return f"<table class='gfpgan-metrics-table'><caption>{escape(caption)}</caption>{rows}</table>"


class LayerPicker:
    """Choose a layer (module path or output name) and two runtimes; see both maps, their difference and
    the metrics.

    outputs: runtime name -> (output or layer name -> array), e.g. {"eager": {...}, "onnxruntime": {...}}.
    Layers offered are those every runtime has, in the first runtime's order.
    """

    def __init__(self, outputs: Mapping[str, Mapping], layer: str = None, reference: str = None,
                 actual: str = None, max_rows: int = 3):
        if len(outputs) < 1:
            raise ValueError("LayerPicker needs the outputs of at least one runtime")
        self.outputs = outputs
        self.max_rows = max_rows
        runtimes = list(outputs)
        first = outputs[runtimes[0]]
        self.layers = [name for name in first if all(name in outputs[r] for r in runtimes)]
        if not self.layers:
            raise ValueError(f"the runtimes {runtimes} have no output name in common")
        layer = layer if layer is not None else self.layers[0]
        reference = reference if reference is not None else runtimes[0]
        actual = actual if actual is not None else runtimes[-1]
        for value, options, what in ((layer, self.layers, "layer"), (reference, runtimes, "runtime"),
                                     (actual, runtimes, "runtime")):
            if value not in options:
                raise ValueError(f"unknown {what} {value!r}; choose one of {options}")
        self._cache = {}
        self.layer = widgets.Dropdown(options=self.layers, value=layer, description="layer")
        self.reference = widgets.Dropdown(options=runtimes, value=reference, description="reference")
        self.actual = widgets.Dropdown(options=runtimes, value=actual, description="actual")
        self.image = widgets.Image(format="png")
        self.metrics = widgets.HTML()
        for control in (self.layer, self.reference, self.actual):
            control.observe(self._on_change, names="value")
        self.widget = widgets.VBox([widgets.HBox([self.layer, self.reference, self.actual]), self.metrics, self.image])
        self.widget.add_class("gfpgan-layer-picker")
        self.metrics.add_class("gfpgan-metrics")
        self.image.add_class("gfpgan-picture")
        self.refresh()

    def figure(self, layer: str = None, reference: str = None, actual: str = None):
        """The comparison figure for a choice (defaults: the current one)."""
        layer = layer or self.layer.value
        reference = reference or self.reference.value
        actual = actual or self.actual.value
        return viz.compare_panels(self.outputs[reference][layer], self.outputs[actual][layer],
                                  names=(reference, actual), max_rows=self.max_rows, title=layer)

    def refresh(self):
        """Redraw for the current choice (from the cache when this choice was drawn before)."""
        key = (self.layer.value, self.reference.value, self.actual.value)
        if key not in self._cache:
            layer, reference, actual = key
            metrics = compare.metrics(self.outputs[reference][layer], self.outputs[actual][layer])
            html = metrics_html(metrics, f"{layer}: {actual} vs {reference}")
            self._cache[key] = (figure_png(self.figure(*key)), html)
        self.image.value, self.metrics.value = self._cache[key]

    def _on_change(self, change):
        self.refresh()

    def summary(self) -> pd.DataFrame:
        """Metrics of every layer for the current pair of runtimes, in layer order."""
        reference, actual = self.reference.value, self.actual.value
        rows = {layer: compare.metrics(self.outputs[reference][layer], self.outputs[actual][layer])
                for layer in self.layers}
        return pd.DataFrame.from_dict(rows, orient="index").rename_axis(f"{actual} vs {reference}")

    def _ipython_display_(self):
        picture, html = self._cache[(self.layer.value, self.reference.value, self.actual.value)]
        display(HTML(html))
        display(Image(picture))
        display(self.widget)


class WeightPicker:
    """Choose a parameter; see its versions' histograms and, for convolutions, their kernels.

    versions: version name -> state dict (name -> array or tensor), e.g. {"checkpoint": ..., "artefact": ...}.
    Parameters offered are those every version has with the same shape, in the first version's order.
    """

    def __init__(self, versions: Mapping[str, Mapping], parameter: str = None, max_out: int = 32, max_in: int = 8):
        names = list(versions)
        if not names:
            raise ValueError("WeightPicker needs at least one state dict")
        self.versions = versions  # kept as given (tensors or arrays); one parameter is converted at a time
        first = versions[names[0]]
        self.parameters = [key for key in first
                           if all(key in versions[n] and tuple(versions[n][key].shape) == tuple(first[key].shape)
                                  for n in names)]
        if not self.parameters:
            raise ValueError(f"the state dicts {names} have no parameter in common")
        parameter = parameter if parameter is not None else self.parameters[0]
        if parameter not in self.parameters:
            raise ValueError(f"unknown parameter {parameter!r}")
        self.max_out, self.max_in = max_out, max_in
        self._cache = {}
        self.parameter = widgets.Dropdown(options=self.parameters, value=parameter, description="parameter",
                                          layout=widgets.Layout(width="60%"))
        self.histogram = widgets.Image(format="png")
        self.kernels = widgets.Image(format="png")
        self.stats = widgets.HTML()
        self.parameter.observe(lambda change: self.refresh(), names="value")
        self.widget = widgets.VBox([self.parameter, self.stats, widgets.HBox([self.histogram, self.kernels])])
        self.widget.add_class("gfpgan-weight-picker")
        self.refresh()

    def figures(self, parameter: str = None):
        """(histogram figure, kernel figure or None) for a parameter (default: the current one)."""
        parameter = parameter or self.parameter.value
        values = {name: viz.as_array(state[parameter]) for name, state in self.versions.items()}
        histogram = viz.weight_histograms(values, title=parameter)
        shape = next(iter(values.values())).shape
        kernels = viz.kernel_mosaic(values, title=parameter, max_out=self.max_out, max_in=self.max_in) \
            if len(shape) == 4 else None
        return histogram, kernels

    def refresh(self):
        parameter = self.parameter.value
        if parameter not in self._cache:
            histogram, kernels = self.figures(parameter)
            values = {name: viz.as_array(state[parameter]) for name, state in self.versions.items()}
            stats = {f"{name} {stat}": getattr(value, stat)() for name, value in values.items() for stat in ("mean", "std")}
            if len(values) == 2:
                stats.update(compare.metrics(*values.values()))
            self._cache[parameter] = (figure_png(histogram), figure_png(kernels) if kernels else b"",
                                      metrics_html(stats, parameter))
        self.histogram.value, self.kernels.value, self.stats.value = self._cache[parameter]
        self.kernels.layout.display = None if self.kernels.value else "none"

    def _ipython_display_(self):
        histogram, kernels, stats = self._cache[self.parameter.value]
        display(HTML(stats))
        display(Image(histogram))
        if kernels:
            display(Image(kernels))
        display(self.widget)
