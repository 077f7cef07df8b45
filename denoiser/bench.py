"""Throughput, latency, memory and arithmetic rate of a model on this machine."""

from __future__ import annotations

import itertools
import resource
import sys
import time
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np

from denoiser.engine import Engine

SIZES = ((256, 256), (512, 512), (2048, 2048), (4000, 6000))  # height, width
MATMUL_SIZES = (1024, 2048, 3072, 4096)


class Result(NamedTuple):
    """One image size: median latency over the runs, and what it implies."""

    height: int
    width: int
    tile: tuple[int, int]  # (height, width) of the tiles the image was cut into
    tiles: int
    seconds: float
    mp_per_s: float
    gflop_per_s: float  # model arithmetic actually done (tile overlap and padding included) per second
    peak_rss_mb: float  # process peak so far, before the stream; sizes run smallest first
    stream_mp_per_s: float  # images of this size one after another through one stream, as `denoise batch` runs them


def conv_flops_per_pixel(model) -> float:
    """Multiply-add FLOPs of the model's convolutions per input pixel, counted on a probe input."""
    import keras

    convs = [layer for layer in model.layers if isinstance(layer, (keras.layers.Conv2D, keras.layers.Conv2DTranspose))]
    probe = keras.Model(model.inputs, [layer.output for layer in convs])
    size = 64
    outputs = probe([np.zeros((1, size, size, int(model.input_shape[-1])), np.float32)])
    flops = 0.0
    for layer, output in zip(convs, outputs if isinstance(outputs, (list, tuple)) else [outputs]):
        kh, kw, a, b = layer.kernel.shape  # Conv2D: k,k,in,out; Conv2DTranspose: k,k,out,in
        positions = output.shape[1] * output.shape[2]
        if isinstance(layer, keras.layers.Conv2DTranspose):
            positions //= layer.strides[0] * layer.strides[1]
        flops += 2.0 * positions * kh * kw * a * b
    return flops / size**2


def matmul_gflops(
    dtype: str, device: str, sizes: tuple[int, ...] = MATMUL_SIZES, repeats: int = 3
) -> tuple[float, int]:
    """The machine's ceiling: the best GFLOP/s of n x n matrix products in `dtype` through the same backend, and
    the n that reached it (which n is fastest depends on the machine's caches and the backend's kernels)."""
    import keras

    rng = np.random.default_rng(0)
    best = (0.0, 0)
    with keras.device(f"{device}:0"):
        for n in sizes:
            a = keras.ops.convert_to_tensor(rng.random((n, n), np.float32), dtype=dtype)
            keras.ops.convert_to_numpy(keras.ops.matmul(a, a)[0, :1])  # warm, and wait for the result
            started = time.perf_counter()
            for _ in range(repeats):
                keras.ops.convert_to_numpy(keras.ops.matmul(a, a)[0, :1])
            best = max(best, (2.0 * n**3 * repeats / (time.perf_counter() - started) / 1e9, n))
    return best


def ceiling(precision: str, device: str) -> tuple[float, str]:
    """The machine's GFLOP/s ceiling for a precision, and what reached it: a float matrix multiply through Keras, or
    for int8 an int8 convolution through ONNX Runtime (see denoiser.int8.conv_gops)."""
    if precision == "int8":
        from denoiser.int8 import conv_gops

        rate, width = conv_gops()
        return rate, f"int8 3x3 conv of {width} channels (the fastest of 64/128/256)"
    rate, side = matmul_gflops(precision, device)
    return rate, f"matmul {side}^3 {precision} (the fastest of {'/'.join(map(str, MATMUL_SIZES))})"


def peak_rss_mb() -> float:
    """This process's peak resident set size in MB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1e6 if sys.platform == "darwin" else peak / 1e3


def bench_size(engine: Engine, height: int, width: int, flops_per_pixel: float, min_seconds: float = 2.0) -> Result:
    """Denoise a random image of this size until `min_seconds` have passed (at least twice); median latency.

    Images are denoised in place, as `denoise batch` and the daemon do, so peak RSS is theirs.
    """
    image = np.random.default_rng(0).random((height, width, engine.channels), dtype=np.float32)
    engine.denoise(image, in_place=True)  # warm: first tiles, allocator
    times = []
    while len(times) < 2 or sum(times) < min_seconds:
        started = time.perf_counter()
        engine.denoise(image, in_place=True)
        times.append(time.perf_counter() - started)
    seconds = float(np.median(times))
    peak = peak_rss_mb()
    plan = engine.plan(height, width)
    tiles = plan.count * (1 if engine.channels == image.shape[-1] else image.shape[-1])
    computed = tiles * plan.tile[0] * plan.tile[1] * flops_per_pixel * engine.settings.ensemble
    return Result(
        height,
        width,
        plan.tile,
        plan.count,
        seconds,
        height * width / seconds / 1e6,
        computed / seconds / 1e9,
        peak,
        stream_rate(engine, image, tiles, min_seconds),
    )


def stream_rate(engine: Engine, image: np.ndarray, tiles: int, min_seconds: float) -> float:
    """MP/s of images like `image` (`tiles` tiles each) denoised in place one after another in one stream for
    `min_seconds` (at least two, ending with a full batch; two arrays in turn): with a batch in flight, the next
    image's tiles are cut and started while one computes (see BATCHES_IN_FLIGHT)."""
    images = [image, image.copy()]
    per_batch = engine.capacity(engine.plan(*image.shape[:2]).tile)
    started, done = time.perf_counter(), 0

    def stream() -> Iterator[np.ndarray]:
        for number in itertools.count():
            full = number * tiles % per_batch == 0
            if full and number >= 2 and time.perf_counter() - started >= min_seconds:
                return
            yield images[number % 2]

    for _ in engine.denoise_many(stream(), in_place=True):
        done += 1
    return done * image.shape[0] * image.shape[1] / (time.perf_counter() - started) / 1e6
