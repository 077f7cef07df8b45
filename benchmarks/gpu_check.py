"""The device check of issue 37, run by benchmarks/gpu_check.sh on Keras 3 over JAX: `denoise bench` for gray, color
and watermark-gray with the automatic batch, `denoise eval` on Set12 at sigma 25 against the CPU float32 figure, and
DnCNN-S as the peer; prints MP/s, the share of the bf16 peak in model FLOPs, peak device memory, the ratio to DnCNN-S.

DnCNN-S here is the architecture (17 3x3 convolutions of 64 channels, ReLU, residual output; batch norm folded into
the convolutions, as in the published inference weights) with random weights unless --dncnn-weights names the
published ones (KAIR's dncnn_25.pth, read with PyTorch): its speed does not depend on the weights' values.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

H200_BF16_TFLOPS = 989.4  # dense bf16 tensor-core peak of an H200 SXM (NVIDIA's figure)
CPU_FLOAT32_SET12_SIGMA25 = 30.11  # docs/benchmarks.md: gray@float32, Set12, gauss:25
MODELS = ("gray", "color", "watermark-gray")
SIZES = ("2048x2048", "6000x4000")
QUICK_SIZES = ("256x256", "512x384")


def dncnn_s(channels: int = 1, depth: int = 17, width: int = 64):
    """DnCNN-S for inference: depth 3x3 convolutions, ReLU between, the output subtracted from the input."""
    import keras

    inputs = keras.Input((None, None, channels))
    x = inputs
    for layer in range(depth - 1):
        x = keras.layers.Conv2D(width, 3, padding="same", activation="relu", name=f"conv{layer}")(x)
    noise = keras.layers.Conv2D(channels, 3, padding="same", name=f"conv{depth - 1}")(x)
    return keras.Model(inputs, keras.layers.Subtract()([inputs, noise]), name="dncnn_s")


def load_published_weights(model, path: Path) -> None:
    """Set DnCNN-S's kernels from KAIR's dncnn_25.pth (model.N.weight / model.N.bias, batch norm merged)."""
    import torch

    state = torch.load(path, map_location="cpu")
    weights = sorted((k for k in state if k.endswith(".weight")), key=lambda k: int(k.split(".")[1]))
    convs = [layer for layer in model.layers if layer.name.startswith("conv")]
    for layer, key in zip(convs, weights, strict=True):
        kernel = state[key].numpy().transpose(2, 3, 1, 0)  # out, in, kh, kw -> kh, kw, in, out
        layer.set_weights([kernel, state[key.replace(".weight", ".bias")].numpy()])


def dncnn_engine(settings, device: str, weights: Path | None):
    """An engine over DnCNN-S in the settings' precision, tiled like the shipped models."""
    import keras

    from denoiser.artifact import Artifact
    from denoiser.engine import Engine, dtype_policy

    keras.config.set_dtype_policy(dtype_policy(settings.precision))
    model = dncnn_s()
    keras.config.set_dtype_policy("float32")
    if weights:
        load_published_weights(model, weights)
    card = {"name": "DnCNN-S" + ("" if weights else " (random weights)"), "size_multiple": 1, "receptive_radius": 17}
    return Engine(Artifact(model, card), settings, device)


def run_bench(model: str, sizes: tuple[str, ...], device: str, seconds: float, out: Path, *extra: str) -> dict:
    """`denoise bench` in this process (with `extra` options), its JSON read back."""
    from denoiser.cli import main

    args = ["bench", "-m", model, "--device", device, "-b", "auto", "--min-seconds", str(seconds), "-o", str(out)]
    for size in sizes:
        args += ["-s", size]
    main.main([*args, *extra], standalone_mode=False)
    return json.loads(out.read_text())


