"""Prometheus metrics, the ``/healthz`` endpoint, and the status page.

The server runs in its own thread (prometheus-client's WSGI app on wsgiref),
so ``/healthz`` can tell that the scheduler's event loop has stopped turning:
the loop bumps a heartbeat, and a stale heartbeat answers 503. Given a
``status`` callable, the same server serves the read-only status page at
``/`` and its JSON at ``/status`` (SPEC section 10). Any other path is 404.
Each connection gets a thread of its own and is dropped after
:data:`IDLE_SECONDS` of silence, so a client that connects and says nothing
(a port scan, a stuck scraper) holds up no liveness probe.
"""

from __future__ import annotations

import contextlib
import json
import socketserver
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily, Metric

from syncd.page import content_security_policy, render_page

__all__ = ["Metrics", "StatusSource", "serve_metrics"]


class Metrics:
    """syncd's series. One instance per process; labels are bounded (device, result)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._declare_reconcile_series(self.registry)
        self._declare_fleet_series(self.registry)
        self.heartbeat = time.monotonic()
        #: Another reason for /healthz to answer 503 (cluster mode: etcd unavailable), or None.
        self.health_problem: Callable[[], str | None] = lambda: None

    def _declare_reconcile_series(self, r: CollectorRegistry) -> None:
        """What the reconciles did: in sync, drift, applies, halts, retries, request times."""
        self.drift = Counter(
            "syncd_drift_events_total",
            "Drift detections (device changed behind syncd)",
            ["device"],
            registry=r,
        )
        self.applies = Counter(
            "syncd_applies_total",
            "PUTs by result (succeeded, failed, unhealthy, reverted)",
            ["result"],
            registry=r,
        )
        self.rollout_halted = Gauge(
            "syncd_rollout_halted", "1 while the rollout is halted, else 0", registry=r
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

    def _declare_fleet_series(self, r: CollectorRegistry) -> None:
        """What the fleet is: desired-state loads, devices, revision; and the per-device gauges."""
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
        self.desired_info = Gauge(
            "syncd_desired_info",
            "The desired revision in force (Git commit or tree: hash), as a label; value 1",
            ["revision"],
            registry=r,
        )
        self.per_device = DeviceGauges()
        r.register(self.per_device)

    def set_revision(self, revision: str) -> None:
        """Make ``revision`` the one ``syncd_desired_info`` reports (the old one goes)."""
        self.desired_info.clear()
        self.desired_info.labels(revision=revision).set(1)

    def set_in_sync(self, device: str, in_sync: bool | None, now: float) -> None:
        """``syncd_device_in_sync`` 1/0 (None: no series), and the last success when in sync."""
        gauges = self.per_device
        if in_sync is None:
            gauges.in_sync.pop(device, None)
            return
        gauges.in_sync[device] = 1.0 if in_sync else 0.0
        if in_sync:
            gauges.last_success[device] = now

    def set_registration(self, device: str, accounts: Sequence[tuple[int, bool | None]]) -> None:
        """One series per account with a known registration (1/0); the others have none."""
        known = {str(n): 1.0 if r else 0.0 for n, r in accounts if r is not None}
        if known:
            self.per_device.registered[device] = known
        else:
            self.per_device.registered.pop(device, None)

    def set_failing(self, device: str, kind: str | None) -> None:
        """``syncd_device_failing{device,kind} 1`` while it fails (no series otherwise)."""
        if kind is None:
            self.per_device.failing.pop(device, None)
        else:
            self.per_device.failing[device] = kind

    def set_desired_invalid(self, devices: Iterable[str]) -> None:
        """The devices whose desired file is invalid now: 1 each, no series for the others."""
        self.per_device.desired_invalid = frozenset(devices)

    def forget(self, devices: Iterable[str]) -> None:
        for name in devices:
            with contextlib.suppress(KeyError):
                self.drift.remove(name)
            self.per_device.forget(name)


class DeviceGauges:
    """The gauges with a series per device, kept as plain dicts and read at each scrape.

    prometheus-client's labelled children cost ~700 bytes each (a lock, a
    value, a dict); four or more per device were ~30 MB at 10,000 devices.
    The scrape runs in the metrics thread: it copies each dict (atomic under
    the GIL) before reading it.
    """

    def __init__(self) -> None:
        self.in_sync: dict[str, float] = {}
        self.last_success: dict[str, float] = {}
        #: Device -> account number -> 1/0.
        self.registered: dict[str, dict[str, float]] = {}
        #: Device -> the kind of its failure.
        self.failing: dict[str, str] = {}
        self.desired_invalid: frozenset[str] = frozenset()

    def forget(self, device: str) -> None:
        for series in (self.in_sync, self.last_success, self.registered, self.failing):
            series.pop(device, None)

    def describe(self) -> Iterator[Metric]:
        return self._families(fill=False)

    def collect(self) -> Iterator[Metric]:
        return self._families(fill=True)

    def _families(self, *, fill: bool) -> Iterator[Metric]:
        def family(name: str, text: str, labels: list[str], rows: Iterable[Any]) -> Metric:
            gauge = GaugeMetricFamily(name, text, labels=labels)
            for *values, value in rows if fill else ():
                gauge.add_metric(values, value)
            return gauge

        yield family(
            "syncd_device_in_sync",
            "1 if the device matched its desired state at the last reconcile, else 0",
            ["device"],
            list(self.in_sync.items()),
        )
        yield family(
            "syncd_last_success_timestamp_seconds",
            "Unix time of the last reconcile that left the device in sync",
            ["device"],
            list(self.last_success.items()),
        )
        yield family(
            "syncd_account_registered",
            "1 if the SIP account was registered at the last read of the device's phone status",
            ["device", "account"],
            [
                (d, n, v)
                for d, accounts in list(self.registered.items())
                for n, v in accounts.items()
            ],
        )
        yield family(
            "syncd_device_desired_invalid",
            "1 while the device's desired file is invalid (its last valid state stays in force)",
            ["device"],
            [(d, 1.0) for d in self.desired_invalid],
        )
        yield family(
            "syncd_device_failing",
            "1 while the device's last reconcile failed, labelled with the kind of failure",
            ["device", "kind"],
            [(d, kind, 1.0) for d, kind in list(self.failing.items())],
        )


#: A connection that sends nothing for this long is closed.
IDLE_SECONDS = 10.0


class _QuietHandler(WSGIRequestHandler):
    timeout = IDLE_SECONDS

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    """wsgiref's server, a thread per connection (as prometheus-client's own has it)."""

    daemon_threads = True


StartResponse = Callable[..., Any]
StatusSource = Callable[[], dict[str, Any]]

_PAGE_HEADERS = [
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
]


def _answer(
    start: StartResponse, status: str, content_type: str, body: bytes, extra: list[Any]
) -> list[bytes]:
    start(status, [("Content-Type", content_type), ("Content-Length", str(len(body))), *extra])
    return [body]


def _headless(app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    """Answer HEAD like GET without the body (wsgiref would send it)."""

    def wrapped(environ: dict[str, Any], start: StartResponse) -> Iterable[bytes]:
        body = app(environ, start)
        if environ.get("REQUEST_METHOD") != "HEAD":
            return body
        if hasattr(body, "close"):
            body.close()
        return []

    return wrapped


def _status_routes(
    status: StatusSource, environ: dict[str, Any], start: StartResponse
) -> list[bytes]:
    """``/`` (the page) and ``/status`` (its JSON); GET and HEAD only."""
    if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
        return _answer(start, "404 Not Found", "text/plain", b"not found\n", [])
    try:
        data = status()
        if environ.get("PATH_INFO") == "/status":
            body = (json.dumps(data) + "\n").encode()
            return _answer(start, "200 OK", "application/json", body, _PAGE_HEADERS)
        query = parse_qs(environ.get("QUERY_STRING", "")).get("q", [""])[0][:200]
        page = render_page(data, datetime.now(UTC), query=query).encode()
    except Exception as exc:  # the server must go on whatever the status source does
        body = f"the daemon could not build its status: {type(exc).__name__}\n".encode()
        return _answer(start, "500 Internal Server Error", "text/plain", body, [])
    policy = content_security_policy() + "; frame-ancestors 'none'"
    headers = [*_PAGE_HEADERS, ("Content-Security-Policy", policy)]
    return _answer(start, "200 OK", "text/html; charset=utf-8", page, headers)


def serve_metrics(
    metrics: Metrics,
    address: str,
    *,
    stale_after: float,
    status: StatusSource | None = None,
) -> tuple[WSGIServer, threading.Thread]:
    """Serve ``/metrics`` and ``/healthz`` on ``HOST:PORT`` in a daemon thread.

    With ``status`` (called in the server's thread: it must be thread-safe and
    return SPEC section 10's status JSON), also ``/`` and ``/status``.
    """
    host, colon, port = address.rpartition(":")
    if not colon or not port.isascii() or not port.isdigit():
        raise ValueError("must be HOST:PORT, for example 127.0.0.1:9477")
    prom = make_wsgi_app(metrics.registry)

    def app(environ: dict[str, Any], start: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO")
        if path == "/healthz":
            age = time.monotonic() - metrics.heartbeat
            problem = f"scheduler stuck for {age:.0f}s" if age > stale_after else None
            problem = problem or metrics.health_problem()
            ok = problem is None
            start("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"ok\n" if ok else f"{problem}\n".encode()]
        if path == "/metrics":
            return prom(environ, start)  # type: ignore[no-any-return]
        if status is not None and path in ("/", "/status"):
            return _status_routes(status, environ, start)
        return _answer(start, "404 Not Found", "text/plain", b"not found\n", [])

    server = make_server(
        host.strip("[]") or "127.0.0.1",
        int(port),
        _headless(app),
        server_class=_ThreadingServer,
        handler_class=_QuietHandler,
    )
    thread = threading.Thread(target=server.serve_forever, name="metrics", daemon=True)
    thread.start()
    return server, thread
