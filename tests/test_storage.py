"""The durable-write helpers: whole lines or nothing, no partial file, the OUTPUT lock and its stall state."""

from __future__ import annotations

import errno
import json
import os
import resource
import signal
from contextlib import contextmanager
from pathlib import Path

import pytest

from denoiser import storage
from denoiser.pipeline import ScoresLog
from denoiser.records import Record


@contextmanager
def file_size_limit(limit: int):
    """Writes past `limit` bytes fail with EFBIG (a stand-in for a full disk) while the block runs."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def test_an_append_that_does_not_fit_leaves_whole_lines_only(tmp_path):
    path = tmp_path / "scores.jsonl"
    with ScoresLog(path) as log, file_size_limit(1000):
        written = 0
        with pytest.raises(OSError) as failure:
            for index in range(100):
                log.append(Record(f"{index}.png", error="x" * 37))
                written += 1
    assert failure.value.errno in (errno.EFBIG, errno.ENOSPC) and failure.value.filename == str(path)
    text = path.read_text()
    assert text.endswith("\n") and 0 < written < 100
    assert [json.loads(line)["input"] for line in text.splitlines()] == [f"{i}.png" for i in range(written)]
    with ScoresLog(path) as log:
        log.append(Record("after.png"))
    assert Record.parse(path.read_text().splitlines()[-1]) == Record("after.png"), "nothing glued on"


def test_names_made_from_a_long_name_fit_and_stay_apart(tmp_path):
    """A name of 250 bytes is valid; its temporary `.NAME.PID.tmp` would not be, nor would `NAME.error.json`."""
    assert storage.fitted_name("a.png", ".error.json") == "a.png.error.json"
    for unit in ("a", "é", "\udcff"):  # ASCII, two-byte UTF-8, a byte that is not UTF-8
        head = unit * (250 // len(os.fsencode(unit)))
        names = {storage.fitted_name(head + end, ".error.json") for end in ("x", "y")}
        assert len(names) == 2 and all(name.endswith(".error.json") for name in names)
        assert all(len(os.fsencode(name)) == storage.NAME_MAX for name in names)
    target = tmp_path / ("b" * 246 + ".png")
    storage.write_text(target, "whole")
    assert target.read_text() == "whole" and sorted(tmp_path.iterdir()) == [target], "no temporary left"
    storage.atomic_write(target, lambda temporary: temporary.write_text("x"))
    assert storage.temporary_path(target).name.startswith(".bbb") and target.read_text() == "x"


def test_a_failed_atomic_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out.png"
    target.write_bytes(b"old")
    with file_size_limit(100), pytest.raises(OSError) as failure:
        storage.atomic_write(target, lambda temporary: temporary.write_bytes(b"n" * 1000))
    assert failure.value.filename == str(target)
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_a_torn_last_line_is_cut_when_the_log_is_opened(tmp_path):
    path = tmp_path / "scores.jsonl"
    path.write_bytes(b'{"input": "a.png"}\n{"input": "b.p')
    with ScoresLog(path) as log:
        log.append(Record("b.png"))
    assert [json.loads(line)["input"] for line in path.read_text().splitlines()] == ["a.png", "b.png"]


def test_a_removed_log_stops_the_command_and_a_rotated_one_takes_records_until_reopened(tmp_path):
    """Lines appended to a deleted file would vanish; logrotate's rename keeps the file, so it stays writable."""
    from denoiser.cli.writing import DISK_ERROR_EXIT, DiskStop, writing_to

    output = tmp_path / "out"
    with writing_to(output) as log:
        log.append(Record("a.png"))
        (output / "scores.jsonl").rename(output / "scores.jsonl.1")
        log.append(Record("b.png"))
    assert [Record.parse(line).input for line in (output / "scores.jsonl.1").read_text().splitlines()] == [
        "a.png",
        "b.png",
    ]
    with pytest.raises(DiskStop, match="scores.jsonl was removed while records were written") as stop:
        with writing_to(output) as log:
            (output / "scores.jsonl").unlink()
            log.append(Record("c.png"))
    assert stop.value.exit_code == DISK_ERROR_EXIT
    assert not (output / "scores.jsonl").exists()


def test_the_output_lock_refuses_a_second_writer_and_carries_the_stall_cause(tmp_path):
    with storage.OutputLock(tmp_path) as lock:
        with pytest.raises(BlockingIOError):
            storage.OutputLock(tmp_path).acquire()
        assert storage.read_stall(tmp_path) == storage.Stall(os.getpid())
        lock.publish(storage.Stall(os.getpid(), "no space left on OUTPUT", "2026-12-04T10:00:00+00:00"))
        assert storage.read_stall(tmp_path).cause == "no space left on OUTPUT"
    assert storage.read_stall(tmp_path) is None, "a lock nobody holds says nothing"
    assert (tmp_path / storage.LOCK_FILE).stat().st_size == storage.LOCK_SIZE


def test_the_cause_names_the_folder_of_the_destination(tmp_path):
    inbox, output = tmp_path / "in", tmp_path / "out"
    error = OSError(errno.ENOSPC, "No space left on device", str(inbox / "a.png"), None, str(output / "a.png"))
    assert storage.cause(error, {"OUTPUT": output, "INBOX": inbox}) == "no space left on OUTPUT"
    denied = OSError(errno.EACCES, "Permission denied", str(inbox / "a.png"))
    assert storage.cause(denied, {"OUTPUT": output, "INBOX": inbox}) == "permission denied on INBOX"
    assert storage.is_per_input(OSError(errno.ENAMETOOLONG, "File name too long"))
    assert not storage.is_per_input(OSError(errno.ENOSPC, "No space left on device"))


def test_stale_temporaries_of_dead_processes_are_removed_and_live_ones_kept(tmp_path):
    dead = tmp_path / ".a.png.999999999.tmp"
    live = tmp_path / f".b.png.{os.getppid()}.tmp"
    kept = tmp_path / "c.png"
    for path in (dead, live, kept):
        path.write_bytes(b"x")
    storage.remove_stale_temporaries(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, kept.name])
    Path(live).unlink()
