"""Running totals and an optional Prometheus text endpoint on 127.0.0.1."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Callable


class Counters:
    """Totals over the daemon's life: written by the main loop, read by the metrics thread."""

    def __init__(self):
        self._lock = threading.Lock()
        self.processed = self.failed = self.anomalous = 0
        self.megapixels = self.busy_seconds = 0.0

    def add(self, entry: dict) -> None:
        """Count one scores.jsonl record."""
        with self._lock:
            if entry["status"] == "ok":
                self.processed += 1
                self.anomalous += bool(entry.get("anomalous"))
                self.megapixels += entry["width"] * entry["height"] / 1e6
            else:
                self.failed += 1

    def add_busy(self, seconds: float) -> None:
        with self._lock:
            self.busy_seconds += seconds

    def prometheus(self, queue_depth: int) -> str:
        """The totals in Prometheus text format."""
        with self._lock:
            rate = self.megapixels / self.busy_seconds if self.busy_seconds else 0.0
            rows = [
                ("denoise_processed_total", "counter", "Images cleaned.", self.processed),
                ("denoise_failed_total", "counter", "Inputs that failed.", self.failed),
                ("denoise_anomalous_total", "counter", "Cleaned images scored anomalous.", self.anomalous),
                ("denoise_megapixels_total", "counter", "Megapixels cleaned.", round(self.megapixels, 6)),
                ("denoise_queue_depth", "gauge", "Files claimed or seen and waiting.", queue_depth),
                ("denoise_megapixels_per_second", "gauge", "Megapixels per second while busy.", round(rate, 6)),
            ]
        return "".join(f"# HELP {name} {text}\n# TYPE {name} {kind}\n{name} {value}\n"
                       for name, kind, text, value in rows)


class MetricsServer:
    """`GET /metrics` on 127.0.0.1:PORT, served by one daemon thread named denoise-metrics."""

    def __init__(self, port: int, render: Callable[[], str]):
        self.server = HTTPServer(("127.0.0.1", port), _handler(render))
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2},
                                       name="denoise-metrics", daemon=True)

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def start(self) -> "MetricsServer":
        self.thread.start()
        return self

    def close(self) -> None:
        if self.thread.is_alive():
            self.server.shutdown()
            self.thread.join()
        self.server.server_close()


def _handler(render: Callable[[], str]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] not in ("/", "/metrics"):
                self.send_error(404)
                return
            body = render().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            """Requests are not logged."""

    return Handler
