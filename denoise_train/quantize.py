"""Int8 graphs of trained models: the Keras network written out as ONNX and quantized statically with ONNX Runtime.

The graph takes and returns N x H x W x C tensors like the Keras model and runs N x C x H x W inside (ONNX Runtime
turns its int8 convolutions channels-last itself).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

OPSET = 17
ACTIVATIONS = {"linear": None, "relu": "Relu", "sigmoid": "Sigmoid", "exponential": "Exp"}
MERGES = {"Add": "Add", "Subtract": "Sub", "Multiply": "Mul"}
# ONNX Runtime's int8 convolutions with a few filters run far below its rate (32 -> 1 took as long as four
# 32 -> 32 ones), so such convolutions get zero filters up to this many, sliced off after.
MIN_FILTERS = 16
# Activation ranges: ONNX Runtime's percentile calibration bounds each tensor by the 99.999th percentile of its
# values' magnitudes on the calibration tiles, either side of zero, and by its least and greatest value. Set12
# PSNR at sigma 15 / 50 / static 10% for gray: min-max ranges lost 0.28 / 0.09 / 1.30 dB against float32, these
# 0.16 / 0.05 / 0.93.
PERCENTILE = 99.999
TILES, PATCH = 64, 128  # calibration: this many noisy tiles of this side


def _sources(args) -> list[str]:
    """Names of the layers whose outputs a layer's inbound-node arguments refer to, in order."""
    if isinstance(args, dict):
        history = args.get("config", {}).get("keras_history") if args.get("class_name") == "__keras_tensor__" else None
        return [history[0]] if history else [name for value in args.values() for name in _sources(value)]
    if isinstance(args, (list, tuple)):
        return [name for value in args for name in _sources(value)]
    return []


def _layer_name(reference: list) -> str:
    """The layer name in a config's ["name", node, tensor] reference (or the first of a list of them)."""
    return reference[0] if isinstance(reference[0], str) else _layer_name(reference[0])


def _layers(model) -> tuple[str, str, list[tuple[str, str, list[str]]]]:
    """A one-input, one-output functional model's input and output layer names, and its other layers in
    order as (name, class name, names of the layers it takes)."""
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError("only models with one input and one output are exported")
    config = model.get_config()
    layers = [
        (entry["name"], entry["class_name"], _sources(entry["inbound_nodes"]))
        for entry in config["layers"]
        if entry["class_name"] != "InputLayer"
    ]
    return _layer_name(config["input_layers"]), _layer_name(config["output_layers"]), layers


