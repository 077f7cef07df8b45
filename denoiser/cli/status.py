"""`denoise status OUTPUT`: health of a watch (or batch) OUTPUT folder, from its scores.jsonl and its writer's lock."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click

from denoiser.cli.progress import counted
from denoiser.health import Health, output_health
from denoiser.records import json_text


@click.command()
@click.argument("output", metavar="OUTPUT", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "-w",
    "--window",
    type=click.FloatRange(0, min_open=True),
    default=60.0,
    show_default=True,
    help="Minutes of the latest records that throughput is measured over.",
)
@click.option("-j", "--json", "as_json", is_flag=True, help="Print one JSON object instead of lines.")
def status(output: Path, window: float, as_json: bool) -> None:
    """Counts of ok, failed and anomalous inputs, the last error, and recent throughput in OUTPUT/scores.jsonl."""
    from denoiser.pipeline import SCORES_FILE

    try:
        health = output_health(output, window * 60)
    except FileNotFoundError as error:
        raise click.UsageError(str(error)) from error
    if as_json:
        click.echo(json_text(health.as_json()))
    else:
        click.echo(describe(health, output / SCORES_FILE, window))


def describe(health: Health, scores: Path, window: float) -> str:
    """The health report as a few lines."""
    lines = [
        f"{scores}: {counted(health.records, 'record')}",
        f"ok {health.ok}, failed {health.failed}, anomalous {health.anomalous}",
    ]
    if health.stalled:
        stalled = health.stalled
        lines.append(f"stalled: {stalled.cause} since {stalled.since} (pid {stalled.pid} retries with backoff)")
    error = health.last_error
    lines.append(f"last error: {error.time} {error.input}: {error.error}" if error else "last error: none")
    if health.last_time:
        ago = (datetime.now(UTC) - datetime.fromisoformat(health.last_time)).total_seconds()
        lines.append(f"last record: {health.last_time} ({ago:.0f} s ago)")
    if health.images_per_minute is None:
        lines.append("throughput: n/a (the latest records span under a second)")
    else:
        lines.append(
            f"throughput over the latest {window:g} min of records: {health.images_per_minute:.1f} "
            f"images/min, {health.megapixels_per_second:.3f} MP/s"
        )
    return "\n".join(lines)
