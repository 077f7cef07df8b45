"""Soak the `denoised` daemon: nothing lost, duplicated or partial under kill -9; throughput; latency.

    python benchmarks/daemon_soak.py                         # 1000 files, 10 kills, the shipped models
    python benchmarks/daemon_soak.py --files 100 --kills 3   # a quick check

1. Soak: N small gray and colour PNG/JPEG files (about 5% corrupt) are written into the inbox of a real
   `python -m denoised` process in K+1 rounds. In each of the first K rounds the daemon is killed with
   SIGKILL once a random share of that round's files has been recorded, then restarted. Every input must
   end with exactly one record and one outcome: a decodable output plus the original in processed/, or
   the original in failed/ with its .error.json. Lost, duplicated and partial must all be 0.
2. Throughput: the same files written at once into a warm daemon's inbox, timed from the first write to
   the last record, beside `denoise batch` on the same files (the MP/s it prints, which includes loading
   the models) and beside batch's code path run in this process with the models already loaded.
3. Latency: one 512x512 image written into the warm daemon's inbox, timed until its record appears,
   minus what the same pipeline takes for it in this process (median of 5).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from statistics import median

import numpy as np
from PIL import Image

from denoiser.engine import Settings
from denoiser.records import Record

ROOT = Path(__file__).resolve().parents[1]
DENOISE = Path(sys.executable).with_name("denoise")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--files", type=int, default=1000, help="Files in the soak.")
    parser.add_argument("-k", "--kills", type=int, default=10, help="Random kill -9 and restarts.")
    parser.add_argument("-m", "--model", default=None, help="Model file or shipped name; default: per image.")
    parser.add_argument("-t", "--tile", type=int, default=Settings().tile)
    parser.add_argument("-b", "--batch-size", type=int, default=Settings().batch_size)
    parser.add_argument("-s", "--seed", type=int, default=0)
    parser.add_argument("-w", "--work", type=Path, default=None, help="Folder to work in (default: a temporary one).")
    return parser.parse_args()


def encode(pixels: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def make_files(count: int, rng: np.random.Generator) -> dict[str, bytes]:
    """Small gray and colour PNG/JPEG files with textured content; about 5% truncated or junk."""
    files = {}
    for index in range(count):
        height, width = (int(v) for v in rng.integers(48, 160, 2))
        colour = rng.random() < 0.5
        base = np.linspace(0, 255, width)[None, :] * np.linspace(0.3, 1, height)[:, None]
        pixels = np.clip(base[..., None] + rng.normal(0, 25, (height, width, 3 if colour else 1)), 0, 255)
        pixels = pixels.astype(np.uint8) if colour else pixels[..., 0].astype(np.uint8)
        fmt = "JPEG" if rng.random() < 0.3 else "PNG"
        data = encode(pixels, fmt)
        if rng.random() < 0.05:
            data = data[: len(data) // 3] if rng.random() < 0.5 else b"not an image at all"
        files[f"soak-{index:05d} {'c' if colour else 'g'}.{'jpg' if fmt == 'JPEG' else 'png'}"] = data
    return files


class Daemon:
    """A `python -m denoised` process configured by DENOISED_* variables, logging to a file."""

    def __init__(self, inbox: Path, output: Path, log: Path, args: argparse.Namespace):
        env = {
            **os.environ,
            "TF_CPP_MIN_LOG_LEVEL": "3",
            "DENOISED_INBOX": str(inbox),
            "DENOISED_OUTPUT": str(output),
            "DENOISED_TILE": str(args.tile),
            "DENOISED_BATCH_SIZE": str(args.batch_size),
        }
        if args.model:
            env["DENOISED_MODEL"] = args.model
        self.log = log
        with open(log, "ab") as sink:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "denoised"], stdout=sink, stderr=subprocess.STDOUT, env=env, cwd=ROOT
            )

    def wait_ready(self, starts: int) -> None:
        while self.log.read_text(errors="replace").count(" watching ") < starts:
            if self.process.poll() is not None:
                raise SystemExit(f"daemon exited {self.process.returncode}; see {self.log}")
            time.sleep(0.05)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()

    def stop(self) -> tuple[int, float]:
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(30), time.monotonic() - started


def scores(output: Path) -> list[dict]:
    path = output / "scores.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def wait_records(output: Path, count: int, daemon: Daemon, timeout: float = 3600) -> None:
    deadline = time.monotonic() + timeout
    while len(scores(output)) < count:
        if daemon.process.poll() is not None:
            raise SystemExit(f"daemon exited {daemon.process.returncode}; see {daemon.log}")
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out with {len(scores(output))} of {count} records")
        time.sleep(0.01)


def write_files(inbox: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        (inbox / name).write_bytes(data)


def decodes(path: Path) -> bool:
    try:
        with Image.open(path) as image:
            image.load()
        return True
    except (OSError, ValueError):
        return False


def audit(inbox: Path, output: Path, names: set[str]) -> dict:
    """Lost, duplicated and partial outcomes of a finished soak, input by input."""
    records = scores(output)
    counts = Counter(Path(r["input"]).name for r in records)
    status = {Path(r["input"]).name: r["status"] for r in records}
    processed = Counter(original_name(p.name, names) for p in (output / "processed").iterdir())
    failed = Counter(
        original_name(p.name, names) for p in (output / "failed").iterdir() if not p.name.endswith(".error.json")
    )
    lost = duplicated = partial = 0
    for name in names:
        outputs = (output / name).exists()
        lost += counts[name] == 0
        duplicated += counts[name] > 1 or processed[name] + failed[name] > 1 or (outputs and failed[name] > 0)
        if status.get(name) == "ok":
            partial += not (outputs and decodes(output / name) and processed[name] == 1)
        elif status.get(name) == "failed":
            partial += not (failed[name] == 1 and (output / "failed" / f"{name}.error.json").exists())
    temporaries = list(output.rglob("*.tmp")) + list(inbox.rglob("*.tmp"))
    left = [p for p in inbox.rglob("*") if p.is_file() and p.name != ".lock"]
    return {
        "records": len(records),
        "failed": sum(v == "failed" for v in status.values()),
        "lost": lost + len(left),
        "duplicated": duplicated,
        "partial": partial + len(temporaries),
    }


def original_name(name: str, names: set[str]) -> str:
    """The input a routed file came from (`STEM.CLAIM.SUFFIX` when a name was taken)."""
    if name in names:
        return name
    stem, _, rest = name.partition(".")
    return f"{stem}.{rest.rpartition('.')[2]}"


def soak(work: Path, files: dict[str, bytes], args: argparse.Namespace) -> dict:
    """Write the files in rounds, killing the daemon at random moments; audit the outcome."""
    inbox, output, log = work / "soak-in", work / "soak-out", work / "soak.log"
    inbox.mkdir()
    chance = random.Random(args.seed)
    names = list(files)
    rounds = [names[i :: args.kills + 1] for i in range(args.kills + 1)]
    recorded, started = 0, time.monotonic()
    for index, batch in enumerate(rounds):
        daemon = Daemon(inbox, output, log, args)
        daemon.wait_ready(index + 1)
        write_files(inbox, {name: files[name] for name in batch})
        if index < args.kills:
            target = recorded + chance.randint(0, len(batch))
            while len(scores(output)) < target and daemon.process.poll() is None:
                time.sleep(0.002)
            time.sleep(chance.uniform(0, 0.05))
            daemon.kill()
            recorded = len(scores(output))
            print(f"  kill {index + 1}: {recorded} records so far", flush=True)
    wait_records(output, len(names), daemon)
    code, seconds = daemon.stop()
    result = audit(inbox, output, set(names))
    result.update(exit_code=code, stop_seconds=round(seconds, 2), minutes=round((time.monotonic() - started) / 60, 2))
    return result


def megapixels(records: list[Record]) -> float:
    return sum(r.megapixels for r in records if r.ok)


def throughput(work: Path, files: dict[str, bytes], args: argparse.Namespace) -> Daemon:
    """Daemon MP/s from first write to last record, beside `denoise batch` on the same files; returns the daemon."""
    stage, batch_out = work / "stage", work / "batch-out"
    stage.mkdir()
    write_files(stage, files)
    command = [DENOISE, "batch", stage, batch_out, "-q", "-b", str(args.batch_size)]
    command += ["-t", str(args.tile)] if args.tile else []
    command += ["-m", args.model] if args.model else []
    batch = subprocess.run(
        [str(c) for c in command], capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    )
    found = re.search(r"([\d.]+) MP/s", batch.stdout)
    assert found, f"denoise batch exited {batch.returncode}: {batch.stderr[-2000:]}"
    batch_rate = float(found.group(1))
    warm_rate = pipeline_rate(stage, work / "pipeline-out", args)
    inbox, output = work / "warm-in", work / "warm-out"
    inbox.mkdir()
    daemon = Daemon(inbox, output, work / "warm.log", args)
    daemon.wait_ready(1)
    started = time.monotonic()
    write_files(inbox, files)
    wait_records(output, len(files), daemon)
    seconds = time.monotonic() - started
    daemon_rate = megapixels([Record(**r) for r in scores(output)]) / seconds
    print(
        f"throughput: daemon {daemon_rate:.3f} MP/s ({len(files) / seconds:.1f} files/s) = "
        f"{daemon_rate / batch_rate:.0%} of `denoise batch` {batch_rate:.3f} MP/s (its timer includes loading "
        f"the models), {daemon_rate / warm_rate:.0%} of the warm pipeline alone {warm_rate:.3f} MP/s "
        f"(target >= 90%)"
    )
    return daemon


def pipeline_rate(stage: Path, out: Path, args: argparse.Namespace) -> float:
    """MP/s of batch's own code path (`process` over every file in order) with the models already loaded."""
    from denoiser.pipeline import Models, mirror_jobs, process

    jobs = mirror_jobs(stage, out)
    models = Models(Settings(args.tile, None, args.batch_size), args.model)
    list(process(jobs[:16], models))  # load and trace every model the files need
    started = time.perf_counter()
    records = list(process(jobs, models))
    return megapixels(records) / (time.perf_counter() - started)