def bench_with(model: str, sizes: tuple[str, ...], device: str, seconds: float, out: Path, *extra: str) -> dict:
    """MP/s, tiles and batch size by size of `denoise bench` with `extra` options; the error instead where it fails
    (out of device memory, say), as it must not cost the figures before it."""
    try:
        report = run_bench(model, sizes, device, seconds, out, *extra)
    except Exception as error:
        return {"error": f"{type(error).__name__}: {str(error)[:300]}"}
    return {
        f"{s['width']}x{s['height']}": {
            "mp_per_s": s["mp_per_s"],
            "stream_mp_per_s": s["stream_mp_per_s"],
            "tiles": f"{s['tiles']} of {s['tile']}",
        }
        for s in report["sizes"]
    } | {"batch_size": report["batch_size"], "tile": report["tile"]}


def one_tile(model: str, size: str, device: str, seconds: float, out: Path) -> dict:
    """`denoise bench` with one tile as large as the image, so that the host neither cuts nor blends tiles."""
    side = -(-max(int(side) for side in size.split("x")) // 128) * 128
    return bench_with(model, (size,), device, seconds, out, "--tile", str(side))


def keras_predict(model: str, sizes: tuple[str, ...], device: str, seconds: float, out: Path) -> dict:
    """`denoise bench` with the engine as it was until 2026-12-05: Keras's predict_on_batch, which waits for the
    output, and no batch in flight."""
    import denoiser.engine as engine_module
    from denoiser.artifact import Artifact

    start, in_flight = Artifact.start, engine_module.BATCHES_IN_FLIGHT
    Artifact.start, engine_module.BATCHES_IN_FLIGHT = Artifact.predict, 0
    try:
        return bench_with(model, sizes, device, seconds, out)
    finally:
        Artifact.start, engine_module.BATCHES_IN_FLIGHT = start, in_flight


def peak_device_mb(device: str) -> float | None:
    """Peak bytes in use on the first device of the kind, as JAX counts them (None on a CPU, where it does not)."""
    import jax

    stats = jax.devices(device)[0].memory_stats() or {}
    return stats["peak_bytes_in_use"] / 1e6 if "peak_bytes_in_use" in stats else None


def eval_set12(set12: Path, device: str, out: Path, specs: tuple[str, ...]) -> dict:
    """`denoise eval` on Set12 at sigma 25 for model specs on a device: PSNR by spec."""
    from denoiser.cli import main

    args = ["eval", str(set12), "--noise", "gauss:25", "--baseline", "none", "-o", str(out), "--device", device]
    for spec in specs:
        args += ["-m", spec]
    main.main(args, standalone_mode=False)
    return psnr_by_method(json.loads((out / "eval.json").read_text()))


def psnr_by_method(report: dict) -> dict:
    """PSNR per method from eval.json's rows."""
    return {row["method"]: row["psnr"] for row in report["rows"]}


def peer(args, device: str, sizes: tuple[str, ...]) -> dict:
    """DnCNN-S timed like the shipped models: MP/s and GFLOP/s per size."""
    from denoiser.bench import bench_size, conv_flops_per_pixel
    from denoiser.cli.bench import parse_size
    from denoiser.engine import Settings, resolve_precision

    precision = resolve_precision("auto", device, gpu_capability(device))
    settings = Settings(batch_size="auto", device=device, precision=precision)
    engine = dncnn_engine(settings, device, args.dncnn_weights)
    flops = conv_flops_per_pixel(engine.artifact.model)
    results = {}
    for height, width in parse_size(None, None, sizes):
        result = bench_size(engine, height, width, flops, args.seconds)
        results[f"{width}x{height}"] = {
            "mp_per_s": result.mp_per_s,
            "stream_mp_per_s": result.stream_mp_per_s,
            "gflop_per_s": result.gflop_per_s,
        }
    print(
        f"{engine.artifact.card['name']}: {flops / 1e3:.1f} kFLOP/pixel, {engine.precision}, batch "
        f"{engine.batch_size}: " + ", ".join(f"{k} {v['mp_per_s']:.2f} MP/s" for k, v in results.items())
    )
    return results


def gpu_capability(device: str):
    from denoiser.engine import gpu_capability as capability

    return capability(0) if device == "gpu" else None


def stream(model: str, device: str, size: str, count: int = 12) -> dict:
    """MP/s over `count` one-tile images of `size`: through the engine one image at a time (`denoise`), in one
    stream with no batch in flight and with BATCHES_IN_FLIGHT, through a prototype that overlaps each image's
    padding, copy in and write back with the previous image's compute (JAX dispatches asynchronously), and through
    prototypes that also pad, crop and clip on the device (`device_call`), copying the image in and out once as
    float32 or as 8 bits. Outputs are checked equal to the first's (the 8-bit ones within half a level)."""
    import jax

    import denoiser.engine as engine_module
    from denoiser.artifact import jax_forward, resolve_model
    from denoiser.cli.bench import parse_size
    from denoiser.engine import Engine, Settings
    from denoiser.tiling import blender, tile_at

    engine = Engine.load(str(resolve_model(model)), Settings(batch_size="auto", device=device))
    ((height, width),) = parse_size(None, None, (size,))
    plan, channels = engine.plan(height, width), engine.channels
    if plan.count != 1:
        return {"error": f"{size} is {plan.count} tiles of {plan.tile} here, not one"}
    rng = np.random.default_rng(0)  # 8-bit levels, so that the 8-bit prototype sees the same inputs
    images = [np.round(rng.random((height, width, channels), dtype=np.float32) * 255) / 255 for _ in range(3)]
    outputs = [np.empty_like(image) for image in images]
    forward = jax_forward(engine.artifact.model)
    levels = [np.round(image * 255).astype(np.uint8) for image in images]
    levels_out = [np.empty_like(level) for level in levels]

    def write_back(slot: int, result) -> None:
        blender(plan, outputs[slot], channels).add(0, np.asarray(result)[0])
        np.clip(outputs[slot], 0.0, 1.0, out=outputs[slot])

    def pipelined() -> None:
        waiting = None
        for number in range(count):
            tile = np.ascontiguousarray(tile_at(images[number % 3], plan, 0), np.float32)[None]
            result = forward(jax.device_put(tile))  # returns before the device is done
            if waiting:
                write_back(*waiting)
            waiting = number % 3, result
        write_back(*waiting)

    def resident(inputs: list[np.ndarray], results: list[np.ndarray]):
        call = device_call(engine.artifact.model, plan.tile, (height, width))

        def run() -> None:
            waiting = None
            for number in range(count):
                result = call(jax.device_put(inputs[number % 3]))  # returns before the device is done
                if waiting:
                    np.copyto(results[waiting[0]], np.asarray(waiting[1]))
                waiting = number % 3, result
            np.copyto(results[waiting[0]], np.asarray(waiting[1]))

        return run

    def one_at_a_time() -> None:
        for number in range(count):
            outputs[number % 3][...] = engine.denoise(images[number % 3])

    default, rates, difference, expected = engine_module.BATCHES_IN_FLIGHT, {}, 0.0, None

    def streamed(in_flight: int):
        def run() -> None:
            engine_module.BATCHES_IN_FLIGHT = in_flight
            try:
                done = engine.denoise_many(images[number % 3] for number in range(count))
                for number, output in enumerate(done):
                    outputs[number % 3][...] = output
            finally:
                engine_module.BATCHES_IN_FLIGHT = default

        return run

    runs = (
        ("one_at_a_time", one_at_a_time),
        ("none_in_flight", streamed(0)),
        ("in_flight", streamed(default)),
        ("pipelined", pipelined),
        ("on_device_float32", resident(images, outputs)),
        ("on_device_uint8", resident(levels, levels_out)),
    )
    for name, run in runs:
        run()  # compiles
        started = time.perf_counter()
        run()
        rates[name] = count * height * width / (time.perf_counter() - started) / 1e6
        expected = expected or [output.copy() for output in outputs]
        difference = max([difference] + [float(np.abs(o - e).max()) for o, e in zip(outputs, expected)])
    levels_difference = max(float(np.abs(o / 255 - e).max()) for o, e in zip(levels_out, expected))
    return {
        "model": model,
        "images": count,
        "size": size,
        "mp_per_s": rates,
        "max_difference": difference,
        "max_difference_uint8": levels_difference,
    }


def device_call(model, tile: tuple[int, int], shape: tuple[int, int]):
    """One jitted call for one-tile images of `shape`: the image (float32 in [0, 1], or uint8) goes in as it is,
    is mirror-padded to `tile` on the device as tile_at pads it, run through the model, cropped, clipped and, for
    uint8, rounded to levels there, and comes back in its own dtype."""
    import jax
    import jax.numpy as jnp

    from denoiser.artifact import jax_weights

    (rows, columns), (height, width) = tile, shape

    def run(trained, other, image):
        levels = image.dtype == jnp.uint8
        x = image.astype(jnp.float32) / 255 if levels else image
        x = jnp.pad(x, ((0, rows - height), (0, columns - width), (0, 0)), mode="symmetric")
        y = model.stateless_call(trained, other, x[None], training=False)[0][0, :height, :width]
        y = jnp.clip(y.astype(jnp.float32), 0.0, 1.0)
        return jnp.round(y * 255).astype(jnp.uint8) if levels else y

    call = jax.jit(run)
    return lambda image: call(*jax_weights(model), image)


def host_share(model: str, device: str, size: str) -> dict:
    """One image of `size` through gray's engine, timed whole and inside the model's predict: what the host adds."""
    from denoiser.artifact import resolve_model
    from denoiser.cli.bench import parse_size
    from denoiser.engine import Engine, Settings

    engine = Engine.load(str(resolve_model(model)), Settings(batch_size="auto", device=device))
    ((height, width),) = parse_size(None, None, (size,))
    image = np.random.default_rng(0).random((height, width, engine.channels), dtype=np.float32)
    engine.denoise(image, in_place=True)
    predict, inside = engine._predict, []

    def timed(stack):
        started = time.perf_counter()
        out = np.asarray(predict(stack))  # waits for the model: its output may still be computing
        inside.append(time.perf_counter() - started)
        return out

    engine._predict = timed
    started = time.perf_counter()
    for _ in range(3):
        engine.denoise(image, in_place=True)
    whole = (time.perf_counter() - started) / 3
    report = {"seconds": whole, "predict_seconds": sum(inside) / 3, "batch_size": engine.batch_size}
    return report | ({"host_steps": host_steps(engine, image)} if engine.plan(height, width).count == 1 else {})


def host_steps(engine, image: np.ndarray, repeats: int = 3) -> dict:
    """The fastest of `repeats` of each host step of a one-tile image: cutting (mirror-padding) its tile, the same
    into a buffer reused from one image to the next (what fresh allocations cost), writing the model's output back
    into the float32 image, and clipping it."""
    from denoiser.tiling import blender, tile_at

    plan = engine.plan(*image.shape[:2])
    output = engine.artifact.predict(np.ascontiguousarray(tile_at(image, plan, 0), np.float32)[None])[0]
    reused = np.zeros((*plan.tile, image.shape[-1]), np.float32)
    steps = {
        "cut": lambda: np.ascontiguousarray(tile_at(image, plan, 0)),
        "cut_reused": lambda: mirror_into(reused, image),
        "write": lambda: blender(plan, image, engine.channels).add(0, output),
        "clip": lambda: np.clip(image, 0.0, 1.0, out=image),
    }
    times = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            started = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - started)
    return {name: min(seconds) for name, seconds in times.items()}


