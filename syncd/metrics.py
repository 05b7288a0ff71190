"""Prometheus metrics and the ``/healthz`` endpoint.

The server runs in its own thread (prometheus-client's WSGI app on wsgiref),
so ``/healthz`` can tell that the scheduler's event loop has stopped turning:
the loop bumps a heartbeat, and a stale heartbeat answers 503.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app

__all__ = ["Metrics", "serve_metrics"]


class Metrics:
    """syncd's series. One instance per process; labels are bounded (device, result)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.in_sync = Gauge(
            "syncd_device_in_sync",
            "1 if the device matched its desired state at the last reconcile, else 0",
            ["device"],
            registry=r,
        )
        self.drift = Counter(
            "syncd_drift_events_total",
            "Drift detections (device changed behind syncd)",
            ["device"],
            registry=r,
        )
        self.applies = Counter(
            "syncd_applies_total", "PUTs by result (succeeded, failed)", ["result"], registry=r
        )
        self.retries = Counter(
            "syncd_retries_total", "Requests retried after a transient failure", registry=r
        )
        self.request_seconds = Histogram(
            "syncd_request_duration_seconds",
            "Device API request duration by operation",
            ["operation"],
            registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.last_success = Gauge(
            "syncd_last_success_timestamp_seconds",
            "Unix time of the last reconcile that left the device in sync",
            ["device"],
            registry=r,
        )
        self.load_errors = Counter(
            "syncd_desired_load_errors_total",
            "Desired-state files found invalid on a load",
            registry=r,
        )
        self.invalid_files = Gauge(
            "syncd_desired_invalid_files",
            "Desired-state files invalid at the last load",
            registry=r,
        )
        self.devices = Gauge("syncd_devices", "Devices under management", registry=r)
        self.heartbeat = time.monotonic()

    def forget(self, devices: Iterable[str]) -> None:
        for name in devices:
            for series in (self.in_sync, self.drift, self.last_success):
                with contextlib.suppress(KeyError):
                    series.remove(name)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve_metrics(
    metrics: Metrics, address: str, *, stale_after: float
) -> tuple[WSGIServer, threading.Thread]:
    """Serve ``/metrics`` and ``/healthz`` on ``HOST:PORT`` in a daemon thread."""
    host, _, port = address.rpartition(":")
    prom = make_wsgi_app(metrics.registry)

    def app(environ: dict[str, Any], start: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/healthz":
            age = time.monotonic() - metrics.heartbeat
            ok = age <= stale_after
            start("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"ok\n" if ok else f"scheduler stuck for {age:.0f}s\n".encode()]
        return prom(environ, start)  # type: ignore[no-any-return]

    server = make_server(
        host.strip("[]") or "127.0.0.1", int(port), app, handler_class=_QuietHandler
    )
    thread = threading.Thread(target=server.serve_forever, name="metrics", daemon=True)
    thread.start()
    return server, thread
