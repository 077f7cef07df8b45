"""`denoise score INPUT OUTPUT`: anomaly scores (and maps) for a file or folder, without denoising."""

from __future__ import annotations

import sys
from contextlib import closing
from pathlib import Path

import click

from denoiser.cli.options import limit_options, scorer_options
from denoiser.cli.progress import counted
from denoiser.cli.writing import writing_to


@click.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(exists=True, path_type=Path))
@click.argument("output", metavar="OUTPUT", type=click.Path(file_okay=False, path_type=Path))
@scorer_options
@click.option("-r", "--recursive", is_flag=True, help="Descend into subfolders of INPUT.")
@limit_options
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def score(input_path: Path, output: Path, **options) -> None:
    """Score how anomalous each image in INPUT is, into OUTPUT/scores.jsonl.

    Scores are 0.5 at the scorer's calibrated threshold; `anomalous` is true at or above it. With
    --heatmaps, OUTPUT also gets NAME.heatmap.png per image, mirroring relative paths. Exit code 0
    when every input was read, 1 when some failed.
    """
    from denoiser.anomaly import Scorer
    from denoiser.artifact import DEFAULT_SCORER
    from denoiser.pipeline import Options, check_jobs, mirror_jobs, score_only

    jobs = mirror_jobs(input_path, output, options["recursive"])
    try:
        check_jobs(jobs)
        scorer = Scorer.load(options["scorer"] or DEFAULT_SCORER)
    except ValueError as error:
        raise click.UsageError(str(error)) from error
    except FileNotFoundError as error:
        raise click.BadParameter(str(error), param_hint="--scorer") from error
    failed = flagged = 0
    with (
        writing_to(output) as log,
        closing(
            score_only(
                jobs,
                scorer,
                Options(options["max_pixels"], max_bytes=options["max_bytes"], heatmaps=options["heatmaps"]),
            )
        ) as records,
    ):
        with click.progressbar(
            records, length=len(jobs), label="scoring", file=sys.stderr, hidden=options["quiet"]
        ) as bar:
            for entry in bar:
                log.append(entry)
                failed += not entry.ok
                flagged += bool(entry.anomalous)
                if not entry.ok:
                    click.echo(f"\nfailed: {entry.input}: {entry.error}", err=True)
    click.echo(f"{counted(len(jobs) - failed, 'image')} scored, {flagged} anomalous, {failed} failed")
    sys.exit(1 if failed else 0)