def mirror_into(canvas: np.ndarray, image: np.ndarray) -> np.ndarray:
    """`image` mirror-padded at the bottom and right into `canvas`, as tile_at pads a one-tile plan."""
    (height, width), (rows, columns) = image.shape[:2], canvas.shape[:2]
    canvas[:height, :width] = image
    canvas[height:, :width] = image[height - 1 : (2 * height - rows - 1) if 2 * height > rows else None : -1]
    canvas[:, width:] = canvas[:, width - 1 : (2 * width - columns - 1) if 2 * width > columns else None : -1]
    return canvas


def device_only(engine, tiles: int, shape: tuple[int, int]) -> dict:
    """Seconds for one batch of `tiles` of `shape`: the model alone on device-resident data (compiled once,
    synchronised), the copy in and the copy out; and the engine's model call (`Artifact.start`, waited for) and
    Keras's predict, each with all of it."""
    import jax

    from denoiser.artifact import jax_forward

    forward = jax_forward(engine.artifact.model)
    host = np.random.default_rng(0).random((tiles, *shape, engine.channels), dtype=np.float32)

    def best(step, repeats: int = 5) -> float:
        step()
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            step()
            times.append(time.perf_counter() - started)
        return min(times)

    on_device = jax.device_put(host).block_until_ready()
    result = forward(on_device).block_until_ready()
    return {
        "tiles": tiles,
        "tile": "x".join(map(str, shape[::-1])),
        "pixels": tiles * shape[0] * shape[1],
        "model_seconds": best(lambda: forward(on_device).block_until_ready()),
        "copy_in_seconds": best(lambda: jax.device_put(host).block_until_ready()),
        "copy_out_seconds": best(lambda: np.asarray(result, np.float32)),
        "call_seconds": best(lambda: np.asarray(engine.artifact.start(host))),
        "predict_seconds": best(lambda: engine.artifact.predict(host)),
    }


