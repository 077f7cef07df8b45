"""The daemon's parts in-process: config, settling, claims, recovery, routing, refusals, systemd, metrics, status."""

from __future__ import annotations

import errno
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

from denoised import intake
from denoised.claims import Claim, Router, WorkArea, inbox_files, is_candidate, refusal, scored_claims
from denoised.config import Config, StartupError, load_config
from denoised.daemon import (
    MAX_ATTEMPTS,
    Folders,
    Reload,
    Run,
    Signals,
    batches,
    check_folders,
    prepare,
    recover,
    reload,
    retrying,
    stop_thread,
)
from denoised.intake import InboxEvents, Intake, Settler, start_observer
from denoised.metrics import Counters, MetricsServer
from denoised.systemd import notify, render_unit, watchdog_interval
from denoiser.cli import main
from denoiser.pipeline import SCORES_FILE, ScoresLog
from denoiser.records import Record
from denoiser.storage import FolderLost, OutputLock
from tests.helpers import write_image


@pytest.fixture
def folders(tmp_path):
    inbox, output = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    return inbox, output


def ok_record(claim: Claim, output: Path, anomalous: bool = False) -> Record:
    return Record(
        str(claim.relative),
        str(output / claim.relative),
        status="ok",
        score=0.1,
        anomalous=anomalous,
        width=4,
        height=4,
        claim=claim.id,
    )


# config


def test_config_from_toml_with_environment_overrides(tmp_path):
    path = tmp_path / "denoised.toml"
    path.write_text('inbox = "/srv/in"\noutput = "/srv/out"\nbatch-size = 4\nrecursive = true\nsettle = 0.5\n')
    config = load_config(
        path,
        {
            "DENOISED_BATCH_SIZE": "16",
            "DENOISED_POLLING": "yes",
            "DENOISED_OVERLAP": "none",
            "DENOISED_ENSEMBLE": "4",
            "OTHER": "x",
        },
    )
    assert (config.inbox, config.output) == (Path("/srv/in"), Path("/srv/out"))
    assert (config.settings().ensemble, config.settings().batch_size) == (4, 16)
    assert (config.batch_size, config.recursive, config.polling, config.settle, config.overlap) == (
        16,
        True,
        True,
        0.5,
        None,
    )


@pytest.mark.parametrize(
    "environ, message",
    [
        ({"DENOISED_INBOX": "/in"}, "output must be set"),
        (
            {"DENOISED_INBOX": "/in", "DENOISED_OUTPUT": "/out", "DENOISED_BATCHSIZE": "3"},
            "unknown config keys: batchsize",
        ),
        (
            {"DENOISED_INBOX": "/in", "DENOISED_OUTPUT": "/out", "DENOISED_TILE": "big"},
            "tile: 'big' is not a valid int",
        ),
        ({"DENOISED_INBOX": "/in", "DENOISED_OUTPUT": "/out", "DENOISED_AFTER": "move"}, "after must be one of"),
        (
            {"DENOISED_INBOX": "/in", "DENOISED_OUTPUT": "/out", "DENOISED_ENSEMBLE": "3"},
            "ensemble must be one of 1, 2, 4",
        ),
        ({"DENOISED_INBOX": "/in", "DENOISED_OUTPUT": "/out", "DENOISED_RECURSIVE": "maybe"}, "recursive"),
    ],
)
def test_bad_config_is_a_clear_error(environ, message):
    with pytest.raises(StartupError, match=message):
        load_config(None, environ)


def test_unwritable_or_nested_output_is_refused(folders, tmp_path):
    inbox, _ = folders
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(StartupError, match="not writable"):
        check_folders(Config(inbox, blocker / "out"))
    with pytest.raises(StartupError, match="must not be INBOX or inside it"):
        check_folders(Config(inbox, inbox / "out"))
    with pytest.raises(StartupError, match="not a folder"):
        check_folders(Config(tmp_path / "missing", tmp_path / "out"))


# finding files


