"""The daemon's totals, progress and stall state, kept in a Prometheus registry of its own and served over HTTP."""

from __future__ import annotations

import platform
import socket
import threading
import time
from collections.abc import Callable
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, ProcessCollector, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from denoiser.records import Record

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class Counters:
    """Totals and progress over one daemon's life: written by the main loop, read by the metrics and watchdog threads.

    Each instance has its own CollectorRegistry, so two daemons in one process (tests, reloads) never clash.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.registry = CollectorRegistry()
        self._lock = threading.Lock()
        self._megapixels = self._busy_seconds = 0.0
        self._clock = clock
        self._last_beat = clock()
        self._idle = False
        self._stall: str | None = None
        self._queue_depth: Callable[[], int] = lambda: 0
        self._define_metrics()

    def _define_metrics(self) -> None:
        """Register the daemon's metrics and the process collector on this registry."""
        registry = self.registry
        self.processed = Counter("denoise_processed", "Images cleaned.", registry=registry)
        self.failed = Counter("denoise_failed", "Inputs that failed.", registry=registry)
        self.anomalous = Counter("denoise_anomalous", "Cleaned images scored anomalous.", registry=registry)
        self.megapixels = Counter("denoise_megapixels", "Megapixels cleaned.", registry=registry)
        self.latency = Histogram(
            "denoise_image_seconds",
            "Seconds from reading a cleaned image to its record.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        Gauge("denoise_queue_depth", "Files claimed or seen and waiting.", registry=registry).set_function(
            lambda: self._queue_depth()
        )
        Gauge("denoise_megapixels_per_second", "Megapixels per second while busy.", registry=registry).set_function(
            self.rate
        )
        self.stalled = Gauge(
            "denoise_stalled", "1 while the pipeline is held up (see denoise_stall_info).", registry=registry
        )
        self.stall_info = Info("denoise_stall", "Why the pipeline is held up; empty when it is not.", registry=registry)
        self.last_error = Info(
            "denoise_last_error", "The last input that failed: its error and when.", registry=registry
        )
        self.last_error_time = Gauge(
            "denoise_last_error_timestamp_seconds", "When the last input failed.", registry=registry
        )
        Info("denoise_build", "Versions of the daemon and what it runs on.", registry=registry).info(build_info())
        ProcessCollector(registry=registry)
        self.stall_info.info({"cause": ""})
        self.last_error.info({"error": "", "input": "", "time": ""})

    def add(self, entry: Record) -> None:
        """Count one scores.jsonl record; a record counted is progress."""
        if entry.ok:
            self.processed.inc()
            self.anomalous.inc(bool(entry.anomalous))
            self.megapixels.inc(entry.megapixels)
            if entry.seconds is not None:
                self.latency.observe(entry.seconds)
            with self._lock:
                self._megapixels += entry.megapixels
        else:
            self.failed.inc()
            self.last_error.info({"error": str(entry.error), "input": entry.input, "time": str(entry.time)})
            self.last_error_time.set(time.time())
        self.beat()

    def add_busy(self, seconds: float) -> None:
        """Time spent processing, for the megapixels-per-second rate."""
        with self._lock:
            self._busy_seconds += seconds

    def rate(self) -> float:
        """Megapixels per second while busy."""
        with self._lock:
            return self._megapixels / self._busy_seconds if self._busy_seconds else 0.0

    def beat(self) -> None:
        """Mark progress now: the watchdog keeps being fed for a while after each beat."""
        with self._lock:
            self._last_beat = self._clock()

    def set_idle(self, idle: bool) -> None:
        """The main loop waits on an empty queue (True) or has taken a claim (False)."""
        with self._lock:
            self._idle = idle
            self._last_beat = self._clock()

    def progressing(self, within: float) -> bool:
        """True while the main loop is idle on an empty queue or beat less than `within` seconds ago."""
        with self._lock:
            return self._idle or self._clock() - self._last_beat <= within

    @property
    def stall(self) -> str | None:
        """Why the pipeline is held up (such as "no space left on OUTPUT"), or None."""
        with self._lock:
            return self._stall

    def set_stall(self, cause: str | None) -> None:
        """Set or (with None) clear the stall cause shown by denoise_stalled and denoise_stall_info."""
        with self._lock:
            self._stall = cause
        self.stalled.set(cause is not None)
        self.stall_info.info({"cause": cause or ""})

    def count_queue(self, depth: Callable[[], int]) -> None:
        """Where denoise_queue_depth reads the number of files waiting."""
        self._queue_depth = depth


def build_info() -> dict[str, str]:
    """The daemon's, Python's and Keras's versions and the Keras backend."""
    import keras

    from denoiser import __version__

    return {
        "version": __version__,
        "python": platform.python_version(),
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
    }


class MetricsServer:
    """`GET /metrics` from a registry on ADDRESS:PORT, served by one daemon thread named denoise-metrics."""

    def __init__(self, registry: CollectorRegistry, address: str, port: int):
        family = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM)[0][0]
        server_class = type("MetricsWSGIServer", (ThreadingWSGIServer,), {"address_family": family})
        self.server = make_server(address, port, make_wsgi_app(registry), server_class, QuietHandler)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.2}, name="denoise-metrics", daemon=True
        )

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def start(self) -> MetricsServer:
        self.thread.start()
        return self

    def close(self) -> None:
        """Stop serving and join the thread."""
        if self.thread.is_alive():
            self.server.shutdown()
            self.thread.join()
        self.server.server_close()


class QuietHandler(WSGIRequestHandler):
    """Requests are not logged."""

    def log_message(self, *args) -> None:
        """Nothing: a scrape every few seconds would flood the journal."""
