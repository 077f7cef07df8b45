"""Health that means progress: watchdog pings, start-up timeout extensions and the Prometheus metrics, in-process."""

from __future__ import annotations

import queue
import socket
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest
from prometheus_client.parser import text_string_to_metric_families

from denoised import daemon
from denoised.claims import Claim
from denoised.config import Config, StartupError, load_config
from denoised.daemon import next_claim, warm_models
from denoised.metrics import Counters, MetricsServer
from denoised.systemd import WARM_UP_SECONDS, WatchdogPinger, render_unit
from denoiser.records import Record

WINDOW = 60.0  # the watchdog window the tests use; the clock is fake, so nothing waits for it


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def systemd(tmp_path, monkeypatch):
    """A fake systemd: the AF_UNIX datagram socket that NOTIFY_SOCKET names; `received()` drains it."""
    sink = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sink.bind(str(tmp_path / "notify"))
    sink.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))

    def received() -> list[str]:
        messages = []
        while True:
            try:
                messages.append(sink.recv(4096).decode())
            except BlockingIOError:
                return messages

    yield SimpleNamespace(received=received, sink=sink)
    sink.close()


@pytest.fixture
def progress():
    """Counters on a fake clock and a pinger fed by them, as `serve` wires them (without its threads)."""
    clock = FakeClock()
    counters = Counters(clock)
    return SimpleNamespace(
        clock=clock, counters=counters, pinger=WatchdogPinger(WINDOW / 2, lambda: counters.progressing(WINDOW))
    )


def claim(name: str = "a.png") -> Claim:
    return Claim("c1", Path(name), Path("/nowhere"))


def test_pings_while_records_are_counted(systemd, progress):
    for _ in range(3):
        progress.clock.now += WINDOW * 0.9
        progress.counters.add(Record("a.png", anomalous=False, width=10, height=10, seconds=0.1))
        assert progress.pinger.ping()
    progress.clock.now += WINDOW * 0.9
    progress.counters.beat()  # the disk-full back-off beats too
    assert progress.pinger.ping()
    assert systemd.received() == ["WATCHDOG=1"] * 4


def test_no_pings_while_an_inference_hangs_with_work_queued(systemd, progress):
    claims = queue.Queue()
    claims.put(claim())
    claims.put(claim("b.png"))
    assert next_claim(claims, SimpleNamespace(error=None), progress.counters) == claim()
    assert progress.pinger.ping()
    progress.clock.now += WINDOW + 1  # the first file is still in `process`; b.png waits
    assert not progress.pinger.ping() and not progress.pinger.ping()
    assert systemd.received() == ["WATCHDOG=1"]
    progress.counters.add(Record("a.png", status="failed", error="timed out", time="now"))
    assert progress.pinger.ping() and systemd.received() == ["WATCHDOG=1"]


class StopOnSecondLook:
    """An intake whose error shows up at its second check, after next_claim waited once on the empty queue."""

    def __init__(self, pinger: WatchdogPinger, clock: FakeClock):
        self.pinger, self.clock, self.looks, self.pinged_while_waiting = pinger, clock, 0, None
        self.stopped: Exception | None = None

    @property
    def error(self) -> Exception | None:
        self.looks += 1
        if self.looks == 2:
            self.clock.now += 10 * WINDOW  # a long quiet spell: no file for ten watchdog windows
            self.pinged_while_waiting = self.pinger.ping()
            self.stopped = RuntimeError("intake stopped")
        return self.stopped


def test_pings_while_idle_on_an_empty_queue_and_not_once_a_claim_is_stuck(systemd, progress):
    intake = StopOnSecondLook(progress.pinger, progress.clock)
    with pytest.raises(RuntimeError, match="intake stopped"):
        next_claim(queue.Queue(), intake, progress.counters)
    assert intake.pinged_while_waiting and systemd.received() == ["WATCHDOG=1"]
    assert progress.pinger.ping(), "leaving the wait starts a fresh window"
    progress.clock.now += WINDOW + 1
    assert not progress.pinger.ping()


def test_pinger_thread_pings_while_healthy_and_stops(systemd):
    counters = Counters()
    pinger = WatchdogPinger(0.01, lambda: counters.progressing(WINDOW))
    pinger.start()
    try:
        systemd.sink.settimeout(5)
        assert systemd.sink.recv(100) == b"WATCHDOG=1"
    finally:
        pinger.stop()
        pinger.join()
    assert pinger.name.startswith("denoise") and not pinger.is_alive()


class FakeEngine:
    def __init__(self, systemd, log: list):
        self.systemd, self.log = systemd, log

    def warm(self) -> None:
        self.log.append(("warm", self.systemd.received()))


def test_warm_up_asks_systemd_for_more_time_before_each_engine(systemd, monkeypatch, tmp_path):
    log, counters = [], Counters(FakeClock())
    engines = {channels: FakeEngine(systemd, log) for channels in (1, 3)}

    def fake_models(settings, model, scorer):
        return SimpleNamespace(settings=settings, model=model, scorer_path=scorer, for_channels=engines.__getitem__)

    monkeypatch.setattr(daemon, "Models", fake_models)
    models = warm_models(Config(tmp_path, tmp_path / "out"), None, counters)
    extension = f"EXTEND_TIMEOUT_USEC={int(WARM_UP_SECONDS * 1e6)}"
    assert log == [("warm", [extension]), ("warm", [extension])]
    counters._clock.now += WINDOW + 1
    assert not counters.progressing(WINDOW)
    assert warm_models(Config(tmp_path, tmp_path / "out"), models, counters) is models
    assert systemd.received() == [] and len(log) == 2, "warm models are kept without asking again"


