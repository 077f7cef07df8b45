"""The one code path from input files to cleaned files and score records, shared by batch and watch."""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from itertools import groupby
from pathlib import Path
from typing import NamedTuple

import numpy as np

from denoiser.anomaly import HEATMAP_SUFFIX, Scorer, heatmap_image, heatmap_path
from denoiser.artifact import DEFAULT_SCORER, default_model_path, resolve_model
from denoiser.engine import Engine, Settings
from denoiser.imageio import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, ImageError, Picture, read_image, write_image
from denoiser.locations import Recorded, left_alone, recorded
from denoiser.records import STATUS_FAILED, STATUS_OK, Record
from denoiser.scoring import Score
from denoiser.storage import FolderLost, append_line, atomic_write, is_per_input

SCORES_FILE = "scores.jsonl"
PROCESSED, FAILED, ANOMALIES = "processed", "failed", "anomalies"  # the daemon's routing folders in OUTPUT
RESERVED_TOP = (SCORES_FILE, PROCESSED, FAILED, ANOMALIES)  # OUTPUT's top-level names the tool writes itself


class Job(NamedTuple):
    """One input file, where its cleaned image goes, and why it must not be processed (None when it may)."""

    source: Path
    target: Path
    refusal: str | None = None


def reserved(relative: Path) -> str | None:
    """Why an input at this path relative to INPUT would write over the tool's own files, or None."""
    if relative.parts and relative.parts[0] in RESERVED_TOP:
        return f"reserved name: OUTPUT/{relative.parts[0]} is the tool's own; rename or move the input"
    if relative.name.endswith(HEATMAP_SUFFIX):
        return f"reserved name: *{HEATMAP_SUFFIX} is the name of anomaly maps; rename the input"
    return None


class Options(NamedTuple):
    """What a run does besides denoising."""

    max_pixels: int = DEFAULT_MAX_PIXELS
    max_bytes: int = DEFAULT_MAX_BYTES  # larger input files are refused before they are read
    prefetch: int = 2  # decoded images held ahead of inference (decoding is far faster than inference)
    heatmaps: bool = False  # write each image's anomaly map beside its output
    progress: Callable[[], object] | None = None  # called after each batch of tiles (the daemon's watchdog)
    single_frame: bool = False  # refuse files of several frames, where the original is deleted after cleaning


class Models:
    """The models for a run: one given denoiser or the shipped gray and colour defaults, and the scorer."""

    def __init__(self, settings: Settings, model: str | None = None, scorer: str | None = None):
        """Raises FileNotFoundError when `model` or `scorer` is neither a file nor a shipped model's name."""
        self.settings, self.model = settings, str(resolve_model(model)) if model else None
        self.scorer_path = str(resolve_model(scorer)) if scorer else None
        self.scorer = Scorer.load(self.scorer_path or DEFAULT_SCORER)
        self._engines: dict[str, Engine] = {}

    def for_channels(self, channels: int) -> Engine:
        """The engine for an image with this many channels (CMYK planes go to the gray model)."""
        path = self.model or str(default_model_path(3 if channels == 3 else 1))
        if path not in self._engines:
            self._engines[path] = Engine.load(path, self.settings)
        return self._engines[path]


def mirror_jobs(source: Path, output: Path, recursive: bool = False) -> list[Job]:
    """Jobs for a file or a folder's files (none `left_alone`), mirroring relative paths under `output`."""
    if source.is_file():
        return [Job(source, output / source.name, reserved(Path(source.name)))]
    pattern = "**/*" if recursive else "*"
    nested_output = output.resolve() if output.resolve() != source.resolve() else None
    jobs = []
    for path in sorted(source.glob(pattern)):
        relative = path.relative_to(source)
        if left_alone(relative.parts) or path.is_dir():
            continue
        if nested_output in path.resolve().parents:
            continue
        jobs.append(Job(path, output / relative, reserved(relative)))
    return jobs


def check_jobs(jobs: list[Job]) -> None:
    """Refuse any job whose output would land on an input."""
    sources = {job.source.resolve() for job in jobs}
    for job in jobs:
        if job.target.resolve() in sources:
            raise ValueError(f"output {job.target} would overwrite input {job.source}")


