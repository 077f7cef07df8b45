"""Int8 graphs: the ONNX export computes what Keras does, quantizing keeps a model near its float self, and the
train command, the engine and the bench use the graphs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from denoiser.artifact import load_artifact, summary_card
from denoiser.engine import Engine, Settings, resolve_precision
from denoiser.int8 import Int8Graph, read_int8
from denoiser.noise import NoiseSpec, degrade, psnr
from tests.helpers import tiny_unet
from tests.test_train import write_blocky_images


def small(preset: str, channels: int = 1, width: int = 8):
    import keras

    from denoise_train.run import Recipe, build

    keras.utils.set_random_seed(3)
    return build(Recipe("", "", preset=preset, channels=channels, depth=3, width=width, levels=2, top_width=4))


@pytest.mark.parametrize(
    "preset, channels", [("unet", 1), ("unet-half", 1), ("unet-lite", 3), ("matte", 1), ("residual", 3)]
)
def test_the_onnx_graph_computes_what_the_keras_model_does(rng, preset, channels):
    import onnxruntime

    from denoise_train.quantize import to_onnx

    model = small(preset, channels)
    session = onnxruntime.InferenceSession(to_onnx(model).SerializeToString(), providers=["CPUExecutionProvider"])
    batch = rng.random((2, 32, 48, channels), dtype=np.float32)
    np.testing.assert_allclose(session.run(None, {"input": batch})[0], model.predict_on_batch(batch), atol=2e-5)


def test_layers_the_export_cannot_write_are_refused():
    import keras

    from denoise_train.quantize import to_onnx

    inputs = keras.Input((None, None, 1))
    model = keras.Model(inputs, keras.layers.Conv2D(1, 3, padding="same", dilation_rate=2)(inputs))
    with pytest.raises(ValueError, match="dilated"):
        to_onnx(model)


def test_an_int8_graph_stays_near_the_float_model(rng):
    from denoise_train.quantize import quantize

    model = small("unet")
    tiles = np.round(rng.random((8, 32, 32, 1)) * 255).astype(np.float32) / 255
    graph = quantize(model, tiles)
    batch = tiles[:2]
    expected, got = model.predict_on_batch(batch), Int8Graph(graph)(batch)
    assert got.shape == expected.shape
    assert np.abs(got - expected).mean() < 0.02 * np.abs(expected).mean() + 1e-3
    import onnx

    proto = onnx.load_model_from_string(graph)
    types = {tensor.name: tensor.data_type for tensor in proto.graph.initializer}
    dequantized = {node.output[0]: node.input[0] for node in proto.graph.node if node.op_type == "DequantizeLinear"}
    convs = [node for node in proto.graph.node if node.op_type == "Conv"]
    assert len(convs) == sum(type(layer).__name__.startswith("Conv") for layer in model.layers)
    assert all(types[dequantized[conv.input[1]]] == onnx.TensorProto.INT8 for conv in convs), "int8 weights"
    assert all(conv.input[0] in dequantized for conv in convs), "uint8 activations"


def dequantized_weights(graph: bytes) -> dict:
    """What each DequantizeLinear of a constant computes, by output name."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load_model_from_string(graph)
    constants = {tensor.name: numpy_helper.to_array(tensor) for tensor in proto.graph.initializer}
    found = {}
    for node in proto.graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in constants and len(node.input) == 3:
            q, scale, zero = (constants[name] for name in node.input)
            shape = (-1,) + (1,) * (q.ndim - 1) if scale.ndim else ()
            found[node.output[0]] = (q.dtype, (q.astype(np.float64) - zero.reshape(shape)) * scale.reshape(shape))
    return found


def test_unsigned_weights_hold_the_same_values_and_run_near_the_float_model(rng):
    from denoise_train.quantize import quantize
    from denoiser.int8 import unsigned_weights

    model = small("unet")
    tiles = np.round(rng.random((8, 32, 32, 1)) * 255).astype(np.float32) / 255
    graph = quantize(model, tiles)
    unsigned = unsigned_weights(graph)
    before, after = dequantized_weights(graph), dequantized_weights(unsigned)
    weights = [name for name, (dtype, _) in before.items() if dtype == np.int8]
    assert weights and all(after[name][0] == np.uint8 for name in weights)
    assert all(np.array_equal(before[name][1], after[name][1]) for name in before)
    expected, got = model.predict_on_batch(tiles[:2]), Int8Graph(unsigned)(tiles[:2])
    assert np.abs(got - expected).mean() < 0.02 * np.abs(expected).mean() + 1e-3


