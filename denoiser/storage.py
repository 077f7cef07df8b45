"""Durable file writes for the whole project: atomic replace, fsync, checked appends, the OUTPUT lock, I/O errors.

A file is written under `.NAME.PID.tmp` beside its target, fsynced, renamed over the target, and the folder
is fsynced, so after a crash or a power cut the target holds either its old bytes or all of its new ones.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import NamedTuple

from denoiser.records import json_text

LOCK_FILE = ".denoise.lock"
LOCK_SIZE = 4096  # the lock file is allocated once, so its state can be rewritten on a full disk
NAME_MAX = 255  # bytes in one file name (ext4, XFS, Btrfs, tmpfs)

# errors that belong to one input's name, not to the disk: such an input fails, the others go on
PER_INPUT_ERRNOS = frozenset(
    {errno.ENAMETOOLONG, errno.EINVAL, errno.EILSEQ, errno.EISDIR, errno.ENOTDIR, errno.EEXIST, errno.ELOOP}
)


def fitted_name(head: str, tail: str) -> str:
    """`head + tail`, or where that is longer than NAME_MAX bytes, `head` cut short and marked with a hash of it:
    names made from an input's name (temporaries, sidecars, `STEM.ID.SUFFIX`) must fit where the input's did."""
    whole, raw_head = head + tail, os.fsencode(head)
    if len(os.fsencode(whole)) <= NAME_MAX:
        return whole
    mark = "~" + hashlib.sha1(raw_head).hexdigest()[:8]
    return os.fsdecode(raw_head[: NAME_MAX - len(os.fsencode(tail)) - len(mark)]) + mark + tail


def tagged_name(name: str, tag: str) -> str:
    """`STEM.TAG.SUFFIX` for a file name `STEM.SUFFIX`, fitted to NAME_MAX: a second output's name beside the first."""
    path = PurePosixPath(name)
    return fitted_name(path.stem, f".{tag}{path.suffix}")


def temporary_path(target: Path) -> Path:
    """The hidden name a write to `target` goes through (recognised by `remove_stale_temporaries`)."""
    return target.with_name(fitted_name(f".{target.name}", f".{os.getpid()}.tmp"))


def fsync_dir(folder: Path) -> None:
    """Make the entries of `folder` (new names, renames, removals) durable."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    """Make the bytes of a file durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(target: Path, write: Callable[[Path], object]) -> None:
    """Call `write(temporary)`, fsync it, rename it over `target` and fsync the folder; no partial target ever.

    A name the filesystem refuses (`a:b.png` on exFAT, which says ENOENT) raises EINVAL, an input's own error."""
    temporary = temporary_path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        write(temporary)
        if not temporary.is_symlink():
            fsync_file(temporary)
        os.replace(temporary, target)
        fsync_dir(target.parent)
    except OSError as error:
        if refused_name(error, target):
            raise OSError(errno.EINVAL, "the filesystem refuses this file or folder name", str(target)) from error
        if error.filename is None:  # a write() names no file
            raise OSError(error.errno, error.strerror, str(target)) from error
        raise
    finally:
        if os.path.lexists(temporary):
            temporary.unlink()


def refused_name(error: OSError, target: Path) -> bool:
    """Whether ENOENT making `target` (its temporary, or a folder on its way) came from a name its filesystem
    refuses: the folder the failing path was made in exists and takes a file of a plain name."""
    if error.errno != errno.ENOENT or error.filename is None:
        return False
    failed = Path(os.fsdecode(error.filename))
    if failed not in (target, temporary_path(target)) and failed not in target.parents:
        return False
    probe = failed.parent / f".denoise-probe.{threading.get_ident()}.{os.getpid()}.tmp"
    try:
        probe.touch()
        probe.unlink()
    except OSError:
        return False
    return True


def write_text(target: Path, text: str) -> None:
    """Atomically write UTF-8 text; bytes of a file name that were not UTF-8 (lone surrogates) go back as they were."""
    atomic_write(target, lambda temporary: temporary.write_text(text, encoding="utf-8", errors="surrogateescape"))


def write_json(target: Path, value: dict) -> None:
    """Atomically write indented JSON."""
    write_text(target, json_text(value, indent=2) + "\n")


