"""The `denoise` command line: a thin click group, one module per command."""

from __future__ import annotations

import click

from denoiser import __version__
from denoiser.cli.batch import batch
from denoiser.cli.bench import bench
from denoiser.cli.eval import eval_command
from denoiser.cli.score import score
from denoiser.cli.status import status
from denoiser.cli.watch import watch


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version")
def main() -> None:
    """Remove noise and static from images and score how anomalous each one is."""


main.add_command(batch)
main.add_command(bench)
main.add_command(eval_command)
main.add_command(score)
main.add_command(watch)
main.add_command(status)