@pytest.mark.parametrize(
    "machine, flags, converted",
    [
        ("x86_64", "fpu avx2 fma", True),
        ("x86_64", "avx2 avx512_vnni", False),
        ("x86_64", None, True),
        ("aarch64", "fp asimd", False),
    ],
)
def test_weights_turn_unsigned_on_x86_cpus_not_known_to_have_vnni(monkeypatch, tmp_path, machine, flags, converted):
    from denoiser import int8

    cpuinfo = tmp_path / "cpuinfo"
    if flags is not None:
        cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
    monkeypatch.setattr(int8.platform, "machine", lambda: machine)
    assert int8.saturates(cpuinfo) is converted


@pytest.fixture
def trained(tmp_path, rng):
    """A small U-Net trained for a few steps, saved with its card."""
    from denoise_train.run import train_and_export

    data = write_blocky_images(tmp_path / "clean", rng, cells=16)
    recipe = tiny_unet(data, tmp_path / "m.keras")
    return train_and_export(recipe, "python -m denoise_train --test")


def test_quantize_command_stores_the_graph_and_its_validation_in_the_card(trained):
    from denoise_train.cli import main

    out = trained
    assert read_int8(out) is None
    result = CliRunner().invoke(main, ["quantize", str(out), "--tiles", "8", "--patch", "64"])
    assert result.exit_code == 0, result.output
    card = load_artifact(out).card
    assert summary_card(card) == json.loads(out.with_suffix(".json").read_text())
    assert card["int8"]["command"].startswith("python -m denoise_train ")  # as typed (here, pytest's own arguments)
    assert card["int8"]["calibration"]["tiles"] == 8
    assert set(card["int8"]["validation"]) == set(card["metrics"]["validation"])
    assert "gauss:25: validation PSNR float32" in result.output
    artifact = load_artifact(out, "int8")
    assert artifact.int8 is not None and artifact.card == card

    result = CliRunner().invoke(main, ["seams", str(out)])
    assert result.exit_code == 0 and read_int8(out) is not None, "measuring seams again keeps the graph"


def test_the_engine_runs_the_int8_graph_by_name_only(trained, rng):
    out = trained
    from denoise_train.quantize import quantize_saved

    quantize_saved(out, "python -m denoise_train quantize m.keras", tiles=8, patch=64)
    clean = rng.random((40, 56, 1), dtype=np.float32) * 0.5 + 0.25
    noisy = degrade(clean, NoiseSpec("gauss", 25), rng)
    int8 = Engine.load(str(out), Settings(precision="int8", device="cpu"))
    exact = Engine.load(str(out), Settings(precision="float32", device="cpu"))
    assert int8.precision == "int8" and exact.precision == "float32"
    assert Engine.load(str(out), Settings(device="cpu")).precision != "int8"
    assert abs(psnr(clean, int8.denoise(noisy)) - psnr(clean, exact.denoise(noisy))) < 0.5


def test_int8_is_refused_where_it_cannot_run(tiny_models):
    with pytest.raises(ValueError, match="denoise train quantize"):
        Engine.load(str(tiny_models["gray"]), Settings(precision="int8", device="cpu"))
    with pytest.raises(ValueError, match="CPU only"):
        resolve_precision("int8", "gpu")


def test_the_int8_ceiling_is_an_int8_convolutions_rate():
    from denoiser.bench import ceiling
    from denoiser.int8 import conv_gops

    rate, width = conv_gops(channels=(16, 32), repeats=1)
    assert rate > 0 and width in (16, 32)
    rate, reached_by = ceiling("int8", "cpu")
    assert rate > 0 and reached_by.startswith("int8 3x3 conv of")


def test_activation_ranges_reach_the_percentile_of_magnitudes_either_side_of_zero(rng):
    """What denoise_train/quantize.py and the README say about ONNX Runtime's percentile calibration (width 16: no
    padding filters, whose zeros would count too)."""
    import keras
    import onnx
    from onnx import numpy_helper

    from denoise_train.quantize import MIN_FILTERS, quantize

    model = small("unet", width=MIN_FILTERS)
    tiles = np.round(rng.random((8, 32, 32, 1)) * 255).astype(np.float32) / 255
    proto = onnx.load_model_from_string(quantize(model, tiles, percentile=99.0))
    constants = {tensor.name: numpy_helper.to_array(tensor) for tensor in proto.graph.initializer}
    grids = {
        node.input[0]: (float(constants[node.input[1]]), int(constants[node.input[2]]))
        for node in proto.graph.node
        if node.op_type == "QuantizeLinear"
    }
    names = ["head", "enc0_b", "enc0_add", "dec0_add"]
    assert set(names) <= set(grids)
    probe = keras.Model(model.input, [model.get_layer(name).output for name in names])
    for name, values in zip(names, probe(tiles)):
        values = np.asarray(values)
        bound = np.percentile(np.abs(values), 99.0)
        scale, zero = grids[name]
        expected = (max(-bound, values.min()), min(bound, values.max()))
        np.testing.assert_allclose(
            (-zero * scale, (255 - zero) * scale), expected, rtol=0.02, atol=2 * scale, err_msg=name
        )
