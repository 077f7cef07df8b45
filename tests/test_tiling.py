"""Tiling properties: round trip, tiles cut without a canvas, tiled inference equal to whole-image inference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from denoiser.tiling import (
    Blend,
    Whole,
    blender,
    extract_tiles,
    pad_to_canvas,
    plan_tiles,
    stitch_tiles,
    tile_at,
    tile_origin,
)

SIDES = st.sampled_from([16, 32, 48])


@settings(max_examples=60, deadline=None)
@given(
    height=st.integers(1, 150),
    width=st.integers(1, 150),
    channels=st.sampled_from([1, 3]),
    tile=st.tuples(SIDES, SIDES),
    overlap_share=st.floats(0.1, 0.6),
    align=st.sampled_from([1, 4]),
    seed=st.integers(0, 2**16),
)
def test_identity_round_trip_is_exact_up_to_float32_rounding(height, width, channels, tile, overlap_share, align, seed):
    overlap = max(align, int(min(tile) * overlap_share) // align * align)
    plan = plan_tiles(height, width, tile, overlap, align=align)
    image = np.random.default_rng(seed).random((height, width, channels), dtype=np.float32)
    np.testing.assert_allclose(stitch_tiles(extract_tiles(image, plan), plan), image, rtol=1e-6, atol=0)


@settings(max_examples=60, deadline=None)
@given(
    height=st.integers(1, 150),
    width=st.integers(1, 150),
    tile=st.tuples(SIDES, SIDES),
    align=st.sampled_from([1, 4, 8]),
    seed=st.integers(0, 2**16),
)
def test_tiles_cut_from_the_image_equal_tiles_of_the_padded_canvas(height, width, tile, align, seed):
    plan = plan_tiles(height, width, tile, overlap=align * (min(tile) // (2 * align)) or align, align=align)
    image = np.random.default_rng(seed).random((height, width, 2), dtype=np.float32)
    canvas = pad_to_canvas(image, plan)
    for index in range(plan.count):
        y, x = tile_origin(plan, index)
        assert np.array_equal(tile_at(image, plan, index), canvas[y : y + tile[0], x : x + tile[1]])


@pytest.mark.parametrize("size", [(10, 7), (40, 40), (41, 100)])
def test_every_pixel_is_covered_and_origins_are_aligned(size):
    plan = plan_tiles(*size, tile=16, overlap=8, align=4)
    assert all(y % 4 == 0 for y in plan.ys) and all(x % 4 == 0 for x in plan.xs)
    assert plan.ys[-1] + 16 == plan.canvas[0] and plan.xs[-1] + 16 == plan.canvas[1]
    assert plan.canvas[0] % 4 == 0 and plan.canvas[0] >= max(16, size[0])


def test_blending_needs_no_memory_beyond_its_band_and_a_few_tiles():
    import tracemalloc

    plan = plan_tiles(600, 4000, tile=256, overlap=64)
    tiles = np.random.default_rng(0).random((plan.count, 256, 256, 3), dtype=np.float32)
    out = np.empty((600, 4000, 3), np.float32)
    tracemalloc.start()
    blend = Blend(plan, out, 3)
    for index, tile in enumerate(tiles):
        blend.add(index, tile)
    blend.finish()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < blend.band.nbytes + 4 * tiles[0].nbytes


@pytest.mark.parametrize("channels, out_channels", [(1, 1), (3, 3), (3, 1)])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_a_one_tile_plan_is_written_straight_out_as_blending_would(channels, out_channels, dtype):
    import ml_dtypes

    plan = plan_tiles(37, 50, (48, 64), 16, 4, align=16)
    tile = np.random.default_rng(0).random((48, 64, channels)).astype(getattr(ml_dtypes, dtype, dtype))
    outputs = []
    for writer in (Whole, Blend):
        out = np.full((37, 50, out_channels), np.nan, np.float32)
        made = writer(plan, out) if writer is Whole else writer(plan, out, channels)
        made.add(0, tile)
        outputs.append(made.finish())
    np.testing.assert_array_equal(outputs[0], outputs[1])
    assert type(blender(plan, out, channels)) is Whole
    assert type(blender(plan_tiles(37, 50, (32, 32), 16, 4, align=16), out, channels)) is Blend


def test_rejects_overlap_that_leaves_no_blend():
    with pytest.raises(ValueError):
        plan_tiles(100, 100, tile=32, overlap=32)
    with pytest.raises(ValueError):
        plan_tiles(100, 100, tile=32, overlap=8, margin=4)


@pytest.fixture(scope="module")
def conv_models():
    """A seed autoencoder (pools by 4), a residual net, a half-resolution U-Net (folds, then halves: 4) and a
    one-level one under a full-resolution level (folds only: 2), with random weights."""
    import keras

    from denoise_train.presets import residual, seed, unet_half, unet_lite

    keras.utils.set_random_seed(3)
    return {
        "seed": (seed(1), 4),
        "residual": (residual(3, depth=5, width=8), 1),
        "unet-half": (unet_half(1, width=4, levels=2), 4),
        "unet-lite": (unet_lite(1, width=4, levels=1, top=4), 2),
    }


@pytest.mark.parametrize("layers, expected", [(2, 20), (5, 50)])
def test_receptive_radius_is_measured_whole_even_beyond_the_first_probe(layers, expected):
    import keras

    from denoiser.artifact import measure_receptive_radius

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((None, None, 1))] + [keras.layers.Conv2D(1, 21, padding="same") for _ in range(layers)]
    )
    assert measure_receptive_radius(model) == expected  # the first probe is 96 px, its centre 48 px from the edge


@pytest.mark.parametrize("name", ["seed", "residual", "unet-half", "unet-lite"])
@settings(max_examples=6, deadline=None)
@given(
    height=st.integers(64, 150),
    width=st.integers(64, 150),
    tile=st.sampled_from([(64, 64), (64, 96), (96, 64)]),
    seed=st.integers(0, 2**16),
)
def test_tiled_equals_whole_image_for_conv_models(conv_models, name, height, width, tile, seed):
    from denoiser.artifact import measure_receptive_radius

    model, align = conv_models[name]
    radius = measure_receptive_radius(model, align)
    overlap = -(-(2 * radius + 1) // align) * align
    plan = plan_tiles(height, width, tile, overlap=overlap, margin=radius, align=align)
    image = np.random.default_rng(seed).random((height, width, model.input_shape[-1]), dtype=np.float32)
    tiles = np.asarray(model.predict_on_batch(extract_tiles(image, plan)))
    whole = np.asarray(model.predict_on_batch(pad_to_canvas(image, plan)[None]))[0][:height, :width]
    np.testing.assert_allclose(stitch_tiles(tiles, plan), whole, atol=1e-4)
