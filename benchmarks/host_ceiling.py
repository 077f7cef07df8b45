"""The most the host lets `denoise batch` through: its code path over noisy PNGs with a model that returns its
input at once (benchmarks/gpu_check.py's host_ceiling step), and reading, scoring and writing one input timed;
then the engine's own host work (cutting, batching and blending tiles) on one 6000x4000 image, likewise.

    python benchmarks/host_ceiling.py [--set12 ../shared/data/set12] [--count 16] [--side 2048] [--repeats 3]

On a GPU host this is the ceiling for `denoise batch`, `watch` and the Ray workers, whatever the GPU does.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import click
import numpy as np
from gpu_check import host_ceiling, noisy_pngs  # this folder is on sys.path when a script here runs


@click.command(context_settings={"show_default": True})
@click.option("--set12", type=click.Path(exists=True, file_okay=False, path_type=Path), default=Path(".kit/set12"))
@click.option("--count", type=int, default=16)
@click.option("--side", type=int, default=2048)
@click.option("--repeats", type=int, default=3, help="Runs; the fastest counts.")
def main(set12: Path, count: int, side: int, repeats: int) -> None:
    """Print the host's ceiling in MP/s and each step's seconds for one input."""
    with tempfile.TemporaryDirectory(prefix="host-ceiling-") as scratch:
        inbox = noisy_pngs(set12, Path(scratch) / "in", count, side)
        runs = [host_ceiling(inbox, "cpu", Path(scratch) / "out") for _ in range(repeats)]
    best = max(runs, key=lambda run: run["mp_per_s"])
    steps = ", ".join(f"{name} {seconds:.3f} s" for name, seconds in best["seconds_per_image"].items())
    click.echo(f"{count} PNGs of {side}x{side}: {best['mp_per_s']:.1f} MP/s at most ({steps} an image)")
    click.echo(f"the engine's host work on one 6000x4000 gray image: {engine_host_seconds(4000, 6000):.4f} s")


def engine_host_seconds(height: int, width: int, repeats: int = 5) -> float:
    """The fastest of `repeats` passes of one image through the gray engine (batch 32) with an instant model."""
    import time

    from denoiser.artifact import resolve_model
    from denoiser.engine import Engine, Settings

    engine = Engine.load(str(resolve_model("gray")), Settings(batch_size=32, device="cpu", precision="float32"))
    engine._predict = lambda stack: stack
    image = np.random.default_rng(0).random((height, width, 1), dtype=np.float32)
    engine.denoise(image, in_place=True)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        engine.denoise(image, in_place=True)
        times.append(time.perf_counter() - started)
    return min(times)


if __name__ == "__main__":
    main()