def _conv_nodes(layer, source: str, initializers: list) -> list:
    """ONNX nodes (and weight initializers) of a Conv2D or Conv2DTranspose with its activation.

    A transposed convolution whose stride equals its kernel (the U-Net's unfold) becomes a 1x1 convolution to
    stride² times the channels and an unfold of those, which ONNX Runtime runs in int8 where it would not the former.
    """
    from onnx import helper, numpy_helper

    config, name = layer.get_config(), layer.name
    if tuple(config["dilation_rate"]) != (1, 1) or config.get("groups", 1) != 1:
        raise ValueError(f"{name}: dilated and grouped convolutions are not exported")
    kernel, bias = (np.asarray(w, np.float32) for w in layer.get_weights())
    kh, kw = kernel.shape[:2]
    strides, transposed = tuple(config["strides"]), type(layer).__name__ == "Conv2DTranspose"
    if transposed:
        if (kh, kw) != strides or kh != kw or config["padding"] != "valid":
            raise ValueError(f"{name}: only transposed convolutions with stride = kernel are exported")
        # k,k,out,in -> (k*k*out),in,1,1, channels in DepthToSpace's DCR order: (row offset, column offset, out)
        kernel = kernel.reshape(kh * kw * kernel.shape[2], kernel.shape[3], 1, 1)
        bias, attributes = np.tile(bias, kh * kw), {"kernel_shape": [1, 1]}
    else:
        if config["padding"] == "same" and (kh % 2 == 0 or kw % 2 == 0 or strides != (1, 1)):
            raise ValueError(f"{name}: only odd, stride-1 'same' convolutions are exported")
        kernel = kernel.transpose(3, 2, 0, 1)  # Keras kernels are k,k,in,out; ONNX wants out,in,k,k
        attributes = {"kernel_shape": [kh, kw], "strides": list(strides)}
        attributes |= {"pads": [kh // 2, kw // 2, kh // 2, kw // 2]} if config["padding"] == "same" else {}
    filters, padding = kernel.shape[0], max(MIN_FILTERS - kernel.shape[0], 0)
    initializers += [
        numpy_helper.from_array(np.pad(kernel, [(0, padding)] + [(0, 0)] * 3), f"{name}.kernel"),
        numpy_helper.from_array(np.pad(bias, (0, padding)), f"{name}.bias"),
    ]
    nodes = [
        helper.make_node("Conv", [source, f"{name}.kernel", f"{name}.bias"], [f"{name}.conv"], name=name, **attributes)
    ]
    if padding:  # the zero filters added to reach MIN_FILTERS come off again
        initializers += [
            numpy_helper.from_array(np.array(value, np.int64), f"{name}.{key}")
            for key, value in (("first", [0]), ("filters", [filters]), ("axis", [1]))
        ]
        nodes.append(
            helper.make_node(
                "Slice", [nodes[-1].output[0], f"{name}.first", f"{name}.filters", f"{name}.axis"], [f"{name}.sliced"]
            )
        )
    if transposed:
        nodes += _unfold(nodes[-1].output[0], f"{name}.unfolded", kh, filters // kh**2, initializers)
    activation = ACTIVATIONS[config["activation"]]
    nodes.append(helper.make_node(activation or "Identity", [nodes[-1].output[0]], [name], name=f"{name}.out"))
    return nodes


def _unfold(source: str, target: str, block: int, channels: int, initializers: list) -> list:
    """DepthToSpace (DCR) spelled as transposes to and from channels-last around a reshape, so that ONNX Runtime,
    which runs int8 convolutions channels-last, cancels the outer transposes and moves the data once."""
    from onnx import helper, numpy_helper

    constants = {
        "split": [0, 0, 0, block, block, channels],
        "sides": [2],
        "ends": [4],
        "block": [block, block],
        "batch": [0],
        "channels": [channels],
    }
    initializers += [
        numpy_helper.from_array(np.array(value, np.int64), f"{target}.{key}") for key, value in constants.items()
    ]
    t = f"{target}."
    return [
        helper.make_node("Transpose", [source], [t + "nhwc"], perm=[0, 2, 3, 1]),
        helper.make_node("Reshape", [t + "nhwc", t + "split"], [t + "blocks"]),  # N,H,W,a,b,c
        helper.make_node("Transpose", [t + "blocks"], [t + "placed"], perm=[0, 1, 3, 2, 4, 5]),  # N,H,a,W,b,c
        helper.make_node("Shape", [source], [t + "shape"]),
        helper.make_node("Slice", [t + "shape", t + "sides", t + "ends"], [t + "hw"]),
        helper.make_node("Mul", [t + "hw", t + "block"], [t + "wide_hw"]),
        helper.make_node("Concat", [t + "batch", t + "wide_hw", t + "channels"], [t + "wide_shape"], axis=0),
        helper.make_node("Reshape", [t + "placed", t + "wide_shape"], [t + "wide"]),  # N,aH,bW,c
        helper.make_node("Transpose", [t + "wide"], [target], perm=[0, 3, 1, 2]),
    ]


def to_onnx(model):
    """The model (convolutions, their activations, Add/Subtract/Multiply, Activation) as an ONNX graph in float32."""
    from onnx import TensorProto, helper

    input_name, output_name, layers = _layers(model)
    channels = int(model.input_shape[-1])
    nodes = [helper.make_node("Transpose", ["input"], [input_name], perm=[0, 3, 1, 2], name="to_nchw")]
    initializers: list = []
    for name, kind, sources in layers:
        layer = model.get_layer(name)
        activation = ACTIVATIONS.get(layer.get_config().get("activation"))
        if kind in ("Conv2D", "Conv2DTranspose"):
            nodes += _conv_nodes(layer, sources[0], initializers)
        elif kind in MERGES and len(sources) == 2:
            nodes.append(helper.make_node(MERGES[kind], sources, [name], name=name))
        elif kind == "Activation" and activation:
            nodes.append(helper.make_node(activation, sources, [name], name=name))
        else:
            raise ValueError(f"{name}: {kind} layers are not exported")
    nodes.append(helper.make_node("Transpose", [output_name], ["output"], perm=[0, 2, 3, 1], name="to_nhwc"))
    shape = ["batch", "height", "width", channels]
    graph = helper.make_graph(
        nodes,
        model.name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, shape)],
        initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="denoise")


class _Tiles:
    """ONNX Runtime's calibration reader over a stack of N x H x W x C tiles, one at a time."""

    def __init__(self, tiles: np.ndarray):
        self.tiles = iter(tiles)

    def get_next(self):
        tile = next(self.tiles, None)
        return None if tile is None else {"input": tile[None].astype(np.float32)}


def quantize(model, tiles: np.ndarray, percentile: float = PERCENTILE) -> bytes:
    """The model's ONNX graph with int8 weights (per output channel) and uint8 activations, each ranging up to the
    `percentile` of its values' magnitudes on `tiles` (N x H x W x C noisy tiles) either side of zero, and no
    further than its values go."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    with tempfile.TemporaryDirectory() as folder:
        source, target = Path(folder, "float.onnx"), Path(folder, "int8.onnx")
        onnx.save(to_onnx(model), source)
        quantize_static(
            str(source),
            str(target),
            _Tiles(tiles),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.Percentile,
            extra_options={"CalibPercentile": percentile},
        )
        return target.read_bytes()


def calibration_tiles(
    images: list[np.ndarray], noise, tiles: int = TILES, patch: int = PATCH, seed: int = 0
) -> np.ndarray:
    """N x patch x patch x C noisy tiles of the images (those at least `patch` a side), with training noise."""
    from denoise_train.data import Patches

    images = [image for image in images if min(image.shape[:2]) >= patch]
    if not images:
        raise ValueError(f"no calibration image is {patch} px a side or more")
    return Patches(images, noise, patch, tiles, seed).batch(0, 0)[0]


def quantize_saved(
    path: str | Path,
    command: str,
    folders: list[str] | None = None,
    tiles: int = TILES,
    patch: int = PATCH,
    percentile: float = PERCENTILE,
    seed: int = 0,
) -> dict:
    """Quantize a saved model on noisy tiles of its card's training images and store the int8 graph in its
    archive, with the calibration and the int8 validation PSNR (beside the float one) in its card; the new card.

    Args:
        folders: where the card's training images are, if not in the folders the card names.
    """
    import onnxruntime

    from denoise_train.data import NoiseSettings
    from denoise_train.run import VALIDATION_NOISE, VALIDATION_SETTINGS, card_images, validate
    from denoiser.artifact import Artifact, load_artifact, save_artifact
    from denoiser.engine import Engine
    from denoiser.int8 import Int8Graph

    artifact = load_artifact(path)
    card = artifact.card
    noise = NoiseSettings(**{k: v for k, v in card["noise"].items() if k in NoiseSettings._fields})
    calibration = calibration_tiles(card_images(card, "files", folders), noise, tiles, patch, seed)
    graph = quantize(artifact.model, calibration, percentile)
    engine = Engine(Artifact(artifact.model, card, Int8Graph(graph)), VALIDATION_SETTINGS)
    validation = validate(
        engine, card_images(card, "validation_files", folders), VALIDATION_NOISE, card["training"]["recipe"]["seed"]
    )
    card = card | {
        "int8": {
            "command": command,
            "calibration": {
                "tiles": tiles,
                "patch": patch,
                "percentile": percentile,
                "seed": seed,
                "images": "the card's training files, with its training noise",
            },
            "validation": validation,
            "versions": {"onnxruntime": onnxruntime.__version__},
        }
    }
    save_artifact(artifact.model, card, path, graph, same_model=True)
    return card
