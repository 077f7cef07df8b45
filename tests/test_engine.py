"""Engine batching: fixed-shape batches across images, order kept, channel adaptation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from denoiser import engine as engine_module
from denoiser.artifact import Artifact, load_artifact
from denoiser.engine import (
    ORIENTATIONS,
    Engine,
    Settings,
    conv_seconds,
    measure_seam_radius,
    orient,
    padded_count,
    resolve_device,
    resolve_precision,
    square_crop,
)
from denoiser.tiling import round_up


@pytest.fixture(scope="module")
def gray_engine(tiny_models):
    return Engine(load_artifact(tiny_models["gray"]), Settings(tile=32, batch_size=5))


def record_batch_shapes(engine: Engine) -> list:
    """Wrap the engine's model so every predicted batch shape is recorded."""
    shapes = []
    model = engine.artifact.model
    original = model.predict_on_batch

    def spy(batch):
        shapes.append(batch.shape)
        return original(batch)

    model.predict_on_batch = spy
    return shapes


def test_each_image_is_cut_into_the_fewest_tiles_each_fitted_to_it(tiny_models):
    engine = Engine(load_artifact(tiny_models["gray"]), Settings(tile=768, overlap=104))
    expected = {
        (321, 481): (1, (336, 496)),
        (600, 800): (2, (608, 464)),
        (1080, 1920): (6, (592, 720)),
        (2048, 2048): (9, (752, 752)),
        (4000, 6000): (54, (768, 768)),
        (10, 12): (1, (16, 16)),
    }
    plans = {size: engine.plan(*size) for size in expected}
    assert {size: (plan.count, plan.tile) for size, plan in plans.items()} == expected


@pytest.mark.parametrize("overlap, tile", [(104, 1280), (110, 1280), (190, 1328), (208, 1456)])
def test_the_default_tile_is_1280_or_seven_overlaps_where_that_is_more(tiny_models, overlap, tile):
    engine = Engine(load_artifact(tiny_models["gray"]), Settings(overlap=overlap))
    assert engine.tile == tile
    assert Engine(engine.artifact, Settings(tile=640, overlap=overlap)).tile == max(640, 2 * overlap)


