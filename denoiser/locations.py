"""Where inputs and outputs live: local paths or fsspec URLs (s3://, gs://), listed, fetched and put as whole files.

A `file://` URL is a local path. Any other URL goes through fsspec, whose backends come with the extras:
`denoise[s3]` (s3fs) and `denoise[gcs]` (gcsfs). Credentials and endpoints come from each backend's standard
places: for S3 the AWS environment variables and config files, `AWS_ENDPOINT_URL` included.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

from denoiser.records import Record
from denoiser.storage import tagged_name

EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs"}  # URL scheme -> the extra that brings its backend
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")


# Files that come with photos and are no images: sidecars (Google Takeout's JSON, XMP, Apple's edits, raw converters'
# settings), the videos of Live Photos, cameras and drones with their thumbnails and telemetry, voice memos, and the
# thumbnail caches and folder settings of Windows, Picasa and Canon's ZoomBrowser. Batch, score, eval, watch and the
# Ray path leave them alone, as they leave hidden files.
COMPANION_SUFFIXES = (
    *(".json", ".xmp", ".aae", ".pp3", ".dop", ".on1", ".xml"),
    *(".mov", ".mp4", ".m4v", ".avi", ".mts", ".m2ts", ".3gp", ".mkv", ".webm", ".lrv", ".thm", ".srt"),
    *(".wav", ".m4a", ".ini"),
)
COMPANION_NAMES = ("thumbs.db", "ehthumbs.db", "zbthumbnail.info", "icon\r")


def left_alone(parts: Sequence[str]) -> bool:
    """Whether an input at this relative path is passed over: hidden (a part starts with a dot) or a companion."""
    name = parts[-1].lower() if parts else ""
    return any(part.startswith(".") for part in parts) or name in COMPANION_NAMES or name.endswith(COMPANION_SUFFIXES)


class MissingExtra(RuntimeError):
    """A feature whose optional dependency is not installed; the message names the extra."""


class Task(NamedTuple):
    """One input and where its output goes, as strings (local absolute paths or URLs) that travel to workers."""

    source: str
    target: str
    refusal: str = ""  # why it must not be processed ("" when it may): a reserved name


def scheme(location: str) -> str | None:
    """The URL scheme of a location ("s3"), or None for a local path."""
    match = _SCHEME.match(location)
    return match.group(1).lower() if match else None


def is_url(location: str) -> bool:
    """Whether a location is a URL for fsspec (file:// URLs are local paths)."""
    return scheme(location) not in (None, "file")


def local(location: str) -> str:
    """A location with a file:// prefix taken off."""
    return location[len("file://") :] if scheme(location) == "file" else location


def record_key(location: str) -> str:
    """What identifies an input across runs in scores.jsonl: a URL as it is, a local path made absolute."""
    return location if is_url(location) else os.path.abspath(location)


class Recorded(NamedTuple):
    """What OUTPUT's records say: which inputs have a record, and whose output each recorded output path is."""

    inputs: set[str]  # record_key of each input
    outputs: dict[str, str]  # record_key of an output, casefolded -> record_key of its input


def recorded(entries: Iterable[Record]) -> Recorded:
    """The inputs and outputs these records name."""
    inputs, outputs = set(), {}
    for entry in entries:
        inputs.add(record_key(entry.input))
        if entry.output:
            outputs[record_key(entry.output).casefold()] = record_key(entry.input)
    return Recorded(inputs, outputs)


def to_do(items: list, known: Recorded, redo: bool) -> list:
    """The jobs or tasks to run: those whose input has no record (all with `redo`), each with a target of its own."""
    return own_targets(
        [item for item in items if redo or record_key(str(item.source)) not in known.inputs], known.outputs
    )


def own_targets(items: list, outputs: dict[str, str]) -> list:
    """The jobs or tasks, each whose target is another input's output (recorded, or of an earlier item) moved to
    STEM.KEY.SUFFIX, KEY a hash of its input: no input's output replaces another's. Targets are compared
    casefolded, since exFAT, FAT and macOS disks take `A.png` and `a.png` for one file."""
    owners, owned = dict(outputs), []
    for item in items:
        source, target = record_key(str(item.source)), str(item.target)
        if owners.setdefault(record_key(target).casefold(), source) != source:
            folder, name = posixpath.split(target) if is_url(target) else os.path.split(target)
            tag = hashlib.sha1(source.encode("utf-8", "surrogateescape")).hexdigest()[:8]
            target = join(folder, tagged_name(name, tag))
            owners[record_key(target).casefold()] = source
            item = item._replace(target=type(item.target)(target))
        owned.append(item)
    return owned


def extra_error(what: str, extra: str) -> MissingExtra:
    """The one-line error for a missing optional dependency."""
    return MissingExtra(f"{what} needs the {extra} extra: pip install 'denoise[{extra}]'")


def filesystem(url: str):
    """The fsspec filesystem for a URL and the URL's path on it; MissingExtra when its backend is not installed."""
    try:
        from fsspec.core import url_to_fs
    except ImportError:
        raise extra_error(f"an {scheme(url)}:// path", EXTRAS.get(scheme(url), "s3")) from None
    try:
        return url_to_fs(url)
    except ImportError as error:
        extra = EXTRAS.get(scheme(url))
        raise (extra_error(f"an {scheme(url)}:// path", extra) if extra else MissingExtra(str(error))) from None


def join(base: str, relative: str) -> str:
    """`relative` (with / separators) under a local folder or a URL prefix."""
    return posixpath.join(base.rstrip("/"), relative) if is_url(base) else os.path.join(base, relative)


def heatmap_location(target: str) -> str:
    """Where the anomaly map of an output goes: beside it (the same name as pipeline.heatmap_path)."""
    from denoiser.anomaly import HEATMAP_SUFFIX

    return target + HEATMAP_SUFFIX


def mirror_tasks(source: str, output: str, recursive: bool = False) -> list[Task]:
    """Tasks for a file or a folder's files (none `left_alone`) under a path or URL, mirrored under `output`.

    Raises ValueError when an output would land on an input, FileNotFoundError when `source` does not exist.
    """
    from denoiser.pipeline import check_jobs, mirror_jobs, reserved

    if not is_url(source) and not is_url(output):
        jobs = mirror_jobs(Path(source), Path(output), recursive)
        check_jobs(jobs)
        return [_task(job.source, job.target, job.refusal) for job in jobs]
    names = _remote_names(source, output, recursive) if is_url(source) else _local_names(Path(source), recursive)
    tasks = [Task(record_key(path), join(output, relative), reserved(Path(relative)) or "") for path, relative in names]
    sources = {task.source for task in tasks}
    for task in tasks:
        if task.target in sources:
            raise ValueError(f"output {task.target} would overwrite input {task.source}")
    return tasks


def _task(source: Path, target: Path, refusal: str | None) -> Task:
    return Task(os.path.abspath(source), os.path.abspath(target), refusal or "")


def _local_names(source: Path, recursive: bool) -> list[tuple[str, str]]:
    """(path, relative path) of a local file or folder's inputs, chosen as mirror_jobs chooses them."""
    from denoiser.pipeline import mirror_jobs

    if not source.exists():
        raise FileNotFoundError(f"{source}: no such file or folder")
    jobs = mirror_jobs(source, source, recursive)  # OUTPUT = INPUT: no folder is left out as OUTPUT's
    return [(str(job.source), job.target.relative_to(source).as_posix()) for job in jobs]


def _remote_names(source: str, output: str, recursive: bool) -> list[tuple[str, str]]:
    """(URL, relative path) of the objects under a URL prefix, or of the one object it names, sorted."""
    fs, root = filesystem(source)
    fs.invalidate_cache()
    if fs.isfile(root):
        return [(source, posixpath.basename(root))]
    if not fs.isdir(root):
        raise FileNotFoundError(f"{source}: no such file or folder")
    root = root.rstrip("/")
    found = (
        fs.find(root) if recursive else [entry["name"] for entry in fs.ls(root, detail=True) if entry["type"] == "file"]
    )
    nested = output.rstrip("/") + "/" if scheme(output) == scheme(source) else None
    names = []
    for path in sorted(found):
        relative = posixpath.relpath(path, root)
        url = fs.unstrip_protocol(path)
        if left_alone(relative.split("/")) or (nested and url.startswith(nested)):
            continue
        names.append((url, relative))
    return names


def fetch(url: str, destination: Path, max_bytes: int) -> str | None:
    """Download an object to a local file, or say why not (missing, over max_bytes) as an input's failure."""
    from denoiser.imageio import ImageError, _check_bytes

    fs, path = filesystem(url)
    try:
        _check_bytes(fs.size(path), max_bytes, posixpath.basename(path))
    except FileNotFoundError:
        return f"{url}: no such file"
    except ImageError as error:
        return str(error)
    destination.parent.mkdir(parents=True, exist_ok=True)
    fs.get_file(path, str(destination))
    return None


def put(local_file: Path, url: str) -> None:
    """Upload a whole file: readers see the old object or the new one, never part of it."""
    fs, path = filesystem(url)
    fs.put_file(str(local_file), path)


PARTS = ".scores-parts"  # OUTPUT/.scores-parts/: an object store's records put at checkpoints, until merged
CHECKPOINT_RECORDS = 500  # a part is put after this many records...
CHECKPOINT_SECONDS = 30.0  # ...or this long after the last one, whichever comes first


class ObjectScores:
    """OUTPUT/scores.jsonl on an object store, where nothing can be appended to; one writer (the driver).

    Records go up in parts, `.scores-parts/RUN-SEQ.jsonl` (RUN: the start time in ns and a random tag), one
    PUT each, every CHECKPOINT_RECORDS records or CHECKPOINT_SECONDS. At the end scores.jsonl is rewritten by
    one PUT with the parts' lines it does not hold yet, and the parts are deleted. A run killed before that
    loses at most the records since its last part, whose inputs the next run redoes; the next run also reads
    and merges the parts left behind.
    """

    def __init__(self, output: str):
        from denoiser.pipeline import SCORES_FILE

        self.fs, root = filesystem(output)
        self.root = root.rstrip("/")
        self.scores, self.parts = f"{self.root}/{SCORES_FILE}", f"{self.root}/{PARTS}"
        self.run = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"  # parts sort in the order they were put
        self.pending: list[str] = []
        self.sequence, self.last = 0, time.monotonic()

    def recorded(self) -> Recorded:
        """The inputs and outputs of the records in scores.jsonl and the parts."""
        return recorded(filter(None, (Record.parse(line) for path in self._logs() for line in self._lines(path))))

    def append(self, entry: Record) -> None:
        """Hold a record; put the held ones as a part when a checkpoint is due."""
        self.pending.append(entry.line())
        if len(self.pending) >= CHECKPOINT_RECORDS or time.monotonic() - self.last >= CHECKPOINT_SECONDS:
            self.checkpoint()

    def checkpoint(self) -> None:
        """Put the held records as the next part (one PUT)."""
        if self.pending:
            self.fs.pipe_file(f"{self.parts}/{self.run}-{self.sequence:06d}.jsonl", "".join(self.pending).encode())
            self.sequence += 1
            self.pending.clear()
        self.last = time.monotonic()

    def merge(self) -> None:
        """Rewrite scores.jsonl with every part's lines it lacks (one PUT), then delete the parts.

        A line already in scores.jsonl is not added again (a record's time and seconds make its line unique), so
        a merge cut short after its PUT and done again adds nothing twice.
        """
        parts = self._parts()
        if not parts:
            return
        seen: set[bytes] = set()
        with tempfile.TemporaryDirectory(prefix="denoise-scores-") as scratch:
            merged = Path(scratch) / "scores.jsonl"
            with open(merged, "wb") as out:
                for path in self._logs():
                    for line in self._lines(path):
                        digest = hashlib.blake2b(line, digest_size=16).digest()
                        if digest not in seen or path == self.scores:
                            seen.add(digest)
                            out.write(line)
            self.fs.put_file(str(merged), self.scores)
        self.fs.rm(parts)

    def _parts(self) -> list[str]:
        self.fs.invalidate_cache()
        return sorted(self.fs.find(self.parts)) if self.fs.exists(self.parts) else []

    def _logs(self) -> list[str]:
        """scores.jsonl (when it exists) and then the parts, oldest first."""
        parts = self._parts()
        return ([self.scores] if self.fs.exists(self.scores) else []) + parts

    def _lines(self, path: str) -> Iterator[bytes]:
        """A log's lines, streamed, each ending in a newline."""
        with self.fs.open(path, "rb") as handle:
            for line in handle:
                yield line if line.endswith(b"\n") else line + b"\n"

    def __enter__(self) -> ObjectScores:
        return self

    def __exit__(self, kind, *exc) -> None:
        """Put what is held; merge only after a run that ended normally (the next run merges otherwise)."""
        self.checkpoint()
        if kind is None:
            self.merge()