def profile(models: list[str], device: str, tiles: int, args, tile: int, whole: str) -> dict:
    """device_only for the shipped models and DnCNN-S, in the automatic precision: `tiles` of `tile` x `tile`,
    then for the first model one tile as large as the canvas of an image of size `whole`."""
    from denoiser.artifact import resolve_model
    from denoiser.engine import Engine, Settings, resolve_precision

    settings = Settings(batch_size="auto", device=device)
    engines = {model: Engine.load(str(resolve_model(model)), settings) for model in models}
    precision = resolve_precision("auto", device, gpu_capability(device))
    engines["dncnn_s"] = dncnn_engine(settings._replace(precision=precision), device, args.dncnn_weights)
    report = {}
    runs = [(name, engine, tiles, (tile, tile)) for name, engine in engines.items()]
    first = engines[models[0]]
    runs.append((f"{models[0]} whole", first, 1, first.plan(*map(int, whole.split("x")[::-1])).canvas))
    for name, engine, count, shape in runs:
        report[name] = device_only(engine, count, shape)
        print(
            f"{name}: {count} tiles of {report[name]['tile']}: model {report[name]['model_seconds']:.3f} s on the "
            f"device, copy in {report[name]['copy_in_seconds']:.3f} s, out {report[name]['copy_out_seconds']:.3f} s, "
            f"the artifact's predict in all {report[name]['predict_seconds']:.3f} s",
            flush=True,
        )
    return report


