"""Nothing lost, nothing overwritten: reserved names, batch resume after SIGKILL, a full disk, folder refusals.

Real `denoise batch` and `denoise watch` processes on temporary folders; the full-disk cases mount a small
tmpfs (root only; skipped with the reason elsewhere).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import time
import urllib.request
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from denoiser.cli import main
from tests.test_daemon import DENOISE, Daemon, decoded, free_port, image_bytes, routed

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def lines(output: Path) -> list[dict]:
    """Every line of scores.jsonl parsed (a torn or glued line fails the test here)."""
    text = (output / "scores.jsonl").read_text()
    assert text == "" or text.endswith("\n"), "torn last line"
    return [json.loads(line) for line in text.splitlines()]


def by_name(output: Path) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for entry in lines(output):
        found.setdefault(Path(entry["input"]).name, []).append(entry)
    return found


def temporaries(*folders: Path) -> list[Path]:
    return [path for folder in folders for path in folder.rglob("*.tmp")]


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MiB tmpfs at tmp_path/disk, unmounted afterwards."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=True)


@pytest.fixture
def exfat_disk(tmp_path):
    """A 16 MiB exFAT filesystem (FUSE, on a loop device) at tmp_path/exfat: it refuses names such as `a:b.png`."""
    image, disk = tmp_path / "exfat.img", tmp_path / "exfat"
    disk.mkdir()
    with open(image, "wb") as handle:
        handle.truncate(16 << 20)
    tools = [shutil.which(name) for name in ("mkfs.exfat", "losetup", "mount.exfat-fuse")]
    if not all(tools):
        pytest.skip("exFAT needs mkfs.exfat (exfatprogs), losetup and mount.exfat-fuse (exfat-fuse)")
    loop = subprocess.run(["losetup", "-f", "--show", str(image)], capture_output=True, text=True)
    if loop.returncode != 0:
        pytest.skip(f"no loop device here: {loop.stderr.strip()}")
    device = loop.stdout.strip()
    try:
        subprocess.run(["mkfs.exfat", device], capture_output=True, check=True)
        mounted = subprocess.run(["mount.exfat-fuse", device, str(disk)], capture_output=True, text=True)
        if mounted.returncode != 0:
            pytest.skip(f"cannot mount exFAT here: {mounted.stderr.strip()}")
        yield disk
        subprocess.run(["umount", str(disk)], check=True)
    finally:
        subprocess.run(["losetup", "-d", device], check=True)


def fill(disk: Path, leave: int) -> Path:
    """A file that leaves about `leave` bytes free on `disk`."""
    stats = os.statvfs(disk)
    filler = disk / ".filler"
    with open(filler, "wb") as handle:
        handle.write(b"\0" * max(stats.f_bavail * stats.f_frsize - leave, 0))
    return filler


def noisy_folder(folder: Path, count: int, size: int, seed: int = 0) -> set[str]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (folder / f"img-{i:03d}.png").write_bytes(image_bytes(rng, size, 1 if i % 3 == 0 else 3))
    return {f"img-{i:03d}.png" for i in range(count)}


# batch


def test_batch_reserved_names_fail_with_a_reason_and_overwrite_nothing(tmp_path, tiny_models, rng):
    source, out = tmp_path / "in", tmp_path / "out"
    picture = rng.integers(0, 256, (24, 24, 3), np.uint8)
    for name in ("x.png", "scores.jsonl", "x.png.heatmap.png", "processed/y.png", "failed/z.png", "anomalies/w.png"):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(picture).save(source / name, format="PNG")
    args = ["batch", str(source), str(out), "-r", "--heatmaps", "-m", str(tiny_models["color"]), "-t", "32", "-q"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    found = by_name(out)
    assert {name: len(entries) for name, entries in found.items()} == {
        "x.png": 1,
        "scores.jsonl": 1,
        "x.png.heatmap.png": 1,
        "y.png": 1,
        "z.png": 1,
        "w.png": 1,
    }
    assert found["x.png"][0]["status"] == "ok"
    for name in ("scores.jsonl", "x.png.heatmap.png", "y.png", "z.png", "w.png"):
        assert found[name][0]["status"] == "failed" and "reserved name" in found[name][0]["error"]
    heat = decoded(out / "x.png.heatmap.png")
    assert heat.shape == (24, 24, 3) and not np.array_equal(heat, picture), "the map is x.png's, not an input"
    assert not any((out / folder).exists() for folder in ("processed", "failed", "anomalies"))
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0 and "0 images" in again.output and "6 skipped" in again.output, again.output
    assert len(lines(out)) == 6


def test_batch_killed_at_random_moments_resumes_to_one_record_per_input(tmp_path, tiny_models):
    source, out = tmp_path / "in", tmp_path / "out"
    names = noisy_folder(source, 48, 160)
    (source / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    command = [str(DENOISE), "batch", str(source), str(out), "-m", str(tiny_models["color"]), "-t", "64", "-q"]
    chance = random.Random(7)
    for _ in range(3):
        process = subprocess.Popen(command, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not (out / "scores.jsonl").exists() or (out / "scores.jsonl").stat().st_size == 0:
            assert process.poll() is None and time.monotonic() < deadline, "batch ended before it was killed"
            time.sleep(0.02)
        time.sleep(chance.uniform(0, 0.4))
        process.send_signal(signal.SIGKILL)
        process.wait()
    finished = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)
    assert finished.returncode in (0, 1), finished.stderr  # 1 when broken.png's record came in this run
    counts = Counter(Path(entry["input"]).name for entry in lines(out))
    assert counts == Counter(names | {"broken.png"}), "exactly one record per input"
    for entry in lines(out):
        if entry["status"] == "ok":
            assert decoded(Path(entry["output"])).shape[:2] == (160, 160)
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".png") == sorted(names)
    assert not temporaries(out)


def test_batch_on_a_full_disk_stops_leaving_nothing_partial_and_a_rerun_finishes(small_disk, tmp_path, tiny_models):
    source, out = tmp_path / "in", small_disk / "out"
    names = noisy_folder(source, 12, 200)
    filler = fill(small_disk, 250_000)
    command = ["batch", str(source), str(out), "-m", str(tiny_models["color"]), "-t", "64", "-q"]
    stopped = CliRunner().invoke(main, command)
    assert stopped.exit_code == 3, stopped.output
    assert "no space left on OUTPUT" in stopped.output and "run the same command again" in stopped.output
    assert not temporaries(out)
    done = lines(out)
    assert 0 < len(done) < len(names) and all(entry["status"] == "ok" for entry in done)
    filler.unlink()
    finished = CliRunner().invoke(main, command)
    assert finished.exit_code == 0, finished.output
    assert Counter(Path(entry["input"]).name for entry in lines(out)) == Counter(names)


def test_batch_fails_an_input_whose_name_outputs_filesystem_refuses_and_cleans_the_rest(exfat_disk, tmp_path, rng):
    source, out = tmp_path / "in", exfat_disk / "out"
    for name in ("a:b.png", "ok.png"):
        (source / name).parent.mkdir(exist_ok=True)
        (source / name).write_bytes(image_bytes(rng, 32))
    result = CliRunner().invoke(main, ["batch", str(source), str(out), "-q"])
    assert result.exit_code == 1, result.output
    found = by_name(out)
    assert found["ok.png"][0]["status"] == "ok" and (out / "ok.png").is_file()
    assert "the filesystem refuses this file or folder name" in found["a:b.png"][0]["error"]
    assert not temporaries(out) and not list(out.glob(".denoise-probe*"))


def test_daemon_files_an_input_whose_name_outputs_filesystem_refuses_under_its_claim(exfat_disk, tmp_path, rng):
    """It used to retry that file's copy into failed/ for ever, and no other file was taken."""
    inbox, output = tmp_path / "inbox", exfat_disk / "out"
    inbox.mkdir()
    daemon = Daemon([DENOISE, "watch", inbox, output, "-r", "-s", "0.5"], tmp_path / "daemon.log", ENV)
    try:
        daemon.wait_ready()
        (inbox / "d:x").mkdir()
        for name in ("a:b.png", "d:x/c.png", "ok.png"):
            (inbox / name).write_bytes(image_bytes(rng, 32))
        found = {Path(entry["input"]).name: entry for entry in wait_records(output, 3, daemon)}
    finally:
        daemon.stop()
    assert found["ok.png"]["status"] == "ok" and (output / "processed" / "ok.png").is_file()
    for name in ("a:b.png", "c.png"):
        entry = found[name]
        assert entry["status"] == "failed" and "refuses this file or folder name" in entry["error"]
        kept = output / "failed" / f"{entry['claim']}.png"
        assert kept.is_file() and json.loads(Path(f"{kept}.error.json").read_text())["input"] == entry["input"]


