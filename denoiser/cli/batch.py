"""`denoise batch INPUT OUTPUT`: clean a file or folder once."""

from __future__ import annotations

import time
from contextlib import closing
from pathlib import Path

import click

from denoiser.cli.options import engine_options, scorer_options, settings_from
from denoiser.cli.progress import conclude, drive
from denoiser.cli.ray_batch import Location, ray_options, run_driver, wants_driver
from denoiser.cli.writing import writing_to


@click.command()
@click.argument("input_path", metavar="INPUT", type=Location(exists=True))
@click.argument("output", metavar="OUTPUT", type=Location(folder=True))
@engine_options
@scorer_options
@click.option("-r", "--recursive", is_flag=True, help="Descend into subfolders of INPUT.")
@click.option("-f", "--overwrite", is_flag=True, help="Redo inputs that already have a record.")
@click.option("-x", "--fail-fast", is_flag=True, help="Stop at the first failure.")
@click.option(
    "-p",
    "--preview",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write a before/after sheet of the first images here.",
)
@click.option("-n", "--preview-count", type=click.IntRange(1), default=4, show_default=True)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@ray_options
def batch(input_path: Path, output: Path, **options) -> None:
    """Denoise INPUT (a file or folder) into OUTPUT, mirroring relative paths.

    Writes OUTPUT/scores.jsonl with one record per input. Inputs that already have a record are skipped, so
    running the same command again resumes a run that was stopped. Exit code 0 when every input succeeded,
    1 when some failed, 3 when the disk failed (full): free space and run it again.

    INPUT and OUTPUT may be URLs (s3://, gs://); --ray runs the job on a Ray cluster (docs/ray.md).
    """
    if wants_driver(input_path, output, options):
        return run_driver(input_path, output, options)
    from denoiser.locations import to_do
    from denoiser.pipeline import Models, Options, check_jobs, mirror_jobs, process
    from denoiser.storage import remove_stale_temporaries

    jobs = mirror_jobs(input_path, output, options["recursive"])
    try:
        check_jobs(jobs)
        models = Models(settings_from(options), options["model"], options["scorer"])
    except ValueError as error:
        raise click.UsageError(str(error)) from error
    except FileNotFoundError as error:
        raise click.BadParameter(str(error), param_hint="--model/--scorer") from error
    started = time.perf_counter()
    with writing_to(output) as log:
        todo = to_do(jobs, log.recorded(), options["overwrite"])
        for folder in {job.target.parent for job in todo}:
            remove_stale_temporaries(folder)  # left by a run that was killed mid-write
        run = Options(options["max_pixels"], max_bytes=options["max_bytes"], heatmaps=options["heatmaps"])
        with closing(process(todo, models, run)) as records:
            tally = drive(records, log, len(todo), options)
    conclude(tally, len(jobs) - len(todo), started, options)
