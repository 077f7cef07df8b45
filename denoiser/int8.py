"""Int8 inference: a model's quantized ONNX graph, kept inside its `.keras` archive, run by ONNX Runtime on CPUs.

`python -m train quantize MODEL` writes the graph (see train/quantize.py); this module only runs it.
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

        self.session = onnxruntime.InferenceSession(graph, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(batch, np.float32)})[0]


def matmul_gops(sizes: tuple[int, ...], repeats: int = 3) -> tuple[float, int]:
    """The int8 ceiling: the best giga-ops/s (2 per multiply-add) of n x n uint8 x int8 products through ONNX
    Runtime, and the n that reached it."""
    import onnxruntime
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("MatMulInteger", ["a", "b"], ["c"])], "matmul",
                              [helper.make_tensor_value_info("a", TensorProto.UINT8, ["n", "n"]),
                               helper.make_tensor_value_info("b", TensorProto.INT8, ["n", "n"])],
                              [helper.make_tensor_value_info("c", TensorProto.INT32, ["n", "n"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    best = (0.0, 0)
    for n in sizes:
        feed = {"a": rng.integers(0, 256, (n, n), dtype=np.uint8), "b": rng.integers(-128, 128, (n, n), dtype=np.int8)}
        session.run(None, feed)  # warm
        started = time.perf_counter()
        for _ in range(repeats):
            session.run(None, feed)
        best = max(best, (2.0 * n**3 * repeats / (time.perf_counter() - started) / 1e9, n))
    return best
