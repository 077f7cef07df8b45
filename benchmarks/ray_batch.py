"""The same images through `denoise batch` and `denoise batch --ray` on this machine, in one run (issue 33).

    python benchmarks/ray_batch.py [--count 200] [--size 768] [--repeats 2] [--workers N] [-- batch options]

Makes COUNT noisy SIZE x SIZE crops of the example photos (enlarged where smaller; gray PNGs and colour JPEGs,
half each), then runs each command as a fresh process, as a user would, and times it from outside:

  local     denoise batch IN OUT
  ray       denoise batch IN OUT --ray            (starts its own local Ray cluster; default workers)
  local-1   and ray-1: the same on one image, which measures each command's start-up
  ray-wN    with --workers N, when asked
  cluster   and cluster-1: --ray on a cluster already running (`ray start --head`, RAY_ADDRESS=auto), as
            `ray job submit` users run it; skip with --no-cluster

Runs alternate (local, ray, local, ray, ...) and each keeps its fastest of --repeats, since other work on a
small shared host slows whichever runs beside it. Ray starts its workers at niceness 15; here they run at 0
(RAY_worker_niceness), as the local command does, so that neither yields to the other's neighbours.

End to end, a command's MP/s includes its start-up (TensorFlow, the models, and for --ray the cluster and the
actors); steady state takes the one-image run's time off. It also measures Ray Data's own cost per image (a
pool of no-op workers over the same kind of tasks and records), what decoding and encoding a photo costs this
CPU, and how fast the driver records, and from those sketches how throughput would scale to N GPU nodes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import click
import numpy as np
from PIL import Image

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "clean"
GPU_MPS = 179.0  # `gray` at 6000x4000 on an H200, tiles sized from its memory, 2026-12-04 (docs/gpu.md)
PHOTO_MP, PHOTO_MB = 12.0, 4.0  # the sketch's typical input: a 4000 x 3000 JPEG of about 4 MB, and its output
NIC_GBIT = 25.0  # a GPU node's network, each way
GPUS_PER_NODE = 8


class Timed(NamedTuple):
    seconds: float
    line: str  # the command's closing line


def make_inputs(folder: Path, count: int, size: int, seed: int = 0) -> float:
    """COUNT noisy crops of the example photos, half gray PNGs, half colour JPEGs; their megapixels."""
    rng = np.random.default_rng(seed)
    photos = [np.asarray(at_least(Image.open(p).convert("RGB"), size), np.float32) for p in sorted(EXAMPLES.iterdir())]
    folder.mkdir(parents=True)
    for index in range(count):
        photo = photos[index % len(photos)]
        top, left = (rng.integers(0, photo.shape[axis] - size + 1) for axis in (0, 1))
        crop = photo[top : top + size, left : left + size] + rng.normal(0, 25, (size, size, 3))
        crop = np.clip(np.round(crop), 0, 255).astype(np.uint8)
        if index % 2:
            Image.fromarray(crop).save(folder / f"{index:04d}.jpg", quality=92)
        else:
            Image.fromarray(crop).convert("L").save(folder / f"{index:04d}.png")
    return count * size * size / 1e6


def at_least(photo: Image.Image, size: int) -> Image.Image:
    """The photo enlarged, where needed, so that a SIZE x SIZE crop fits."""
    scale = size / min(photo.size)
    return photo if scale <= 1 else photo.resize([round(side * scale) for side in photo.size], Image.BICUBIC)


def denoise(*args: str, address: str = "") -> Timed:
    """Run the installed `denoise` command in a fresh output folder (on the Ray cluster at `address`, where given,
    else on one it starts); its wall time and closing line."""
    command = [str(Path(sys.executable).with_name("denoise")), *args]
    shutil.rmtree(args[2], ignore_errors=True)
    started = time.perf_counter()
    env = {**os.environ, "RAY_ADDRESS": address, "RAY_worker_niceness": "0"}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    if done.returncode not in (0, 1):
        sys.exit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return Timed(seconds, done.stdout.strip().splitlines()[-1])


def compare(a: Path, b: Path) -> str:
    """How two output trees differ: files byte-identical, and the largest pixel difference of the others."""
    names = sorted(
        p.relative_to(a) for p in a.rglob("*") if p.is_file() and p.name not in ("scores.jsonl", ".denoise.lock")
    )
    same = [name for name in names if (a / name).read_bytes() == (b / name).read_bytes()]
    levels = max(
        (
            int(np.abs(np.asarray(Image.open(a / n), np.int32) - np.asarray(Image.open(b / n), np.int32)).max())
            for n in names
            if n not in same
        ),
        default=0,
    )
    return f"{len(same)} of {len(names)} byte-identical" + (f", the others within {levels} levels" if levels else "")


class NoOp:
    """A worker that does nothing but turn tasks into records of the real size."""

    def __call__(self, batch: dict) -> dict:
        from denoiser.records import Record

        record = Record(
            "",
            "",
            status="ok",
            score=0.5,
            anomalous=False,
            raw_score=1.0,
            width=256,
            height=256,
            seconds=0.1,
            model="gray",
            precision="float32",
            scorer="scorer",
            time="2026-12-04T00:00:00+00:00",
        )
        return {"record": [record.but(input=s, output=t).line() for s, t in zip(batch["source"], batch["target"])]}


def ray_data_overhead(tasks: int = 4000, workers: int = 2) -> float:
    """Seconds per task that Ray Data itself costs: no-op actors over tasks of paths, records back to the driver."""
    import ray

    from denoiser.distributed import BATCH_SIZE, connect

    os.environ["RAY_worker_niceness"] = "0"  # as for the commands
    connect()
    items = [
        {"source": f"/data/in/{i:07d}.jpg", "target": f"/data/out/{i:07d}.jpg", "refusal": ""} for i in range(tasks)
    ]
    dataset = ray.data.from_items(items).map_batches(
        NoOp, batch_size=BATCH_SIZE, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=1
    )
    list(dataset.limit(BATCH_SIZE).iter_rows())  # starts the actors
    started = time.perf_counter()
    count = sum(1 for _ in dataset.iter_rows())
    seconds = (time.perf_counter() - started) / count
    ray.shutdown()
    return seconds


class Codec(NamedTuple):
    """Seconds a megapixel of a colour JPEG photo takes this CPU to read, and to write back, on one core."""

    read: float
    write: float


def codec_seconds_per_mp(scratch: Path, repeats: int = 3) -> Codec:
    """Time the pipeline's reader and writer on a 3-MP colour JPEG."""
    from denoiser.imageio import read_image, write_image

    rng = np.random.default_rng(1)
    photo = np.asarray(Image.open(EXAMPLES / "chelsea.jpg").convert("RGB").resize((2000, 1500)), np.float32)
    noisy = np.clip(photo + rng.normal(0, 10, photo.shape), 0, 255).astype(np.uint8)
    source = scratch / "photo.jpg"
    Image.fromarray(noisy).save(source, quality=92)
    read = write = 0.0
    for _ in range(repeats):
        started = time.perf_counter()
        picture = read_image(source)
        read += time.perf_counter() - started
        started = time.perf_counter()
        write_image(scratch / "out.jpg", picture.pixels, picture)
        write += time.perf_counter() - started
    return Codec(read / repeats / 3.0, write / repeats / 3.0)