def latency(daemon: Daemon, work: Path, args: argparse.Namespace, repeats: int = 5) -> None:
    """Drop-to-record time of one 512x512 image, beyond the pipeline's own time for it in this process."""
    from denoiser.pipeline import Job, Models, process

    rng = np.random.default_rng(args.seed)
    inbox, output = work / "warm-in", work / "warm-out"
    image = encode(rng.integers(0, 256, (512, 512, 3), np.uint8), "PNG")
    (work / "one.png").write_bytes(image)
    models = Models(Settings(args.tile, None, args.batch_size), args.model)
    list(process([Job(work / "one.png", work / "one-out.png")], models))  # load and trace
    inference = []
    for _ in range(repeats):
        started = time.perf_counter()
        list(process([Job(work / "one.png", work / "one-out.png")], models))
        inference.append(time.perf_counter() - started)
    drops = []
    for index in range(repeats):
        count = len(scores(output))
        started = time.perf_counter()
        (inbox / f"latency-{index}.png").write_bytes(image)
        wait_records(output, count + 1, daemon, timeout=120)
        drops.append(time.perf_counter() - started)
    print(
        f"latency 512x512: drop to record {median(drops):.3f} s, pipeline alone {median(inference):.3f} s, "
        f"overhead {median(drops) - median(inference):.3f} s (target < 1 s)"
    )


def main() -> None:
    from denoiser.artifact import resolve_model

    args = parse_args()
    args.model = str(resolve_model(args.model)) if args.model else None
    work = args.work or Path(tempfile.mkdtemp(prefix="denoised-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    files = make_files(args.files, np.random.default_rng(args.seed))
    print(f"{len(files)} files, {args.kills} kills, in {work}", flush=True)
    result = soak(work, files, args)
    print("soak: " + ", ".join(f"{key} {value}" for key, value in result.items()))
    verdict = result["lost"] == result["duplicated"] == result["partial"] == 0 and result["exit_code"] == 0
    daemon = throughput(work, files, args)
    try:
        latency(daemon, work, args)
    finally:
        daemon.stop()
    if args.work is None:
        shutil.rmtree(work)
    print("PASS" if verdict else "FAIL: see the soak line")
    sys.exit(0 if verdict else 1)


if __name__ == "__main__":
    main()