def test_daemon_gives_names_equal_but_for_case_their_own_outputs_on_a_disk_blind_to_case(exfat_disk, tmp_path):
    inbox, output = tmp_path / "inbox", exfat_disk / "out"
    inbox.mkdir()
    daemon = Daemon([DENOISE, "watch", inbox, output, "-L", "3000"], tmp_path / "daemon.log", ENV)
    rng = np.random.default_rng(5)
    try:
        daemon.wait_ready()
        for name in ("A.png", "a.png"):  # renamed in, so both are claimed at once and batched together
            (tmp_path / name).write_bytes(image_bytes(rng, 32))
            os.rename(tmp_path / name, inbox / name)
        found = wait_records(output, 2, daemon)
    finally:
        daemon.stop()
    outputs = {Path(entry["input"]).name: Path(entry["output"]) for entry in found}
    assert outputs["A.png"].name.casefold() != outputs["a.png"].name.casefold()
    assert all(path.is_file() for path in outputs.values()) and not temporaries(output)


# the daemon


@pytest.fixture
def daemon_on_small_disk(small_disk, tmp_path, tiny_models):
    """A `denoise watch -r` process whose OUTPUT is on the small tmpfs, with a metrics port."""
    inbox, output = tmp_path / "inbox", small_disk / "out"
    inbox.mkdir()
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
            "0.5",
            "-L",
            "20",
            "-M",
            port,
        ],
        tmp_path / "daemon.log",
    )
    try:
        daemon.wait_ready()
        yield {"inbox": inbox, "output": output, "daemon": daemon, "port": port, "disk": small_disk}
    finally:
        if daemon.process.poll() is None:
            daemon.process.send_signal(signal.SIGTERM)
            daemon.process.wait(20)