def driver_records_per_second(scratch: Path, count: int = 2000) -> float:
    """How many records the driver appends a second to a local scores.jsonl (each fsynced)."""
    from denoiser.pipeline import ScoresLog
    from denoiser.records import Record

    entry = Record.parse(NoOp()({"source": ["/data/in/x.jpg"], "target": ["/data/out/x.jpg"]})["record"][0])
    started = time.perf_counter()
    with ScoresLog(scratch / "scores.jsonl") as log:
        for _ in range(count):
            log.append(entry)
    return count / (time.perf_counter() - started)


def scaling(overhead: float, codec: Codec, driver_rate: float) -> list[str]:
    """Throughput on N nodes of GPUS_PER_NODE GPUs, and what saturates first.

    A worker feeds its GPU from two reading threads and one writing thread (pipeline.Options.prefetch and
    the pipeline's writer), and its per-image overhead adds to the GPU's time.
    """
    gpu = 1 / (PHOTO_MP / GPU_MPS + overhead)  # images/s a worker's GPU side keeps up
    reading, writing = 2 / (PHOTO_MP * codec.read), 1 / (PHOTO_MP * codec.write)
    worker = min(gpu, reading, writing)
    nic = NIC_GBIT * 1e3 / 8 / (2 * PHOTO_MB)  # images/s a node's network moves in and out
    bound = "their GPUs" if worker == gpu else "JPEG reading" if worker == reading else "JPEG writing"
    lines = [
        f"assumed: {GPU_MPS:.0f} MP/s a GPU (gray on an H200, docs/gpu.md), {PHOTO_MP:.0f}-MP "
        f"JPEGs of {PHOTO_MB:.0f} MB, {GPUS_PER_NODE} GPUs and {NIC_GBIT:.0f} Gbit/s a node",
        f"a worker, images/s: GPU with the overhead {gpu:.1f}, reading (2 threads) {reading:.1f}, "
        f"writing (1 thread) {writing:.1f}: {worker:.1f} ({worker * PHOTO_MP:.0f} MP/s)",
        f"a node, images/s: {GPUS_PER_NODE} workers {GPUS_PER_NODE * worker:.0f}, network {nic:.0f}",
        f"the driver records {driver_rate:.0f} images/s (local scores.jsonl, fsync each)",
    ]
    for nodes in (1, 4, 16, 64, 256):
        limits = {f"workers ({bound})": nodes * GPUS_PER_NODE * worker, "network": nodes * nic, "driver": driver_rate}
        first = min(limits, key=limits.get)
        lines.append(
            f"  {nodes:3d} nodes: {limits[first]:8.0f} images/s ({limits[first] * PHOTO_MP / 1e3:6.1f} "
            f"GP/s), bound by {first}"
        )
    return lines