def noisy_pngs(set12: Path, inbox: Path, count: int, side: int) -> Path:
    """`count` gray PNGs of side x side tiled from Set12 with noise of sigma 25, in a fresh `inbox`."""
    from PIL import Image

    sources = sorted(set12.glob("*.png"))
    shutil.rmtree(inbox, ignore_errors=True)
    inbox.mkdir(parents=True)
    rng = np.random.default_rng(25)
    for index in range(count):
        clean = np.asarray(Image.open(sources[index % len(sources)]).convert("L"), np.float32)
        reps = (side // clean.shape[0] + 1, side // clean.shape[1] + 1)
        noisy = np.tile(clean, reps)[:side, :side] + rng.normal(0, 25, (side, side))
        Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(inbox / f"{index:03d}.png", compress_level=1)
    return inbox


def batch_end_to_end(set12: Path, device: str, out: Path, count: int, side: int) -> dict:
    """`denoise batch` over `count` noisy PNGs of side x side made from Set12: MP/s with decoding and encoding."""
    from denoiser.cli import main

    inbox, outbox = noisy_pngs(set12, out / "batch-in", count, side), out / "batch-out"
    shutil.rmtree(outbox, ignore_errors=True)
    started = time.perf_counter()
    try:
        main.main(
            ["batch", str(inbox), str(outbox), "-m", "gray", "--device", device, "-b", "auto", "-q"],
            standalone_mode=False,
        )
    except SystemExit as done:  # batch exits with its status (1 where an input failed)
        if done.code:
            raise
    seconds = time.perf_counter() - started
    return {"images": count, "side": side, "seconds": seconds, "mp_per_s": count * side * side / seconds / 1e6}


def host_ceiling(inbox: Path, device: str, out: Path) -> dict:
    """The batch code path over the same inputs with a model that returns its input at once: the most the host
    (decoding, scoring, encoding, durable writes) lets through; and each of those steps timed on one input."""
    from denoiser.engine import Settings
    from denoiser.imageio import read_image
    from denoiser.pipeline import Models, Options, mirror_jobs, process, write_atomic

    models = Models(Settings(batch_size="auto", device=device))
    models.for_channels(1)._predict = lambda stack: stack
    shutil.rmtree(out, ignore_errors=True)
    jobs = mirror_jobs(inbox, out)
    started = time.perf_counter()
    records = list(process(jobs, models, Options()))
    seconds = time.perf_counter() - started
    picture = read_image(jobs[0].source)

    def timed(step) -> float:
        began = time.perf_counter()
        step()
        return time.perf_counter() - began

    steps = {
        "read": timed(lambda: read_image(jobs[0].source)),
        "score": timed(lambda: models.scorer.score(picture.pixels)),
        "write": timed(lambda: write_atomic(out / "again.png", picture.pixels, picture)),
    }
    return {"mp_per_s": sum(r.megapixels for r in records) / seconds, "seconds_per_image": steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="gpu", choices=("gpu", "cpu"))
    parser.add_argument("--quick", action="store_true", help=f"small sizes ({', '.join(QUICK_SIZES)}), short runs")
    parser.add_argument("--set12", type=Path, default=Path(".kit/set12"))
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "gpu-check")))
    parser.add_argument("--seconds", type=float, default=None, help="time per size (default 1, 0.2 with --quick)")
    parser.add_argument(
        "--peak-tflops",
        type=float,
        default=None,
        help=f"bf16 peak for the share (default: {H200_BF16_TFLOPS} on a GPU, else bench's ceiling)",
    )
    parser.add_argument("--dncnn-weights", type=Path, default=None, help="KAIR's dncnn_25.pth, where carried")
    parser.add_argument("--models", nargs="+", default=list(MODELS), help="a subset, for a rerun that must be short")
    parser.add_argument("--sizes", nargs="+", default=None, help=f"WxH sizes (default {' '.join(SIZES)})")
    parser.add_argument(
        "--profile-tiles", type=int, default=None, help="tiles per profiled batch (default 32, 2 quick)"
    )
    parser.add_argument(
        "--batch-images", type=int, default=None, help="denoise batch's images (default 48, 6 quick; 0: none)"
    )
    args = parser.parse_args()
    args.seconds = args.seconds or (0.2 if args.quick else 1.0)
    args.out.mkdir(parents=True, exist_ok=True)
    import keras

    print(f"keras {keras.__version__} on {keras.backend.backend()}, device {args.device}")
    sizes = tuple(args.sizes or (QUICK_SIZES if args.quick else SIZES))
    started, summary = time.perf_counter(), {"device": args.device, "sizes": sizes, "models": {}}

    def save(step: str, value) -> None:
        """Keep a step's figures, and write what is known so far (a run cut short still says something)."""
        summary[step] = value
        summary["seconds"] = time.perf_counter() - started
        (args.out / "gpu_check.json").write_text(json.dumps(summary, indent=2))
        print(f"-- {step} done at {summary['seconds']:.0f} s", flush=True)

    for model in args.models:  # gray first: the figures the targets name come before the rest
        report = run_bench(model, sizes, args.device, args.seconds, args.out / f"bench-{model}.json")
        peak = (
            args.peak_tflops * 1e3
            if args.peak_tflops
            else (H200_BF16_TFLOPS * 1e3 if args.device == "gpu" else report["ceiling_gflops"])
        )
        summary["models"][model] = {
            "precision": report["precision"],
            "tile": report["tile"],
            "batch_size": report["batch_size"],
            "peak_device_mb": peak_device_mb(args.device),
            "sizes": {
                f"{s['width']}x{s['height']}": {
                    "mp_per_s": s["mp_per_s"],
                    "stream_mp_per_s": s["stream_mp_per_s"],
                    "share_of_peak": s["gflop_per_s"] / peak,
                }
                for s in report["sizes"]
            },
        }
        save("models", summary["models"])
        if model == args.models[0]:
            tiles_1280 = bench_with(model, sizes, args.device, args.seconds, args.out / "bench-1280.json", "-t", "1280")
            save("tile_1280", tiles_1280)
            save("dncnn_s", peer(args, args.device, sizes))
            save("host_share", host_share(model, args.device, sizes[-1]))
            if keras.backend.backend() == "jax":
                save("stream", stream(model, args.device, sizes[-1], 4 if args.quick else 12))
                save(
                    "profile",
                    profile(
                        args.models,
                        args.device,
                        args.profile_tiles or (2 if args.quick else 32),
                        args,
                        256 if args.quick else 1280,
                        sizes[-1],
                    ),
                )
            if args.set12.is_dir():
                save(
                    "set12_sigma25",
                    eval_set12(
                        args.set12,
                        args.device,
                        args.out / "eval",
                        ("gray", "gray@float32") if args.device == "gpu" else ("gray@float32",),
                    ),
                )
                save(
                    "set12_sigma25_cpu_float32",
                    summary["set12_sigma25"]
                    if args.device == "cpu"
                    else eval_set12(args.set12, "cpu", args.out / "eval-cpu", ("gray@float32",)),
                )
    images = (6 if args.quick else 48) if args.batch_images is None else args.batch_images
    if args.set12.is_dir() and images:
        save(
            "batch",
            batch_end_to_end(
                args.set12,
                args.device,
                Path(os.environ.get("TMPDIR", "/tmp")) / "gpu-check",
                images,
                512 if args.quick else 2048,
            ),
        )
        inbox = Path(os.environ.get("TMPDIR", "/tmp")) / "gpu-check" / "batch-in"
        save("host_ceiling", host_ceiling(inbox, args.device, inbox.parent / "ceiling-out"))
    if "gray" in args.models:
        save("one_tile", one_tile("gray", sizes[-1], args.device, args.seconds, args.out / "bench-gray-one-tile.json"))
        if keras.backend.backend() == "jax":
            report = keras_predict("gray", sizes, args.device, args.seconds, args.out / "bench-gray-predict.json")
            save("keras_predict", report)
    if "color" in args.models and keras.backend.backend() == "jax":  # three planes to copy: the copies weigh most
        save("stream_color", stream("color", args.device, sizes[-1], 4))
    save("peak_device_mb", peak_device_mb(args.device))
    print_summary(summary)