def test_candidates_skip_hidden_temporary_companion_and_nested_files(folders):
    inbox, _ = folders
    partial = ("b.png.part", "c.tmp", "d.crdownload", "g.png.filepart", "h.png.!sync", "i.png.!qB")
    partial += ("s.png.download/s.png",)  # Safari's bundle while it downloads
    companions = ("a.png.json", "IMG_0001.MOV", "IMG_0001.AAE", "Thumbs.db", "desktop.ini", "Picasa.ini")
    companions += ("DJI_0001.SRT", "sub/clip.mp4")
    for name in ("a.png", ".hidden.png", *partial, *companions, "sub/e.png", ".denoised-work/x/f.png"):
        write_image(inbox / name, np.zeros((4, 4), np.uint8), format="PNG")
    assert [p.name for p in inbox_files(inbox, inbox, recursive=False)] == ["a.png"]
    assert [p.name for p in inbox_files(inbox, inbox, recursive=True)] == ["a.png", "e.png"]
    assert not is_candidate(inbox, inbox / ".denoised-work" / "x" / "f.png", True)


def test_settler_takes_closed_files_at_once_and_others_once_stable(folders):
    inbox, _ = folders
    closed, growing = inbox / "closed.png", inbox / "growing.png"
    closed.write_bytes(b"1")
    growing.write_bytes(b"1")
    settler = Settler(settle=0.3)
    settler.complete(closed)
    settler.maybe(growing)
    assert settler.due() == [closed]
    deadline = time.monotonic() + 0.8
    while time.monotonic() < deadline:
        with open(growing, "ab") as handle:
            handle.write(b"more")
        assert settler.due() == []
        time.sleep(0.05)
    last_write, due = time.monotonic(), []
    while not due and time.monotonic() < last_write + 2:
        due = settler.due()
        time.sleep(0.02)
    assert due == [growing] and 0.3 <= time.monotonic() - last_write <= 2 * 0.3 + 0.1
    settler.maybe(inbox / "gone.png")
    assert settler.due() == [] and len(settler) == 0


@pytest.mark.parametrize("polling", [False, True])
def test_watch_threads_are_named_denoise_and_stop(folders, polling):
    import threading

    inbox, _ = folders
    before = set(threading.enumerate())
    settler = Settler(settle=0.0)
    observer = start_observer(inbox, InboxEvents(inbox, True, settler), recursive=True, polling=polling)
    try:
        started = set(threading.enumerate()) - before
        # watchdog 7's reader starts (and joins) an inner dispatcher of its own
        ours = [thread for thread in started if thread.name != "InotifyFD-Dispatcher"]
        assert ours and all(thread.name.startswith("denoise-watch") for thread in ours)
        (inbox / "new.png").write_bytes(b"x")
        deadline = time.monotonic() + 5
        while len(settler) == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(settler) == 1
    finally:
        stop_thread(observer)
    time.sleep(0.2)
    assert not [t for t in set(threading.enumerate()) - before if t.is_alive()]


def test_files_whose_events_were_lost_are_found_by_the_periodic_sweep(folders, monkeypatch):
    """No observer at all here: what inotify misses (watch limit, queue overflow) the sweep still takes."""
    inbox, _ = folders
    monkeypatch.setattr(intake, "SWEEP_SECONDS", 0.5)
    write_image(inbox / "early.png", np.zeros((4, 4), np.uint8))
    work, claims = WorkArea(inbox), queue.Queue()
    work.lock()
    taker = Intake(work, Settler(0.1), claims, [], recursive=True)
    taker.start()
    try:
        assert claims.get(timeout=5).relative == Path("early.png"), "the first sweep, at start"
        (inbox / "sub").mkdir()
        write_image(inbox / "sub" / "late.png", np.zeros((4, 4), np.uint8))
        assert claims.get(timeout=5).relative == Path("sub/late.png")
    finally:
        stop_thread(taker)
        work.unlock()
    assert taker.error is None


