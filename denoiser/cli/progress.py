"""What local and Ray batch share: records into the log under a progress bar, the preview, the closing line."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from pathlib import Path

import click

from denoiser.locations import record_key
from denoiser.records import Record


class Tally:
    """What the closing line counts, and the first records for the preview, without keeping every record."""

    def __init__(self, keep: int):
        self.ok = self.failed = 0
        self.megapixels = 0.0
        self.first: list[Record] = []
        self.keep = keep

    def add(self, entry: Record) -> None:
        if entry.ok:
            self.ok += 1
            self.megapixels += entry.megapixels
            if len(self.first) < self.keep:
                self.first.append(entry)
        else:
            self.failed += 1


def drive(records: Iterable[Record], log, total: int, options: dict) -> Tally:
    """Append each input's first record to the log, with a progress bar; a repeated input's record is dropped."""
    tally, seen = Tally(options["preview_count"] if options["preview"] else 0), set()
    with click.progressbar(length=total, label="denoising", file=sys.stderr, hidden=options["quiet"]) as bar:
        for entry in records:
            key = record_key(entry.input)
            if key in seen:
                continue  # a retried batch's record for an input already recorded
            seen.add(key)
            log.append(entry)
            tally.add(entry)
            bar.update(1)
            if not entry.ok:
                click.echo(f"\nfailed: {entry.input}: {entry.error}", err=True)
                if options["fail_fast"]:
                    break
    return tally


def conclude(tally: Tally, skipped: int, started: float, options: dict, workers: int | None = None) -> None:
    """Write the preview, print the closing line, and exit 0, or 1 when some input failed."""
    if options["preview"]:
        write_preview(tally.first, options["preview"], options["preview_count"])
    line = closing_line(tally.ok, tally.megapixels, tally.failed, skipped, time.perf_counter() - started)
    click.echo(line + (f", {counted(workers, 'worker')}" if workers else ""))
    sys.exit(1 if tally.failed else 0)


def write_preview(records: list[Record], sheet: Path, count: int) -> None:
    """Before/after sheet of the first `count` successful records."""
    from denoiser.preview import contact_sheet

    pairs = [(Path(r.input), Path(r.output)) for r in records if r.ok][:count]
    if pairs:
        contact_sheet(pairs, sheet)


def closing_line(ok: int, megapixels: float, failed: int, skipped: int, seconds: float) -> str:
    """The closing line from its counts."""
    rate = megapixels / seconds if seconds > 0 else 0.0
    return (
        f"{counted(ok, 'image')}, {megapixels:.2f} MP, {rate:.2f} MP/s, {failed} failed, "
        f"{skipped} skipped (already recorded)"
    )


def counted(count: int, noun: str) -> str:
    """`1 image`, `2 images`."""
    return f"{count} {noun}{'' if count == 1 else 's'}"
