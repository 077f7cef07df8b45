"""A real daemon process on temporary folders: bursts, slow writers, odd names, bad files, signals, kill -9.

Each daemon start imports TensorFlow, so one `denoise watch` process serves the checks in order (the
last one stops it with SIGTERM), and one `python -m denoised` process is killed and restarted.
"""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from denoiser.cli import main
from tests.helpers import tiff_raw, write_image

DENOISE = Path(sys.executable).with_name("denoise")
READY_LINE = " watching "


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Daemon:
    """A daemon subprocess logging to a file."""

    def __init__(self, args: list, log: Path, env: dict | None = None):
        self.log = log
        with open(log, "ab") as sink:
            self.process = subprocess.Popen(
                [str(a) for a in args],
                stdout=sink,
                stderr=subprocess.STDOUT,
                env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})},
            )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, starts: int = 1, timeout: float = 60) -> None:
        """Wait for the `starts`-th "watching" line in the shared log."""
        deadline = time.monotonic() + timeout
        while self.text().count(READY_LINE) < starts:
            assert self.process.poll() is None, f"daemon exited {self.process.returncode}:\n{self.text()}"
            assert time.monotonic() < deadline, f"daemon not ready:\n{self.text()}"
            time.sleep(0.1)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 10) -> tuple[int, float]:
        """Send a signal; the exit code and the seconds it took."""
        started = time.monotonic()
        self.process.send_signal(signum)
        code = self.process.wait(timeout)
        return code, time.monotonic() - started


def records(output: Path) -> list[dict]:
    path = output / "scores.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def wait_for(output: Path, names: set[str], daemon: Daemon, timeout: float = 30) -> dict[str, dict]:
    """Wait until every named input has a record and its files are routed; the records by input name."""
    deadline = time.monotonic() + timeout
    while True:
        found = {Path(r["input"]).name: r for r in records(output) if Path(r["input"]).name in names}
        if set(found) == names and all(map(routed, found.values())):
            return found
        assert daemon.process.poll() is None, f"daemon exited:\n{daemon.text()}"
        assert time.monotonic() < deadline, f"missing {names - set(found)}:\n{daemon.text()[-3000:]}"
        time.sleep(0.1)


def routed(entry: dict) -> bool:
    """Whether a record's claim folder is gone: the record comes first, then the files are moved."""
    work = next(
        (parent / ".denoised-work" for parent in Path(entry["input"]).parents if (parent / ".denoised-work").is_dir()),
        None,
    )
    return work is None or not entry.get("claim") or not (work / entry["claim"]).exists()


def decoded(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def image_bytes(rng, size: int = 32, channels: int = 3, fmt: str = "PNG") -> bytes:
    from io import BytesIO

    shape = (size, size, channels) if channels > 1 else (size, size)
    buffer = BytesIO()
    Image.fromarray(rng.integers(0, 256, shape, np.uint8)).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def watcher(tmp_path_factory, tiny_models):
    """One `denoise watch -r` process with a fake systemd notify socket and a metrics port."""
    root = tmp_path_factory.mktemp("watch")
    inbox, output = root / "in", root / "out"
    inbox.mkdir()
    sink, messages, done = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM), [], threading.Event()
    sink.bind(str(root / "notify"))
    sink.settimeout(0.1)
    reader = threading.Thread(target=read_datagrams, args=(sink, messages, done), name="notify-reader")
    reader.start()
    port = free_port()
    daemon = Daemon(
        [
            DENOISE,
            "watch",
            inbox,
            output,
            "-r",
            "-m",
            tiny_models["color"],
            "-t",
            "32",
            "-s",
            "1.5",
            "-L",
            "50",
            "-M",
            port,
            "--max-pixels",
            20000,
            "--precision",
            "float32",
        ],
        root / "daemon.log",
        {"NOTIFY_SOCKET": str(root / "notify"), "WATCHDOG_USEC": "400000"},
    )
    try:
        daemon.wait_ready()
        yield {"inbox": inbox, "output": output, "daemon": daemon, "notify": messages, "port": port}
    finally:
        if daemon.process.poll() is None:
            daemon.process.kill()
            daemon.process.wait()
        done.set()
        reader.join()
        sink.close()