def test_a_file_that_cannot_be_taken_is_logged_once_and_tried_again_by_each_sweep(folders, monkeypatch, caplog):
    inbox, _ = folders
    monkeypatch.setattr(intake, "SWEEP_SECONDS", 0.2)
    write_image(inbox / "stuck.png", np.zeros((4, 4), np.uint8))
    work, claims = WorkArea(inbox), queue.Queue()
    work.lock()
    take, tries = work.claim, []

    def refuse(path):
        tries.append(path)
        raise PermissionError(1, "Operation not permitted", str(path))

    monkeypatch.setattr(work, "claim", refuse)
    taker = Intake(work, Settler(0.05), claims, [], recursive=False)
    taker.start()
    try:
        deadline = time.monotonic() + 10
        while len(tries) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        monkeypatch.setattr(work, "claim", take)
        assert claims.get(timeout=5).relative == Path("stuck.png"), "taken once it can be"
    finally:
        stop_thread(taker)
        work.unlock()
    warnings = [r.getMessage() for r in caplog.records if r.name == "denoised" and "cannot take" in r.getMessage()]
    assert len(tries) >= 4 and len(warnings) == 1 and "Operation not permitted" in warnings[0]


# claims and recovery


def test_claims_are_unique_and_a_second_claim_of_the_same_file_gets_nothing(folders):
    inbox, _ = folders
    work = WorkArea(inbox)
    write_image(inbox / "a b.png", np.zeros((4, 4), np.uint8))
    first = work.claim(inbox / "a b.png")
    assert first is not None and first.file.exists() and not (inbox / "a b.png").exists()
    assert work.claim(inbox / "a b.png") is None
    write_image(inbox / "a b.png", np.ones((4, 4), np.uint8))
    second = work.claim(inbox / "a b.png")
    assert second.id != first.id and {c.id for c in work.pending()} == {first.id, second.id}


def test_recovery_finishes_scored_claims_without_a_second_record(folders):
    """Killed after the record was appended but before the original was moved: finish, do not redo."""
    inbox, output = folders
    work, router = WorkArea(inbox), Router(inbox, output, "processed")
    write_image(inbox / "done.png", np.zeros((4, 4), np.uint8))
    write_image(inbox / "todo.png", np.zeros((4, 4), np.uint8))
    done, todo = work.claim(inbox / "done.png"), work.claim(inbox / "todo.png")
    write_image(output / "done.png", np.zeros((4, 4), np.uint8))
    (work.root / "emptied-claim").mkdir()
    with ScoresLog(output / SCORES_FILE) as scores:
        scores.append(ok_record(done, output, anomalous=True))
        again = recover(Run(Config(inbox, output), None, Folders(work, OutputLock(output)), router, scores, Counters()))
    assert again == [todo]
    assert (output / "processed" / "done.png").exists() and (output / "anomalies" / "done.png").exists()
    assert not done.folder.exists() and not (work.root / "emptied-claim").exists() and todo.file.exists()
    assert len((output / SCORES_FILE).read_text().splitlines()) == 1


def test_a_file_in_flight_at_every_crash_is_given_up_and_suspects_go_alone(folders):
    inbox, output = folders
    work, router = WorkArea(inbox), Router(inbox, output, "processed")
    for name in ("poison.png", "suspect.png"):
        write_image(inbox / name, np.zeros((4, 4), np.uint8))
    poison, suspect = work.claim(inbox / "poison.png"), work.claim(inbox / "suspect.png")
    for _ in range(MAX_ATTEMPTS):
        work.count_attempt(poison)
    work.count_attempt(suspect)
    with ScoresLog(output / SCORES_FILE) as scores:
        again = recover(Run(Config(inbox, output), None, Folders(work, OutputLock(output)), router, scores, Counters()))
    assert again == [suspect._replace(attempts=1)]
    entry = json.loads((output / SCORES_FILE).read_text())
    assert entry["status"] == "failed" and f"stopped {MAX_ATTEMPTS} times" in entry["error"]
    assert entry["claim"] == poison.id
    assert (output / "failed" / "poison.png.error.json").exists() and not poison.folder.exists()

    queued = queue.Queue()
    plain = [Claim(f"c{i}", Path(f"{i}.png"), inbox) for i in range(3)]
    for claim in (plain[0], plain[1], suspect._replace(attempts=1), plain[2]):
        queued.put(claim)
    one_tile = SimpleNamespace(for_channels=lambda c: SimpleNamespace(plan=lambda h, w: SimpleNamespace(count=1)))
    run = Run(
        Config(inbox, output, max_latency=0), one_tile, Folders(work, OutputLock(output)), router, None, Counters()
    )
    made = batches(queued, SimpleNamespace(error=None), run)
    assert [[c.id for c in next(made)] for _ in range(3)] == [["c0", "c1"], [suspect.id], ["c2"]]


