"""`denoise status OUTPUT`: health of a watch (or batch) OUTPUT folder, from its scores.jsonl and its writer's lock."""

from __future__ import annotations

import json
from collections import deque
from datetime import datetime, timezone
from pathlib import Path

import click


@click.command()
@click.argument("output", metavar="OUTPUT", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-w", "--window", type=click.FloatRange(0, min_open=True), default=60.0, show_default=True,
              help="Minutes of the latest records that throughput is measured over.")
@click.option("-j", "--json", "as_json", is_flag=True, help="Print one JSON object instead of lines.")
def status(output: Path, window: float, as_json: bool) -> None:
    """Counts of ok, failed and anomalous inputs, the last error, and recent throughput in OUTPUT/scores.jsonl."""
    from denoiser.pipeline import SCORES_FILE
    from denoiser.storage import read_stall

    scores = output / SCORES_FILE
    if not scores.is_file():
        raise click.UsageError(f"{scores} does not exist: nothing has been processed into {output}")
    health = read_health(scores, window * 60)
    stall = read_stall(output)
    health["stalled"] = stall._asdict() if stall and stall.cause else None
    click.echo(json.dumps(health, ensure_ascii=False) if as_json else describe(health, scores, window))


def parse_time(text: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


def read_health(scores: Path, window_seconds: float) -> dict:
    """Counts, the last failure, the last record's time, and throughput over the latest `window_seconds`."""
    counts = {"records": 0, "ok": 0, "failed": 0, "anomalous": 0}
    last_error, last_time = None, None
    recent: deque[tuple[datetime, float]] = deque()
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


def describe(health: dict, scores: Path, window: float) -> str:
    """The health report as a few lines."""
    lines = [f"{scores}: {health['records']} records",
             f"ok {health['ok']}, failed {health['failed']}, anomalous {health['anomalous']}"]
    if health["stalled"]:
        stalled = health["stalled"]
        lines.append(f"stalled: {stalled['cause']} since {stalled['since']} (pid {stalled['pid']} retries with backoff)")
    error = health["last_error"]
    lines.append(f"last error: {error['time']} {error['input']}: {error['error']}" if error else "last error: none")
    if health["last_time"]:
        ago = (datetime.now(timezone.utc) - datetime.fromisoformat(health["last_time"])).total_seconds()
        lines.append(f"last record: {health['last_time']} ({ago:.0f} s ago)")
    if health["images_per_minute"] is None:
        lines.append("throughput: n/a (the latest records span under a second)")
    else:
        lines.append(f"throughput over the latest {window:g} min of records: {health['images_per_minute']:.1f} "
                     f"images/min, {health['megapixels_per_second']:.3f} MP/s")
    return "\n".join(lines)