def copy(source: Path, target: Path) -> None:
    """Atomically copy bytes and times."""
    atomic_write(target, lambda temporary: shutil.copy2(source, temporary))


def point_link(target: Path, link_to: Path) -> None:
    """Atomically make `target` a symlink to `link_to`."""
    atomic_write(target, lambda temporary: os.symlink(link_to, temporary))


def rename(source: Path, target: Path) -> None:
    """Rename within one filesystem and make both folders' entries durable."""
    target.parent.mkdir(parents=True, exist_ok=True)
    os.rename(source, target)
    fsync_dir(target.parent)
    if source.parent != target.parent:
        fsync_dir(source.parent)


def remove_stale_temporaries(folder: Path) -> None:
    """Delete the `.NAME.PID.tmp` files in `folder` whose writing process no longer runs."""
    if not folder.is_dir():
        return
    for path in folder.glob(".*.tmp"):
        pid = path.name[: -len(".tmp")].rpartition(".")[2]
        if pid.isdigit() and (int(pid) == os.getpid() or not process_alive(int(pid))):
            path.unlink(missing_ok=True)


def process_alive(pid: int) -> bool:
    """Whether a process with this ID exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def append_line(fd: int, line: bytes) -> None:
    """Append one whole line to an O_APPEND file and fsync it; on a short or failed write cut it back, then raise."""
    size = os.fstat(fd).st_size
    try:
        written = os.write(fd, line)
        if written != len(line):
            raise OSError(errno.ENOSPC, f"short write: {written} of {len(line)} bytes")
        os.fdatasync(fd)
    except OSError:
        os.ftruncate(fd, size)
        raise


def is_per_input(error: OSError) -> bool:
    """Whether an error comes from one input's name (that input fails) rather than from the disk (all wait)."""
    return error.errno in PER_INPUT_ERRNOS


def cause(error: OSError, folders: dict[str, Path]) -> str:
    """A short reason such as "no space left on OUTPUT", naming the folder the failed path (a copy's or rename's
    destination first) lies in."""
    paths = [Path(os.path.abspath(path)) for path in (error.filename2, error.filename) if path]
    where = next(
        (name for path in paths for name, folder in folders.items() if path.is_relative_to(os.path.abspath(folder))),
        None,
    )
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        what = "no space left"
    else:
        what = (os.strerror(error.errno) if error.errno else str(error)).lower()
    return f"{what} on {where}" if where else f"{what} ({error.filename or error})"


class FolderLost(Exception):
    """A folder or file this process writes to was removed, moved away or mounted over: no retry mends that."""


class Stall(NamedTuple):
    """What the process writing an OUTPUT is waiting on, as `denoise status` reads it from the lock file."""

    pid: int
    cause: str | None = None
    since: str | None = None


class OutputLock:
    """OUTPUT/.denoise.lock: one writer per OUTPUT (batch, score or daemon); it also holds the writer's stall cause."""

    def __init__(self, output: Path):
        self.output, self.path = output, output / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> OutputLock:
        """Take OUTPUT; BlockingIOError when another process holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.fstat(fd).st_size < LOCK_SIZE:
                os.posix_fallocate(fd, 0, LOCK_SIZE)
        except OSError:
            os.close(fd)
            raise
        self._fd = fd
        self.publish(Stall(os.getpid()))
        return self

    def publish(self, stall: Stall) -> None:
        """Rewrite the state in place (the blocks are allocated, so this works on a full disk)."""
        if self._fd is None:
            return
        data = json_text(stall._asdict()).encode()[: LOCK_SIZE - 1]
        os.pwrite(self._fd, data.ljust(LOCK_SIZE - 1) + b"\n", 0)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def read_stall(output: Path) -> Stall | None:
    """The stall state of the process holding OUTPUT's lock now, or None when no process holds it."""
    path = output / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return None  # nobody holds it
        except BlockingIOError:
            pass
        values = json.loads(os.pread(fd, LOCK_SIZE, 0).decode(errors="replace").strip() or "{}")
        return Stall(**{key: values.get(key) for key in Stall._fields})
    except (OSError, ValueError, TypeError):
        return None
    finally:
        os.close(fd)
