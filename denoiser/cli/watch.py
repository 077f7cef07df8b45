"""`denoise watch INBOX OUTPUT`: the watch-folder daemon in the foreground (the logic lives in `denoised`)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from denoiser.cli.options import engine_options, scorer_options

AFTER_CHOICES = ("processed", "delete", "keep")


@click.command()
@click.argument("inbox", metavar="INBOX", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("output", metavar="OUTPUT", type=click.Path(path_type=Path))
@engine_options
@scorer_options
@click.option("-r", "--recursive", is_flag=True, help="Also take files in subfolders of INBOX.")
@click.option("-P", "--polling", is_flag=True, help="Poll INBOX every second instead of inotify (network shares).")
@click.option("-s", "--settle", type=click.FloatRange(0), default=2.0, show_default=True,
              help="Seconds a file's size and mtime must stay unchanged when no close-write event is seen.")
@click.option("-a", "--after", type=click.Choice(AFTER_CHOICES), default="processed", show_default=True,
              help="What happens to a cleaned original: moved to OUTPUT/processed/, deleted, "
                   "or kept in INBOX/.denoised-kept/.")
@click.option("-L", "--max-latency", type=click.FloatRange(0), default=100.0, show_default=True,
              help="Milliseconds to wait for more files to fill a batch.")
@click.option("-Q", "--queue-size", type=click.IntRange(1), default=64, show_default=True,
              help="Claimed files waiting at most; the rest stay in INBOX.")
@click.option("-M", "--metrics-port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="Serve Prometheus metrics on 127.0.0.1:PORT (0 = off).")
def watch(inbox: Path, output: Path, **options) -> None:
    """Clean every image dropped into INBOX, into OUTPUT, until SIGTERM or SIGINT (SIGHUP restarts the watch).

    Files are taken once complete, claimed into INBOX/.denoised-work/, and run through the same
    pipeline as `denoise batch` (outputs mirror relative paths, records go to OUTPUT/scores.jsonl).
    Anomalous images are also copied to OUTPUT/anomalies/; failed inputs go to OUTPUT/failed/ with
    NAME.error.json. Exit code 0 when stopped by a signal, 2 when it cannot start.
    """
    from denoised.config import Config, StartupError
    from denoised.daemon import run_daemon

    try:
        config = Config(inbox=inbox, output=output, **options).check()
    except StartupError as error:
        raise click.UsageError(str(error)) from error
    sys.exit(run_daemon(lambda: config))
