"""Cost per call of the durable writes on the disk of a folder (default: the temporary folder).

atomic_write (fsync of the file and its folder) against a plain write and rename; append_line (fdatasync)
against a plain os.write. Each pair runs twice, 100 calls each, and the folder is removed afterwards.

    python benchmarks/durable_writes.py /srv/denoise/output
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from statistics import median

from denoiser import storage

CALLS = 100
IMAGE = os.urandom(30_000)  # about a small PNG
RECORD = b'{"input": "x"}' * 25 + b"\n"  # about a scores.jsonl record


def timed(label: str, call: Callable[[int], object]) -> None:
    """Print the median and 90th percentile of CALLS calls."""
    seconds = []
    for index in range(CALLS):
        started = time.perf_counter()
        call(index)
        seconds.append(time.perf_counter() - started)
    seconds.sort()
    print(f"{label:26s} median {median(seconds) * 1e3:.2f} ms  p90 {seconds[int(CALLS * 0.9)] * 1e3:.2f} ms")


def plain_write(target: Path) -> None:
    """Write and rename, without fsync (the project before 2026-12-04)."""
    temporary = storage.temporary_path(target)
    temporary.write_bytes(IMAGE)
    os.replace(temporary, target)


def main() -> None:
    folder = Path(tempfile.mkdtemp(dir=sys.argv[1] if len(sys.argv) > 1 else None))
    fd = os.open(folder / "scores.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        for _ in range(2):
            timed("write + rename", lambda i: plain_write(folder / f"{i}.png"))
            timed(
                "atomic_write (fsync)",
                lambda i: storage.atomic_write(folder / f"{i}.png", lambda t: t.write_bytes(IMAGE)),
            )
            timed("os.write", lambda i: os.write(fd, RECORD))
            timed("append_line (fdatasync)", lambda i: storage.append_line(fd, RECORD))
    finally:
        os.close(fd)
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
