"""The health of an OUTPUT folder, read from its scores.jsonl and its writer's lock: what `denoise status` shows."""

from __future__ import annotations

import json
from collections import deque
from datetime import datetime
from pathlib import Path


def parse_time(text: str | None) -> datetime | None:
    """A record's ISO 8601 time, or None when it has none or an unreadable one."""
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


def read_health(scores: Path, window_seconds: float) -> dict:
    """Counts, the last failure, the last record's time, and throughput over the latest `window_seconds`."""
    counts = {"records": 0, "ok": 0, "failed": 0, "anomalous": 0}
    last_error, last_time = None, None
    recent: deque[tuple[datetime, float | None]] = deque()
    with open(scores, encoding="utf-8") as lines:
        for line in lines:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            ok = entry.get("status") == "ok"
            counts["records"] += 1
            counts["ok" if ok else "failed"] += 1
            counts["anomalous"] += bool(entry.get("anomalous"))
            if not ok:
                last_error = {key: entry.get(key) for key in ("input", "error", "time")}
            when = parse_time(entry.get("time"))
            if when is None:
                continue
            last_time = max(last_time or when, when)
            recent.append((when, (entry.get("width") or 0) * (entry.get("height") or 0) / 1e6 if ok else None))
            while (last_time - recent[0][0]).total_seconds() > window_seconds:
                recent.popleft()
    return {**counts, "last_error": last_error, "last_time": last_time and last_time.isoformat(),
            **throughput(recent)}


def throughput(recent: deque) -> dict:
    """Images per minute and megapixels per second between the first and last of the recent records."""
    megapixels = [mp for _, mp in recent if mp is not None]
    span = (recent[-1][0] - recent[0][0]).total_seconds() if recent else 0
    if span <= 0:
        return {"images_per_minute": None, "megapixels_per_second": None}
    return {"images_per_minute": round(len(megapixels) * 60 / span, 3),
            "megapixels_per_second": round(sum(megapixels) / span, 6)}


def output_health(output: Path, window_seconds: float) -> dict:
    """read_health of OUTPUT's scores.jsonl with `stalled`: what its writer waits on, or None.
    FileNotFoundError when nothing has been processed into OUTPUT."""
    from denoiser.pipeline import SCORES_FILE
    from denoiser.storage import read_stall

    scores = output / SCORES_FILE
    if not scores.is_file():
        raise FileNotFoundError(f"{scores} does not exist: nothing has been processed into {output}")
    stall = read_stall(output)
    return read_health(scores, window_seconds) | {"stalled": stall._asdict() if stall and stall.cause else None}
