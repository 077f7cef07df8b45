"""The systemd unit's sandbox: it verifies, scores 2.0 or better, and TensorFlow runs the daemon inside it.

systemd is not PID 1 on the machines this runs on, so the last test rebuilds the unit's sandbox by hand
(a mount and network namespace, setpriv and a libseccomp filter taken from the unit's SystemCallFilter=
lines) rather than with `systemd-run`; docs/daemon-sandbox.md says what that leaves out.
"""

from __future__ import annotations

import ctypes.util
import errno
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pillow_heif
import pytest

from denoised.config import Config
from denoised.systemd import render_unit, unit_template
from tests.helpers import write_image

MAX_EXPOSURE = 2.0
NEEDS_ANALYZE = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")


def rendered(tmp_path: Path, **settings) -> Path:
    """The unit install-unit writes for a config with these settings, saved as denoised.service."""
    config = Config(tmp_path / "in", tmp_path / "out", **settings)
    unit = tmp_path / "denoised.service"
    unit.write_text(render_unit(tmp_path / "denoised.toml", config, "denoise"))
    return unit


def exposure(unit: Path) -> float:
    """The overall exposure level `systemd-analyze security --offline=yes` gives the unit."""
    result = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(unit)], capture_output=True, text=True)
    found = re.search(r"Overall exposure level for \S+: ([0-9.]+)", result.stdout)
    assert found, result.stdout + result.stderr
    return float(found.group(1))


@NEEDS_ANALYZE
@pytest.mark.parametrize(
    "settings",
    [{}, {"metrics_port": 9187}, {"metrics_port": 9187, "metrics_address": "::"}],
    ids=["metrics-off", "metrics-loopback", "metrics-any"],
)
def test_rendered_unit_verifies_and_scores_at_most_2(tmp_path, settings):
    unit = rendered(tmp_path, **settings)
    verify = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert verify.returncode == 0 and "denoised.service" not in verify.stderr, verify.stderr
    assert exposure(unit) <= MAX_EXPOSURE
    threshold = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", f"--threshold={MAX_EXPOSURE * 10:.0f}", str(unit)],
        capture_output=True,
        text=True,
    )
    assert threshold.returncode == 0, threshold.stdout[-2000:]


@NEEDS_ANALYZE
def test_shipped_unit_scores_at_most_2(tmp_path):
    unit = tmp_path / "denoised.service"
    unit.write_text(unit_template())
    assert exposure(unit) <= MAX_EXPOSURE


def allowed_syscalls(unit: str) -> list[str]:
    """The system calls the unit's SystemCallFilter= lines allow, groups expanded by systemd-analyze."""
    listing = subprocess.run(["systemd-analyze", "syscall-filter"], capture_output=True, text=True).stdout
    groups, group = {}, None
    for line in listing.splitlines():
        if line.startswith("@"):
            group = groups.setdefault(line.strip(), [])
        elif line.startswith("    ") and not line.strip().startswith("#") and group is not None:
            group.append(line.strip())

    def expand(item: str) -> set[str]:
        return set().union(*map(expand, groups[item])) if item.startswith("@") else {item}

    allowed: set[str] = set()
    for value in re.findall(r"^SystemCallFilter=(.*)$", unit, re.M):
        names = set().union(*map(expand, value.lstrip("~").split()))
        allowed = allowed - names if value.startswith("~") else allowed | names
    return sorted(allowed)