def test_recovery_removes_temporaries_of_dead_writers_only(folders):
    inbox, output = folders
    work, router = WorkArea(inbox), Router(inbox, output, "processed")
    write_image(inbox / "sub" / "a.png", np.zeros((4, 4), np.uint8))
    claim = work.claim(inbox / "sub" / "a.png")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = output / "sub" / f".a.png.{dead.pid}.tmp"
    live = output / "sub" / f".b.png.{os.getppid()}.tmp"
    for path in (stale, live):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"partial")
    router.clean_up(claim)
    assert not stale.exists() and live.exists()


def test_routing_never_overwrites_a_different_original(folders):
    inbox, output = folders
    work, router = WorkArea(inbox), Router(inbox, output, "processed")
    write_image(output / "processed" / "a.png", np.full((4, 4), 7, np.uint8))
    write_image(inbox / "a.png", np.zeros((4, 4), np.uint8))
    claim = work.claim(inbox / "a.png")
    router.route(claim, ok_record(claim, output))
    kept = output / "processed" / f"a.{claim.id}.png"
    assert kept.exists() and (output / "processed" / "a.png").exists()


def test_failures_go_to_failed_with_their_reason(folders):
    inbox, output = folders
    work, router = WorkArea(inbox), Router(inbox, output, "delete")
    (inbox / "-x y.jpg").write_bytes(b"junk")
    claim = work.claim(inbox / "-x y.jpg")
    router.route(claim, Record(str(inbox / "-x y.jpg"), status="failed", error="not an image"))
    reason = json.loads((output / "failed" / "-x y.jpg.error.json").read_text())
    assert (output / "failed" / "-x y.jpg").read_bytes() == b"junk"
    assert reason["reason"] == "not an image" and reason["claim"] == claim.id and reason["time"]


def test_a_name_another_claim_of_the_batch_takes_but_for_case_gets_its_own(folders):
    """On exFAT, FAT and macOS disks A.png and a.png are one file; a batch chooses targets before either exists."""
    inbox, output = folders
    work, router = WorkArea(inbox), Router(inbox, output, "processed")
    write_image(inbox / "a.png", np.zeros((4, 4), np.uint8))
    claim = work.claim(inbox / "a.png")
    target = router.target(claim, [output / "A.png"])
    assert target == output / f"a.{claim.id}.png" and router.target(claim) == target, "kept for a retry"


def test_long_names_are_routed_twice_over_with_names_that_fit(folders):
    """A second file of a 246-character name needs `STEM.ID.png` and the failed one `NAME.error.json`: both too long."""
    inbox, output = folders
    work, router = WorkArea(inbox), Router(inbox, output, "processed")
    name, failed_ids = "n" * 246 + ".png", []
    for round in range(2):
        write_image(inbox / name, np.full((4, 4), round, np.uint8))
        claim = work.claim(inbox / name)
        target = router.target(claim)
        write_image(target, np.full((4, 4), round, np.uint8))
        router.route(claim, ok_record(claim, output).but(output=str(target)))
        (inbox / name).write_bytes(b"junk %d" % round)
        failed = work.claim(inbox / name)
        router.route(failed, Record(str(inbox / name), status="failed", error="not an image"))
        failed_ids.append(failed.id)
    for folder, count in ((output, 2), (output / "processed", 2), (output / "failed", 4)):
        names = [p.name for p in folder.iterdir() if p.is_file()]
        assert len(names) == count and all(len(os.fsencode(n)) <= 255 for n in names), names
    reasons = [json.loads(p.read_text()) for p in (output / "failed").glob("*.error.json")]
    assert sorted(r["claim"] for r in reasons) == sorted(failed_ids)
    assert sorted(p.read_bytes() for p in (output / "failed").glob("*.png")) == [b"junk 0", b"junk 1"]


@pytest.mark.parametrize(
    "after, where", [("delete", None), ("keep", "in/.denoised-kept/a.png"), ("processed", "out/processed/a.png")]
)
def test_after_choices(folders, tmp_path, after, where):
    inbox, output = folders
    work, router = WorkArea(inbox), Router(inbox, output, after)
    write_image(inbox / "a.png", np.zeros((4, 4), np.uint8))
    claim = work.claim(inbox / "a.png")
    router.route(claim, ok_record(claim, output))
    work.release(claim)
    left = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.png")}
    assert left == ({where} if where else set()) and work.pending() == []