def wait_records(output: Path, count: int, daemon: Daemon, timeout: float = 60) -> list[dict]:
    """At least `count` records, each with its files routed."""
    deadline = time.monotonic() + timeout
    while True:
        found = lines(output) if (output / "scores.jsonl").exists() else []
        if len(found) >= count and all(map(routed, found)):
            return found
        assert daemon.process.poll() is None, f"daemon exited:\n{daemon.text()[-3000:]}"
        assert time.monotonic() < deadline, f"{len(found)} of {count} records:\n{daemon.text()[-3000:]}"
        time.sleep(0.1)


def test_daemon_refuses_a_second_writer_on_its_output_and_an_inbox_inside_output(daemon_on_small_disk, tmp_path):
    output = daemon_on_small_disk["output"]
    other = tmp_path / "other-inbox"
    other.mkdir()
    second = subprocess.run(
        [str(DENOISE), "watch", str(other), str(output)], env=ENV, capture_output=True, text=True, timeout=120
    )
    assert second.returncode == 2 and "already writing to" in second.stderr, second.stderr
    batch = CliRunner().invoke(main, ["batch", str(other), str(output)])
    assert batch.exit_code == 2 and "is writing to" in batch.output
    nested = output / "nested-inbox"
    nested.mkdir()
    refused = subprocess.run(
        [str(DENOISE), "watch", str(nested), str(output)], env=ENV, capture_output=True, text=True, timeout=120
    )
    assert refused.returncode == 2 and "must not be inside OUTPUT" in refused.stderr, refused.stderr
    assert daemon_on_small_disk["daemon"].process.poll() is None


