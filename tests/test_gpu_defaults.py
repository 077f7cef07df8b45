"""The GPU defaults, with fakes for the GPU this machine lacks: --device gpu:N, --batch-size auto, --precision auto,
and a clear error where a GPU is asked for and none is visible."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

import denoiser.engine as engine_module
from denoised.config import Config, StartupError
from denoiser.artifact import load_artifact
from denoiser.cli import main
from denoiser.engine import (
    AUTO_BATCH_MAX,
    AUTO_BATCH_UNKNOWN,
    GPU_TILE_MAX,
    TILE,
    Engine,
    NoGPUError,
    Settings,
    activation_elements_per_pixel,
    auto_batch_size,
    auto_tile,
    resolve_device,
    resolve_precision,
)
from denoiser.settings import device_index, problem
from tests.helpers import write_image

GIB = 1 << 30


@pytest.mark.parametrize(
    "capability, expected",
    [
        ((9, 0), "bfloat16"),
        ((8, 0), "bfloat16"),
        ((8, 6), "bfloat16"),
        ((7, 5), "float16"),
        ((7, 0), "float16"),
        (None, "float16"),
    ],
)
def test_auto_precision_on_a_gpu_is_bf16_where_it_has_bf16_units_else_float16(capability, expected):
    assert resolve_precision("auto", "gpu", capability) == expected
    assert resolve_precision("float32", "gpu", capability) == "float32", "a named precision is kept"


def test_int8_on_a_gpu_says_it_runs_on_the_cpu_only():
    with pytest.raises(ValueError, match="int8 runs on the CPU only, through ONNX Runtime"):
        resolve_precision("int8", "gpu", (9, 0))


def test_auto_batch_fills_half_the_free_memory_within_bounds():
    per_tile = 1280 * 1280 * 500 * 2  # 1.6 GB: a tile of 1280^2 with 500 activation elements per pixel in bf16
    assert auto_batch_size(40 * per_tile, 1280, 500, 2) == 20
    assert auto_batch_size(per_tile // 3, 1280, 500, 2) == 1, "at least one tile"
    assert auto_batch_size(10_000 * per_tile, 1280, 500, 2) == AUTO_BATCH_MAX
    assert auto_batch_size(40 * per_tile, 1280, 500, 4) == 10, "float32 tiles take twice the memory"
    assert auto_batch_size(40 * per_tile, 640, 500, 2) == 80 if 80 <= AUTO_BATCH_MAX else AUTO_BATCH_MAX
    assert auto_batch_size(None, 1280, 500, 2) == AUTO_BATCH_UNKNOWN


def test_the_activation_count_sums_every_layers_output_per_pixel():
    import keras

    inputs = keras.Input((None, None, 1))
    hidden = keras.layers.Conv2D(8, 3, padding="same")(inputs)
    pooled = keras.layers.MaxPooling2D(2)(hidden)
    outputs = keras.layers.Conv2D(4, 3, padding="same")(pooled)
    assert activation_elements_per_pixel(keras.Model(inputs, outputs)) == 8 + 8 / 4 + 4 / 4


def test_auto_batch_is_1_on_a_cpu_and_sized_from_free_memory_on_a_gpu(tiny_models, monkeypatch):
    artifact = load_artifact(tiny_models["gray"])
    assert Engine(artifact, Settings(batch_size="auto")).batch_size == 1
    assert Engine(artifact, Settings(batch_size=3, device="gpu"), "gpu").batch_size == 3
    asked = []
    monkeypatch.setattr(engine_module, "free_device_memory", lambda index: asked.append(index) or 80 * GIB)
    engine = Engine(artifact, Settings(batch_size="auto", tile=1024, device="gpu:1"), "gpu")
    elements = activation_elements_per_pixel(artifact.model)
    assert asked == [1] and engine.index == 1
    assert engine.batch_size == auto_batch_size(80 * GIB, 1024, elements, 4) > 1
    assert engine.resolve_batch_size(free_bytes=2 * 1024 * 1024 * elements * 4) == 1


def test_on_a_gpu_the_default_tile_is_the_longest_its_free_memory_holds(tiny_models, monkeypatch):
    artifact = load_artifact(tiny_models["gray"])
    elements = activation_elements_per_pixel(artifact.model)
    free = {"bytes": 4096 * 4096 * elements * 4 * 2}  # one float32 tile of 4096^2 in half of it
    monkeypatch.setattr(engine_module, "free_device_memory", lambda index: free["bytes"])
    engine = Engine(artifact, Settings(batch_size="auto", device="gpu"), "gpu")
    assert engine.tile == auto_tile(free["bytes"], elements, 4) // engine.step * engine.step
    assert 4096 - engine.step <= engine.tile <= 4096 and engine.batch_size == 1
    assert engine.plan(3000, 4000).count == 1 and engine.capacity((1024, 1024)) >= 15
    free["bytes"] *= 100
    assert Engine(artifact, Settings(device="gpu"), "gpu").tile == GPU_TILE_MAX
    free["bytes"] = None
    assert Engine(artifact, Settings(device="gpu"), "gpu").tile == TILE, "unknown free memory: the CPU's default"
    free["bytes"] = 1 << 20
    assert Engine(artifact, Settings(device="gpu"), "gpu").tile == TILE, "never below the CPU's default"
    assert Engine(artifact, Settings(tile=640, device="gpu"), "gpu").tile == 640, "a tile asked for is kept"
    assert Engine(artifact, Settings()).tile == TILE, "the CPU's default is unchanged"


def test_an_engine_on_gpu_n_runs_its_batches_there(tiny_models, monkeypatch):
    import keras

    placed = []
    monkeypatch.setattr(keras, "device", lambda name: placed.append(name) or keras.name_scope("fake"))
    engine = Engine(load_artifact(tiny_models["gray"]), Settings(tile=32, device="gpu:2"), "gpu")
    engine.denoise(np.zeros((20, 20, 1), np.float32))
    assert set(placed) == {"gpu:2"}


def test_device_and_batch_size_rules():
    assert problem("device", "gpu:3") is None and problem("batch_size", "auto") is None
    assert (
        problem("device", "gpu:")
        == problem("device", "tpu")
        == "device must be auto, cpu, gpu or gpu:N (N counts GPUs from 0)"
    )
    assert problem("batch_size", 0) == "batch_size must be at least 1, or auto"
    assert device_index("gpu:3") == 3 and device_index("gpu") == device_index("cpu") == 0


@pytest.mark.parametrize("device", ["gpu", "gpu:1"])
def test_a_gpu_asked_for_and_not_visible_is_a_clear_error(device, monkeypatch):
    monkeypatch.setattr(engine_module, "visible_gpus", lambda: [])
    with pytest.raises(NoGPUError, match=f"--device {device}: no GPU is visible to Keras"):
        resolve_device(device)
    monkeypatch.setattr(engine_module, "visible_gpus", lambda: ["gpu:0"])
    if device == "gpu:1":
        with pytest.raises(NoGPUError, match="only 1 GPU"):
            resolve_device(device)
    else:
        assert resolve_device(device) == "gpu"


def test_batch_on_a_gpu_that_is_not_there_is_a_usage_error(tmp_path, tiny_models):
    write_image(tmp_path / "in" / "a.png", np.zeros((20, 20), np.uint8))
    result = CliRunner().invoke(
        main,
        ["batch", str(tmp_path / "in"), str(tmp_path / "out"), "-m", str(tiny_models["gray"]), "--device", "gpu", "-q"],
    )
    assert result.exit_code == 2 and "--device gpu: no GPU is visible to Keras" in result.output
    assert not (tmp_path / "out" / "a.png").exists()


def test_the_daemon_with_device_gpu_and_no_gpu_does_not_start(tmp_path):
    from denoised.daemon import prepare

    (tmp_path / "in").mkdir()
    with pytest.raises(StartupError, match="no GPU is visible.*install-unit --gpu"):
        prepare(Config(tmp_path / "in", tmp_path / "out", device="gpu"))
    with pytest.raises(StartupError, match="batch_size must be at least 1"):
        Config(tmp_path / "in", tmp_path / "out", batch_size="auto").check()


def test_the_dncnn_s_peer_has_17_convolutions_of_64_channels_and_a_residual_output():
    from benchmarks.gpu_check import dncnn_engine, dncnn_s
    from denoiser.bench import conv_flops_per_pixel

    model = dncnn_s()
    convs = [layer for layer in model.layers if layer.name.startswith("conv")]
    assert len(convs) == 17 and {layer.filters for layer in convs[:-1]} == {64} and convs[-1].filters == 1
    assert conv_flops_per_pixel(model) == 2 * 9 * (64 + 15 * 64 * 64 + 64)
    engine = dncnn_engine(Settings(tile=64, precision="float32"), "cpu", None)
    image = np.random.default_rng(0).random((40, 50, 1), dtype=np.float32)
    assert engine.denoise(image).shape == image.shape and engine.precision == "float32"


@pytest.mark.parametrize("height, width", [(37, 50), (48, 64), (24, 60), (40, 32)])
def test_the_checks_reused_buffer_cut_equals_the_engines_padded_tile(height, width):
    from benchmarks.gpu_check import mirror_into
    from denoiser.tiling import plan_tiles, tile_at

    image = np.random.default_rng(0).random((height, width, 1), dtype=np.float32)
    plan = plan_tiles(height, width, (48, 64), 16, 4)
    canvas = np.full((48, 64, 1), np.nan, np.float32)
    np.testing.assert_array_equal(mirror_into(canvas, image), tile_at(image, plan, 0))
