"""Pictures of what the model computes and of what it was given: feature maps, outputs, weights.

Every function takes arrays (or name -> array mappings, the shape every runtime hands back) and returns a
``matplotlib.figure.Figure``; none of them runs a model. Figures are built with ``Figure()`` rather than
``pyplot``, so nothing is left open behind the caller's back and a notebook shows each figure exactly once.

Conventions shared by all pictures:

* A feature map is ``(1, C, h, w)`` (``(C, h, w)`` and ``(h, w)`` are accepted too).
* Small maps are enlarged by repeating pixels (nearest neighbour): the 8x8 ``rgb_8`` stays 64 crisp squares,
  as in the original post's 2000% enlargement, instead of a blur that hides what each pixel holds.
* An RGB map is in [-1, 1] (the model's range); it is shown as ``(x + 1) / 2`` clipped to [0, 1].
* Reference and actual share one colour scale; their difference has its own scale, symmetric about zero.
"""
import math
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure
from tqdm.auto import tqdm

from gfpgan_debug import compare

DISPLAY_PIXELS = 256  # small maps are enlarged to at least this many pixels a side
MAP_CMAP = "viridis"  # perceptually uniform: equal steps in value look like equal steps in colour
DIFF_CMAP = "RdBu_r"  # diverging: zero is white, actual > reference red, actual < reference blue
WEIGHT_CMAP = "RdBu_r"  # weights are signed: same reading as a difference
CHANNEL_NAMES_RGB = ("R", "G", "B")


# ---------------------------------------------------------------------------------------------------------
# Arrays in
# ---------------------------------------------------------------------------------------------------------


