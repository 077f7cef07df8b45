"""Batched inference: tiles from many images are packed into fixed-shape batches."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import cache, cached_property
from typing import Any, NamedTuple

import numpy as np

from denoiser.artifact import Artifact, load_artifact
from denoiser.settings import AUTO, check, device_index
from denoiser.tiling import TilePlan, blender, fit_tile, plan_tiles, round_up, tile_at

SEAM_TOLERANCE = 0.5 / 255
# Tile sides are multiples of this (and of the model's alignment), to bound the shapes traced. TensorFlow
# traces one shape-generic function after three shapes; JAX compiles each new shape, so its steps are coarser.
TILE_STEPS = {"jax": 128}
TILE_STEP = 16
# Where the step is coarse (JAX), a side also steps by at least an eighth of the power of two below it (1024-2047 by
# 128, 2048-4095 by 256, 4096-8191 by 512): at most 12.5% more pixels a side, and few shapes among large tiles.
TILE_LADDER = {"jax": 8}
TILE = 1280  # the default longest tile side, raised to TILE_OVERLAPS overlaps for models with a wide seam
TILE_OVERLAPS = 7
BF16_MARGIN = 1.2  # how much faster bf16 must be on a CPU for `auto` to give up float32's exactness
BF16_CAPABILITY = (8, 0)  # NVIDIA GPUs from Ampere on have bf16 tensor cores; older ones get float16
# --batch-size auto on a GPU: tiles of TILE x TILE that fit in this share of the free device memory, counting every
# layer's output as alive at once (an upper bound: XLA reuses buffers), at most AUTO_BATCH_MAX; where the free memory
# cannot be read, AUTO_BATCH_UNKNOWN. On a CPU, 1 (more tiles per batch only add memory there).
AUTO_BATCH_SHARE = 0.5
AUTO_BATCH_MAX = 64
AUTO_BATCH_UNKNOWN = 4
# --tile unset on a GPU: the longest side whose one tile fits the same share, up to GPU_TILE_MAX, so that most images
# are one tile (nothing computed twice at seams, nothing blended) and smaller ones fill a batch of the same area.
GPU_TILE_MAX = 8192
# Short batches pad to 1, 2, 4, 8, then multiples of 8: at most 8 slots wasted, few shapes compiled.
PAD_STEP = 8
# The largest tile side Engine.warm shows TensorFlow: any three shapes make it trace one shape-generic function.
WARM_SIDE = 64
# Batches started before the oldest one's output is blended back: under JAX the next batch's tiles are cut and sent
# while one computes, and its output is copied back and blended while the next computes (see Artifact.start).
BATCHES_IN_FLIGHT = 1
# (quarter turns, mirror) pairs for self-ensembles, ordered so that the first 2 and the first 4 are groups.
ORIENTATIONS = ((0, False), (0, True), (2, False), (2, True), (1, False), (1, True), (3, False), (3, True))


class NoGPUError(RuntimeError, ValueError):
    """A GPU was asked for (--device gpu or gpu:N) that Keras does not see."""


def visible_gpus() -> list[str]:
    """The GPUs Keras sees."""
    import keras

    try:
        return keras.distribution.list_devices("gpu")
    except RuntimeError:  # JAX raises where TensorFlow returns none
        return []


def resolve_device(device: str) -> str:
    """`auto` becomes `gpu` when Keras sees one, else `cpu`; `gpu` and `gpu:N` stay `gpu` where that GPU is
    visible, else NoGPUError says so."""
    check("device", device)
    gpus = [] if device == "cpu" else visible_gpus()
    if device.startswith("gpu") and device_index(device) >= len(gpus):
        seen = f"only {len(gpus)} GPU(s) are" if gpus else "no GPU is"
        raise NoGPUError(
            f"--device {device}: {seen} visible to Keras ({backend_name()} backend); "
            "use --device cpu or auto, or see docs/gpu.md"
        )
    return "gpu" if gpus else "cpu"


def backend_name() -> str:
    """The Keras backend in use."""
    import keras

    return keras.backend.backend()


def gpu_capability(index: int = 0) -> tuple[int, int] | None:
    """The NVIDIA compute capability of GPU `index` as the backend reports it, or None where it does not."""
    try:
        if backend_name() == "jax":
            import jax

            return tuple(int(part) for part in str(jax.devices("gpu")[index].compute_capability).split(".")[:2])
        import tensorflow as tf

        details = tf.config.experimental.get_device_details(tf.config.list_physical_devices("GPU")[index])
        return tuple(details["compute_capability"])
    except (RuntimeError, IndexError, KeyError, AttributeError, ValueError):
        return None


def free_device_memory(index: int = 0) -> int | None:
    """Bytes free on GPU `index` for the backend (JAX: its allocator's limit less what is in use), or None."""
    try:
        if backend_name() == "jax":
            import jax

            stats = jax.devices("gpu")[index].memory_stats()
            return int(stats["bytes_limit"] - stats["bytes_in_use"])
        import tensorflow as tf

        total = tf.config.experimental.get_device_details(tf.config.list_physical_devices("GPU")[index])
        return int(total["memory_limit"]) if "memory_limit" in total else None
    except (RuntimeError, IndexError, KeyError, AttributeError, TypeError, ValueError):
        return None


def auto_batch_size(free_bytes: int | None, tile: int, elements_per_pixel: float, dtype_bytes: int) -> int:
    """Tiles of `tile` x `tile` per batch that fit AUTO_BATCH_SHARE of `free_bytes` (see AUTO_BATCH_SHARE)."""
    if free_bytes is None:
        return AUTO_BATCH_UNKNOWN
    per_tile = tile * tile * max(elements_per_pixel, 1.0) * dtype_bytes
    return int(min(max(AUTO_BATCH_SHARE * free_bytes // per_tile, 1), AUTO_BATCH_MAX))


def auto_tile(free_bytes: int | None, elements_per_pixel: float, dtype_bytes: int) -> int | None:
    """The longest side, at most GPU_TILE_MAX, of a square tile that fits AUTO_BATCH_SHARE of `free_bytes`; None
    where the free memory cannot be read."""
    if free_bytes is None:
        return None
    pixels = AUTO_BATCH_SHARE * free_bytes / (max(elements_per_pixel, 1.0) * dtype_bytes)
    return min(int(pixels**0.5), GPU_TILE_MAX)


def ladder_step(side: int, step: int, rungs: int) -> int:
    """The step for a tile side: `step`, or an `rungs`th of the power of two below the side where that is more."""
    return max(step, round_up((1 << (side.bit_length() - 1)) // rungs, step))


def activation_elements_per_pixel(model, align: int = 1) -> float:
    """Elements of every layer's output per input pixel, summed, counted on a small probe input."""
    import keras

    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    probe = keras.Model(model.inputs, [layer.output for layer in layers])
    side = round_up(64, align)
    outputs = probe([np.zeros((1, side, side, int(model.input_shape[-1])), np.float32)])
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    return sum(float(np.prod(output.shape[1:])) for output in outputs) / side**2


def cpu_has_bf16() -> bool:
    """Whether /proc/cpuinfo lists AVX512_BF16 or AMX-BF16."""
    from denoiser.int8 import cpu_flags

    return bool((cpu_flags() or set()) & {"avx512_bf16", "amx_bf16"})


@cache
def cpu_bf16_is_faster() -> bool:
    """Whether this CPU has bf16 units and runs a mixed-bfloat16 3x3 convolution at least BF16_MARGIN times as
    fast as a float32 one; timed once per process, as some CPUs with AVX512_BF16 run bf16 slower."""
    return cpu_has_bf16() and conv_seconds("float32") > BF16_MARGIN * conv_seconds("mixed_bfloat16")


def conv_seconds(policy: str, repeats: int = 5) -> float:
    """The fastest of `repeats` runs of a 64-channel 3x3 convolution over 128 x 128 pixels on the CPU."""
    import keras

    image = np.random.default_rng(0).random((1, 128, 128, 64), dtype=np.float32)
    with keras.device("cpu:0"):
        conv = keras.layers.Conv2D(64, 3, padding="same", dtype=policy)
        np.asarray(conv(image))  # builds and warms it
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            np.asarray(conv(image))
            times.append(time.perf_counter() - started)
    return min(times)


def resolve_precision(precision: str, device: str, capability: tuple[int, int] | None = None) -> str:
    """`auto` becomes bfloat16 on a GPU of BF16_CAPABILITY or later (`capability`), float16 on an older or unknown
    one, bfloat16 on a CPU where that is faster, else float32. int8 (a model's int8 graph, where it has one) is
    chosen only by name, on the CPU alone (ONNX Runtime, whatever the Keras backend): it is faster on CPUs with
    int8 dot-product units but less exact (see the README)."""
    if precision == "int8" and device != "cpu":
        raise ValueError(f"int8 runs on the CPU only, through ONNX Runtime (--device cpu), not on {device}")
    if precision != "auto":
        return precision
    if device == "gpu":
        return "bfloat16" if capability is not None and tuple(capability) >= BF16_CAPABILITY else "float16"
    return "bfloat16" if cpu_bf16_is_faster() else "float32"


def dtype_policy(precision: str) -> str:
    """The Keras dtype policy of a resolved precision (int8 graphs sit beside a float32 model)."""
    return precision if precision in ("float32", "int8") else f"mixed_{precision}"


def tile_step() -> int:
    """The tile-side step for the Keras backend in use."""
    return TILE_STEPS.get(backend_name(), TILE_STEP)


def tile_rungs() -> int:
    """Steps per octave of tile side for the Keras backend in use (0: none, every side steps by the tile step)."""
    return TILE_LADDER.get(backend_name(), 0)


def orient(array: np.ndarray, turns: int, mirror: bool, inverse: bool = False) -> np.ndarray:
    """An H x W x C image (or N x H x W x C stack) turned `turns` quarter turns, then mirrored left to right;
    with `inverse`, the transform that undoes that."""
    if inverse:
        return np.rot90(array[..., ::-1, :] if mirror else array, -turns, axes=(-3, -2))
    array = np.rot90(array, turns, axes=(-3, -2))
    return array[..., ::-1, :] if mirror else array


class Settings(NamedTuple):
    """How to cut and batch images: each image is cut into as few tiles with sides of at most `tile` as the
    overlap allows, each side as short as covers the image (to 16 px), so that little is computed twice.
    A batch holds `batch_size` tiles of `tile` x `tile`, or on a GPU as many smaller ones as fit in the same area.
    With `ensemble` N, each tile is run in N orientations (flips and quarter turns) and the outputs,
    turned back, are averaged: a self-ensemble, N times the work. `tile` None: TILE, or TILE_OVERLAPS overlaps
    where that is more, so that a model with a wide seam spends no more of each tile on overlap than the others;
    on a GPU, the longest tile its free memory holds (see GPU_TILE_MAX) where that is more."""

    tile: int | None = None
    overlap: int | None = None
    batch_size: int | str = 1  # or auto: sized from free device memory on a GPU, 1 on a CPU
    device: str = "auto"
    precision: str = "auto"
    ensemble: int = 1

    @classmethod
    def of(cls, values: Mapping) -> Settings:
        """The settings held in a mapping with (at least) these fields: parsed options, a daemon config."""
        return cls(**{name: values[name] for name in cls._fields})


class Engine:
    """Runs one model over images of any size; holds the model and settings, no per-run state."""

    def __init__(self, artifact: Artifact, settings: Settings = Settings(), device: str = "cpu"):
        check("ensemble", settings.ensemble)
        self.artifact, self.settings, self.device = artifact, settings, device
        align, radius = artifact.align, artifact.seam_radius
        default_overlap = round_up(2 * radius + 2, align)
        self.overlap = default_overlap if settings.overlap is None else settings.overlap
        self.step, self.rungs = round_up(tile_step(), align), tile_rungs()
        self.margin = min(radius, max(self.overlap - 1, 0) // 2)
        self.index = device_index(settings.device) if device == "gpu" else 0
        self.tile = self.resolve_tile()
        self.batch_size = self.resolve_batch_size()

    @classmethod
    def load(cls, model: str, settings: Settings = Settings()) -> Engine:
        """Load a model file for the settings' device and precision."""
        device = resolve_device(settings.device)
        capability = gpu_capability(device_index(settings.device)) if device == "gpu" else None
        precision = resolve_precision(settings.precision, device, capability)
        return cls(load_artifact(model, dtype_policy(precision)), settings, device)

    def resolve_tile(self, free_bytes: int | None = None) -> int:
        """The longest tile side (see Settings): to a multiple of the step, and at least twice the overlap."""
        tile = self.settings.tile
        if tile is None:
            tile = max(TILE, TILE_OVERLAPS * self.overlap)
            if self.device == "gpu" and not self.artifact.int8:
                tile = max(tile, auto_tile(self.free_memory(free_bytes), *self.activation_footprint) or 0)
        return max(tile // self.step * self.step, round_up(max(2 * self.overlap, 16), self.step))

    def resolve_batch_size(self, free_bytes: int | None = None) -> int:
        """The batch size setting, or for `auto` 1 on a CPU and on a GPU what its free memory holds."""
        if self.settings.batch_size != AUTO:
            return self.settings.batch_size
        if self.device != "gpu" or self.artifact.int8:
            return 1
        return auto_batch_size(self.free_memory(free_bytes), self.tile, *self.activation_footprint)

    def free_memory(self, free_bytes: int | None = None) -> int | None:
        """`free_bytes` where given, else the free memory of this engine's GPU."""
        return free_device_memory(self.index) if free_bytes is None else free_bytes

    @cached_property
    def activation_footprint(self) -> tuple[float, int]:
        """Every layer's output elements per input pixel, and the bytes of one element in this precision."""
        elements = activation_elements_per_pixel(self.artifact.model, self.artifact.align)
        return elements, 4 if self.precision == "float32" else 2

    @property
    def channels(self) -> int:
        return self.artifact.channels

    @property
    def precision(self) -> str:
        """What the model computes in: int8, or the Keras compute dtype (float32, bfloat16 or float16)."""
        return "int8" if self.artifact.int8 else self.artifact.model.layers[-1].dtype_policy.compute_dtype

    def plan(self, height: int, width: int) -> TilePlan:
        """The tile plan for an image: the fewest tiles of at most `tile` a side, each side fitted to the image."""
        align = self.artifact.align
        shape = tuple(self.fit(round_up(size, align)) for size in (height, width))
        return plan_tiles(height, width, shape, self.overlap, self.margin, align)

    def fit(self, size: int) -> int:
        """The tile side for an image side: see `fit_tile`, then up the ladder of sides (TILE_LADDER)."""
        side = fit_tile(size, self.tile, self.overlap, self.step)
        return min(round_up(side, ladder_step(side, self.step, self.rungs)), self.tile) if self.rungs else side

    def capacity(self, shape: tuple[int, int]) -> int:
        """Tiles of a shape per batch: on a GPU as many as fill the area of `batch_size` of the largest tiles; on a
        CPU `batch_size`, as more small tiles a batch only run slower there (docs/tiling.md)."""
        if self.device != "gpu":
            return self.batch_size
        return max(1, self.batch_size * self.tile**2 // (shape[0] * shape[1]))

    def warm(self) -> None:
        """Show TensorFlow three small tile shapes, after which it traces one shape-generic function, so that the
        first images run without tracing. Tiles of the full size would cost a 2-core CPU 19 s a model and gain
        nothing (docs/tiling.md). Not under JAX: it compiles each shape, so these would only cost time and memory."""
        if backend_name() == "jax":
            return
        side = min(self.tile, round_up(WARM_SIDE, 2 * self.artifact.align))  # so that half a side is aligned too
        half = round_up(side // 2, self.artifact.align)
        for count, shape in ((1, (side, side)), (2, (half, side)), (1, (side, half))):
            np.asarray(self._predict(np.zeros((count, *shape, self.channels), np.float32)))

    def denoise(self, image: np.ndarray, in_place: bool = False) -> np.ndarray:
        """Denoise one H x W x C image."""
        return next(self.denoise_many([image], in_place))

    def denoise_many(
        self, images: Iterable[np.ndarray], in_place: bool = False, progress: Callable[[], object] | None = None
    ) -> Iterator[np.ndarray]:
        """Denoise images lazily, in order; tiles of the same size from consecutive images share batches.

        With `in_place`, each float32 image is overwritten by its result, so no second image-sized array is made.
        `progress` is called after each batch of tiles.

        When more images wait behind an unfinished one than two of its batches hold, its partial batch is run,
        so a large image among many small ones cannot hold their results back without bound.

        Up to BATCHES_IN_FLIGHT batches are started before the oldest is blended back (see `_flush`).
        """
        pending: deque[_Job] = deque()
        batches: dict[tuple[int, int], list[tuple[_Job, int, int]]] = {}
        running: deque[_Started] = deque()
        for image in images:
            job = _Job(self, image, in_place)
            pending.append(job)
            batch, capacity = batches.setdefault(job.plan.tile, []), self.capacity(job.plan.tile)
            for unit in range(len(job.units)):
                for index in range(job.plan.count):
                    batch.append((job, unit, index))
                    if len(batch) == capacity:
                        self._flush(batch, running, progress)
            if len(pending) > 2 * self.capacity(pending[0].plan.tile) and pending[0].remaining:
                self._flush(batches[pending[0].plan.tile], running, progress, keep=0)
            while pending and pending[0].remaining == 0:
                yield pending.popleft().result()
        for batch in batches.values():
            self._flush(batch, running, progress)
        self._finish(running, 0, progress)
        while pending:
            yield pending.popleft().result()

    def _flush(
        self,
        batch: list[tuple[_Job, int, int]],
        running: deque[_Started],
        progress: Callable[[], object] | None = None,
        keep: int | None = None,
    ) -> None:
        """Start a batch if it holds any tiles, and empty it; then leave `keep` (default BATCHES_IN_FLIGHT)
        batches running (`_finish`)."""
        if batch:
            running.append(self._start(batch))
            batch.clear()
        self._finish(running, BATCHES_IN_FLIGHT if keep is None else keep, progress)

    def _finish(self, running: deque[_Started], keep: int, progress: Callable[[], object] | None = None) -> None:
        """Blend back the oldest started batches until `keep` are left running, reporting progress after each."""
        while len(running) > keep:
            self._blend(running.popleft())
            if progress:
                progress()

    def _blend(self, started: _Started) -> None:
        """Wait for a started batch's output and hand its tiles back to their jobs."""
        predicted = np.asarray(started.output)
        for slot, (job, unit, index) in enumerate(started.tiles):
            job.blends[unit].add(index, predicted[slot])
            job.remaining -= 1

    def _start(self, batch: list[tuple[_Job, int, int]]) -> _Started:
        """Start the model on one batch.

        All tiles of a batch have one shape. A short last batch is zero-padded (see `padded_count`, at most to
        the shape's capacity), so a lone image costs one tile, and few shapes are ever traced.
        """
        import keras

        shape = batch[0][0].plan.tile
        slots = min(self.capacity(shape), padded_count(len(batch)))
        job, unit, index = batch[0]
        first = tile_at(job.units[unit], job.plan, index)  # a view of the image where no padding is needed
        if slots == 1 and first.shape[-1] == self.channels:  # one tile, often a whole image: no copy into a stack
            stack = np.ascontiguousarray(first, np.float32)[None]
        else:  # a plane fed to a colour model is replicated into its channels here
            stack = np.empty((slots, *shape, self.channels), np.float32)
            stack[len(batch) :] = 0.0  # the padding slots
            stack[0] = first
            for slot, (job, unit, index) in enumerate(batch[1:], 1):
                stack[slot] = tile_at(job.units[unit], job.plan, index)
        with keras.device(f"{self.device}:{self.index}"):
            return _Started(list(batch), self._predict(stack))

    def _predict(self, stack: np.ndarray) -> Any:
        """The model's output for a stack of tiles (maybe still computing: see Artifact.start), averaged over the
        settings' orientations."""
        if self.settings.ensemble == 1:  # no copies: three passes over the batch cost the host more than a GPU
            return self.artifact.start(stack)
        total = np.zeros(stack.shape, np.float32)
        for turns, mirror in ORIENTATIONS[: self.settings.ensemble]:
            view = np.ascontiguousarray(orient(stack, turns, mirror))
            total += orient(self.artifact.predict(view), turns, mirror, True)
        return total / self.settings.ensemble


def padded_count(tiles: int) -> int:
    """The batch a short batch of tiles is padded to: a power of two up to PAD_STEP, then a multiple of it."""
    return 1 << (tiles - 1).bit_length() if tiles <= PAD_STEP else -(-tiles // PAD_STEP) * PAD_STEP


def planes(image: np.ndarray, channels: int) -> list[np.ndarray]:
    """The parts of an image the model runs on: the image itself when it has the model's channels, else
    views of its single planes (a colour model sees each plane replicated into its channels)."""
    return [image] if image.shape[-1] == channels else [image[..., c : c + 1] for c in range(image.shape[-1])]


class _Started(NamedTuple):
    """A batch started on the model: its tiles, as (job, unit, index), and its output, maybe still computing."""

    tiles: list[tuple[_Job, int, int]]
    output: Any


class _Job:
    """One image in flight: tiles are cut from its planes on demand and blended into its output as they return."""

    def __init__(self, engine: Engine, image: np.ndarray, in_place: bool):
        if in_place and image.dtype != np.float32:
            raise ValueError(f"in-place denoising needs a float32 image, got {image.dtype}")
        self.plan = engine.plan(image.shape[0], image.shape[1])
        self.out = image if in_place else np.empty(image.shape, np.float32)
        self.units = planes(image, engine.channels)
        self.blends = [blender(self.plan, out, engine.channels) for out in planes(self.out, engine.channels)]
        self.remaining = self.plan.count * len(self.units)

    def result(self) -> np.ndarray:
        for blend in self.blends:
            blend.finish()
        return np.clip(self.out, 0.0, 1.0, out=self.out)


def measure_seam_radius(artifact: Artifact, images: list[np.ndarray], tolerance: float = SEAM_TOLERANCE) -> int:
    """The smallest tile margin at which tiled output stays within `tolerance` of whole-image output.

    Overlaps below the receptive field's, in steps of at least 8 pixels, are bisected on the premise that error
    grows as overlap shrinks; tiles are at most twice the overlap, so each image has several seams. Runs in the
    artifact's precision (float32 for export).

    Args:
        images: float32 images, noisy as the model will see them; the first 8 are used, each cropped to a
            square, or mirrored out to one where it is too small for two of the largest tiles.
    """
    full = Artifact(artifact.model, {k: v for k, v in artifact.card.items() if k != "seam_radius"})
    align, step = full.align, full.align * max(1, 8 // full.align)
    widest = round_up(2 * full.receptive_radius + 2, align)
    crops = [square_crop(image, 2 * widest, align) for image in images[:8]]
    import keras

    with keras.device("cpu:0"):  # where the engines below run, so that both see the same arithmetic
        wholes = [np.clip(full.model.predict_on_batch(crop[None])[0], 0.0, 1.0) for crop in crops]
    overlaps, radius = range(widest - step, step - 1, -step)[::-1], full.receptive_radius
    low, high = 0, len(overlaps)  # bisect for the first overlap that holds, taking every larger one to hold too
    while low < high:
        engine = Engine(full, Settings(tile=0, overlap=overlaps[middle := (low + high) // 2]))
        if all(np.abs(out - whole).max() <= tolerance for out, whole in zip(engine.denoise_many(crops), wholes)):
            high, radius = middle, engine.margin
        else:
            low = middle + 1
    return radius


def square_crop(image: np.ndarray, least: int, align: int) -> np.ndarray:
    """The image's top-left square, its side a multiple of `align`, mirrored out at the bottom right to `least`."""
    side = max(min(image.shape[:2]) // align * align, least)
    pad = [(0, max(side - size, 0)) for size in image.shape[:2]] + [(0, 0)] * (image.ndim - 2)
    return np.pad(image, pad, "symmetric")[:side, :side]