def read_datagrams(sink: socket.socket, messages: list, done: threading.Event) -> None:
    """Collect what the daemon sends to its (fake) systemd until `done`."""
    while not done.is_set():
        try:
            messages.append(sink.recv(4096).decode())
        except TimeoutError:
            continue


def test_a_burst_of_files_is_cleaned_once_each(watcher, rng):
    inbox, output = watcher["inbox"], watcher["output"]
    names = set()
    for i in range(24):
        name = f"burst-{i:02d}.{'jpg' if i % 4 == 0 else 'png'}"
        (inbox / name).write_bytes(image_bytes(rng, 32 + i, 1 if i % 3 == 0 else 3, "JPEG" if i % 4 == 0 else "PNG"))
        names.add(name)
    found = wait_for(output, names, watcher["daemon"])
    counts = Counter(Path(r["input"]).name for r in records(output))
    assert all(counts[name] == 1 for name in names)
    for name, entry in found.items():
        assert entry["status"] == "ok" and entry["input"] == str(inbox / name) and entry["claim"]
        assert decoded(output / name).shape[:2] == (entry["height"], entry["width"])
        assert (output / "processed" / name).exists() and not (inbox / name).exists()
        assert entry["anomalous"] == (output / "anomalies" / name).exists()


def test_odd_names_and_subfolders_are_mirrored(watcher, rng):
    inbox, output = watcher["inbox"], watcher["output"]
    names = ["with space.png", "ünïcødé ☃.png", "-leading-dash.png", "--help.png", "sub dir/-x deep.png"]
    for name in names:
        write_image(inbox / name, rng.integers(0, 256, (24, 24, 3), np.uint8))
    wait_for(output, {Path(n).name for n in names}, watcher["daemon"])
    for name in names:
        assert decoded(output / name).shape == (24, 24, 3) and (output / "processed" / name).exists()