# The unit's file system, by hand: ProtectProc=invisible, read-only /sys (ProtectKernelTunables),
# PrivateDevices, PrivateTmp with the work folder as ReadWritePaths, ProtectSystem=strict; then
# NoNewPrivileges and an empty CapabilityBoundingSet before the seccomp filter. The checkout and its venv
# stay visible (read-only) where they lie under /tmp, as an installation under /opt would.
SANDBOX = r"""
set -eu
work=$1; keep=$2; shift 2
mount -t proc -o hidepid=invisible proc /proc
mount -o remount,bind,ro /sys
mount -t tmpfs -o mode=755 tmpfs /mnt
mkdir /mnt/dev /mnt/work
mount -t tmpfs -o mode=755,nosuid tmpfs /mnt/dev
for node in null zero full random urandom tty; do
    touch /mnt/dev/$node
    mount --bind /dev/$node /mnt/dev/$node
done
mkdir /mnt/dev/shm
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /mnt/dev/shm
mount --move /mnt/dev /dev
mount --bind "$work" /mnt/work
mkdir /mnt/keep
for path in $keep; do mkdir -p "/mnt/keep$path" && mount --bind "$path" "/mnt/keep$path"; done
mount -t tmpfs -o mode=1777 tmpfs /tmp
mkdir -p "$work"
mount --bind /mnt/work "$work"
umount /mnt/work
for path in $keep; do mkdir -p "$path" && mount --bind "/mnt/keep$path" "$path"; done
mount -o remount,bind,ro /
exec setpriv --no-new-privs --bounding-set=-all --inh-caps=-all "$@"
"""


def sandbox_missing() -> str | None:
    """Why the hand-made sandbox cannot be built here, or None."""
    if os.geteuid() != 0:
        return "building the sandbox's namespaces needs root"
    for tool in ("systemd-analyze", "unshare", "setpriv"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if ctypes.util.find_library("seccomp") is None:
        return "libseccomp is not installed"
    return None


def receive_until(sink: socket.socket, prefix: str, daemon: subprocess.Popen, log: Path) -> list[str]:
    """Datagrams from the daemon up to and including the first that starts with `prefix`."""
    messages = []
    while not (messages and messages[-1].startswith(prefix)):
        assert daemon.poll() is None, f"daemon exited {daemon.returncode}:\n{log.read_text()[-3000:]}"
        try:
            messages.append(sink.recv(4096).decode())
        except TimeoutError:
            continue
    return messages


@pytest.mark.skipif(sandbox_missing() is not None, reason=str(sandbox_missing()))
def test_tensorflow_cleans_images_inside_the_units_sandbox(tmp_path, tiny_models):
    work = tmp_path / "work"
    (work / "in").mkdir(parents=True)
    model = shutil.copy(tiny_models["gray"], work / "gray.keras")
    config = Config(work / "in", work / "out", model=str(model), tile=32, settle=0.2)
    (work / "denoised.toml").write_text(
        f'inbox = "{config.inbox}"\noutput = "{config.output}"\nmodel = "{model}"\ntile = 32\nsettle = 0.2\n'
    )
    unit = render_unit(work / "denoised.toml", config, "root")
    assert "PrivateNetwork=yes" in unit.splitlines(), "metrics are off: no network"
    (work / "syscalls").write_text("\n".join(allowed_syscalls(unit)))
    error_number = getattr(errno, re.search(r"^SystemCallErrorNumber=(\w+)$", unit, re.M).group(1))
    seccomp = [
        sys.executable,
        str(Path(__file__).with_name("seccomp_exec.py")),
        str(work / "syscalls"),
        str(error_number),
        "--",
    ]
    keep = " ".join(
        str(path)
        for path in {Path(__file__).resolve().parents[1], Path(sys.prefix).resolve()}
        if path.is_relative_to("/tmp")
    )
    command = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "--net",
        "sh",
        "-c",
        SANDBOX,
        "sandbox",
        str(work),
        keep,
        *seccomp,
        sys.executable,
        "-m",
        "denoised",
        "--config",
        str(work / "denoised.toml"),
    ]
    log = tmp_path / "daemon.log"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sink, open(log, "wb") as sink_log:
        sink.bind(str(work / "notify"))
        sink.settimeout(0.5)
        env = {
            **os.environ,
            "NOTIFY_SOCKET": str(work / "notify"),
            "TF_CPP_MIN_LOG_LEVEL": "3",
            "PYTHONPATH": str(Path(__file__).parents[1]),
        }
        daemon = subprocess.Popen(command, stdout=sink_log, stderr=subprocess.STDOUT, env=env)
        try:
            started = receive_until(sink, "READY=1", daemon, log)
            assert started[0].startswith("EXTEND_TIMEOUT_USEC=")
            pixels = np.random.default_rng(0).integers(0, 256, (48, 48, 3), np.uint8)
            write_image(config.inbox / "a.png", pixels[..., 0])
            pillow_heif.from_bytes(mode="RGB", size=(48, 48), data=pixels.tobytes()).save(config.inbox / "b.heic")
            write_image(config.inbox / "c.avif", pixels)  # libheif, x265 and libavif under the filter too
            scores = config.output / "scores.jsonl"
            while not scores.exists() or scores.read_text().count("\n") < 3:
                assert daemon.poll() is None, log.read_text()[-3000:]
                time.sleep(0.1)
            entries = [json.loads(line) for line in scores.read_text().splitlines()]
            assert [entry["status"] for entry in entries] == ["ok"] * 3, entries
            assert all((config.output / name).exists() for name in ("a.png", "b.heic", "c.avif"))
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(60) == 0, log.read_text()[-3000:]
        finally:
            if daemon.poll() is None:
                daemon.kill()
                daemon.wait()


