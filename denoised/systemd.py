"""systemd integration without libsystemd: sd_notify over NOTIFY_SOCKET, watchdog pings, and the unit file."""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
from importlib import resources
from pathlib import Path
from typing import Callable, Mapping

log = logging.getLogger("denoised")


def notify(message: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Send a state such as READY=1 to systemd; False where there is no NOTIFY_SOCKET or sending fails."""
    address = environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # an abstract socket
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.sendto(message.encode(), socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL, address)
        except OSError as error:  # never block or fail the daemon for systemd's sake
            log.warning("cannot notify systemd (%s): %s", message, error)
            return False
    return True


def reloading_message() -> str:
    """RELOADING=1 with the monotonic timestamp systemd expects beside it."""
    return f"RELOADING=1\nMONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}"


def watchdog_interval(environ: Mapping[str, str] = os.environ) -> float | None:
    """Seconds between keep-alive pings (half of WatchdogSec) when systemd expects them from this process."""
    usec, pid = environ.get("WATCHDOG_USEC", ""), environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid.isdigit() and int(pid) != os.getpid()):
        return None
    return int(usec) / 2e6


class WatchdogPinger(threading.Thread):
    """Sends WATCHDOG=1 every `interval` seconds while `healthy()` holds; systemd restarts the service otherwise."""

    def __init__(self, interval: float, healthy: Callable[[], bool]):
        super().__init__(name="denoise-sd-watchdog", daemon=True)
        self.interval, self.healthy = interval, healthy
        self._stopped = threading.Event()

    def run(self) -> None:
        while not self._stopped.wait(self.interval):
            if self.healthy():
                notify("WATCHDOG=1")

    def stop(self) -> None:
        self._stopped.set()


def unit_template() -> str:
    """The unit file shipped in the package."""
    return resources.files("denoised").joinpath("denoised.service").read_text()


def systemd_quote(value: str) -> str:
    """A word for a unit file line, double-quoted when it has spaces or quotes."""
    if value and not any(c in value for c in ' \t"\'\\'):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_unit(config: Path, inbox: Path, output: Path, user: str, template: str | None = None) -> str:
    """The shipped unit with ExecStart, ReadWritePaths, User and Group filled in for this installation."""
    command = [sys.executable, "-m", "denoised", "--config", str(config.resolve())]
    values = {
        "ExecStart": " ".join(systemd_quote(word) for word in command),
        "ReadWritePaths": f"{systemd_quote(str(inbox.resolve()))} {systemd_quote(str(output.resolve()))}",
        "User": user,
        "Group": user,
    }
    lines = []
    for line in (template or unit_template()).splitlines():
        key = line.partition("=")[0]
        lines.append(f"{key}={values[key]}" if key in values else line)
    return "\n".join(lines) + "\n"