def test_refusals(folders, tmp_path):
    inbox, output = folders
    work = WorkArea(inbox)
    write_image(inbox / "real.png", np.zeros((4, 4), np.uint8))
    (inbox / "out.png").symlink_to("/etc/passwd")
    (inbox / "in.png").symlink_to("real.png")
    os.mkfifo(inbox / "pipe.png")
    (output / "escape").mkdir(parents=True)
    (output / "escape" / "sub").symlink_to(tmp_path)
    write_image(inbox / "escape" / "sub" / "e.png", np.zeros((4, 4), np.uint8))
    reasons = {
        name: refusal(work.claim(inbox / name), inbox, output)
        for name in ("in.png", "real.png", "out.png", "pipe.png", "escape/sub/e.png")
    }
    assert reasons["real.png"] is None and reasons["in.png"] is None
    assert "points outside INBOX" in reasons["out.png"] and "FIFO" in reasons["pipe.png"]
    assert "escapes OUTPUT" in reasons["escape/sub/e.png"]


@pytest.mark.parametrize("accident", ["inbox removed and made again", "inbox moved away", "work area removed"])
def test_a_lost_inbox_is_reported_and_not_retried(folders, tmp_path, accident):
    """Events from a new folder at INBOX's path never reach the old watch: the daemon must notice, not wait."""
    inbox, _ = folders
    work = WorkArea(inbox)
    work.lock()
    try:
        work.check()
        if accident == "inbox removed and made again":
            shutil.rmtree(inbox)
            inbox.mkdir()
        elif accident == "inbox moved away":
            inbox.rename(tmp_path / "elsewhere")
            inbox.mkdir()
        else:
            shutil.rmtree(inbox / ".denoised-work")
        with pytest.raises(FolderLost, match="removed, moved or mounted over"):
            work.check()

        def route():
            raise FileNotFoundError(2, "No such file or directory", str(inbox / ".denoised-work"))

        with pytest.raises(FolderLost):
            retrying(SimpleNamespace(work=work), route)
    finally:
        work.unlock()


def test_an_inbox_that_does_not_answer_is_not_taken_for_lost(folders, monkeypatch):
    """A network share that is slow or gone for a while says ESTALE or EIO: the daemon waits rather than stop."""
    inbox, _ = folders
    work = WorkArea(inbox)
    work.lock()

    def stale(path, *args, **kwargs):
        raise OSError(errno.ESTALE, "Stale file handle", str(path))

    try:
        with monkeypatch.context() as patched:
            patched.setattr(os, "lstat", stale)
            work.check()
    finally:
        work.unlock()


def test_scored_claims_reads_only_the_wanted_records(tmp_path):
    scores = tmp_path / SCORES_FILE
    scores.write_text(
        '{"input": "a.png", "claim": "a", "status": "ok"}\n{"input": "x.png", "status": "ok"}\n'
        'not json "claim"\n{"claim": "c"}\n{"input": "b.png", "claim": "b", "status": "failed"}\n'
    )
    assert scored_claims(scores, ["b", "c"]) == {"b": Record("b.png", status="failed", claim="b")}


# signals, systemd, metrics, status


def test_signals_raise_once_armed_and_keep_a_shutdown_for_later():
    signals = Signals()
    signals.install()
    try:
        signals.arm()
        with pytest.raises(Reload):
            os.kill(os.getpid(), signal.SIGHUP)
            time.sleep(1)
        os.kill(os.getpid(), signal.SIGTERM)  # disarmed now: kept, not raised
        assert signals.pending is not None
    finally:
        signals.restore()


def test_sd_notify_reaches_a_notify_socket(tmp_path):
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sink:
        sink.bind(str(tmp_path / "notify"))
        assert notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "notify")})
        assert sink.recv(100) == b"READY=1"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sink:
        name = f"denoised-test-{os.getpid()}"
        sink.bind("\0" + name)
        assert notify("WATCHDOG=1", {"NOTIFY_SOCKET": "@" + name})
        assert sink.recv(100) == b"WATCHDOG=1"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sink:
        sink.bind(str(tmp_path / "full"))
        started = time.monotonic()
        sent = [notify("WATCHDOG=1", {"NOTIFY_SOCKET": str(tmp_path / "full")}) for _ in range(100)]
        assert sent[0] and not sent[-1] and time.monotonic() - started < 2, "a full socket must not block"
    assert not notify("READY=1", {})
    assert not notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "nobody")})