def as_array(value) -> np.ndarray:
    """A numpy float64 copy of an array or a (CPU or not, grad or not) torch tensor."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.array(value, dtype=np.float64)


def as_maps(value) -> np.ndarray:
    """A feature map as (C, h, w): drops the batch axis of (1, C, h, w), adds a channel axis to (h, w)."""
    maps = as_array(value)
    if maps.ndim == 4:
        if maps.shape[0] != 1:
            raise ValueError(f"expected one feature map (batch size 1), got shape {maps.shape}")
        maps = maps[0]
    elif maps.ndim == 2:
        maps = maps[None]
    if maps.ndim != 3:
        raise ValueError(f"expected a feature map of shape (1, C, h, w), (C, h, w) or (h, w), got {maps.shape}")
    return maps


def upscale_nearest(image: np.ndarray, factor: int) -> np.ndarray:
    """Repeat every pixel into a factor x factor block (axes 0 and 1): enlargement without smoothing."""
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def display_factor(size: int, target: int = DISPLAY_PIXELS) -> int:
    """The whole-number enlargement that brings a map of `size` pixels to at least `target` pixels."""
    return max(1, math.ceil(target / size))


def rgb_display(value) -> np.ndarray:
    """A (1, 3, h, w) map in [-1, 1] as an (h, w, 3) picture in [0, 1]; values outside are clipped."""
    maps = as_maps(value)
    if maps.shape[0] != 3:
        raise ValueError(f"an RGB map needs 3 channels, got shape {maps.shape}")
    return np.clip((maps.transpose(1, 2, 0) + 1.0) / 2.0, 0.0, 1.0)


def image_display(value) -> np.ndarray:
    """Any picture as (h, w, 3) RGB in [0, 1]: model-space (1, 3, h, w) in [-1, 1], or 8-bit BGR (h, w, 3)
    as OpenCV and ``images.read_image`` give it."""
    if isinstance(value, np.ndarray) and value.dtype == np.uint8 and value.ndim == 3 and value.shape[2] == 3:
        return value[:, :, ::-1].astype(np.float64) / 255.0
    return rgb_display(value)


def value_range(*arrays) -> tuple:
    """(low, high) over the finite values of all arrays, widened when they are all equal (a constant or
    all-zero map still gets a colour scale, shown in its middle colour) or when nothing is finite."""
    finite = [a[np.isfinite(a)] for a in (as_array(x) for x in arrays)]
    finite = [a for a in finite if a.size]
    if not finite:
        return -1.0, 1.0
    low = float(min(a.min() for a in finite))
    high = float(max(a.max() for a in finite))
    if high > low:
        return low, high
    pad = max(0.5 * abs(low), 0.5)  # any width works for one value; this keeps tick labels readable
    return low - pad, high + pad


def symmetric_range(*arrays, fallback: float = 1.0) -> tuple:
    """(-m, m) with m the largest finite |value|; `fallback` when all are zero (or nothing is finite)."""
    values = [np.abs(a[np.isfinite(a)]) for a in (as_array(x) for x in arrays)]
    largest = max((float(v.max()) for v in values if v.size), default=0.0)
    largest = largest if largest > 0 else fallback
    return -largest, largest


# ---------------------------------------------------------------------------------------------------------
# Metrics (compare.metrics, summarised in one line on the pictures)
# ---------------------------------------------------------------------------------------------------------


def format_metrics(metrics: Mapping) -> str:
    """compare.metrics in one line: 'max |Δ| 0.83 · mean |Δ| 0.21 · cos 0.12 · PSNR 12.3 dB'."""
    return (f"max |Δ| {metrics['max_abs']:.3g} · mean |Δ| {metrics['mean_abs']:.3g} · "
            f"cos {metrics['cosine']:.4f} · PSNR {metrics['psnr_db']:.1f} dB")


# ---------------------------------------------------------------------------------------------------------
# Feature maps
# ---------------------------------------------------------------------------------------------------------


def _show_map(ax, image, vmin, vmax, cmap, title):
    """One enlarged map, crisp pixels, no ticks (the enlargement makes pixel coordinates meaningless)."""
    artist = ax.imshow(image, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    return artist


def channel_heatmaps(feature, channels: Sequence[int] = None, max_channels: int = 16, title: str = "feature map",
                     columns: int = 4) -> Figure:
    """Every channel (or the chosen ones) of one feature map, enlarged, on one shared colour scale."""
    maps = as_maps(feature)
    channels = list(range(min(len(maps), max_channels))) if channels is None else list(channels)
    rows = math.ceil(len(channels) / columns)
    cols = min(columns, len(channels))
    factor = display_factor(maps.shape[-1], DISPLAY_PIXELS // 2)
    vmin, vmax = value_range(maps[channels])
    fig = Figure(figsize=(2.2 * cols + 1.0, 2.2 * rows + 0.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, channel in zip(axes, channels):
        artist = _show_map(ax, upscale_nearest(maps[channel], factor), vmin, vmax, MAP_CMAP, f"channel {channel}")
    for ax in axes[len(channels):]:
        ax.set_axis_off()
    fig.colorbar(artist, ax=axes.tolist(), label="activation (shared scale)", shrink=0.8)
    height, width = maps.shape[-2:]
    fig.suptitle(f"{title}: {len(channels)} of {len(maps)} channels, {height}x{width}, enlarged {factor}x")
    return fig


def rgb_maps(maps: Mapping, title: str = "RGB maps") -> Figure:
    """Several RGB maps in [-1, 1] (e.g. rgb_8 ... rgb_512) side by side, each enlarged to the same size.

    Each panel notes the actual value range, so clipping to [-1, 1] is never silent."""
    names = list(maps)
    largest = max(as_maps(maps[name]).shape[-1] for name in names)
    fig = Figure(figsize=(2.6 * len(names), 3.2), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(names), squeeze=False)).ravel()
    for ax, name in zip(axes, names):
        values = as_maps(maps[name])
        size = values.shape[-1]
        factor = display_factor(size, max(DISPLAY_PIXELS, largest))
        ax.imshow(upscale_nearest(rgb_display(values), factor), interpolation="nearest")
        ax.set_title(f"{name} ({values.shape[-2]}x{size})", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel(f"values in [{values.min():.2f}, {values.max():.2f}]", fontsize=8)
    fig.suptitle(title)
    return fig


def _channels_to_show(reference: np.ndarray, actual: np.ndarray, max_rows: int):
    """The `max_rows` channels where actual and reference differ most, most first (ties: lowest index)."""
    largest_diff = np.nan_to_num(np.abs(actual - reference), nan=np.inf).reshape(len(reference), -1).max(axis=1)
    return np.argsort(-largest_diff, kind="stable")[:max_rows].tolist()


def compare_panels(reference, actual, names: Sequence[str] = ("reference", "actual"), channels="auto",
                   max_rows: int = 4, title: str = None) -> Figure:
    """reference | actual | actual − reference, enlarged, for one feature map from two runtimes.

    channels: "auto" shows a 3-channel map as pictures (RGB, [-1, 1]) and otherwise the `max_rows`
    channels that differ most; "rgb" forces pictures; a list of channel indices picks rows.
    Reference and actual share one labelled colour scale (RGB: the model's [-1, 1]); the difference has its
    own colour bar, symmetric about zero (RGB: the largest |difference| over the three colours per pixel).
    """
    ref, act = as_maps(reference), as_maps(actual)
    if ref.shape != act.shape:
        raise ValueError(f"{names[0]} has shape {ref.shape} but {names[1]} has {act.shape}: nothing to compare")
    metrics = compare.metrics(ref, act)
    rgb = channels == "rgb" or (channels == "auto" and len(ref) == 3)
    if rgb:
        rows = [None]
    elif channels == "auto":
        rows = _channels_to_show(ref, act, max_rows)
    else:
        rows = list(channels)
    factor = display_factor(ref.shape[-1], DISPLAY_PIXELS if len(rows) == 1 else DISPLAY_PIXELS // 2)
    fig = Figure(figsize=(9.5, 2.6 * len(rows) + 0.9), layout="constrained")
    axes = fig.subplots(len(rows), 3, squeeze=False)
    if rgb:
        diff = np.abs(act - ref).max(axis=0)  # per pixel, the colour that moved most
        axes[0, 0].imshow(upscale_nearest(rgb_display(ref), factor), interpolation="nearest")
        axes[0, 1].imshow(upscale_nearest(rgb_display(act), factor), interpolation="nearest")
        _, high = symmetric_range(diff)
        diff_artist = _show_map(axes[0, 2], upscale_nearest(diff, factor), 0.0, high, "magma",
                                "max |Δ| over R, G, B")
        for ax, name in zip(axes[0, :2], names):
            ax.set_title(f"{name} (RGB, [-1, 1] shown as [0, 1])", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
        fig.colorbar(diff_artist, ax=axes[:, 2].tolist(), label=f"|{names[1]} − {names[0]}|", shrink=0.8)
    else:
        vmin, vmax = value_range(ref[rows], act[rows])
        diff = act[rows] - ref[rows]
        dlow, dhigh = symmetric_range(diff, fallback=max((vmax - vmin) / 2, 1e-12))
        for row, channel in enumerate(rows):
            map_artist = _show_map(axes[row, 0], upscale_nearest(ref[channel], factor), vmin, vmax, MAP_CMAP,
                                   f"{names[0]}, channel {channel}")
            _show_map(axes[row, 1], upscale_nearest(act[channel], factor), vmin, vmax, MAP_CMAP,
                      f"{names[1]}, channel {channel}")
            diff_artist = _show_map(axes[row, 2], upscale_nearest(diff[row], factor), dlow, dhigh, DIFF_CMAP,
                                    f"{names[1]} − {names[0]}, channel {channel}")
        fig.colorbar(map_artist, ax=axes[:, :2].ravel().tolist(), label=f"value ({names[0]} and {names[1]})",
                     shrink=0.8, location="left")
        fig.colorbar(diff_artist, ax=axes[:, 2].tolist(), label=f"{names[1]} − {names[0]}", shrink=0.8)
    height, width = ref.shape[-2:]
    heading = f"{title}: " if title else ""
    fig.suptitle(f"{heading}{len(ref)} channels, {height}x{width}, enlarged {factor}x\n{format_metrics(metrics)}",
                 fontsize=10)
    return fig


# ---------------------------------------------------------------------------------------------------------
# Images in, images out
# ---------------------------------------------------------------------------------------------------------


def image_strip(images: Mapping, reference: str = None, title: str = "images") -> Figure:
    """Pictures side by side (e.g. source, expected, actual), each titled with its name and, when
    `reference` names one of them, its metrics against that one (on the model's [-1, 1] scale)."""
    names = list(images)
    pictures = {name: image_display(images[name]) for name in names}
    fig = Figure(figsize=(3.4 * len(names), 3.9), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(names), squeeze=False)).ravel()
    for ax, name in zip(axes, names):
        picture = pictures[name]
        factor = display_factor(picture.shape[1])
        ax.imshow(upscale_nearest(picture, factor), interpolation="nearest")
        ax.set_title(f"{name} ({picture.shape[0]}x{picture.shape[1]})", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
        if reference is not None and name != reference:
            if pictures[reference].shape != picture.shape:
                ax.set_xlabel(f"not comparable with {reference}: {pictures[reference].shape[:2]} pixels", fontsize=8)
            else:
                # pictures are in [0, 1]; the metrics speak the model's [-1, 1] scale, hence 2x - 1
                # (PSNR's peak is the reference picture's own range, as compare.metrics defines it)
                metrics = compare.metrics(2 * pictures[reference] - 1, 2 * picture - 1)
                ax.set_xlabel(f"vs {reference}: max |Δ| {metrics['max_abs']:.3g}\n"
                              f"PSNR {metrics['psnr_db']:.1f} dB · cos {metrics['cosine']:.4f}", fontsize=8)
    fig.suptitle(title)
    return fig


def image_grid(rows: Mapping[str, Sequence], columns: Sequence[str] = None, title: str = "images") -> Figure:
    """Rows of pictures on one grid (e.g. camera frames, expected outputs, actual outputs): each row labelled
    with its name on the left, each column with ``columns`` (default: frame 0, frame 1, ...) on top."""
    labels = list(rows)
    count = max(len(rows[label]) for label in labels)
    columns = list(columns) if columns is not None else [f"frame {i}" for i in range(count)]
    fig = Figure(figsize=(2.1 * count + 0.6, 2.2 * len(labels) + 0.5), layout="constrained")
    axes = fig.subplots(len(labels), count, squeeze=False)
    for r, label in enumerate(labels):
        for c, ax in enumerate(axes[r]):
            if c < len(rows[label]):
                ax.imshow(image_display(rows[label][c]), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0 and c < len(columns):
                ax.set_title(columns[c], fontsize=9)
        axes[r, 0].set_ylabel(label, fontsize=10)
    fig.suptitle(title)
    return fig


# ---------------------------------------------------------------------------------------------------------
# Weights
# ---------------------------------------------------------------------------------------------------------


def kernel_matrix(weight, max_out: int = 64, max_in: int = 16) -> np.ndarray:
    """A conv weight (out, in, kh, kw) as one 2-D picture: rows are input channels, columns output channels.

    1x1 kernels: the (in, out) matrix itself; for the first conv, (R, G, B) x channels, so one sees at a
    glance how each channel mixes the colours. kxk kernels: a mosaic of kxk tiles separated by a NaN gap
    (drawn as background). At most `max_out` x `max_in` kernels are shown."""
    weight = as_array(weight)
    if weight.ndim != 4:
        raise ValueError(f"a convolution weight is (out, in, kh, kw), got shape {weight.shape}")
    weight = weight[:max_out, :max_in]
    n_out, n_in, kh, kw = weight.shape
    if kh == kw == 1:
        return weight[:, :, 0, 0].T
    mosaic = np.full((n_in * (kh + 1) - 1, n_out * (kw + 1) - 1), np.nan)
    for i in range(n_in):
        for o in range(n_out):
            mosaic[i * (kh + 1):i * (kh + 1) + kh, o * (kw + 1):o * (kw + 1) + kw] = weight[o, i]
    return mosaic


def kernel_mosaic(weights, title: str = "convolution kernels", max_out: int = 64, max_in: int = 16) -> Figure:
    """Kernels of one conv weight, or of several versions of it ({"checkpoint": w, "artefact": w'}) one
    above the other on one symmetric colour scale. See `kernel_matrix` for the layout."""
    weights = weights if isinstance(weights, Mapping) else {"weight": weights}
    matrices = {name: kernel_matrix(w, max_out, max_in) for name, w in weights.items()}
    shapes = {name: as_array(w).shape for name, w in weights.items()}
    vmin, vmax = symmetric_range(*matrices.values())
    height, width = next(iter(matrices.values())).shape
    panel_width = min(12.0, max(4.0, 0.22 * width))
    # capped: a weight with few output channels is a tall, narrow matrix, which would otherwise make a poster
    panel_height = min(4.0, max(1.4, panel_width * height / width))
    fig = Figure(figsize=(panel_width + 1.6, (panel_height + 0.7) * len(matrices) + 0.5), layout="constrained")
    axes = np.atleast_1d(fig.subplots(len(matrices), 1, squeeze=False)).ravel()
    for ax, (name, matrix) in zip(axes, matrices.items()):
        n_out, n_in, kh, kw = shapes[name]
        artist = ax.imshow(matrix, cmap=colormaps[WEIGHT_CMAP].with_extremes(bad="0.3"), vmin=vmin, vmax=vmax,
                           interpolation="nearest")  # bad = the NaN gaps between kernels: dark grey
        shown_in, shown_out = min(n_in, max_in), min(n_out, max_out)
        if kh == kw == 1:
            labels = CHANNEL_NAMES_RGB if n_in == 3 else [str(i) for i in range(shown_in)]
            ax.set_yticks(range(shown_in), labels)
            ax.set_xlabel(f"output channel (0–{shown_out - 1} of {n_out})")
            ax.set_ylabel("input" if n_in != 3 else "input colour")
        else:
            ax.set_xticks([o * (kw + 1) + (kw - 1) / 2 for o in range(0, shown_out, max(1, shown_out // 8))],
                          [str(o) for o in range(0, shown_out, max(1, shown_out // 8))])
            ax.set_yticks([i * (kh + 1) + (kh - 1) / 2 for i in range(shown_in)],
                          CHANNEL_NAMES_RGB if n_in == 3 else [str(i) for i in range(shown_in)])
            ax.set_xlabel(f"output channel ({shown_out} of {n_out}), one {kh}x{kw} tile each")
            ax.set_ylabel(f"input channel ({shown_in} of {n_in})")
        ax.set_title(f"{name} {tuple(shapes[name])}: mean {np.nanmean(matrix):.3g}, std {np.nanstd(matrix):.3g}",
                     fontsize=9)
    fig.colorbar(artist, ax=axes.tolist(), label="weight (shared scale)", shrink=0.9)
    fig.suptitle(title)
    return fig


def histogram_edges(*arrays, bins: int = 80) -> np.ndarray:
    """Bin edges shared by several arrays, so their histograms can be overlaid bar for bar."""
    low, high = value_range(*arrays)
    return np.linspace(low, high, bins + 1)


def weight_histograms(weights: Mapping, title: str = "weights", bins: int = 80, log: bool = True) -> Figure:
    """Histograms of one parameter's versions (e.g. checkpoint and artefact), overlaid on shared bins.

    The counts are drawn as steps (``ax.stairs``) so that both stay visible where they overlap; `log`
    puts the counts on a log scale, where the tails of a trained layer show."""
    arrays = {name: as_array(w).ravel() for name, w in weights.items()}
    edges = histogram_edges(*arrays.values(), bins=bins)
    fig = Figure(figsize=(6.4, 3.6), layout="constrained")
    ax = fig.subplots()
    for name, values in arrays.items():
        counts, _ = np.histogram(values[np.isfinite(values)], bins=edges)
        ax.stairs(counts, edges, label=f"{name}: mean {values.mean():.3g}, std {values.std():.3g}",
                  fill=False, linewidth=1.6)
    if log:
        ax.set_yscale("symlog", linthresh=1)  # symlog: empty bins (0) stay on the plot
    ax.set_xlabel("weight value")
    ax.set_ylabel("count")
    ax.legend(fontsize=8)
    size = next(iter(arrays.values())).size
    ax.set_title(f"{title} ({size:,} values, {bins} shared bins)", fontsize=10)
    return fig


def weight_table(reference: Mapping, other: Mapping, names: Sequence[str] = ("checkpoint", "artefact"),
                 tolerance: float = 1e-6) -> pd.DataFrame:
    """One row per parameter (in the reference's order): statistics of both versions and how far apart.

    rel_diff = ||other − reference|| / ||reference||; a copied weight gives 0 (an exported copy is bitwise
    equal), and `tolerance` only allows for float32 rounding if the artefact recomputed a weight. A
    parameter missing from `other` has NaN statistics and is marked as such."""
    ref_name, other_name = names
    rows = []
    # about 10 s for the official model's 86 M values on a busy 2-core machine: worth a progress bar
    for key, ref_value in tqdm(reference.items(), total=len(reference), desc="weights", leave=False,
                               disable=len(reference) < 100):
        ref = as_array(ref_value)
        row = {"parameter": key, "shape": tuple(ref.shape), "numel": ref.size,
               f"{ref_name}_mean": ref.mean(), f"{ref_name}_std": ref.std()}
        if key in other and tuple(other[key].shape) == ref.shape:
            oth = as_array(other[key])
            diff = oth - ref
            ref_norm, diff_norm = float(np.linalg.norm(ref)), float(np.linalg.norm(diff))
            rel = diff_norm / ref_norm if ref_norm > 0 else (0.0 if diff_norm == 0 else float("inf"))
            row.update({f"{other_name}_mean": oth.mean(), f"{other_name}_std": oth.std(),
                        "max_abs_diff": float(np.max(np.abs(diff))) if diff.size else 0.0, "rel_diff": rel,
                        "status": "same" if rel <= tolerance else "DIFFERENT"})
        else:
            missing = key not in other
            row.update({f"{other_name}_mean": np.nan, f"{other_name}_std": np.nan, "max_abs_diff": np.nan,
                        "rel_diff": np.nan, "status": f"missing in {other_name}" if missing else "shape differs"})
        rows.append(row)
    return pd.DataFrame(rows).set_index("parameter")


def weights_overview(reference: Mapping, other: Mapping, names: Sequence[str] = ("checkpoint", "artefact"),
                     tolerance: float = 1e-6, title: str = "all parameters") -> Figure:
    """Every parameter at once, in state-dict order: top, the spread (std) of each version; bottom, the
    relative difference, red where it exceeds `tolerance`. Untrained layers stand out as red bars, and
    usually as a std that jumps to the initialiser's value."""
    table = weight_table(reference, other, names, tolerance)
    ref_name, other_name = names
    index = np.arange(len(table))
    fig = Figure(figsize=(min(16.0, max(7.0, 0.06 * len(table) + 5)), 6.0), layout="constrained")
    ax_std, ax_diff = fig.subplots(2, 1, sharex=True)
    for name, marker in ((ref_name, "o"), (other_name, "x")):
        std = table[f"{name}_std"].to_numpy(dtype=float)
        ax_std.plot(index, np.where(std > 0, std, np.nan), marker, markersize=3.5, linestyle="none", label=name)
    ax_std.set_yscale("log")
    ax_std.set_ylabel("std of the weights")
    ax_std.legend(fontsize=8)
    rel = table["rel_diff"].to_numpy(dtype=float)
    floor = tolerance / 100  # zero differences are drawn at this floor, below the threshold line
    differs = ~(rel <= tolerance)  # NaN (missing) counts as differing
    heights = np.where(np.isfinite(rel), np.maximum(rel, floor), 1.0)
    ax_diff.bar(index, heights, width=1.0, color=np.where(differs, "tab:red", "0.6"), bottom=0)
    ax_diff.axhline(tolerance, color="black", linewidth=0.8, linestyle="--", label=f"tolerance {tolerance:g}")
    ax_diff.set_yscale("log")
    ax_diff.set_ylabel(f"||{other_name} − {ref_name}|| / ||{ref_name}||")
    ax_diff.legend(fontsize=8, loc="upper left")
    _label_parameter_groups(ax_diff, list(table.index))
    fig.suptitle(f"{title}: {int(differs.sum())} of {len(table)} parameters differ "
                 f"({table['numel'][differs].sum():,} of {table['numel'].sum():,} values)")
    return fig


def _label_parameter_groups(ax, keys: Sequence[str], max_labels: int = 40):
    """x tick labels: every key when few, else the first key of each top-level module."""
    if len(keys) <= max_labels:
        ax.set_xticks(range(len(keys)), keys, rotation=90, fontsize=6)
        return
    starts = [i for i, key in enumerate(keys) if i == 0 or key.split(".")[0] != keys[i - 1].split(".")[0]]
    ax.set_xticks(starts, [keys[i].split(".")[0] for i in starts], rotation=90, fontsize=7)
    ax.set_xlabel("parameters in state-dict order")
