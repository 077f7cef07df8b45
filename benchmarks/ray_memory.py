"""Whether `denoise batch --ray` keeps memory flat as the job grows (issue 33): small and large jobs of tiny images
on a running local cluster, with the driver's peak RSS and the object store's peak use for each.

    python benchmarks/ray_memory.py [--counts 500 4000] [--size 48]

Ray Data streams tasks (paths) to the workers and records back, so neither figure should grow with the count
beyond the driver's list of tasks and its set of recorded inputs (a few hundred bytes an input).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import NamedTuple

import click
import numpy as np
from PIL import Image
from ray_batch import running_cluster  # this folder is on sys.path when a script here runs

BIN = Path(sys.executable).parent


class Job(NamedTuple):
    count: int
    records: int
    seconds: float
    driver_mb: float  # the driver's peak RSS
    object_store_mb: float  # the cluster's object store, at its fullest during the job
    line: str  # the command's closing line


def make_inputs(folder: Path, count: int, size: int) -> None:
    """COUNT noisy gray PNGs of SIZE x SIZE."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for index in range(count):
        Image.fromarray(rng.integers(0, 256, (size, size), np.uint8)).save(folder / f"{index:05d}.png")


def peak_object_store(stop: threading.Event, peak: list[float]) -> None:
    """Poll the cluster's object store use (bytes) until `stop`; keep the largest seen in peak[0]."""
    import ray

    while not stop.is_set():
        total = ray.cluster_resources().get("object_store_memory", 0)
        free = ray.available_resources().get("object_store_memory", total)
        peak[0] = max(peak[0], total - free)
        time.sleep(0.05)


def one_job(scratch: Path, count: int, size: int) -> Job:
    """Run one --ray job of COUNT inputs; its seconds, the driver's peak RSS and the object store's peak use."""
    inputs, output = scratch / f"in-{count}", scratch / f"out-{count}"
    make_inputs(inputs, count, size)
    stop, peak = threading.Event(), [0.0]
    sampler = threading.Thread(target=peak_object_store, args=(stop, peak))
    sampler.start()
    started = time.perf_counter()
    try:
        done = subprocess.run(
            ["/usr/bin/time", "-f", "%M", str(BIN / "denoise"), "batch", str(inputs), str(output), "--ray", "-q"]
            + ["--precision", "float32"],
            capture_output=True,
            text=True,
            env={**os.environ, "RAY_ADDRESS": "auto"},
        )
    finally:
        stop.set()
        sampler.join()
    seconds = time.perf_counter() - started
    if done.returncode:
        sys.exit(f"denoise batch --ray failed ({done.returncode}):\n{done.stderr[-3000:]}")
    driver_kb = int(done.stderr.strip().splitlines()[-1])  # GNU time's %M: the driver's peak RSS
    records = (output / "scores.jsonl").read_text().count("\n")
    return Job(count, records, seconds, driver_kb / 1e3, peak[0] / 1e6, done.stdout.strip().splitlines()[-1])


@click.command(context_settings={"show_default": True})
@click.option("--counts", type=int, multiple=True, default=(500, 4000), help="Job sizes, smallest first.")
@click.option("--size", type=int, default=48, help="Side of the tiny test images.")
def main(counts: tuple[int, ...], size: int) -> None:
    """Print each job's time, the driver's peak RSS and the object store's peak use."""
    import ray

    scratch = Path(tempfile.mkdtemp(prefix="ray-memory-"))
    with running_cluster() as address:
        try:
            ray.init(address=address, log_to_driver=False, logging_level="ERROR")
            for count in sorted(counts):
                job = one_job(scratch, count, size)
                print(
                    f"{count:6d} inputs of {size}x{size}: {job.seconds:6.1f} s, {job.records} records, driver peak RSS "
                    f"{job.driver_mb:.0f} MB, object store peak {job.object_store_mb:.1f} MB   ({job.line})"
                )
        finally:
            ray.shutdown()
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
