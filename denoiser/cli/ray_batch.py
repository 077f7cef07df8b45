"""`denoise batch` on Ray (`--ray`) or with a URL for INPUT or OUTPUT: the driver's side.

The driver lists the inputs, skips those already recorded, hands the rest to the workers (Ray actors, or this
process), and is the only writer of OUTPUT/scores.jsonl: it keeps the first record of each input and drops the
copy a retried batch brings back, so every input ends with one record.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import click

from denoiser.cli.options import settings_from
from denoiser.cli.progress import conclude, drive
from denoiser.cli.writing import DiskStop, writing_to
from denoiser.locations import MissingExtra, is_url, local, mirror_tasks, to_do
from denoiser.records import Record


class Location(click.ParamType):
    """A local path (a Path; file:// URLs too) or a URL for fsspec (kept as a string)."""

    name = "path|url"

    def __init__(self, exists: bool = False, folder: bool = False):
        self.exists, self.folder = exists, folder

    def convert(self, value, param, ctx):
        if is_url(str(value)):
            return str(value)
        path = Path(local(str(value)))
        if self.exists and not path.exists():
            self.fail(f"Path {str(value)!r} does not exist.", param, ctx)
        if self.folder and path.is_file():
            self.fail(f"Path {str(value)!r} is a file.", param, ctx)
        return path


def ray_options(command):
    """Add --ray and --workers."""
    command = click.option(
        "--workers",
        type=click.IntRange(1),
        default=None,
        help="Ray actors (with --ray). Default: one per GPU in the cluster, else one per CPU core.",
    )(command)
    return click.option(
        "--ray",
        "use_ray",
        is_flag=True,
        help="Run on Ray Data: the cluster RAY_ADDRESS names, else a local one. Needs denoise[ray].",
    )(command)


def wants_driver(input_path, output, options: dict) -> bool:
    """Whether a batch runs here rather than in local batch's loop: on Ray, or with a URL."""
    return options["use_ray"] or isinstance(input_path, str) or isinstance(output, str)


def run_driver(input_path, output, options: dict) -> None:
    """Run the batch on Ray or over URLs, then exit 0, 1 (some inputs failed) or 3 (storage failed)."""
    source, target = str(input_path), str(output)
    tasks, config, plan = _prepare(source, target, options)
    started = time.perf_counter()
    with records_at(target) as log:
        todo = to_do(tasks, log.recorded(), options["overwrite"])
        _clean_temporaries(todo)
        with closing(_records(todo, config, plan)) as records:
            tally = drive(records, log, len(todo), options)
    _clean_temporaries(todo)
    conclude(tally, len(tasks) - len(todo), started, options, plan and plan.count)


def _prepare(source: str, target: str, options: dict) -> tuple:
    """The tasks, the workers' settings and, with --ray, the actor pool (after joining the cluster)."""
    from denoiser.distributed import RunConfig, Unreachable, cluster_plan, connect
    from denoiser.pipeline import Options

    if options["preview"] and (is_url(source) or is_url(target)):
        raise click.UsageError("--preview needs a local INPUT and OUTPUT")
    if options["workers"] and not options["use_ray"]:
        raise click.UsageError("--workers needs --ray")
    try:
        tasks = mirror_tasks(source, target, options["recursive"])
        run = Options(options["max_pixels"], max_bytes=options["max_bytes"], heatmaps=options["heatmaps"])
        config = RunConfig(settings_from(options), *_model_paths(options), run)
        if options["use_ray"]:
            connect()
        return tasks, config, cluster_plan(options["workers"]) if options["use_ray"] else None
    except (ValueError, MissingExtra) as error:
        raise click.UsageError(str(error)) from error
    except FileNotFoundError as error:
        raise click.BadParameter(str(error), param_hint="INPUT/--model/--scorer") from error
    except Unreachable as error:
        raise click.ClickException(str(error)) from error


def _records(todo: list, config, plan) -> Iterator[Record]:
    """The records of the tasks to do: from Ray's workers, or from this process."""
    from denoiser.distributed import run_on_ray, run_tasks
    from denoiser.pipeline import Models

    if not todo:
        return (entry for entry in ())  # nothing to do: no worker started
    if plan:
        return run_on_ray(todo, config, plan)
    return run_tasks(todo, Models(config.settings, config.model, config.scorer), config.options)


def _model_paths(options: dict) -> tuple[str | None, str | None]:
    """The model and scorer files the workers load (None for the defaults); FileNotFoundError when missing."""
    from denoiser.artifact import resolve_model

    return tuple(str(resolve_model(options[name])) if options[name] else None for name in ("model", "scorer"))


@contextmanager
def records_at(output: str) -> Iterator:
    """OUTPUT's scores.jsonl: locked and appended to on a filesystem, put in parts on an object store.

    A storage error stops the command with exit code 3; running it again resumes.
    """
    if not is_url(output):
        with writing_to(Path(output)) as log:
            yield log
        return
    from denoiser.locations import ObjectScores

    try:
        with ObjectScores(output) as log:
            yield log
    except OSError as error:
        reason = getattr(error, "cause", None) or error  # a worker's error, as Ray wraps it
        raise DiskStop(
            f"stopped: cannot write to OUTPUT {output}: {reason}. Run the same command again to resume."
        ) from error


def _clean_temporaries(tasks: list) -> None:
    """Remove the temporary files a killed writer left beside local outputs (and workers' scratch folders)."""
    from denoiser.distributed import remove_stale_scratch
    from denoiser.storage import remove_stale_temporaries

    for folder in {os.path.dirname(task.target) for task in tasks if not is_url(task.target)}:
        remove_stale_temporaries(Path(folder))
    remove_stale_scratch()
