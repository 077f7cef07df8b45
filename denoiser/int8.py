"""Int8 inference: a model's quantized ONNX graph, kept inside its `.keras` archive, run by ONNX Runtime on CPUs.

`denoise train quantize MODEL` writes the graph (see denoise_train/quantize.py); this module only runs it.
"""

from __future__ import annotations

import time
import zipfile
from pathlib import Path

import numpy as np

INT8_ENTRY = "int8.onnx"


def read_int8(path: str | Path) -> bytes | None:
    """The int8 graph stored inside a `.keras` archive, or None when it has none."""
    with zipfile.ZipFile(path) as archive:
        return archive.read(INT8_ENTRY) if INT8_ENTRY in archive.namelist() else None


class Int8Graph:
    """An int8 ONNX graph that maps N x H x W x C float32 tiles to the model's output, on the CPU."""

    def __init__(self, graph: bytes):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        # ONNX Runtime's memory patterns plan one arena block per input shape, and tiles come in many shapes:
        # without them four tiles of 1088 to 1280 px peaked at 640 MB instead of 1150, at the same speed.
        options.enable_mem_pattern = False
        self.session = onnxruntime.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(batch, np.float32)})[0]


def conv_gops(channels: tuple[int, ...] = (64, 128, 256), repeats: int = 10) -> tuple[float, int]:
    """The int8 ceiling: the best giga-ops/s (2 per multiply-add) of ONNX Runtime's int8 3x3 convolution with this
    many channels in and out (on 16384/c pixels a side: the same work each), and the channel count that reached it.

    A convolution rather than a matrix multiply, because ONNX Runtime's int8 matrix multiply (MatMulInteger) ran
    slower here (570-670 giga-ops/s) than its convolutions, and so slower than the models themselves."""
    import onnxruntime
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    best = (0.0, 0)
    for width in channels:
        side = 16384 // width
        constants = {
            "x_scale": np.float32(0.01),
            "x_zero": np.uint8(128),
            "w_scale": np.full(width, 1e-3, np.float32),
            "w_zero": np.zeros(width, np.int8),
            "y_scale": np.float32(0.05),
            "y_zero": np.uint8(128),
            "w": rng.integers(-127, 128, (width, width, 3, 3), dtype=np.int8),
        }
        node = helper.make_node(
            "QLinearConv",
            ["x", "x_scale", "x_zero", "w", "w_scale", "w_zero", "y_scale", "y_zero"],
            ["y"],
            pads=[1, 1, 1, 1],
        )
        graph = helper.make_graph(
            [node],
            "conv",
            [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, width, side, side])],
            [helper.make_tensor_value_info("y", TensorProto.UINT8, None)],
            [numpy_helper.from_array(np.asarray(v), k) for k, v in constants.items()],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        feed = {"x": rng.integers(0, 256, (1, width, side, side), dtype=np.uint8)}
        session.run(None, feed)  # warm
        started = time.perf_counter()
        for _ in range(repeats):
            session.run(None, feed)
        best = max(best, (2.0 * 9 * (width * side) ** 2 * repeats / (time.perf_counter() - started) / 1e9, width))
    return best
