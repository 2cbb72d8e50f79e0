"""viz: figures are built from known arrays and checked by what they hold (pixels, colour limits, counts)."""
import warnings

import numpy as np
import pytest
import torch

from gfpgan_debug import viz


def image_axes(fig):
    """The axes that show a picture, in creation order (colour bars hold no image)."""
    return [ax for ax in fig.axes if ax.images]


def shown(ax) -> np.ndarray:
    return np.ma.getdata(ax.images[0].get_array())


def colorbar_labels(fig):
    return [ax.get_ylabel() for ax in fig.axes if not ax.images and ax.get_label() == "<colorbar>"]


def random_maps(channels=4, size=8, seed=0):
    return np.random.default_rng(seed).normal(size=(1, channels, size, size)).astype(np.float32)


# ---------------------------------------------------------------------------------------------------------
# enlargement and ranges
# ---------------------------------------------------------------------------------------------------------


def test_upscale_nearest_repeats_each_pixel_into_a_block_and_adds_no_new_values():
    image = np.array([[1.0, 2.0], [3.0, 4.0]])
    big = viz.upscale_nearest(image, 3)
    assert big.shape == (6, 6)
    for i in range(2):
        for j in range(2):
            assert np.all(big[3 * i:3 * i + 3, 3 * j:3 * j + 3] == image[i, j])
    assert set(np.unique(big)) == {1.0, 2.0, 3.0, 4.0}


def test_upscale_nearest_keeps_the_colour_axis_of_a_picture():
    picture = np.arange(2 * 2 * 3, dtype=float).reshape(2, 2, 3)
    big = viz.upscale_nearest(picture, 4)
    assert big.shape == (8, 8, 3)
    np.testing.assert_array_equal(big[5, 6], picture[1, 1])


def test_display_factor_brings_an_8x8_map_to_the_display_size():
    assert viz.display_factor(8, 256) == 32
    assert viz.display_factor(512, 256) == 1  # never shrinks
    assert viz.display_factor(100, 256) == 3  # whole numbers only: every pixel the same size


def test_value_range_ignores_nan_and_widens_a_constant_map():
    assert viz.value_range(np.array([np.nan, 1.0, 3.0])) == (1.0, 3.0)
    low, high = viz.value_range(np.full((4, 4), 2.5))
    assert low < 2.5 < high
    low, high = viz.value_range(np.zeros((4, 4)))
    assert low < 0 < high and np.isfinite([low, high]).all()
    assert viz.value_range(np.full(3, np.nan)) == (-1.0, 1.0)


def test_as_maps_accepts_tensors_and_rejects_batches():
    maps = viz.as_maps(torch.ones(1, 2, 4, 4, requires_grad=True))
    assert maps.shape == (2, 4, 4) and maps.dtype == np.float64
    assert viz.as_maps(np.zeros((5, 5))).shape == (1, 5, 5)
    with pytest.raises(ValueError, match="batch size 1"):
        viz.as_maps(np.zeros((2, 3, 4, 4)))


# ---------------------------------------------------------------------------------------------------------
# feature maps
# ---------------------------------------------------------------------------------------------------------