def test_a_slow_writer_is_taken_only_when_complete(watcher, rng, tiny_models, tmp_path):
    from denoiser.engine import Settings
    from denoiser.pipeline import Job, Models, process

    inbox, output = watcher["inbox"], watcher["output"]
    data = image_bytes(rng, 64)
    with open(inbox / "slow.png", "wb") as handle:
        for start in range(0, len(data), len(data) // 6 + 1):
            handle.write(data[start : start + len(data) // 6 + 1])
            handle.flush()
            time.sleep(0.5)
        assert "slow.png" not in {Path(r["input"]).name for r in records(output)}, "taken before complete"
    entry = wait_for(output, {"slow.png"}, watcher["daemon"])["slow.png"]
    assert entry["status"] == "ok", entry
    (tmp_path / "full.png").write_bytes(data)
    expected = next(
        process(
            [Job(tmp_path / "full.png", tmp_path / "expected.png")],
            Models(Settings(tile=32, precision="float32"), str(tiny_models["color"])),
        )
    )
    assert expected.ok
    difference = np.abs(decoded(output / "slow.png").astype(int) - decoded(tmp_path / "expected.png").astype(int))
    assert difference.max() <= 1


def test_duplicate_events_and_renamed_temporaries_give_one_record(watcher, rng, tmp_path):
    inbox, output = watcher["inbox"], watcher["output"]
    (inbox / "twice.png").write_bytes(image_bytes(rng))
    for _ in range(3):
        try:
            with open(inbox / "twice.png", "ab"):
                pass  # another close-write event
            os.utime(inbox / "twice.png")
        except FileNotFoundError:
            break  # already claimed
    (inbox / "renamed.png.part").write_bytes(image_bytes(rng))
    time.sleep(2)  # longer than the settle time: a .part file is never taken
    assert not {"renamed.png.part", "renamed.png"} & {Path(r["input"]).name for r in records(output)}
    os.rename(inbox / "renamed.png.part", inbox / "renamed.png")
    (tmp_path / "moved-in.png").write_bytes(image_bytes(rng))
    os.rename(tmp_path / "moved-in.png", inbox / "moved-in.png")
    wait_for(output, {"twice.png", "renamed.png", "moved-in.png"}, watcher["daemon"])
    time.sleep(0.5)
    counts = Counter(Path(r["input"]).name for r in records(output))
    assert counts["twice.png"] == 1 and counts["renamed.png"] == 1 and counts["moved-in.png"] == 1


def test_names_that_are_not_utf8_are_cleaned_or_failed_and_the_daemon_stays_up(watcher, rng):
    inbox, output = watcher["inbox"], watcher["output"]
    good, empty = os.fsdecode(b"na\xefve.png"), os.fsdecode(b"\xff\xfe.png")  # Latin-1 bytes from an old share
    write_image(inbox / good, rng.integers(0, 256, (24, 24, 3), np.uint8))
    (inbox / empty).write_bytes(b"")
    found = wait_for(output, {good, empty}, watcher["daemon"])
    assert found[good]["status"] == "ok" and decoded(output / good).shape == (24, 24, 3)
    assert found[empty]["status"] == "failed" and (output / "failed" / empty).exists()
    assert json.loads((output / "failed" / f"{empty}.error.json").read_bytes().decode("utf-8"))["input"].endswith(empty)
    (inbox / "after-bytes.png").write_bytes(image_bytes(rng))
    assert wait_for(output, {"after-bytes.png"}, watcher["daemon"])["after-bytes.png"]["status"] == "ok"


def test_bad_files_fail_with_a_reason_and_the_daemon_stays_up(watcher, rng):
    inbox, output = watcher["inbox"], watcher["output"]
    good = image_bytes(rng)
    (inbox / "junk.png").write_bytes(b"this is not an image")
    (inbox / "empty.jpg").write_bytes(b"")
    (inbox / "truncated.png").write_bytes(good[: len(good) // 2])
    (inbox / "outside.png").symlink_to("/etc/passwd")
    os.mkfifo(inbox / "pipe.png")
    write_image(inbox / "too big.png", np.zeros((120, 200), np.uint8))
    bad = {"junk.png", "empty.jpg", "truncated.png", "outside.png", "pipe.png", "too big.png"}
    found = wait_for(output, bad, watcher["daemon"])
    assert "exceeds the limit of 20,000" in found["too big.png"]["error"]
    for name in bad:
        assert found[name]["status"] == "failed" and found[name]["error"]
        assert os.path.lexists(output / "failed" / name), name
        reason = json.loads((output / "failed" / f"{name}.error.json").read_text())
        assert reason["reason"] == found[name]["error"] and reason["time"]
    assert not (output / "outside.png").exists() and (output / "failed" / "outside.png").is_symlink()
    (inbox / "after-bad.png").write_bytes(good)
    assert wait_for(output, {"after-bad.png"}, watcher["daemon"])["after-bad.png"]["status"] == "ok"


def test_sighup_restarts_the_watch_keeping_the_model(watcher, rng):
    daemon = watcher["daemon"]
    daemon.process.send_signal(signal.SIGHUP)
    daemon.wait_ready(starts=2)
    (watcher["inbox"] / "after-hup.png").write_bytes(image_bytes(rng))
    assert wait_for(watcher["output"], {"after-hup.png"}, daemon)["after-hup.png"]["status"] == "ok"
    assert "config reloaded" in daemon.text()
    assert any(message.startswith("RELOADING=1") for message in watcher["notify"])


def test_status_and_metrics_agree_with_the_records(watcher):
    entries = records(watcher["output"])
    ok = sum(r["status"] == "ok" for r in entries)
    health = json.loads(CliRunner().invoke(main, ["status", str(watcher["output"]), "-j"]).output)
    assert (health["ok"], health["failed"]) == (ok, len(entries) - ok)
    deadline = time.monotonic() + 5
    while True:  # the counters follow the record by the time it takes to move the original
        with urllib.request.urlopen(f"http://127.0.0.1:{watcher['port']}/metrics", timeout=5) as response:
            metrics = response.read().decode()
        if f"denoise_processed_total {ok}.0\n" in metrics or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert f"denoise_processed_total {ok}.0\n" in metrics and "denoise_queue_depth 0.0\n" in metrics
    assert "denoise_stalled 0.0\n" in metrics and "process_resident_memory_bytes " in metrics


def test_sigterm_exits_0_within_10_s_losing_nothing(watcher, rng):
    inbox, output, daemon = watcher["inbox"], watcher["output"], watcher["daemon"]
    names = {f"late-{i}.png" for i in range(8)}
    for name in names:
        (inbox / name).write_bytes(image_bytes(rng, 128))
    time.sleep(0.3)
    code, seconds = daemon.stop(signal.SIGTERM)
    assert code == 0 and seconds < 10, daemon.text()[-2000:]
    recorded = {Path(r["input"]).name for r in records(output)} & names
    waiting = {p.name for p in inbox.rglob("late-*.png")}
    assert recorded | waiting == names and not recorded & waiting
    time.sleep(0.3)
    messages = watcher["notify"]
    ready = messages.index(next(m for m in messages if m.startswith("READY=1")))
    assert ready and all(m.startswith("EXTEND_TIMEOUT_USEC=") for m in messages[:ready])  # asked while warming
    assert "WATCHDOG=1" in messages[ready:] and "STOPPING=1" in messages


def test_kill_9_at_random_moments_then_restart_gives_each_input_one_outcome(tmp_path, tiny_models):
    rng, chance = np.random.default_rng(7), random.Random(7)
    inbox, output = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    config = tmp_path / "denoised.toml"
    config.write_text(
        f'inbox = "{inbox}"\noutput = "{tmp_path / "not-this"}"\nmodel = "{tiny_models["color"]}"\n'
        "tile = 32\npolling = true\nsettle = 0.3\nbatch-size = 4\n"
    )
    command, env = [sys.executable, "-m", "denoised", "--config", config], {"DENOISED_OUTPUT": str(output)}
    names, corrupt = set(), set()
    log = tmp_path / "daemon.log"
    for start in range(4):
        for i in range(12):
            name = f"r{start}-{i:02d}.png"
            data = image_bytes(rng, 96)
            (inbox / name).write_bytes(data if i % 6 else data[:100])
            names.add(name)
            corrupt |= {name} if i % 6 == 0 else set()
        daemon = Daemon(command, log, env)
        daemon.wait_ready(starts=start + 1)
        if start < 3:
            time.sleep(chance.uniform(0.0, 1.0))
            daemon.process.kill()
            daemon.process.wait()
    found = wait_for(output, names, daemon, timeout=60)
    assert daemon.stop(signal.SIGINT)[0] == 0
    counts = Counter(Path(r["input"]).name for r in records(output))
    assert set(counts) == names and set(counts.values()) == {1}, counts
    for name, entry in found.items():
        if name in corrupt:
            assert entry["status"] == "failed" and (output / "failed" / f"{name}.error.json").exists()
            assert not (output / name).exists() and not (output / "processed" / name).exists()
        else:
            assert entry["status"] == "ok" and decoded(output / name).shape == (96, 96, 3)
            assert (output / "processed" / name).exists() and not (output / "failed" / name).exists()
    assert not list(output.rglob("*.tmp")) and not (tmp_path / "not-this").exists()
    assert [p.name for p in (inbox / ".denoised-work").iterdir()] == [".lock"]
    assert [p.name for p in inbox.iterdir()] == [".denoised-work"]


def test_after_delete_fails_a_multi_frame_file_or_a_camera_raw_and_carries_a_motion_photos_video(
    tmp_path, tiny_models, rng
):
    """Nothing the original holds is lost: what cannot be written back fails whole, a motion photo's video is
    carried into the output."""
    inbox, output = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    args = [DENOISE, "watch", inbox, output, "-a", "delete", "-m", tiny_models["color"], "-t", "32", "-s", "0.5"]
    daemon = Daemon(args, tmp_path / "daemon.log")
    try:
        daemon.wait_ready()
        pages = [Image.fromarray(rng.integers(0, 256, (24, 24, 3), np.uint8)) for _ in range(3)]
        buffer = io.BytesIO()
        pages[0].save(buffer, "TIFF", save_all=True, append_images=pages[1:])
        (inbox / "scan.tif").write_bytes(buffer.getvalue())
        raw = tiff_raw(rng, "NEF", (24, 24))  # Pillow would read its preview as the image
        (inbox / "photo.nef").write_bytes(raw)
        write_image(inbox / "one.png", rng.integers(0, 256, (24, 24, 3), np.uint8))
        still = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), np.uint8)).save(still, "JPEG")
        video = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + bytes(range(256))
        (inbox / "PXL_1.MP.jpg").write_bytes(still.getvalue() + video)
        found = wait_for(output, {"scan.tif", "photo.nef", "one.png", "PXL_1.MP.jpg"}, daemon)
        assert found["scan.tif"]["status"] == "failed" and "3 frames, pages or maps" in found["scan.tif"]["error"]
        assert (output / "failed" / "scan.tif").read_bytes() == buffer.getvalue(), "every page kept"
        assert found["photo.nef"]["status"] == "failed" and "camera raw" in found["photo.nef"]["error"]
        assert (output / "failed" / "photo.nef").read_bytes() == raw and not (output / "photo.nef").exists()
        assert found["one.png"]["status"] == "ok" and not (output / "processed" / "one.png").exists()
        assert found["PXL_1.MP.jpg"]["status"] == "ok" and (output / "PXL_1.MP.jpg").read_bytes().endswith(video)
    finally:
        daemon.stop()


def test_a_removed_output_or_inbox_stops_the_daemon_with_exit_1_and_a_restart_finishes(tmp_path, tiny_models, rng):
    """Neither a record appended to a deleted scores.jsonl nor a watch on a deleted inbox may go on unnoticed."""
    inbox, output = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    args = [DENOISE, "watch", inbox, output, "-m", tiny_models["color"], "-t", "32"]
    daemon = Daemon(args, tmp_path / "daemon.log")
    try:
        daemon.wait_ready()
        write_image(inbox / "one.png", rng.integers(0, 256, (24, 24, 3), np.uint8))
        wait_for(output, {"one.png"}, daemon)
        shutil.rmtree(output)
        write_image(inbox / "two.png", rng.integers(0, 256, (24, 24, 3), np.uint8))
        assert daemon.process.wait(30) == 1
        assert f"stopped: {output / 'scores.jsonl'} was removed while records were written" in daemon.text()
        daemon = Daemon(args, tmp_path / "daemon.log")
        daemon.wait_ready(starts=2)
        assert [Path(r["input"]).name for r in wait_for(output, {"two.png"}, daemon).values()] == ["two.png"]
        assert len(records(output)) == 1 and (output / "processed" / "two.png").exists()
        shutil.rmtree(inbox)
        inbox.mkdir()
        assert daemon.process.wait(30) == 1
        assert f"stopped: INBOX {inbox} or its .denoised-work was removed" in daemon.text()
    finally:
        if daemon.process.poll() is None:
            daemon.stop()


def test_unwritable_output_or_bad_settings_exit_2_with_a_message(tmp_path):
    inbox = tmp_path / "in"
    inbox.mkdir()
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    watch = subprocess.run([DENOISE, "watch", inbox, blocker / "out"], capture_output=True, text=True, timeout=60)
    assert watch.returncode == 2 and "not writable" in watch.stderr
    env = {**os.environ, "DENOISED_INBOX": str(inbox), "DENOISED_OUTPUT": str(tmp_path / "out")}
    bad = subprocess.run(
        [sys.executable, "-m", "denoised"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, "DENOISED_BATCH_SIZE": "0"},
    )
    assert bad.returncode == 2 and "batch_size must be at least 1" in bad.stderr