def gpu_unit(tmp_path: Path, dropin: str) -> Path:
    """The rendered unit with a gpu.conf drop-in beside it, as install-unit --gpu writes them."""
    unit = rendered(tmp_path)
    (tmp_path / "denoised.service.d").mkdir()
    (tmp_path / "denoised.service.d" / "gpu.conf").write_text(dropin)
    return unit


def test_the_gpu_dropin_exposes_the_nvidia_nodes_and_no_other_device():
    from denoised.systemd import gpu_dropin

    lines = gpu_dropin(["/dev/nvidia1", "/dev/nvidia0"]).splitlines()
    assert "PrivateDevices=no" in lines and "DevicePolicy=closed" in lines
    allowed = [line.partition("=")[2] for line in lines if line.startswith("DeviceAllow=")]
    assert allowed == [
        "/dev/nvidiactl rw",
        "/dev/nvidia-uvm rw",
        "/dev/nvidia-uvm-tools rw",
        "char-nvidia-caps r",
        "/dev/nvidia0 rw",
        "/dev/nvidia1 rw",
    ]
    assert "DeviceAllow=/dev/nvidia0 rw" in gpu_dropin([]).splitlines(), "the shipped GPU 0 where none is found"


@NEEDS_ANALYZE
def test_the_unit_with_the_gpu_dropin_verifies(tmp_path):
    from denoised.systemd import gpu_dropin

    unit = gpu_unit(tmp_path, gpu_dropin(["/dev/nvidia0"]))
    verify = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert verify.returncode == 0 and "gpu.conf" not in verify.stderr, verify.stderr
    security = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(unit)], capture_output=True, text=True
    ).stdout
    acl = re.search(r"device ACL with some special devices: (.*?)\s{2}", security)
    assert acl and set(acl.group(1).split()) == {
        "char-rtc:r",
        "char-nvidia-caps:r",
        "/dev/nvidia0:rw",
        "/dev/nvidiactl:rw",
        "/dev/nvidia-uvm:rw",
        "/dev/nvidia-uvm-tools:rw",
    }
    assert exposure(unit) <= MAX_EXPOSURE


@NEEDS_ANALYZE
def test_systemd_analyze_reads_the_dropin_beside_the_unit(tmp_path):
    unit = gpu_unit(tmp_path, "[Service]\nDeviceAllow=/dev/nvidia0 bogus\n")
    verify = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert "gpu.conf" in verify.stderr, "a bad drop-in must be reported, so the good one above was read"


def test_install_unit_gpu_writes_the_dropin_beside_the_unit(tmp_path):
    from click.testing import CliRunner

    from denoised.cli import main

    config = tmp_path / "denoised.toml"
    config.write_text(f'inbox = "{tmp_path / "in"}"\noutput = "{tmp_path / "out"}"\n')
    (tmp_path / "in").mkdir()
    out = tmp_path / "denoised.service"
    result = CliRunner().invoke(main, ["install-unit", "-c", str(config), "--gpu", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "DevicePolicy=closed" in (tmp_path / "denoised.service.d" / "gpu.conf").read_text()
    assert "PrivateDevices=yes" in out.read_text(), "the unit itself stays closed; the drop-in opens the GPUs"