def test_watchdog_interval_is_half_of_watchdog_sec():
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid() + 1)}) is None
    assert watchdog_interval({}) is None


def test_metrics_endpoint_serves_prometheus_text():
    counters = Counters()
    counters.add(Record("a.png", anomalous=True, width=1000, height=1000))
    counters.add(Record("b.png", status="failed"))
    counters.add_busy(2.0)
    counters.count_queue(lambda: 3)
    server = MetricsServer(counters.registry, "127.0.0.1", 0).start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as response:
            text = response.read().decode()
    finally:
        server.close()
    assert "denoise_processed_total 1.0\n" in text and "denoise_failed_total 1.0\n" in text
    assert "denoise_queue_depth 3.0\n" in text and "denoise_megapixels_per_second 0.5\n" in text


def test_status_reports_counts_last_error_and_throughput(tmp_path):
    rows = [
        {
            "input": f"in/{i}.png",
            "status": "ok",
            "anomalous": i == 1,
            "width": 100,
            "height": 100,
            "error": None,
            "time": f"2026-11-24T07:00:{i:02d}+00:00",
        }
        for i in range(5)
    ]
    rows.append(
        {
            "input": "in/bad.png",
            "status": "failed",
            "anomalous": None,
            "width": None,
            "height": None,
            "error": "not an image",
            "time": "2026-11-24T07:00:10+00:00",
        }
    )
    (tmp_path / SCORES_FILE).write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"torn')
    result = CliRunner().invoke(main, ["status", str(tmp_path), "--json"])
    health = json.loads(result.output)
    assert result.exit_code == 0
    assert (health["ok"], health["failed"], health["anomalous"]) == (5, 1, 1)
    assert health["last_error"]["error"] == "not an image" and health["images_per_minute"] == 30.0
    text = CliRunner().invoke(main, ["status", str(tmp_path)]).output
    assert "ok 5, failed 1, anomalous 1" in text and "in/bad.png: not an image" in text
    assert CliRunner().invoke(main, ["status", str(tmp_path / "in")]).exit_code == 2


def test_unit_file_renders_and_verifies(tmp_path):
    config = tmp_path / "denoised.toml"
    config.write_text(f'inbox = "{tmp_path / "in box"}"\noutput = "{tmp_path / "out"}"\n')
    from denoised.cli import main as denoised_main

    result = CliRunner().invoke(denoised_main, ["install-unit", "-c", str(config), "-u", "scanner"])
    assert result.exit_code == 0, result.output
    unit = result.output
    for line in (
        "Type=notify",
        "User=scanner",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "Restart=on-failure",
        f'ReadWritePaths="{tmp_path / "in box"}" {tmp_path / "out"}',
    ):
        assert line + "\n" in unit
    assert "WatchdogSec=" in unit and f"ExecStart={sys.executable} -m denoised --config {config}" in unit
    assert render_unit(config, Config(tmp_path, tmp_path), "x").count("\n[Service]\n") == 1
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    (tmp_path / "denoised.service").write_text(unit)
    verify = subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / "denoised.service")], capture_output=True, text=True
    )
    assert verify.returncode == 0 and "denoised.service" not in verify.stderr, verify.stderr


def test_a_reload_to_another_output_moves_the_output_lock_and_keeps_the_inbox(folders, tmp_path):
    from denoiser.storage import read_stall

    inbox, output = folders
    first = Config(inbox, output)
    held = prepare(first)
    try:
        moved = tmp_path / "out2"
        config, now = reload(lambda: first._replace(output=moved), first, held)
        assert config.output == moved and now.work is held.work and now.output is not held.output
        assert read_stall(output) is None and read_stall(moved) is not None, "the old OUTPUT is free again"
        kept, same = reload(lambda: first._replace(output=inbox / "inside"), config, now)
        assert kept == config and same is now, "an unusable config keeps the running folders"
    finally:
        now.release()