def test_daemon_reserved_names_and_a_second_file_of_the_same_name_overwrite_nothing(daemon_on_small_disk, rng):
    inbox, output, daemon = (daemon_on_small_disk[key] for key in ("inbox", "output", "daemon"))
    first = image_bytes(rng, 40)
    (inbox / "x.png").write_bytes(first)
    wait_records(output, 1, daemon)
    cleaned = (output / "x.png").read_bytes()
    (inbox / "processed").mkdir()
    (inbox / "processed" / "x.png").write_bytes(image_bytes(rng, 40))
    (inbox / "scores.jsonl").write_bytes(image_bytes(rng, 40))
    (inbox / "x.png.heatmap.png").write_bytes(image_bytes(rng, 40))
    second = image_bytes(rng, 40)
    time.sleep(0.5)
    (inbox / "x.png").write_bytes(second)
    found = wait_records(output, 5, daemon)
    by_input = {str(Path(e["input"]).relative_to(inbox)): e for e in found}
    assert set(by_input) == {"x.png", "processed/x.png", "scores.jsonl", "x.png.heatmap.png"}
    for name in ("processed/x.png", "scores.jsonl", "x.png.heatmap.png"):
        assert by_input[name]["status"] == "failed" and "reserved name" in by_input[name]["error"]
        assert (output / "failed" / name).exists() and (output / "failed" / f"{name}.error.json").exists()
    assert (output / "processed" / "x.png").read_bytes() == first, "the preserved original is untouched"
    assert (output / "x.png").read_bytes() == cleaned, "the first output is untouched"
    again = [e for e in found if Path(e["input"]).name == "x.png" and e["status"] == "ok"]
    assert len(again) == 2 and again[1]["output"] == str(output / f"x.{again[1]['claim']}.png")
    processed = sorted(p.name for p in (output / "processed").iterdir())
    assert processed == sorted(["x.png", f"x.{again[1]['claim']}.png"])


def test_daemon_on_a_full_output_waits_shows_the_cause_and_finishes_each_input_once(daemon_on_small_disk):
    inbox, output, daemon, disk = (daemon_on_small_disk[key] for key in ("inbox", "output", "daemon", "disk"))
    filler = fill(disk, 200_000)
    names = noisy_folder(inbox / "arrivals", 40, 96)
    deadline = time.monotonic() + 60
    while True:
        status = CliRunner().invoke(main, ["status", str(output), "--json"])
        stalled = json.loads(status.output)["stalled"] if status.exit_code == 0 else None
        if stalled:
            break
        assert daemon.process.poll() is None and time.monotonic() < deadline, daemon.text()[-3000:]
        time.sleep(0.2)
    assert stalled["cause"] == "no space left on OUTPUT"
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{daemon_on_small_disk['port']}/metrics").read().decode()
    assert "denoise_stalled 1.0" in metrics and 'cause="no space left on OUTPUT"' in metrics
    time.sleep(3)
    assert daemon.process.poll() is None, "the daemon stays up on a full disk"
    filler.unlink()
    found = wait_records(output, len(names), daemon, timeout=120)
    counts = Counter(str(Path(e["input"]).relative_to(inbox)) for e in found)
    assert counts == Counter(f"arrivals/{name}" for name in names), "each input exactly once"
    assert all(entry["status"] == "ok" for entry in found), [e["error"] for e in found if e["error"]]
    assert all(decoded(output / "arrivals" / name).shape[:2] == (96, 96) for name in names)
    assert (
        not temporaries(output)
        and not json.loads(CliRunner().invoke(main, ["status", str(output), "--json"]).output)["stalled"]
    )
    shutil.rmtree(inbox / "arrivals", ignore_errors=True)