@settings(max_examples=200, deadline=None)
@given(
    height=st.integers(1, 3000),
    width=st.integers(1, 3000),
    tile=st.sampled_from([0, 100, 256, 768]),
    overlap=st.sampled_from([8, 32, 104]),
)
def test_tile_plans_cover_the_image_with_the_fewest_and_shortest_tiles(gray_engine, height, width, tile, overlap):
    engine = Engine(gray_engine.artifact, Settings(tile=tile, overlap=overlap))
    plan = engine.plan(height, width)
    for size, side, starts in ((height, plan.tile[0], plan.ys), (width, plan.tile[1], plan.xs)):
        fewest = 1 if size <= engine.tile else -(-(size - overlap) // (engine.tile - overlap))
        assert side % 16 == 0 and side <= engine.tile and len(starts) == fewest
        assert starts[-1] + side >= size, "the tiles cover the image"
        assert size > side - 16 + (fewest - 1) * (side - 16 - overlap), "a side 16 px shorter would not"


def test_auto_device_is_the_cpu_where_the_backend_raises_for_a_missing_gpu(monkeypatch):
    import keras

    def no_gpu(kind):
        raise RuntimeError(f"Unknown backend: '{kind}' requested")  # what JAX does without one

    monkeypatch.setattr(keras.distribution, "list_devices", no_gpu)
    assert resolve_device("auto") == "cpu"
    with pytest.raises(RuntimeError, match="no GPU"):
        resolve_device("gpu")


@pytest.mark.parametrize(
    "has_bf16, float32_s, bfloat16_s, expected",
    [
        (True, 1.0, 0.5, "bfloat16"),
        (True, 1.0, 0.9, "float32"),
        (True, 1.0, 1.4, "float32"),
        (False, 1.0, 0.5, "float32"),
    ],
)
def test_auto_precision_on_a_cpu_is_bf16_only_where_its_units_run_a_convolution_faster(
    monkeypatch, has_bf16, float32_s, bfloat16_s, expected
):
    timed = []
    monkeypatch.setattr(engine_module, "cpu_has_bf16", lambda: has_bf16)
    monkeypatch.setattr(
        engine_module,
        "conv_seconds",
        lambda policy: timed.append(policy) or {"float32": float32_s, "mixed_bfloat16": bfloat16_s}[policy],
    )
    engine_module.cpu_bf16_is_faster.cache_clear()
    try:
        assert resolve_precision("auto", "cpu") == expected
        assert resolve_precision("auto", "cpu") == expected and len(timed) == 2 * has_bf16, "timed once, if at all"
        assert resolve_precision("auto", "gpu") == "float16" and resolve_precision("float32", "cpu") == "float32"
    finally:
        engine_module.cpu_bf16_is_faster.cache_clear()


def test_the_precision_probe_times_a_real_convolution():
    assert 0 < conv_seconds("float32", repeats=2) < 5 and 0 < conv_seconds("mixed_bfloat16", repeats=2) < 5


def test_on_jax_tile_sides_step_by_128_so_few_shapes_compile(gray_engine, monkeypatch):
    import keras

    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    engine = Engine(gray_engine.artifact, Settings(tile=768, overlap=104))
    sizes = [(300, 451), (320, 320), (384, 384), (481, 321), (500, 375), (640, 480), (333, 500), (1080, 1920)]
    tiles = {engine.plan(*size).tile for size in sizes}
    assert tiles == {(384, 512), (384, 384), (512, 384), (640, 512), (640, 768)}


def test_on_jax_large_tile_sides_step_by_an_eighth_of_their_octave(gray_engine, monkeypatch):
    import keras

    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    engine = Engine(gray_engine.artifact, Settings(tile=8192, overlap=104))
    assert engine.plan(4000, 6000).tile == (4096, 6144) and engine.plan(3024, 4032).tile == (3072, 4096)
    assert engine.plan(1000, 1100).tile == (1024, 1152), "sides below 2048 step by 128 as before"
    sides = {engine.plan(size, size).tile[0] for size in range(1, 8193, 7)}
    assert all(side % 128 == 0 and side <= 8192 for side in sides) and len(sides) <= 8 + 8 * 3
    for size in range(1, 8193, 7):
        side = engine.plan(size, size).tile[0]
        assert size <= side <= size * 1.125 + 128, "at most an eighth more a side, beyond the 128 step"


def test_warming_runs_three_small_tile_shapes_on_tensorflow_and_none_under_jax(tiny_models, monkeypatch, rng):
    import keras

    engine = Engine(load_artifact(tiny_models["gray"]), Settings(tile=32))
    shapes = record_batch_shapes(engine)
    engine.warm()
    assert {shape[1:3] for shape in shapes} == {(32, 32), (16, 32), (32, 16)}
    engine = Engine(load_artifact(tiny_models["gray"]), Settings(batch_size=2))
    shapes = record_batch_shapes(engine)
    engine.warm()
    assert {shape[1:3] for shape in shapes} == {(64, 64), (32, 64), (64, 32)}, "not the 1280-px tiles"
    traced = engine.artifact.model.predict_function.experimental_get_tracing_count()
    for size in ((300, 200), (130, 70), (64, 100)):
        engine.denoise(rng.random((*size, 1), dtype=np.float32))
    assert engine.artifact.model.predict_function.experimental_get_tracing_count() == traced, "no tracing after"
    shapes.clear()
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    engine.warm()
    assert shapes == [], "JAX compiles each shape: warming shapes images may not have only costs time"


def test_tiles_of_one_shape_from_consecutive_images_share_batches_of_few_shapes(tiny_models, rng):
    engine = Engine(load_artifact(tiny_models["gray"]), Settings(tile=32, batch_size=5))
    shapes = record_batch_shapes(engine)
    sizes = [(10, 12), (70, 33), (32, 32), (12, 15), (100, 90), (16, 3), (45, 45), (20, 40)]
    images = [rng.random((h, w, 1), dtype=np.float32) for h, w in sizes]
    outputs = list(engine.denoise_many(images))
    assert [o.shape for o in outputs] == [i.shape for i in images]
    plans = [engine.plan(*size) for size in sizes]
    assert [p.tile for p in plans] == [(16, 16), (32, 32), (32, 32), (16, 16), (32, 32), (16, 16), (32, 32), (32, 32)]
    for tile in {p.tile for p in plans}:
        tiles = sum(p.count for p in plans if p.tile == tile)
        batch_sizes = [shape[0] for shape in shapes if shape[1:] == (*tile, 1)]
        capacity = engine.capacity(tile)
        assert len(batch_sizes) == -(-tiles // capacity), "tiles of one shape from consecutive images share batches"
        assert set(batch_sizes[:-1]) <= {capacity}
        short = tiles % capacity or capacity
        assert batch_sizes[-1] == min(capacity, padded_count(short)), "short batches pad to few sizes"


def test_short_batches_pad_to_powers_of_two_then_multiples_of_eight():
    assert [padded_count(n) for n in (1, 2, 3, 5, 8, 9, 16, 17, 24, 25, 63)] == [1, 2, 4, 8, 8, 16, 16, 24, 24, 32, 64]


def test_progress_is_reported_after_every_batch_of_tiles(tiny_models, rng):
    engine = Engine(load_artifact(tiny_models["gray"]), Settings(tile=32, batch_size=2))
    shapes, reports = record_batch_shapes(engine), []
    images = [rng.random((70, 70, 1), dtype=np.float32), rng.random((20, 20, 1), dtype=np.float32)]
    for _ in engine.denoise_many(images, progress=lambda: reports.append(len(shapes))):
        pass
    assert len(shapes) > 2 and len(reports) == len(shapes), "one report for each batch run"
    assert all(started > done for done, started in enumerate(reports)), "each report after its batch has run"
    assert reports[:-1] == list(range(2, len(shapes) + 1)), "the next batch starts before one is blended back"


def test_on_a_cpu_a_batch_holds_batch_size_tiles_and_on_a_gpu_smaller_tiles_fill_its_area(tiny_models):
    artifact, shapes = load_artifact(tiny_models["gray"]), ((16, 16), (16, 32), (32, 32))
    assert [Engine(artifact, Settings(tile=32, batch_size=2)).capacity(shape) for shape in shapes] == [2, 2, 2]
    gpu = Engine(artifact, Settings(tile=32, batch_size=2), "gpu")
    assert [gpu.capacity(shape) for shape in shapes] == [8, 4, 2]


def test_a_large_image_does_not_hold_back_many_small_ones(tiny_models, rng):
    # as packed on a GPU (TensorFlow places the batches on the CPU where there is none)
    engine = Engine(load_artifact(tiny_models["gray"]), Settings(tile=32, batch_size=2), "gpu")
    capacities = [engine.capacity(shape) for shape in ((16, 16), (16, 32), (32, 32))]
    assert capacities == [8, 4, 2], "smaller tiles fill a batch of the same area"
    assert engine.plan(60, 60).count % 2, "the large image leaves a partial batch"
    pulled = []

    def images():
        for size in [(60, 60)] + [(10, 10)] * 60:
            pulled.append(size)
            yield rng.random(size + (1,), dtype=np.float32)

    stream = engine.denoise_many(images())
    assert next(stream).shape == (60, 60, 1)
    assert len(pulled) <= 2 * 2 + 2, "the large image's partial batch must run once small images pile up"
    assert len(list(stream)) == 60


def test_batched_equals_one_by_one(gray_engine, rng):
    images = [rng.random((h, w, 1), dtype=np.float32) for h, w in [(50, 61), (20, 20), (64, 40)]]
    together = list(gray_engine.denoise_many(images))
    alone = [gray_engine.denoise(image) for image in images]
    for a, b in zip(together, alone):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_engine_output_matches_whole_image_model(gray_engine, rng):
    image = rng.random((80, 75, 1), dtype=np.float32)
    model = gray_engine.artifact.model
    whole = np.clip(np.asarray(model.predict_on_batch(image[None]))[0], 0, 1)
    inner = (slice(8, -8), slice(8, -8))  # the engine mirror-pads the canvas; the model alone zero-pads
    np.testing.assert_allclose(gray_engine.denoise(image)[inner], whole[inner], atol=1e-4)


@pytest.mark.parametrize("image_channels", [1, 4])
def test_a_colour_model_sees_each_plane_replicated_and_its_mean_is_kept(tiny_models, image_channels, rng):
    engine = Engine(load_artifact(tiny_models["color"]), Settings(tile=32))
    image = rng.random((50, 37, image_channels), dtype=np.float32)
    out = engine.denoise(image)
    assert out.shape == image.shape
    inner = (slice(8, -8), slice(8, -8))  # the engine mirror-pads the canvas; the model alone zero-pads
    for c in range(image_channels):
        replicated = np.repeat(image[None, ..., c : c + 1], 3, axis=-1)
        whole = np.asarray(engine.artifact.model.predict_on_batch(replicated))[0]
        expected = np.clip(whole.mean(axis=-1, keepdims=True), 0, 1)
        np.testing.assert_allclose(out[..., c : c + 1][inner], expected[inner], atol=1e-4)


@pytest.mark.parametrize("channels", [1, 3])
def test_in_place_gives_the_same_result_in_the_input_and_otherwise_leaves_it_alone(gray_engine, channels, rng):
    image = rng.random((90, 70, channels), dtype=np.float32)
    original = image.copy()
    copied = gray_engine.denoise(image)
    np.testing.assert_array_equal(image, original)
    in_place = gray_engine.denoise(image, in_place=True)
    assert in_place is image
    np.testing.assert_allclose(in_place, copied, atol=1e-6)
    with pytest.raises(ValueError, match="float32"):
        gray_engine.denoise(image.astype(np.float64), in_place=True)


def test_cmyk_goes_through_a_gray_model_plane_by_plane(gray_engine, rng):
    cmyk = rng.random((30, 40, 4), dtype=np.float32)
    out = gray_engine.denoise(cmyk)
    assert out.shape == cmyk.shape
    np.testing.assert_allclose(out[..., 2:3], gray_engine.denoise(cmyk[..., 2:3]), atol=1e-6)


def test_mixed_precision_engine_stays_close(tiny_models, rng):
    image = rng.random((40, 40, 3), dtype=np.float32)
    full = Engine(load_artifact(tiny_models["color"]), Settings(tile=32)).denoise(image)
    half = Engine(load_artifact(tiny_models["color"], "mixed_bfloat16"), Settings(tile=32)).denoise(image)
    assert half.dtype == np.float32
    assert np.abs(full - half).max() < 0.05


def test_orientations_are_the_eight_flips_and_turns_and_each_is_undone(rng):
    image = rng.random((3, 5, 2))
    turned = [orient(image, turns, mirror) for turns, mirror in ORIENTATIONS]
    assert len({(t.shape, t.tobytes()) for t in turned}) == 8
    for (turns, mirror), t in zip(ORIENTATIONS, turned):
        np.testing.assert_array_equal(orient(t, turns, mirror, inverse=True), image)
        np.testing.assert_array_equal(orient(image[None], turns, mirror)[0], t), "a stack turns image by image"
    for n in (2, 4):
        closed = {t.tobytes() for t in turned[:n]}
        assert {orient(a, *ORIENTATIONS[j]).tobytes() for a in turned[:n] for j in range(n)} == closed, "a group"


@pytest.mark.parametrize("ensemble", [2, 8])
def test_an_ensemble_averages_the_model_over_orientations_turned_back(tiny_models, rng, ensemble):
    engine = Engine(load_artifact(tiny_models["gray"]), Settings(tile=32, batch_size=5, ensemble=ensemble))
    image = rng.random((80, 75, 1), dtype=np.float32)
    model = engine.artifact.model
    outputs = [
        orient(np.asarray(model.predict_on_batch(orient(image, *o)[None].copy()))[0], *o, inverse=True)
        for o in ORIENTATIONS[:ensemble]
    ]
    inner = (slice(8, -8), slice(8, -8))  # the engine mirror-pads the canvas; the model alone zero-pads
    np.testing.assert_allclose(engine.denoise(image)[inner], np.clip(np.mean(outputs, 0), 0, 1)[inner], atol=1e-4)
    assert np.abs(outputs[0] - outputs[1])[inner].max() > 1e-3, "the orientations give different outputs"


def test_an_ensemble_of_another_size_is_refused(tiny_models):
    with pytest.raises(ValueError, match="ensemble must be one of 1, 2, 4, 8"):
        Engine(load_artifact(tiny_models["gray"]), Settings(ensemble=3))


def test_seam_radius_shrinks_with_tolerance_and_keeps_tiles_within_it(rng):
    import keras

    from denoise_train.presets import residual
    from tests.helpers import tiny_card

    keras.utils.set_random_seed(4)
    model = residual(1, depth=12, width=8)
    artifact = Artifact(model, tiny_card(model, "deep"))
    images = [rng.random((72, 80, 1), dtype=np.float32) for _ in range(3)]
    whole = [np.clip(model.predict_on_batch(image[None, :72, :72])[0], 0, 1) for image in images]
    tolerances = [0.0, 1e-3, 3e-2, 1.0]
    radii = [measure_seam_radius(artifact, images, tolerance) for tolerance in tolerances]
    assert radii[0] == artifact.receptive_radius == 12, "no smaller margin reproduces the whole image exactly"
    assert radii == sorted(radii, reverse=True) and radii[-1] < radii[0]
    for tolerance, radius in zip(tolerances, radii):
        engine = Engine(Artifact(model, artifact.card | {"seam_radius": radius}), Settings(tile=0))
        assert engine.overlap == round_up(2 * radius + 2, 1) and engine.margin == radius
        for image, expected in zip(images, whole):
            assert np.abs(engine.denoise(image[:72, :72]) - expected).max() <= max(tolerance, 1e-5)
    small = [image[:40, :40] for image in images]  # under two widest tiles (2 x 26): mirrored out to measure
    assert measure_seam_radius(artifact, small, 0.0) == 12 and measure_seam_radius(artifact, small, 1.0) < 12


def test_square_crops_mirror_out_small_images_and_keep_the_top_left_of_large_ones(rng):
    image = rng.random((30, 50, 1), dtype=np.float32)
    mirrored = square_crop(image, 52, 4)
    assert mirrored.shape == (52, 52, 1)
    np.testing.assert_array_equal(mirrored[:30, :50], image)
    np.testing.assert_array_equal(mirrored[30:52, :50], image[::-1][:22])
    np.testing.assert_array_equal(square_crop(image, 16, 8), image[:24, :24])


@pytest.mark.parametrize("rounded", [True, False])
def test_an_artifact_stores_as_float16_the_weights_float16_holds_and_loads_every_weight_exactly(tmp_path, rounded):
    import keras

    from denoise_train.presets import residual
    from denoiser.artifact import read_card, round_to_half, save_artifact
    from denoiser.int8 import read_int8
    from tests.helpers import stored_dtypes, tiny_card

    keras.utils.set_random_seed(5)
    model = residual(1, depth=3, width=64)  # wide enough for the weights to outweigh the archive's overhead
    if rounded:
        round_to_half(model)
    card = tiny_card(model, "half")
    path = save_artifact(model, card, tmp_path / "half.keras", int8=b"graph")
    exact = [rounded or not w.any() for w in model.get_weights()]  # the biases start at zero
    assert stored_dtypes(path) == sorted("float16" if e else "float32" for e in exact)
    assert all(exact) == rounded
    loaded = load_artifact(path)
    for original, back in zip(model.get_weights(), loaded.model.get_weights()):
        assert back.dtype == np.float32
        np.testing.assert_array_equal(back, original)
    assert read_card(path) == loaded.card == card and read_int8(path) == b"graph"
    model.save(tmp_path / "plain.keras")
    assert (path.stat().st_size < 0.6 * (tmp_path / "plain.keras").stat().st_size) == rounded