@click.command(context_settings={"show_default": True})
@click.option("--count", type=click.IntRange(2), default=200)
@click.option("--size", type=click.IntRange(32), default=768, help="Side of each image (0.6 MP: a small photo).")
@click.option("--repeats", type=click.IntRange(1), default=2, help="Runs of each command; the fastest counts.")
@click.option("--workers", type=click.IntRange(1), default=None, help="Also time --ray with this many workers.")
@click.option("--cluster/--no-cluster", default=True, help="Also time --ray on a cluster already running.")
@click.argument("batch_args", nargs=-1)
def main(count: int, size: int, repeats: int, workers: int | None, cluster: bool, batch_args: tuple[str, ...]) -> None:
    """Time denoise batch against denoise batch --ray on the same images; print MP/s, ratio and overheads."""
    extra = batch_args or ("--precision", "float32")  # "auto" is timed per process: fixed, so both run alike
    scratch = Path(tempfile.mkdtemp(prefix="ray-bench-"))
    try:
        inputs, one = scratch / "in", scratch / "one"
        megapixels = make_inputs(inputs, count, size)
        one.mkdir()
        shutil.copy(next(inputs.glob("*.png")), one)
        commands = {"local": (inputs,), "ray": (inputs, "--ray"), "local-1": (one,), "ray-1": (one, "--ray")}
        if workers:
            commands[f"ray-w{workers}"] = (inputs, "--ray", "--workers", str(workers))
        runs = fastest(commands, scratch, extra, repeats)
        if cluster:
            with running_cluster() as address:
                on_cluster = {"cluster": (inputs, "--ray"), "cluster-1": (one, "--ray")}
                runs |= fastest(on_cluster, scratch, extra, repeats, address)
        report(runs, megapixels, count, size, extra, scratch)
        print(
            f"outputs against local: ray {compare(scratch / 'local', scratch / 'ray')}"
            + (f"; ray-w{workers} {compare(scratch / 'local', scratch / f'ray-w{workers}')}" if workers else "")
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def fastest(
    commands: dict[str, tuple], scratch: Path, extra: tuple[str, ...], repeats: int, address: str = ""
) -> dict[str, Timed]:
    """Each command's fastest run of `repeats`, the commands taking turns."""
    runs: dict[str, Timed] = {}
    for _ in range(repeats):
        for name, (source, *flags) in commands.items():
            run = denoise("batch", str(source), str(scratch / name), "-q", *flags, *extra, address=address)
            if name not in runs or run.seconds < runs[name].seconds:
                runs[name] = run
    return runs


@contextmanager
def running_cluster() -> Iterator[str]:
    """A local Ray cluster started as a user would start one for `ray job submit` (`ray start --head`); its address."""
    ray = str(Path(sys.executable).with_name("ray"))
    env = {**os.environ, "RAY_worker_niceness": "0"}
    start = [ray, "start", "--head", "--num-cpus", str(os.cpu_count()), "--include-dashboard=false"]
    subprocess.run([*start, "--disable-usage-stats"], check=True, capture_output=True, env=env)
    try:
        yield "auto"
    finally:
        subprocess.run([ray, "stop", "--force"], capture_output=True)


def report(runs: dict[str, Timed], megapixels: float, count: int, size: int, extra, scratch: Path) -> None:
    """Print the measurements."""
    print(f"{count} images of {size}x{size} ({megapixels:.2f} MP), denoise batch options: {' '.join(extra)}")
    for name, run in runs.items():
        print(f"  {name:8s} {run.seconds:7.2f} s   {run.line}")
    local, ray = (megapixels / runs[name].seconds for name in ("local", "ray"))
    steady = {name: megapixels / (runs[name].seconds - runs[f"{name}-1"].seconds) for name in ("local", "ray")}
    print(f"end to end: local {local:.3f} MP/s, ray {ray:.3f} MP/s, ray/local {ray / local:.1%}")
    if "cluster" in runs:
        on_cluster = megapixels / runs["cluster"].seconds
        print(
            f"end to end on a running cluster (RAY_ADDRESS): ray {on_cluster:.3f} MP/s, "
            f"ray/local {on_cluster / local:.1%}; its start-up "
            f"{runs['cluster-1'].seconds - runs['local-1'].seconds:.1f} s more than local"
        )
    print(
        f"steady state (one-image run's time taken off): local {steady['local']:.3f} MP/s, "
        f"ray {steady['ray']:.3f} MP/s, ray/local {steady['ray'] / steady['local']:.1%}"
    )
    startup = runs["ray-1"].seconds - runs["local-1"].seconds
    per_image = ((runs["ray"].seconds - runs["ray-1"].seconds) - (runs["local"].seconds - runs["local-1"].seconds)) / (
        count - 1
    )
    overhead = ray_data_overhead()
    print(f"Ray start-up: {startup:.1f} s more than local (cluster, then actors that load TensorFlow and models)")
    print(
        f"Ray per image: {per_image * 1e3:+.1f} ms against local in this run; Ray Data alone "
        f"(no-op workers) {overhead * 1e3:.2f} ms a task"
    )
    codec, driver_rate = codec_seconds_per_mp(scratch), driver_records_per_second(scratch)
    print(f"a colour JPEG on one core: read {codec.read:.3f} s/MP, written back {codec.write:.3f} s/MP")
    print("scaling sketch:")
    for line in scaling(max(per_image, overhead), codec, driver_rate):
        print(f"  {line}")


if __name__ == "__main__":
    main()