def record(
    job: Job,
    started: float,
    picture: Picture | None = None,
    error: str | None = None,
    result: Score | None = None,
    model: str | None = None,
    precision: str | None = None,
    scorer: str | None = None,
    output: Path | None = None,
    heatmap: Path | None = None,
) -> Record:
    """The record of one input."""
    return Record(
        input=str(job.source),
        output=None if error or output is None else str(output),
        heatmap=None if error or heatmap is None else str(heatmap),
        status=STATUS_FAILED if error else STATUS_OK,
        score=None if result is None else finite(result.score, 6),
        anomalous=None if result is None else bool(result.anomalous),
        raw_score=None if result is None else finite(result.raw, 8),
        error=error,
        width=picture.meta.width if picture else None,
        height=picture.meta.height if picture else None,
        seconds=round(time.perf_counter() - started, 4),
        model=model,
        precision=precision,
        scorer=scorer,
        time=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def finite(value: float, digits: int) -> float | None:
    """`value` rounded, or None where it is not finite (an uncalibrated score): JSON has no NaN."""
    return round(value, digits) if np.isfinite(value) else None


def write_atomic(target: Path, pixels: np.ndarray, like: Picture | None = None) -> None:
    """Write durably under a temporary name, then rename over the target.

    Args:
        like: the input whose format and metadata to keep; None writes 8-bit RGB (anomaly maps).
    """
    from PIL import Image

    if like is None:
        atomic_write(target, lambda temporary: Image.fromarray(pixels).save(temporary, format="PNG"))
    else:
        atomic_write(target, lambda temporary: write_image(temporary, pixels, like))


def write_outputs(target: Path, restored: np.ndarray | None, like: Picture, heat: np.ndarray | None) -> None:
    """Write the cleaned image (unless None) and the anomaly map (unless None) beside it."""
    if restored is not None:
        write_atomic(target, restored, like)
    if heat is not None:
        write_atomic(heatmap_path(target), heatmap_image(heat))


class _Decoded(NamedTuple):
    job: Job
    started: float
    picture: Picture | None
    error: str | None


def _decode(job: Job, options: Options) -> _Decoded:
    started = time.perf_counter()
    try:
        if job.refusal:
            raise ImageError(job.refusal)
        if not job.source.is_file():
            raise ImageError("not a regular file" if os.path.lexists(job.source) else "gone before it was read")
        picture = read_image(job.source, options.max_pixels, options.max_bytes)
        if options.single_frame and picture.meta.frames > 1:
            raise ImageError(
                f"{job.source.name}: {picture.meta.frames} frames, pages or maps, of which only the first is kept; "
                "refused, as the original would be deleted after cleaning"
            )
        return _Decoded(job, started, picture, None)
    except ImageError as error:
        return _Decoded(job, started, None, str(error))


def prefetch(function: Callable, items: Iterable, depth: int) -> Iterator:
    """Map `function` over `items` in background threads, at most `depth` ahead, in order."""
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="denoise-read") as pool:
        window: deque = deque()
        try:
            for item in items:
                window.append(pool.submit(function, item))
                if len(window) > depth:
                    yield window.popleft().result()
            while window:
                yield window.popleft().result()
        finally:
            for future in window:
                future.cancel()


def process(jobs: Iterable[Job], models: Models, options: Options = Options()) -> Iterator[Record]:
    """Denoise, score and write each job; yield one record per job, in order."""
    decoded = prefetch(lambda job: _decode(job, options), jobs, options.prefetch)
    try:
        for engine, group in groupby(
            decoded, key=lambda d: d.picture and models.for_channels(d.picture.pixels.shape[-1])
        ):
            if engine is None:
                yield from (record(d.job, d.started, error=d.error) for d in group)
            else:
                yield from _restore_group(engine, models.scorer, group, options.heatmaps, options.progress)
    finally:
        decoded.close()


def score_only(jobs: Iterable[Job], scorer: Scorer, options: Options = Options()) -> Iterator[Record]:
    """Score each job's input as it is, writing only its anomaly map (with `options.heatmaps`)."""
    decoded = prefetch(lambda job: _decode(job, options), jobs, options.prefetch)
    try:
        for item in decoded:
            if item.picture is None:
                yield record(item.job, item.started, error=item.error)
                continue
            result, heat = scorer.score(item.picture.pixels, options.heatmaps)
            write = partial(write_outputs, item.job.target, None, item.picture, heat)
            yield _written(item, result, write, None, scorer.name, False, options.heatmaps)
    finally:
        decoded.close()