def test_channel_heatmaps_show_each_channel_enlarged_on_one_shared_scale():
    maps = random_maps(channels=6)
    fig = viz.channel_heatmaps(maps, max_channels=4, title="conv_body_up.0.conv2")
    axes = image_axes(fig)
    assert len(axes) == 4
    factor = viz.display_factor(8, viz.DISPLAY_PIXELS // 2)
    for channel, ax in enumerate(axes):
        np.testing.assert_allclose(shown(ax), viz.upscale_nearest(maps[0, channel].astype(np.float64), factor))
        assert ax.get_title() == f"channel {channel}"
        assert ax.images[0].get_clim() == pytest.approx((maps[0, :4].min(), maps[0, :4].max()))
    assert colorbar_labels(fig) == ["activation (shared scale)"]
    assert "conv_body_up.0.conv2: 4 of 6 channels, 8x8" in fig._suptitle.get_text()


def test_rgb_maps_show_every_scale_at_the_same_size_and_note_clipping():
    rng = np.random.default_rng(1)
    maps = {f"rgb_{s}": rng.uniform(-1.5, 1.5, size=(1, 3, s, s)) for s in (8, 16, 32)}
    fig = viz.rgb_maps(maps)
    axes = image_axes(fig)
    assert [ax.get_title() for ax in axes] == ["rgb_8 (8x8)", "rgb_16 (16x16)", "rgb_32 (32x32)"]
    assert {shown(ax).shape for ax in axes} == {(256, 256, 3)}
    expected = np.clip((maps["rgb_8"][0].transpose(1, 2, 0) + 1) / 2, 0, 1)
    np.testing.assert_allclose(shown(axes[0])[::32, ::32], expected)
    assert axes[0].get_xlabel() == f"values in [{maps['rgb_8'].min():.2f}, {maps['rgb_8'].max():.2f}]"


def test_compare_panels_put_the_most_different_channel_first_with_shared_and_symmetric_scales():
    reference = random_maps(channels=8)
    actual = reference.copy()
    actual[0, 5] += 0.75  # the one channel that moved
    fig = viz.compare_panels(reference, actual, names=("eager", "libtorch"), max_rows=2, title="rgb")
    axes = image_axes(fig)
    assert len(axes) == 6  # two rows of reference | actual | difference
    assert [ax.get_title() for ax in axes[:3]] == ["eager, channel 5", "libtorch, channel 5",
                                                   "libtorch − eager, channel 5"]
    rows = [5, 0]  # channel 5 first; the rest differ by nothing, so the lowest index follows
    factor = viz.display_factor(8, viz.DISPLAY_PIXELS // 2)
    low = min(reference[0, rows].min(), actual[0, rows].min())
    high = max(reference[0, rows].max(), actual[0, rows].max())
    for row, channel in enumerate(rows):
        ref_ax, act_ax, diff_ax = axes[3 * row:3 * row + 3]
        np.testing.assert_allclose(shown(ref_ax), viz.upscale_nearest(reference[0, channel], factor), rtol=1e-6)
        np.testing.assert_allclose(shown(act_ax), viz.upscale_nearest(actual[0, channel], factor), rtol=1e-6)
        expected_diff = actual[0, channel].astype(np.float64) - reference[0, channel]
        np.testing.assert_allclose(shown(diff_ax), viz.upscale_nearest(expected_diff, factor), atol=1e-6)
        assert ref_ax.images[0].get_clim() == pytest.approx((low, high), rel=1e-6)
        assert act_ax.images[0].get_clim() == pytest.approx((low, high), rel=1e-6)
        # float32 inputs: 0.75 added in float32 is 0.75 to within its rounding
        assert diff_ax.images[0].get_clim() == pytest.approx((-0.75, 0.75), rel=1e-6)
    assert colorbar_labels(fig) == ["value (eager and libtorch)", "libtorch − eager"]
    assert "max |Δ| 0.75" in fig._suptitle.get_text()


def test_compare_panels_show_three_channel_maps_as_pictures_with_a_per_pixel_difference():
    reference = np.random.default_rng(2).uniform(-1, 1, size=(1, 3, 8, 8))
    actual = reference.copy()
    actual[0, 1, 2, 3] += 0.5  # one pixel, green only
    fig = viz.compare_panels(reference, actual)
    ref_ax, act_ax, diff_ax = image_axes(fig)
    factor = viz.display_factor(8)
    np.testing.assert_allclose(shown(ref_ax), viz.upscale_nearest((reference[0].transpose(1, 2, 0) + 1) / 2, factor))
    diff = shown(diff_ax)[::factor, ::factor]
    assert diff[2, 3] == pytest.approx(0.5)
    assert np.count_nonzero(diff) == 1
    assert diff_ax.images[0].get_clim() == pytest.approx((0.0, 0.5))


@pytest.mark.parametrize("value", [0.0, 3.0])
def test_compare_panels_of_equal_constant_maps_draw_without_warnings(value):
    maps = np.full((1, 4, 8, 8), value)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a division by zero would be a RuntimeWarning
        fig = viz.compare_panels(maps, maps.copy())
    axes = image_axes(fig)
    low, high = axes[0].images[0].get_clim()
    assert np.isfinite([low, high]).all() and low < value < high
    assert np.all(shown(axes[2]) == 0)
    dlow, dhigh = axes[2].images[0].get_clim()
    assert dlow == -dhigh and dhigh > 0
    assert "max |Δ| 0" in fig._suptitle.get_text()


def test_compare_panels_name_both_shapes_when_they_differ():
    with pytest.raises(ValueError, match=r"\(3, 8, 8\).*\(3, 16, 16\)"):
        viz.compare_panels(np.zeros((1, 3, 8, 8)), np.zeros((1, 3, 16, 16)))


# ---------------------------------------------------------------------------------------------------------
# images
# ---------------------------------------------------------------------------------------------------------


def test_image_strip_titles_each_picture_and_writes_metrics_against_the_reference():
    expected = np.zeros((1, 3, 64, 64))
    actual = np.full((1, 3, 64, 64), 0.5)
    expected[0, :, :32] = -1.0  # give the reference a range, which PSNR's peak is taken from
    fig = viz.image_strip({"source": expected, "expected": expected, "actual": actual}, reference="expected")
    axes = image_axes(fig)
    assert [ax.get_title() for ax in axes] == ["source (64x64)", "expected (64x64)", "actual (64x64)"]
    assert axes[1].get_xlabel() == ""  # the reference is not compared with itself
    assert "max |Δ| 1.5" in axes[2].get_xlabel()
    assert "PSNR inf dB" in axes[0].get_xlabel()  # source equals expected


def test_image_strip_reads_8_bit_bgr_as_opencv_gives_it():
    bgr = np.zeros((16, 16, 3), np.uint8)
    bgr[..., 0] = 255  # pure blue in OpenCV's order
    fig = viz.image_strip({"face": bgr})
    np.testing.assert_allclose(shown(image_axes(fig)[0])[0, 0], [0.0, 0.0, 1.0])


def test_image_grid_labels_rows_and_columns_and_shows_each_picture_in_place():
    pictures = [np.full((1, 3, 8, 8), v) for v in (-1.0, 0.0, 1.0)]
    fig = viz.image_grid({"frames": pictures, "outputs": pictures[:2]}, columns=["a", "b", "c"], title="grid")
    axes = np.array(fig.axes).reshape(2, 3)
    assert [ax.get_title() for ax in axes[0]] == ["a", "b", "c"]
    assert [ax.get_ylabel() for ax in axes[:, 0]] == ["frames", "outputs"]
    np.testing.assert_allclose(shown(axes[0, 2])[0, 0], [1.0, 1.0, 1.0])  # +1 in model space is white
    np.testing.assert_allclose(shown(axes[1, 1])[0, 0], [0.5, 0.5, 0.5])
    assert not axes[1, 2].images  # a shorter row leaves its last cell empty
    assert fig._suptitle.get_text() == "grid"


# ---------------------------------------------------------------------------------------------------------
# weights
# ---------------------------------------------------------------------------------------------------------


def test_kernel_matrix_of_1x1_kernels_is_inputs_by_outputs():
    weight = np.random.default_rng(3).normal(size=(32, 3, 1, 1))
    np.testing.assert_array_equal(viz.kernel_matrix(weight), weight[:, :, 0, 0].T)


def test_kernel_matrix_of_3x3_kernels_tiles_them_with_gaps():
    weight = np.random.default_rng(4).normal(size=(5, 2, 3, 3))
    mosaic = viz.kernel_matrix(weight)
    assert mosaic.shape == (2 * 4 - 1, 5 * 4 - 1)
    np.testing.assert_array_equal(mosaic[4:7, 8:11], weight[2, 1])  # input 1, output 2
    assert np.isnan(mosaic[3, :]).all() and np.isnan(mosaic[:, 3]).all()


def test_kernel_mosaic_puts_checkpoint_and_artefact_on_one_symmetric_scale():
    rng = np.random.default_rng(5)
    checkpoint = rng.normal(size=(32, 3, 1, 1))
    artefact = rng.uniform(-0.1, 0.1, size=(32, 3, 1, 1))
    fig = viz.kernel_mosaic({"checkpoint": checkpoint, "artefact": artefact}, title="conv_body_first.weight")
    top, bottom = image_axes(fig)
    largest = np.abs(checkpoint).max()
    assert top.images[0].get_clim() == pytest.approx((-largest, largest))
    assert bottom.images[0].get_clim() == pytest.approx((-largest, largest))
    np.testing.assert_array_equal(shown(bottom), artefact[:, :, 0, 0].T)
    assert [t.get_text() for t in top.get_yticklabels()] == ["R", "G", "B"]
    assert top.get_title().startswith("checkpoint (32, 3, 1, 1)")
    assert colorbar_labels(fig) == ["weight (shared scale)"]


def test_kernel_mosaic_of_a_conv_with_few_output_channels_stays_page_sized():
    # the demo model's first conv is (2, 3, 1, 1): a 3x2 matrix, tall and narrow
    rng = np.random.default_rng(7)
    fig = viz.kernel_mosaic({"checkpoint": rng.normal(size=(2, 3, 1, 1)), "artefact": rng.normal(size=(2, 3, 1, 1))})
    width, height = fig.get_size_inches()
    assert height <= 10.5  # two panels of at most 4 inches, their titles and the suptitle
    top, bottom = image_axes(fig)
    assert shown(top).shape == (3, 2)


def test_kernel_mosaic_refuses_a_weight_that_is_not_a_convolution():
    with pytest.raises(ValueError, match="out, in, kh, kw"):
        viz.kernel_mosaic(np.zeros((4, 4)))


def test_weight_histograms_overlay_counts_on_shared_bins():
    rng = np.random.default_rng(6)
    checkpoint = rng.normal(0, 0.05, size=4000)
    artefact = rng.uniform(-0.5, 0.5, size=4000)
    fig = viz.weight_histograms({"checkpoint": checkpoint, "artefact": artefact}, bins=40)
    ax = fig.axes[0]
    steps = [patch.get_data() for patch in ax.patches]
    assert len(steps) == 2
    edges = np.linspace(min(checkpoint.min(), artefact.min()), max(checkpoint.max(), artefact.max()), 41)
    for step, values in zip(steps, (checkpoint, artefact)):
        np.testing.assert_allclose(step.edges, edges)
        np.testing.assert_array_equal(step.values, np.histogram(values, bins=edges)[0])
        assert step.values.sum() == values.size
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert labels[0].startswith("checkpoint: mean") and labels[1].startswith("artefact: mean")


def test_weight_histograms_of_an_all_zero_layer_put_every_value_in_one_bin():
    fig = viz.weight_histograms({"artefact": np.zeros(100)}, bins=10)
    counts = fig.axes[0].patches[0].get_data().values
    assert counts.sum() == 100 and counts.max() == 100


def state_dicts():
    rng = np.random.default_rng(7)
    checkpoint = {f"block{i}.weight": rng.normal(0, 0.02, size=(8, 8)) for i in range(6)}
    artefact = dict(checkpoint)
    artefact["block3.weight"] = rng.uniform(-0.3, 0.3, size=(8, 8))  # the untrained one
    return checkpoint, artefact


def test_weight_table_marks_the_layer_that_differs_and_computes_its_relative_difference():
    checkpoint, artefact = state_dicts()
    del artefact["block5.weight"]
    table = viz.weight_table(checkpoint, artefact)
    assert list(table.index) == list(checkpoint)
    assert list(table["status"]) == ["same"] * 3 + ["DIFFERENT", "same", "missing in artefact"]
    expected = (np.linalg.norm(artefact["block3.weight"] - checkpoint["block3.weight"])
                / np.linalg.norm(checkpoint["block3.weight"]))
    assert table.loc["block3.weight", "rel_diff"] == pytest.approx(expected)
    assert table.loc["block0.weight", "rel_diff"] == 0.0


def test_weights_overview_draws_the_untrained_layer_as_the_one_red_bar():
    checkpoint, artefact = state_dicts()
    fig = viz.weights_overview(checkpoint, artefact)
    std_ax, diff_ax = fig.axes[:2]
    bars = diff_ax.patches
    assert len(bars) == 6
    red = [i for i, bar in enumerate(bars) if bar.get_facecolor()[:3] == pytest.approx((0.839, 0.153, 0.157), abs=1e-3)]
    assert red == [3]
    expected = (np.linalg.norm(artefact["block3.weight"] - checkpoint["block3.weight"])
                / np.linalg.norm(checkpoint["block3.weight"]))
    assert bars[3].get_height() == pytest.approx(expected)
    assert all(bar.get_height() < 1e-6 for i, bar in enumerate(bars) if i != 3)  # equal layers sit below the line
    artefact_std = std_ax.lines[1].get_ydata()
    assert artefact_std[3] == pytest.approx(artefact["block3.weight"].std())
    assert "1 of 6 parameters differ" in fig._suptitle.get_text()