def print_summary(summary: dict) -> None:
    """The figures the issue asks for, with its targets beside them."""
    largest = summary["sizes"][-1]
    peer_rate = summary["dncnn_s"][largest]["mp_per_s"]
    print(f"\n== summary ({summary['device']}, {summary['seconds']:.0f} s) ==")
    for model, result in summary["models"].items():
        for size, figures in result["sizes"].items():
            ratio = figures["mp_per_s"] / summary["dncnn_s"][size]["mp_per_s"]
            print(
                f"{model:>15} {result['precision']:>9} {size:>10}: {figures['mp_per_s']:8.2f} MP/s "
                f"(stream {figures['stream_mp_per_s']:.2f}), {figures['share_of_peak']:6.2%} of peak, "
                f"x{ratio:.1f} DnCNN-S (tiles up to {result['tile']}, "
                f"batch {result['batch_size']})"
            )
    if "gray" in summary["models"]:
        gray = summary["models"]["gray"]["sizes"][largest]
        print(
            f"gray at {largest}: {gray['mp_per_s']:.2f} MP/s an image at a time, {gray['stream_mp_per_s']:.2f} in a "
            "stream (target on an H200 at 6000x4000: 300), "
            f"{gray['mp_per_s'] / peer_rate:.1f}x DnCNN-S's {peer_rate:.2f} MP/s (target 10x)"
        )
    if "host_share" in summary:
        share = summary["host_share"]
        print(
            f"one {largest} image: {share['seconds']:.3f} s, of which {share['predict_seconds']:.3f} s in the "
            f"model's predict (batch {share['batch_size']}); the rest is the host's work on tiles"
        )
        if "host_steps" in share:
            print("  its host steps: " + ", ".join(f"{k} {v:.4f} s" for k, v in share["host_steps"].items()))
    for flow in (summary[step] for step in ("stream", "stream_color") if step in summary):
        print(
            flow.get("error")
            or f"{flow['model']}, {flow['images']} images of {flow['size']} one after the other (MP/s): "
            + ", ".join(f"{name} {rate:.2f}" for name, rate in flow["mp_per_s"].items())
            + f" (outputs differ by at most {flow['max_difference']:.2g}, the 8-bit ones by "
            + f"{flow['max_difference_uint8'] * 255:.2f} levels)"
        )
    for name, figures in summary.get("profile", {}).items():
        print(
            f"{name}: {figures['tiles']} tiles of {figures['tile']} in {figures['model_seconds']:.3f} s on the "
            f"device ({figures['pixels'] / figures['model_seconds'] / 1e6:.0f} MP/s of tiles), copy in "
            f"{figures['copy_in_seconds']:.3f} s, out {figures['copy_out_seconds']:.3f} s; copies included, "
            f"{figures['call_seconds']:.3f} s through the engine's call, {figures['predict_seconds']:.3f} s "
            "through Keras's predict"
        )
    if "batch" in summary:
        batch = summary["batch"]
        print(
            f"denoise batch, {batch['images']} PNGs of {batch['side']}x{batch['side']} (decode, denoise, encode, "
            f"write): {batch['mp_per_s']:.2f} MP/s"
        )
    if "host_ceiling" in summary:
        ceiling = summary["host_ceiling"]
        steps = ", ".join(f"{name} {seconds:.3f} s" for name, seconds in ceiling["seconds_per_image"].items())
        print(f"the same batch with an instant model (the host's ceiling): {ceiling['mp_per_s']:.2f} MP/s; {steps}")
    for step, what in (
        ("tile_1280", "gray with tiles of at most 1280 (the default before tiles were sized from device memory)"),
        ("one_tile", "gray as one tile as large as the image"),
        ("keras_predict", "gray through Keras's predict_on_batch, nothing in flight (the engine until 2026-12-05)"),
    ):
        if step in summary:
            figures = summary[step]
            outcome = figures.get("error") or ", ".join(
                f"{size} {value['mp_per_s']:.2f} MP/s, stream {value['stream_mp_per_s']:.2f} ({value['tiles']})"
                for size, value in figures.items()
                if isinstance(value, dict)
            )
            print(f"{what}: {outcome}")
    peak = summary["peak_device_mb"]
    print(f"peak device memory: {f'{peak:.0f} MB' if peak else 'not reported on a CPU (see peak RSS above)'}")
    if "set12_sigma25" in summary:
        ours, cpu = summary["set12_sigma25"], summary["set12_sigma25_cpu_float32"]
        print(
            f"Set12 sigma 25 PSNR on {summary['device']}: {ours}; CPU float32 here: {cpu}; "
            f"docs/benchmarks.md CPU float32: {CPU_FLOAT32_SET12_SIGMA25} (target: within 0.05 dB)"
        )


if __name__ == "__main__":
    main()
