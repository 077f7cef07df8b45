"""systemd integration without libsystemd: sd_notify over NOTIFY_SOCKET, watchdog pings, and the unit file."""

from __future__ import annotations

import glob
import ipaddress
import logging
import os
import re
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from denoised.config import Config

log = logging.getLogger("denoised")
WARM_UP_SECONDS = 300.0  # start (or reload) time asked of systemd for loading and warming one engine


def notify(message: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Send a state such as READY=1 to systemd; False where there is no NOTIFY_SOCKET or sending fails."""
    address = environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # an abstract socket
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.sendto(message.encode(errors="backslashreplace"), socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL, address)
        except OSError as error:  # never block or fail the daemon for systemd's sake
            log.warning("cannot notify systemd (%s): %s", message, error)
            return False
    return True


def reloading_message() -> str:
    """RELOADING=1 with the monotonic timestamp systemd expects beside it."""
    return f"RELOADING=1\nMONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}"


def watchdog_sec(environ: Mapping[str, str] = os.environ) -> float | None:
    """WatchdogSec in seconds when systemd expects keep-alive pings from this process, else None."""
    usec, pid = environ.get("WATCHDOG_USEC", ""), environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid.isdigit() and int(pid) != os.getpid()):
        return None
    return int(usec) / 1e6


def watchdog_interval(environ: Mapping[str, str] = os.environ) -> float | None:
    """Seconds between keep-alive pings (half of WatchdogSec) when systemd expects them from this process."""
    timeout = watchdog_sec(environ)
    return timeout / 2 if timeout else None


def extend_timeout(seconds: float, environ: Mapping[str, str] = os.environ) -> bool:
    """Ask for `seconds` more before the start-up (or reload) timeout, counted from now (sd_notify EXTEND_TIMEOUT_USEC).

    systemd only lets a timeout pass while such messages keep coming, each before the last one's time is up;
    a watchdog due sooner is pushed back too.
    """
    return notify(f"EXTEND_TIMEOUT_USEC={int(seconds * 1e6)}", environ)


class WatchdogPinger(threading.Thread):
    """Sends WATCHDOG=1 every `interval` seconds while `healthy()` holds; systemd restarts the service otherwise."""

    def __init__(self, interval: float, healthy: Callable[[], bool]):
        super().__init__(name="denoise-sd-watchdog", daemon=True)
        self.interval, self.healthy = interval, healthy
        self._stopped = threading.Event()

    def run(self) -> None:
        while not self._stopped.wait(self.interval):
            self.ping()

    def ping(self) -> bool:
        """Send WATCHDOG=1 if `healthy()` holds now; whether it was sent."""
        return self.healthy() and notify("WATCHDOG=1")

    def stop(self) -> None:
        self._stopped.set()


def unit_template() -> str:
    """The unit file shipped in the package."""
    return resources.files("denoised").joinpath("denoised.service").read_text()


def gpu_dropin(devices: Iterable[str] | None = None) -> str:
    """The shipped GPU drop-in (denoised/gpu.conf) with one DeviceAllow= line per GPU node: `devices`, else the
    /dev/nvidiaN found here, else /dev/nvidia0 as shipped."""
    template = resources.files("denoised").joinpath("gpu.conf").read_text()
    found = sorted(devices if devices is not None else glob.glob("/dev/nvidia[0-9]*"), key=gpu_number)
    if not found:
        return template
    lines = [line for line in template.splitlines() if not re.fullmatch(r"DeviceAllow=/dev/nvidia\d+ rw", line)]
    return "\n".join(lines + [f"DeviceAllow={device} rw" for device in found]) + "\n"


def gpu_number(device: str) -> int:
    """N of /dev/nvidiaN."""
    return int(re.sub(r"\D", "", Path(device).name) or 0)


def systemd_quote(value: str) -> str:
    """A word for a unit file line, double-quoted when it has spaces or quotes."""
    if value and not any(c in value for c in " \t\"'\\"):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_unit(path: Path, config: Config, user: str, template: str | None = None) -> str:
    """The shipped unit filled in for this installation: ExecStart, ReadWritePaths, User, Group and the network.

    With metrics off the service gets no network at all (PrivateNetwork=yes, AF_UNIX only); with metrics on a
    loopback address only localhost may talk to it; on any other address IPAddressAllow must be narrowed by hand.
    """
    command = [sys.executable, "-m", "denoised", "--config", str(path.resolve())]
    values = {
        "ExecStart": " ".join(systemd_quote(word) for word in command),
        "ReadWritePaths": f"{systemd_quote(str(config.inbox.resolve()))} {systemd_quote(str(config.output.resolve()))}",
        "User": user,
        "Group": user,
        **network_settings(config),
    }
    lines = []
    for line in (template or unit_template()).splitlines():
        key = line.partition("=")[0]
        lines.append(f"{key}={values[key]}" if key in values else line)
    return "\n".join(lines) + "\n"


def network_settings(config: Config) -> dict[str, str]:
    """PrivateNetwork, RestrictAddressFamilies and IPAddressAllow for the metrics endpoint the config asks for."""
    if not config.metrics_port:
        return {"PrivateNetwork": "yes", "RestrictAddressFamilies": "AF_UNIX", "IPAddressAllow": "localhost"}
    loopback = ipaddress.ip_address(config.metrics_address).is_loopback
    return {
        "PrivateNetwork": "no",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
        "IPAddressAllow": "localhost" if loopback else "any",
    }
