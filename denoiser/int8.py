"""Int8 inference: a model's quantized ONNX graph, kept inside its `.keras` archive, run by ONNX Runtime on CPUs.

`denoise train quantize MODEL` writes the graph (see denoise_train/quantize.py); this module only runs it.
"""

from __future__ import annotations

import platform
import time
import zipfile
from pathlib import Path

import numpy as np

INT8_ENTRY = "int8.onnx"
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")  # /proc/cpuinfo flags of an x86 int8 dot product
CPUINFO = Path("/proc/cpuinfo")


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
        graph = unsigned_weights(graph) if saturates() else graph
        self.session = onnxruntime.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(batch, np.float32)})[0]


def cpu_flags(cpuinfo: Path = CPUINFO) -> set[str] | None:
    """The words of /proc/cpuinfo (its CPU flags among them), or None where it cannot be read."""
    try:
        return set(cpuinfo.read_text().split())
    except OSError:
        return None


def saturates(cpuinfo: Path = CPUINFO) -> bool:
    """Whether ONNX Runtime's uint8 x int8 products saturate here: on an x86 CPU not known to have VNNI, its AVX2
    kernels add pairs of products in 16 bits (its docs advise uint8 weights or a reduced range there)."""
    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686"):
        return False
    flags = cpu_flags(cpuinfo)
    return flags is None or not flags.intersection(VNNI_FLAGS)


def unsigned_weights(graph: bytes) -> bytes:
    """The graph with its int8 weights as uint8 around a zero point of 128: the same values, in the form that
    ONNX Runtime multiplies without saturating on CPUs without VNNI."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load_from_string(graph)
    constants = {tensor.name: tensor for tensor in model.graph.initializer}
    signed = {
        name
        for node in model.graph.node
        if node.op_type == "DequantizeLinear"
        and len(node.input) == 3
        and getattr(constants.get(node.input[0]), "data_type", None) == onnx.TensorProto.INT8
        for name in (node.input[0], node.input[2])
    }
    for tensor in (constants[name] for name in signed):
        shifted = numpy_helper.to_array(tensor).astype(np.int16) + 128
        tensor.CopyFrom(numpy_helper.from_array(shifted.astype(np.uint8), tensor.name))
    return model.SerializeToString()


def conv_gops(channels: tuple[int, ...] = (64, 128, 256), repeats: int = 10) -> tuple[float, int]:
    """The int8 ceiling: the best giga-ops/s (2 per multiply-add) of ONNX Runtime's int8 3x3 convolution with this
    many channels in and out (on 16384/c pixels a side: the same work each), and the channel count that reached it.

    A convolution rather than a matrix multiply, because ONNX Runtime's int8 matrix multiply (MatMulInteger) ran
    slower here (570-670 giga-ops/s) than its convolutions, and so slower than the models themselves."""
    import onnxruntime
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    best = (0.0, 0)
    weight_type, zero = (np.uint8, 128) if saturates() else (np.int8, 0)  # as the engine runs the graphs here
    for width in channels:
        side = 16384 // width
        constants = {
            "x_scale": np.float32(0.01),
            "x_zero": np.uint8(128),
            "w_scale": np.full(width, 1e-3, np.float32),
            "w_zero": np.full(width, zero, weight_type),
            "y_scale": np.float32(0.05),
            "y_zero": np.uint8(128),
            "w": (rng.integers(-127, 128, (width, width, 3, 3)) + zero).astype(weight_type),
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
