"""`denoise batch` throughput with and without anomaly scoring, on the same files in one run.

Runs the batch code path (`denoiser.pipeline.process`, with the CLI's default engine settings) over a folder,
`--repeats` times alternating the shipped (or a given) scorer with a stand-in that scores nothing, and prints
megapixels per second for each; the first pass of each is a warm-up and is not counted.

    python benchmarks/anomaly_speed.py examples/clean [--size 6000x4000x3 ...]

`--size` also times the scorer alone on a random image of that width, height and channel count.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import click
import numpy as np


class NoScorer:
    """A scorer that scores nothing: what the batch costs without scoring."""

    name = "none"

    def score(self, pixels: np.ndarray, heatmap: bool = False):
        """No score (NaN, not anomalous) and no map."""
        from denoiser.scoring import Score

        return Score(float("nan"), float("nan"), False), None


def one_pass(models, source: Path, scorer) -> tuple[float, float]:
    """Seconds and megapixels for one batch run over `source` into a fresh folder."""
    from denoiser.pipeline import Options, mirror_jobs, process

    models.scorer = scorer
    with tempfile.TemporaryDirectory() as out:
        jobs = mirror_jobs(source, Path(out))
        started = time.perf_counter()
        records = list(process(jobs, models, Options()))
        seconds = time.perf_counter() - started
    failed = [r for r in records if not r.ok]
    if failed:
        raise click.ClickException(f"{len(failed)} inputs failed: {failed[0].error}")
    return seconds, sum(r.megapixels for r in records)


def score_ms(scorer, shape: tuple[int, int, int], repeats: int = 7) -> float:
    """Median milliseconds of one `scorer.score` of a random H x W x C image, after one warm-up call."""
    image = np.random.default_rng(0).random(shape, dtype=np.float32)
    scorer.score(image)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        scorer.score(image)
        times.append(time.perf_counter() - started)
    return float(np.median(times)) * 1e3


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.argument("source", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-S", "--scorer", default="scorer", help="Scorer file or shipped name.")
@click.option("--repeats", type=int, default=3, help="Counted passes of each (after one warm-up pass each).")
@click.option("--size", "sizes", multiple=True, help="Also time the scorer alone on a WxHxC image; repeatable.")
def main(source: Path, scorer: str, repeats: int, sizes: tuple[str, ...]) -> None:
    """Print batch MP/s with scoring and without."""
    from denoiser.anomaly import Scorer
    from denoiser.engine import Settings
    from denoiser.pipeline import Models

    models = Models(Settings())
    scorers = {"with scoring": Scorer.load(scorer), "without scoring": NoScorer()}
    totals = {name: [0.0, 0.0] for name in scorers}
    for turn in range(repeats + 1):
        for name, chosen in scorers.items():
            seconds, megapixels = one_pass(models, source, chosen)
            if turn:
                totals[name][0] += seconds
                totals[name][1] += megapixels
    for name, (seconds, megapixels) in totals.items():
        click.echo(f"{name:<16} {megapixels / seconds:.3f} MP/s ({megapixels:.2f} MP in {seconds:.1f} s)")
    rates = {name: megapixels / seconds for name, (seconds, megapixels) in totals.items()}
    click.echo(f"throughput with scoring: {rates['with scoring'] / rates['without scoring']:.1%} of without")
    for size in sizes:
        width, height, channels = map(int, size.split("x"))
        milliseconds = score_ms(scorers["with scoring"], (height, width, channels))
        click.echo(f"scoring one {size} image: {milliseconds:.1f} ms")


if __name__ == "__main__":
    main()
