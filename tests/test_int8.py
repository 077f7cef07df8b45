"""Int8 graphs: the ONNX export computes what Keras does, quantizing keeps a model near its float self, training for
int8 rounds where the graph rounds, and the train command, the engine and the CLI use the graphs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from denoiser.artifact import load_artifact
from denoiser.engine import Engine, Settings, resolve_precision
from denoiser.int8 import Int8Graph, read_int8
from denoiser.noise import NoiseSpec, degrade, psnr
from tests.test_train import write_blocky_images


def small(preset: str, channels: int = 1):
    from train.run import Recipe, build

    import keras

    keras.utils.set_random_seed(3)
    return build(Recipe("", "", preset=preset, channels=channels, depth=3, width=8, levels=2, top_width=4))


@pytest.mark.parametrize("preset, channels", [("unet", 1), ("unet-half", 1), ("unet-lite", 3), ("matte", 1),
                                              ("residual", 3)])
def test_the_onnx_graph_computes_what_the_keras_model_does(rng, preset, channels):
    import onnxruntime

    from train.quantize import to_onnx

    model = small(preset, channels)
    session = onnxruntime.InferenceSession(to_onnx(model).SerializeToString(), providers=["CPUExecutionProvider"])
    batch = rng.random((2, 32, 48, channels), dtype=np.float32)
    np.testing.assert_allclose(session.run(None, {"input": batch})[0], model.predict_on_batch(batch), atol=2e-5)


def test_layers_the_export_cannot_write_are_refused():
    import keras

    from train.quantize import to_onnx

    inputs = keras.Input((None, None, 1))
    model = keras.Model(inputs, keras.layers.Conv2D(1, 3, padding="same", dilation_rate=2)(inputs))
    with pytest.raises(ValueError, match="dilated"):
        to_onnx(model)


def test_an_int8_graph_stays_near_the_float_model_and_names_its_grid_after_the_layers(rng):
    from train.quantize import quantization_grid, quantize

    model = small("unet")
    tiles = np.round(rng.random((8, 32, 32, 1)) * 255).astype(np.float32) / 255
    graph = quantize(model, tiles)
    batch = tiles[:2]
    expected, got = model.predict_on_batch(batch), Int8Graph(graph)(batch)
    assert got.shape == expected.shape
    assert np.abs(got - expected).mean() < 0.02 * np.abs(expected).mean() + 1e-3
    grid = quantization_grid(graph)
    rounded = [layer.name for layer in model.layers[1:-1]]  # every layer between the input and the output
    assert all(name in grid or f"{name}.sliced" in grid for name in rounded), set(rounded) - set(grid)
    assert all(0 < scale < 1 and 0 <= zero <= 255 for scale, zero in grid.values())


def test_the_quant_aware_model_shares_the_weights_and_rounds_each_activation_to_its_grid(rng):
    import keras

    from train.quantize import quant_aware, quantization_grid, quantize

    model = small("unet")
    tiles = rng.random((8, 32, 32, 1), dtype=np.float32)
    grid = quantization_grid(quantize(model, tiles))
    trainer = quant_aware(model, grid)
    assert {id(w) for w in trainer.weights} == {id(w) for w in model.weights}
    scale, zero = grid["enc0_add"]
    probe = keras.Model(trainer.input, trainer.get_layer("enc0_add_int8").output)
    steps = np.asarray(probe.predict_on_batch(tiles[:2])) / scale
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-3)
    assert steps.min() >= -zero - 1e-3 and steps.max() <= 255 - zero + 1e-3
    near = np.abs(trainer.predict_on_batch(tiles[:2]) - model.predict_on_batch(tiles[:2])).mean()
    assert 0 < near < 0.05


@pytest.fixture
def trained(tmp_path, rng):
    """A small U-Net trained for a few steps, with its training images."""
    from train.run import Recipe, train_and_export

    data = write_blocky_images(tmp_path / "clean", rng, cells=16)
    recipe = Recipe(str(data), str(tmp_path / "m.keras"), preset="unet", width=8, levels=2, epochs=1, steps=2,
                    batch_size=4, patch=32, precision="float32")
    return train_and_export(recipe, "python -m train --test"), recipe


def test_quantize_command_stores_the_graph_and_its_validation_in_the_card(trained, tmp_path):
    from train.cli import main

    out, _ = trained
    assert read_int8(out) is None
    result = CliRunner().invoke(main, ["quantize", str(out), "--tiles", "8", "--patch", "64"])
    assert result.exit_code == 0, result.output
    card = load_artifact(out).card
    assert card == json.loads(out.with_suffix(".json").read_text())
    assert card["int8"]["command"].startswith("python -m train ")  # as typed (here, pytest's own arguments)
    assert card["int8"]["calibration"]["tiles"] == 8
    assert set(card["int8"]["validation"]) == set(card["metrics"]["validation"])
    assert "gauss:25: validation PSNR float32" in result.output
    artifact = load_artifact(out, "int8")
    assert artifact.int8 is not None and artifact.card == card

    result = CliRunner().invoke(main, ["seams", str(out)])
    assert result.exit_code == 0 and read_int8(out) is not None, "measuring seams again keeps the graph"


def test_the_engine_runs_the_int8_graph_by_name_only(trained, rng):
    out, _ = trained
    from train.quantize import quantize_saved

    quantize_saved(out, "python -m train quantize m.keras", tiles=8, patch=64)
    clean = rng.random((40, 56, 1), dtype=np.float32) * 0.5 + 0.25
    noisy = degrade(clean, NoiseSpec("gauss", 25), rng)
    int8 = Engine.load(str(out), Settings(precision="int8", device="cpu"))
    exact = Engine.load(str(out), Settings(precision="float32", device="cpu"))
    assert int8.precision == "int8" and exact.precision == "float32"
    assert Engine.load(str(out), Settings(device="cpu")).precision != "int8"
    assert abs(psnr(clean, int8.denoise(noisy)) - psnr(clean, exact.denoise(noisy))) < 0.5


def test_int8_is_refused_where_it_cannot_run(tiny_models):
    with pytest.raises(ValueError, match="python -m train quantize"):
        Engine.load(str(tiny_models["gray"]), Settings(precision="int8", device="cpu"))
    with pytest.raises(ValueError, match="CPU only"):
        resolve_precision("int8", "gpu")


def test_quant_aware_training_exports_plain_layers_that_moved_from_the_init(trained):
    from train.run import Recipe, train_and_export

    out, recipe = trained
    tuned = train_and_export(recipe._replace(out=str(out.with_name("qat.keras")), init=str(out), quant_aware=True),
                             "python -m train --qat")
    parent, child = load_artifact(out), load_artifact(tuned)
    assert [layer.name for layer in child.model.layers] == [layer.name for layer in parent.model.layers]
    assert any(not np.allclose(a, b) for a, b in zip(parent.model.get_weights(), child.model.get_weights()))
    assert child.card["training"]["recipe"]["quant_aware"] is True
    with pytest.raises(ValueError, match="needs --init"):
        train_and_export(recipe._replace(out=str(out.with_name("x.keras")), quant_aware=True), "x")


def test_the_int8_ceiling_is_measured():
    from denoiser.bench import matmul_gflops

    rate, side = matmul_gflops("int8", "cpu", sizes=(64, 128), repeats=2)
    assert rate > 0 and side in (64, 128)
