"""`denoise batch INPUT OUTPUT`: clean a file or folder once."""

from __future__ import annotations

import sys
import time
from contextlib import closing
from pathlib import Path

import click

from denoiser.cli.options import engine_options, scorer_options, settings_from
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
@click.option("-p", "--preview", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write a before/after sheet of the first images here.")
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
    from denoiser.locations import record_key
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
    done = []
    with writing_to(output) as log:
        recorded = set() if options["overwrite"] else log.inputs()
        todo = [job for job in jobs if record_key(str(job.source)) not in recorded]
        for folder in {job.target.parent for job in todo}:
            remove_stale_temporaries(folder)  # left by a run that was killed mid-write
        run = Options(options["max_pixels"], max_bytes=options["max_bytes"], heatmaps=options["heatmaps"])
        with closing(process(todo, models, run)) as records:
            with click.progressbar(records, length=len(todo), label="denoising", file=sys.stderr,
                                   hidden=options["quiet"]) as bar:
                for entry in bar:
                    log.append(entry)
                    done.append(entry)
                    if entry["status"] == "failed":
                        click.echo(f"\nfailed: {entry['input']}: {entry['error']}", err=True)
                        if options["fail_fast"]:
                            break
    if options["preview"]:
        write_preview(done, options["preview"], options["preview_count"])
    click.echo(summary(done, len(jobs) - len(todo), time.perf_counter() - started))
    sys.exit(1 if any(entry["status"] == "failed" for entry in done) else 0)


def write_preview(records: list[dict], sheet: Path, count: int) -> None:
    """Before/after sheet of the first `count` successful records."""
    from denoiser.preview import contact_sheet

    pairs = [(Path(r["input"]), Path(r["output"])) for r in records if r["status"] == "ok"][:count]
    if pairs:
        contact_sheet(pairs, sheet)


def summary(records: list[dict], skipped: int, seconds: float) -> str:
    """One closing line: images, megapixels, MP/s, failures."""
    ok = [r for r in records if r["status"] == "ok"]
    megapixels = sum(r["width"] * r["height"] for r in ok) / 1e6
    return closing_line(len(ok), megapixels, len(records) - len(ok), skipped, seconds)


def closing_line(ok: int, megapixels: float, failed: int, skipped: int, seconds: float) -> str:
    """The closing line from its counts."""
    rate = megapixels / seconds if seconds > 0 else 0.0
    return (f"{ok} images, {megapixels:.2f} MP, {rate:.2f} MP/s, "
            f"{failed} failed, {skipped} skipped (already recorded)")
