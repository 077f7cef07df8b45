"""The health of an OUTPUT folder, read from its scores.jsonl and its writer's lock: what `denoise status` shows."""

from __future__ import annotations

from collections import deque
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

from denoiser.records import Record
from denoiser.storage import Stall, read_stall


def parse_time(text: str | None) -> datetime | None:
    """A record's ISO 8601 time, or None when it has none or an unreadable one."""
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


class Health(NamedTuple):
    """What `denoise status` shows of an OUTPUT folder."""

    records: int
    ok: int
    failed: int
    anomalous: int
    last_error: Record | None  # the latest failed record
    last_time: str | None  # the latest record's time
    images_per_minute: float | None  # over the latest records' window; None where they span under a second
    megapixels_per_second: float | None
    stalled: Stall | None = None  # what OUTPUT's writer waits on, where it waits

    def as_json(self) -> dict:
        """The report as `denoise status --json` prints it."""
        error = self.last_error
        return self._asdict() | {
            "last_error": error and {"input": error.input, "error": error.error, "time": error.time},
            "stalled": self.stalled and self.stalled._asdict(),
        }


def read_health(scores: Path, window_seconds: float) -> Health:
    """Counts, the last failure, the last record's time, and throughput over the latest `window_seconds`."""
    ok = failed = anomalous = 0
    last_error, last_time = None, None
    recent: deque[tuple[datetime, float | None]] = deque()
    with open(scores, encoding="utf-8") as lines:
        for entry in filter(None, map(Record.parse, lines)):
            ok, failed, anomalous = ok + entry.ok, failed + (not entry.ok), anomalous + bool(entry.anomalous)
            if not entry.ok:
                last_error = entry
            when = parse_time(entry.time)
            if when is None:
                continue
            last_time = max(last_time or when, when)
            recent.append((when, entry.megapixels if entry.ok else None))
            while (last_time - recent[0][0]).total_seconds() > window_seconds:
                recent.popleft()
    return Health(
        ok + failed, ok, failed, anomalous, last_error, last_time and last_time.isoformat(), *throughput(recent)
    )


def throughput(recent: deque) -> tuple[float | None, float | None]:
    """Images per minute and megapixels per second between the first and last of the recent records."""
    megapixels = [mp for _, mp in recent if mp is not None]
    span = (recent[-1][0] - recent[0][0]).total_seconds() if recent else 0
    if span <= 0:
        return None, None
    return round(len(megapixels) * 60 / span, 3), round(sum(megapixels) / span, 6)


def output_health(output: Path, window_seconds: float) -> Health:
    """read_health of OUTPUT's scores.jsonl with what its writer waits on, where it waits.
    FileNotFoundError when nothing has been processed into OUTPUT."""
    from denoiser.pipeline import SCORES_FILE

    scores = output / SCORES_FILE
    if not scores.is_file():
        raise FileNotFoundError(f"{scores} does not exist: nothing has been processed into {output}")
    stall = read_stall(output)
    return read_health(scores, window_seconds)._replace(stalled=stall if stall and stall.cause else None)