def _restore_group(
    engine: Engine,
    scorer: Scorer,
    group: Iterable[_Decoded],
    heatmaps: bool,
    progress: Callable[[], object] | None = None,
    writes_ahead: int = 2,
) -> Iterator[Record]:
    """Run consecutive images that share an engine through it as one stream; score each input as it was read.

    Each input is scored (and its anomaly map made) before it is denoised, as `denoise score` scores it: cleaning
    would make a noise field look like a smooth photo. It is then denoised in place: its pixels are not needed
    again, as the preview rereads inputs.

    Outputs are encoded and written in background threads (one an output that may wait, at most one a core)
    while the next images run, at most `writes_ahead` behind; each record is yielded, in order, only once its
    output is in place.
    """
    in_flight: deque[tuple[_Decoded, Score, np.ndarray | None]] = deque()

    def pixels():
        for item in group:
            in_flight.append((item, *scorer.score(item.picture.pixels, heatmaps)))
            yield item.picture.pixels

    writing: deque[tuple[_Decoded, Score, Future]] = deque()
    writers = min(writes_ahead + 1, os.cpu_count() or 1)  # PNG and JPEG encoders release the GIL
    with ThreadPoolExecutor(max_workers=writers, thread_name_prefix="denoise-write") as writer:
        for restored in engine.denoise_many(pixels(), in_place=True, progress=progress):
            item, result, heat = in_flight.popleft()
            write = writer.submit(write_outputs, item.job.target, restored, item.picture, heat)
            writing.append((item, result, write))
            while writing and (len(writing) > writes_ahead or writing[0][2].done()):
                done, result, write = writing.popleft()
                yield _written(done, result, write.result, engine, scorer.name, True, heatmaps)
        while writing:
            done, result, write = writing.popleft()
            yield _written(done, result, write.result, engine, scorer.name, True, heatmaps)


def _written(
    item: _Decoded,
    result: Score,
    wait: Callable[[], object],
    engine: Engine | None,
    scorer: str,
    output: bool,
    heatmap: bool,
) -> Record:
    """The record for an image once `wait` has seen its writes finish or fail.

    An error of the disk (full, read-only, failing) is raised: no input is failed for it, and a rerun redoes it.
    """
    try:
        wait()
    except (ImageError, OSError) as error:
        if isinstance(error, OSError) and not is_per_input(error):
            raise
        return record(item.job, item.started, item.picture, f"cannot write output: {error}")
    target = item.job.target
    model, precision = (engine.artifact.card.get("name"), engine.precision) if engine else (None, None)
    return record(
        item.job,
        item.started,
        item.picture,
        result=result,
        model=model,
        precision=precision,
        scorer=scorer,
        output=target if output else None,
        heatmap=heatmap_path(target) if heatmap else None,
    )


class ScoresLog:
    """Appends records to scores.jsonl durably, one whole line or nothing, repairing a torn last line first."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._repair()
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def _repair(self) -> None:
        """Drop a trailing partial line left by a crash mid-write (records are far shorter than the tail read)."""
        if not self.path.exists():
            return
        with open(self.path, "r+b") as handle:
            start = max(handle.seek(0, os.SEEK_END) - 1_048_576, 0)
            handle.seek(start)
            tail = handle.read()
            if tail and not tail.endswith(b"\n"):
                handle.truncate(start + tail.rfind(b"\n") + 1)
                os.fsync(handle.fileno())

    def append(self, entry: Record) -> None:
        """Append one record; an OSError (a full disk) leaves the file as it was. FolderLost once scores.jsonl has
        been deleted (with OUTPUT, say): records appended to it would be lost."""
        if not os.fstat(self._fd).st_nlink:
            raise FolderLost(f"{self.path} was removed while records were written to it")
        try:
            append_line(self._fd, entry.line().encode())
        except OSError as error:
            raise OSError(error.errno, error.strerror, str(self.path)) from error

    def recorded(self) -> Recorded:
        """The inputs and outputs of the records in the file."""
        with open(self.path, encoding="utf-8") as lines:
            return recorded(filter(None, map(Record.parse, lines)))

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self) -> ScoresLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
