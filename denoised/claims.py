"""Claiming inbox files into the work area and routing them out again, so that each file has exactly one outcome.

A file is claimed by one atomic rename from INBOX/REL to INBOX/.denoised-work/ID/REL, where ID is new for
every claim. While the file sits there it belongs to this daemon; it leaves only after its record is in
scores.jsonl and its outputs are in place, and the claim folder is removed last. On restart every claim
folder still holding a file is either finished (its ID is already in scores.jsonl) or processed again.
"""

from __future__ import annotations

import errno
import fcntl
import filecmp
import json
import os
import re
import secrets
import shutil
import stat
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

from denoiser import storage
from denoiser.anomaly import heatmap_path
from denoiser.locations import left_alone
from denoiser.pipeline import ANOMALIES, FAILED, PROCESSED, reserved
from denoiser.records import Record
from denoiser.storage import FolderLost, fitted_name, remove_stale_temporaries, tagged_name

WORK_DIR = ".denoised-work"
KEPT_DIR = ".denoised-kept"
LOCK_FILE = ".lock"
ATTEMPTS_FILE = ".attempts"
TARGET_FILE = ".target"  # the output path chosen for a claim, relative to OUTPUT, fixed before it is processed
# names a program writes under and renames when done: browsers, WinSCP, Resilio Sync, qBittorrent and uTorrent
TEMPORARY_SUFFIXES = (".part", ".tmp", ".crdownload", ".filepart", ".!sync", ".!qB", ".!ut")
DOWNLOAD_BUNDLE = ".download"  # Safari downloads into NAME.download/ and replaces the folder with the file
ERROR_SUFFIX = ".error.json"
CLAIM_FIELD = re.compile(r'"claim":\s*"([^"\\]*)"')  # a record's claim ID, as its line holds it (plain hex)


class Claim(NamedTuple):
    """One inbox file owned by the daemon: it lives at `folder / relative` until it is routed out.

    `attempts` counts the runs that stopped (crashed or were killed) while processing it.
    """

    id: str
    relative: Path
    folder: Path
    attempts: int = 0

    @property
    def file(self) -> Path:
        return self.folder / self.relative


def is_candidate(inbox: Path, path: Path, recursive: bool) -> bool:
    """Whether an inbox path may be taken: not hidden nor a companion (`left_alone`), not a temporary name, not in a
    subfolder unless recursive (nor in a download bundle)."""
    try:
        parts = path.relative_to(inbox).parts
    except ValueError:
        return False
    if not parts or (len(parts) > 1 and not recursive):
        return False
    if left_alone(parts) or any(part.endswith(DOWNLOAD_BUNDLE) for part in parts[:-1]):
        return False
    return not path.name.endswith(TEMPORARY_SUFFIXES)


def inbox_files(inbox: Path, folder: Path, recursive: bool) -> Iterator[Path]:
    """Candidate files under `folder` (the inbox or one of its subfolders), hidden folders skipped."""
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if recursive else []
        for name in sorted(files):
            path = Path(root, name)
            if is_candidate(inbox, path, recursive):
                yield path


def inside(path: Path, root: Path) -> bool:
    """Whether `path`, with every symlink in it resolved, lies under `root`."""
    return path.resolve().is_relative_to(root.resolve())


def new_claim_id() -> str:
    """A unique, time-ordered claim name."""
    return f"{time.time_ns():x}-{secrets.token_hex(4)}"