def test_stall_is_a_property_and_cleared_with_none():
    counters = Counters()
    assert counters.stall is None
    counters.set_stall("no space left on OUTPUT")
    assert counters.stall == "no space left on OUTPUT"
    counters.set_stall(None)
    assert counters.stall is None


def scrape(counters: Counters, address: str = "127.0.0.1") -> dict[str, list]:
    """GET /metrics from a MetricsServer on the counters; samples by metric family name."""
    server = MetricsServer(counters.registry, address, 0).start()
    host = f"[{address}]" if ":" in address else address
    try:
        with urllib.request.urlopen(f"http://{host}:{server.port}/metrics", timeout=5) as response:
            text = response.read().decode()
    finally:
        server.close()
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def value(samples: list, name: str, **labels) -> float:
    return next(s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def test_every_metric_is_served_with_a_sensible_value():
    import keras

    import denoiser

    counters = Counters()
    counters.add(Record("in/a.png", anomalous=True, width=1000, height=2000, seconds=0.7))
    counters.add(Record("in/b.png", anomalous=False, width=1000, height=1000, seconds=42.0))
    counters.add(Record("in/bad.png", status="failed", error="not an image", time="2026-12-04T08:00:00"))
    counters.add_busy(6.0)
    counters.count_queue(lambda: 5)
    counters.set_stall("no space left on OUTPUT")
    metrics = scrape(counters)
    assert value(metrics["denoise_processed"], "denoise_processed_total") == 2
    assert value(metrics["denoise_failed"], "denoise_failed_total") == 1
    assert value(metrics["denoise_anomalous"], "denoise_anomalous_total") == 1
    assert value(metrics["denoise_megapixels"], "denoise_megapixels_total") == 3.0
    assert value(metrics["denoise_queue_depth"], "denoise_queue_depth") == 5
    assert value(metrics["denoise_megapixels_per_second"], "denoise_megapixels_per_second") == 0.5
    latency = metrics["denoise_image_seconds"]
    assert value(latency, "denoise_image_seconds_count") == 2 and value(latency, "denoise_image_seconds_sum") == 42.7
    assert value(latency, "denoise_image_seconds_bucket", le="1.0") == 1
    assert value(latency, "denoise_image_seconds_bucket", le="60.0") == 2
    build = metrics["denoise_build_info"][0].labels
    assert build["version"] == denoiser.__version__ and build["keras"] == keras.__version__
    assert build["backend"] == keras.backend.backend() and build["python"].count(".") == 2
    error = metrics["denoise_last_error_info"][0].labels
    assert (error["error"], error["input"]) == ("not an image", "in/bad.png")
    assert value(metrics["denoise_last_error_timestamp_seconds"], "denoise_last_error_timestamp_seconds") > 1.7e9
    assert value(metrics["denoise_stalled"], "denoise_stalled") == 1
    assert metrics["denoise_stall_info"][0].labels == {"cause": "no space left on OUTPUT"}
    assert value(metrics["process_resident_memory_bytes"], "process_resident_memory_bytes") > 1e6
    assert value(metrics["process_cpu_seconds"], "process_cpu_seconds_total") > 0

    counters.set_stall(None)
    metrics = scrape(counters)
    assert value(metrics["denoise_stalled"], "denoise_stalled") == 0
    assert metrics["denoise_stall_info"][0].labels == {"cause": ""}


def test_each_daemon_life_has_its_own_registry():
    first, second = Counters(), Counters()
    first.add(Record("x.png", status="failed", error="x"))
    assert value(scrape(second)["denoise_failed"], "denoise_failed_total") == 0


def test_metrics_bind_the_configured_address():
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    assert "denoise_processed" in scrape(Counters(), "::1")


def test_metrics_address_must_be_an_ip_address(tmp_path):
    environ = {"DENOISED_INBOX": "/in", "DENOISED_OUTPUT": "/out"}
    assert load_config(None, environ).metrics_address == "127.0.0.1"
    assert load_config(None, {**environ, "DENOISED_METRICS_ADDRESS": "::"}).metrics_address == "::"
    with pytest.raises(StartupError, match="metrics_address must be an IP address"):
        load_config(None, {**environ, "DENOISED_METRICS_ADDRESS": "localhost"})


@pytest.mark.parametrize(
    "port, address, network",
    [
        (0, "127.0.0.1", ("PrivateNetwork=yes", "RestrictAddressFamilies=AF_UNIX", "IPAddressAllow=localhost")),
        (
            9187,
            "127.0.0.1",
            ("PrivateNetwork=no", "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6", "IPAddressAllow=localhost"),
        ),
        (9187, "0.0.0.0", ("PrivateNetwork=no", "IPAddressAllow=any")),
    ],
)
def test_rendered_unit_opens_the_network_only_for_metrics(tmp_path, port, address, network):
    unit = render_unit(
        tmp_path / "denoised.toml", Config(tmp_path, tmp_path, metrics_port=port, metrics_address=address), "scanner"
    )
    lines = unit.splitlines()
    assert all(line in lines for line in network) and "IPAddressDeny=any" in lines
    assert sum(line.startswith("PrivateNetwork=") for line in lines) == 1