class WorkArea:
    """INBOX/.denoised-work/: claims live here, on the inbox's own filesystem, so claiming is one rename."""

    def __init__(self, inbox: Path):
        self.inbox = inbox
        self.root = inbox / WORK_DIR
        self._lock_fd: int | None = None

    def lock(self) -> None:
        """Take the work area for this process; refuse when another daemon holds it."""
        self.root.mkdir(exist_ok=True)
        fd = os.open(self.root / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def check(self) -> None:
        """FolderLost when the locked work area is no longer at INBOX/.denoised-work: events there would never come.
        Another error (a network share that does not answer) tells nothing, so it passes."""
        if self._lock_fd is None:
            return
        try:
            held = os.fstat(self._lock_fd)
            os.lstat(self.root / LOCK_FILE)
            if held.st_nlink:
                return
        except FileNotFoundError:
            pass
        except OSError:
            return
        raise FolderLost(f"INBOX {self.inbox} or its {WORK_DIR} was removed, moved or mounted over")

    def claim(self, path: Path) -> Claim | None:
        """Move an inbox file into a new claim folder; None when it is gone or a folder."""
        try:
            status = os.lstat(path)
        except FileNotFoundError:
            return None
        if stat.S_ISDIR(status.st_mode):
            return None
        link_target = self._inbox_link_target(path) if stat.S_ISLNK(status.st_mode) else None
        claim_id = new_claim_id()
        claim = Claim(claim_id, path.relative_to(self.inbox), self.root / claim_id)
        claim.file.parent.mkdir(parents=True)
        try:
            storage.fsync_dir(self.root)
            storage.rename(path, claim.file)
        except OSError as error:
            shutil.rmtree(claim.folder)
            if isinstance(error, FileNotFoundError):
                return None
            raise
        if link_target is not None:
            storage.point_link(claim.file, link_target)
        return claim

    def _inbox_link_target(self, link: Path) -> Path | None:
        """The absolute target of a symlink to a regular file inside the inbox (outside the work area), else None."""
        target = Path(os.path.realpath(link))
        usable = (
            target.is_relative_to(self.inbox.resolve())
            and not target.is_relative_to(self.root.resolve())
            and target.is_file()
        )
        return target if usable else None

    def pending(self) -> list[Claim]:
        """Claims left by an earlier run, oldest first; empty claim folders (finished or never filled) are removed."""
        claims = []
        for folder in sorted(self.root.iterdir()) if self.root.is_dir() else []:
            if folder.name.startswith(".") or not folder.is_dir():
                continue
            file = claimed_file(folder)
            if file is None:
                shutil.rmtree(folder)
            else:
                claim = Claim(folder.name, file.relative_to(folder), folder)
                claims.append(claim._replace(attempts=self.attempts(claim)))
        return claims

    def attempts(self, claim: Claim) -> int:
        """How many runs stopped while processing this claim."""
        try:
            return int((claim.folder / ATTEMPTS_FILE).read_text())
        except (OSError, ValueError):
            return 0

    def count_attempt(self, claim: Claim, step: int = 1) -> None:
        """Add `step` to the claim's attempts (written before processing, taken back on a clean stop)."""
        if claim.folder.is_dir():
            storage.write_text(claim.folder / ATTEMPTS_FILE, str(max(self.attempts(claim) + step, 0)))

    def release(self, claim: Claim) -> None:
        """Remove a claim folder once its file has been routed out."""
        shutil.rmtree(claim.folder, ignore_errors=True)
        storage.fsync_dir(self.root)


def claimed_file(folder: Path) -> Path | None:
    """The one file (or link, FIFO, ...) in a claim folder; temporary files of a killed run are deleted."""
    for root, dirs, names in os.walk(folder):
        for name in names + dirs:
            path = Path(root, name)
            if name.startswith(".") and name.endswith(".tmp"):
                path.unlink()
            elif not name.startswith(".") and (path.is_symlink() or not path.is_dir()):
                return path
    return None


def refusal(claim: Claim, inbox: Path, output: Path) -> str | None:
    """Why a claimed file must not be read or its outputs written, or None when it may."""
    status = os.lstat(claim.file)
    if stat.S_ISLNK(status.st_mode):
        target = Path(os.path.realpath(claim.file))
        if not target.is_file():
            return f"symlink to {os.readlink(claim.file)} does not point to a regular file; not followed"
        if not target.is_relative_to(inbox.resolve()) or target.is_relative_to((inbox / WORK_DIR).resolve()):
            return f"symlink to {os.readlink(claim.file)} points outside INBOX; not followed"
    elif not stat.S_ISREG(status.st_mode):
        return f"not a regular file ({file_kind(status.st_mode)})"
    if reason := reserved(claim.relative):
        return reason
    for root in (output, output / ANOMALIES, output / PROCESSED):
        if not inside(root / claim.relative, output):
            return f"output path {root / claim.relative} escapes OUTPUT"
    return None


def file_kind(mode: int) -> str:
    """A word for a non-regular file type."""
    kinds = {
        stat.S_ISFIFO: "FIFO",
        stat.S_ISCHR: "character device",
        stat.S_ISBLK: "block device",
        stat.S_ISSOCK: "socket",
        stat.S_ISDIR: "directory",
    }
    return next((name for test, name in kinds.items() if test(mode)), "special file")


def scored_claims(scores: Path, claim_ids: Iterable[str]) -> dict[str, Record]:
    """The records in scores.jsonl written for any of these claims, by claim ID.

    Only lines naming a wanted claim are parsed: a log of a million records is read in about a second, not ten,
    which counts while systemd waits for the daemon to start."""
    wanted, found = set(claim_ids), {}
    if not wanted or not scores.exists():
        return found
    with open(scores, encoding="utf-8") as lines:
        for line in lines:
            named = CLAIM_FIELD.search(line)
            entry = Record.parse(line) if named and named.group(1) in wanted else None
            if entry and entry.claim in wanted:
                found[entry.claim] = entry
    return found


class Router:
    """Moves a scored claim to its outcome; every step may be repeated after a crash with the same result."""

    def __init__(self, inbox: Path, output: Path, after: str):
        self.inbox, self.output, self.after = inbox, output, after

    def target(self, claim: Claim, taken: Iterable[Path] = ()) -> Path:
        """Where the cleaned image goes: OUTPUT/REL, or OUTPUT/STEM.ID.SUFFIX when another input's output or
        anomaly map is there, or another claim of the batch has `taken` that name (compared casefolded, as exFAT,
        FAT and macOS disks compare names). The choice is stored in the claim, so a retry writes the same path."""
        chosen = claim.folder / TARGET_FILE
        try:
            return self.output / chosen.read_text(encoding="utf-8", errors="surrogateescape")
        except FileNotFoundError:
            pass
        wanted = self.output / claim.relative
        busy = str(wanted).casefold() in {str(path).casefold() for path in taken}
        if busy or os.path.lexists(wanted) or os.path.lexists(heatmap_path(wanted)):
            wanted = wanted.with_name(tagged_name(wanted.name, claim.id))
        storage.write_text(chosen, str(wanted.relative_to(self.output)))
        return wanted

    def clean_up(self, claim: Claim) -> None:
        """Remove temporary files a killed run may have left beside this claim's destinations."""
        for root in (self.output, self.output / ANOMALIES, self.output / PROCESSED, self.output / FAILED):
            remove_stale_temporaries((root / claim.relative).parent)
            remove_stale_temporaries(root)

    def route(self, claim: Claim, entry: Record) -> None:
        """Copy anomalies, file failures with their reason, then move the original out of the work area."""
        if entry.ok:
            cleaned = Path(entry.output)
            if entry.anomalous and cleaned.exists():
                storage.copy(cleaned, self.output / ANOMALIES / cleaned.relative_to(self.output))
            self._dispose(claim)
            return
        try:
            self._file_failure(claim, entry, self._free(claim, self.output / FAILED, sidecar=True))
        except OSError as error:
            if not storage.is_per_input(error):
                raise
            self._file_failure(claim, entry, self.output / FAILED / plain_name(claim))

    def _file_failure(self, claim: Claim, entry: Record, destination: Path) -> None:
        """The failed input at `destination`, its reason beside it in `NAME.error.json`."""
        storage.write_json(
            sidecar_path(destination),
            {
                "input": entry.input,
                "claim": claim.id,
                "reason": entry.error,
                "time": datetime.now(UTC).isoformat(timespec="seconds"),
            },
        )
        move(claim.file, destination)

    def _dispose(self, claim: Claim) -> None:
        if self.after == "delete":
            claim.file.unlink(missing_ok=True)
        elif self.after == "keep":
            move(claim.file, self._free(claim, self.inbox / KEPT_DIR))
        else:
            move(claim.file, self._free(claim, self.output / PROCESSED))

    def _free(self, claim: Claim, root: Path, sidecar: bool = False) -> Path:
        """`root/REL`, unless a different file is there (or at its sidecar's name, unless that is this claim's) or it
        escapes `root`: then `root/STEM.ID.SUFFIX` beside it."""
        wanted = root / claim.relative
        free = not os.path.lexists(wanted) or same_file_content(claim.file, wanted)
        if sidecar:
            free = free and own_sidecar(sidecar_path(wanted), claim)
        if inside(wanted.parent, root) and free:
            return wanted
        fallback = wanted.with_name(tagged_name(wanted.name, claim.id))
        return fallback if inside(fallback.parent, root) else root / fallback.name


def plain_name(claim: Claim) -> str:
    """`ID.SUFFIX`, a name any filesystem takes, for a failed input whose own name OUTPUT's filesystem refuses."""
    suffix = claim.relative.suffix
    return claim.id + (suffix if suffix[1:].isascii() and suffix[1:].isalnum() else "")


def sidecar_path(failed: Path) -> Path:
    """The error file beside a failed input: `NAME.error.json`."""
    return failed.with_name(fitted_name(failed.name, ERROR_SUFFIX))


def own_sidecar(path: Path, claim: Claim) -> bool:
    """Whether an error file is absent or was written for this claim (by a run killed before the move)."""
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("claim") == claim.id
    except FileNotFoundError:
        return True
    except (OSError, ValueError, AttributeError):
        return False


def same_file_content(a: Path, b: Path) -> bool:
    """Whether two paths hold the same bytes (symlinks: the same target)."""
    if a.is_symlink() or b.is_symlink():
        return a.is_symlink() and b.is_symlink() and os.readlink(a) == os.readlink(b)
    return a.is_file() and b.is_file() and filecmp.cmp(a, b, shallow=False)


def move(source: Path, destination: Path) -> None:
    """Rename, or across filesystems copy under a temporary name, rename, then delete the source."""
    try:
        storage.rename(source, destination)
        return
    except OSError as error:
        if error.errno != errno.EXDEV:
            raise
    if source.is_symlink():
        storage.point_link(destination, Path(os.readlink(source)))
    elif source.is_file():
        storage.copy(source, destination)
    source.unlink()  # a FIFO, device or socket has no content to carry to another filesystem
    storage.fsync_dir(source.parent)
