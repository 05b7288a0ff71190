"""Performance benchmark of syncd over an emulated fleet (``syncd simulate`` in its own process).

Run from the repository root::

    .venv/bin/python -m tests.benchmarks.fleet --devices 1000 [--scaling] [--json PATH]

It prints one table: the in-process reconcile pass (in sync, 10 % drifted) next
to a bare httpx loop doing the same GETs, whole ``syncd apply`` processes, the
daemon's edit-to-device latency, memory and idle CPU, ``syncd validate`` over
10,000 files, HTTPS first vs second pass, and (``--scaling``) the in-sync pass
at 100, 1,000 and 5,000 devices. Each figure with a target says ok or MISSED.
Wall-clock figures are the best of ``--repeat`` runs (median in the detail).
Every step has a time limit; a step that hits it is shown as "> LIMIT" and the
rest of its group is skipped. ``tests/benchmarks/test_smoke.py`` runs this with
tiny sizes and asserts that every figure is printed, never how fast anything is.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import httpx

from syncd.client import ClientPool
from syncd.desired import Loader, resolve_desired
from syncd.logs import configure_logging
from syncd.reconcile import Reconciler, reconcile_many
from syncd.state import FileStateStore
from tests.benchmarks.harness import (
    SYNCD,
    BenchError,
    DaemonProcess,
    Emulator,
    StepTimeout,
    cpu_seconds,
    desired_account,
    device_file,
    device_path,
    die_with_parent,
    machine,
    rss_mb,
    write_atomic,
    write_tree,
)
from tests.bytecode import compile_syncd

__all__ = ["FIGURE_KEYS", "TARGETS", "main"]

#: Backstop full reload period of the daemon (syncd.ticking.BACKSTOP_RELOAD).
BACKSTOP_SECONDS = 30.0

#: What a target figure is and its unit, for its row when it could not be measured.
TARGET_LABELS = {
    "pass_ratio": ("ratio in-sync pass / baseline (syncd's overhead)", "x"),
    "apply_in_sync_s": ("syncd apply process, N in-sync devices (HTTP)", "s"),
    "apply_all_put_s": ("syncd apply process, N devices all needing a PUT", "s"),
    "edit_p50_ms": ("edit-to-device latency p50", "ms"),
    "edit_p95_ms": ("edit-to-device latency p95", "ms"),
    "daemon_rss_mb": ("daemon RSS with N devices, converged", "MiB"),
    "daemon_idle_cpu_pct": ("daemon CPU while idle (% of one core)", "%"),
    "validate_s": ("syncd validate process, 10,000 device files", "s"),
}

#: The issue's targets, by figure key (all are upper bounds).
TARGETS = {
    "pass_ratio": 1.3,
    "apply_in_sync_s": 2.0,
    "apply_all_put_s": 3.5,
    "edit_p50_ms": 250.0,
    "edit_p95_ms": 500.0,
    "daemon_rss_mb": 100.0,
    "daemon_idle_cpu_pct": 2.0,
    "validate_s": 5.0,
}

#: Every figure a complete run reports (``--scaling`` adds ``scaling_<N>_*``).
FIGURE_KEYS = (
    "baseline_s",
    "baseline_keepalive_s",
    "pass_first_s",
    "pass_in_sync_s",
    "pass_ratio",
    "pass_ratio_keepalive",
    "emulator_cpu_baseline_pct",
    "emulator_cpu_pass_pct",
    "client_cpu_baseline_pct",
    "client_cpu_pass_pct",
    "pass_drift_s",
    "apply_in_sync_s",
    "apply_all_put_s",
    "daemon_converge_s",
    "daemon_rss_mb",
    "daemon_idle_cpu_pct",
    "edit_p50_ms",
    "edit_p95_ms",
    "edit_max_ms",
    "daemon_rss_after_edits_mb",
    "reload_no_change_ms",
    "validate_s",
    "tls_first_s",
    "tls_second_s",
)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ report


@dataclass
class Figure:
    key: str
    section: str
    label: str
    value: float | None
    unit: str
    target: float | None = None
    detail: str = ""
    samples: list[float] = field(default_factory=list)
    #: The step hit its time limit: the true value is above ``value``.
    timed_out: bool = False

    @property
    def ok(self) -> bool | None:
        if self.target is None or self.value is None:
            return None
        return self.value <= self.target and not self.timed_out


_FORMATS = {"s": "{:.3f} s", "ms": "{:.0f} ms", "%": "{:.1f} %", "MiB": "{:.1f} MiB", "x": "{:.2f}"}


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "ms" and value < 10:
        return f"{value:.2f} ms"
    return _FORMATS.get(unit, "{:g}").format(value)


class Report:
    def __init__(self, params: dict[str, Any]) -> None:
        self.machine = machine()
        self.params = params
        self.figures: dict[str, Figure] = {}
        self.errors: list[str] = []
        self.section = ""

    def add(
        self,
        key: str,
        label: str,
        value: float | None,
        unit: str,
        *,
        detail: str = "",
        samples: Sequence[float] = (),
        timed_out: bool = False,
    ) -> None:
        figure = Figure(
            key, self.section, label, value, unit, TARGETS.get(key), detail, list(samples)
        )
        figure.timed_out = timed_out
        self.figures[key] = figure
        verdict = {None: "", True: " ok", False: " MISSED"}[figure.ok]
        more = " (time limit)" if timed_out else ""
        log(f"{label}: {_fmt(value, unit)}{more}{verdict}")

    def add_best(
        self, key: str, label: str, samples: Sequence[float], unit: str = "s", *, detail: str = ""
    ) -> float:
        best = min(samples)
        runs = ", ".join(_fmt(s, unit) for s in samples)
        median = _fmt(statistics.median(samples), unit)
        more = f"median {median}; runs {runs}" if len(samples) > 1 else ""
        detail = "; ".join(x for x in (detail, more) if x)
        self.add(key, label, best, unit, detail=detail, samples=samples)
        return best

    def add_timeout(self, key: str, label: str, exc: StepTimeout, unit: str = "s") -> None:
        value = exc.seconds * (1000 if unit == "ms" else 1)
        self.add(key, label, value, unit, detail=str(exc), timed_out=True)

    @contextlib.contextmanager
    def phase(self, section: str) -> Iterator[None]:
        """A group of figures; a failure is recorded and the run goes on with the next group."""
        self.section = section
        log(f"== {section}")
        try:
            yield
        except Exception as exc:
            message = f"{section}: {type(exc).__name__}: {exc}"
            self.errors.append(message)
            log(f"FAILED {message}")
            if not isinstance(exc, BenchError):
                traceback.print_exc(file=sys.stderr)

    def table(self) -> str:
        m = self.machine
        p = self.params
        width = 64
        lines = [
            f"syncd fleet benchmark: {p['devices']} devices, concurrency {p['concurrency']}, "
            f"best of {p['repeat']} (median and runs in the detail lines)",
            f"machine: nproc {m['nproc']}, CPU {m['cpu_model']}, Python {m['python']}, "
            f"kernel {m['kernel']}, load average at start "
            + " ".join(str(x) for x in m["loadavg_at_start"]),
            "",
            f"{'figure':<{width + 2}} {'value':>12} {'target':>12}  result",
            "-" * (width + 38),
        ]
        section = None
        for fig in self.figures.values():
            if fig.section != section:
                section = fig.section
                lines.append(section)
            target = "" if fig.target is None else "<= " + _fmt(fig.target, fig.unit)
            value = ("> " if fig.timed_out else "") + _fmt(fig.value, fig.unit)
            result = {None: "", True: "ok", False: "MISSED"}[fig.ok]
            if fig.value is None:
                result = "NOT MEASURED" if fig.target is not None else "FAILED"
            lines.append(f"  {fig.label:<{width}} {value:>12} {target:>12}  {result}")
            if fig.detail:
                lines.append(f"      {fig.detail}")
        missed = [f.label for f in self.figures.values() if f.target is not None and not f.ok]
        lines.append("-" * (width + 38))
        lines.append(
            f"targets missed: {len(missed)}" + (": " + "; ".join(missed) if missed else "")
        )
        for error in self.errors:
            lines.append(f"ERROR {error}")
        return "\n".join(lines)

    def finish(self, complete: bool) -> None:
        """Targets never measured still get a row (so a failure cannot hide a target)."""
        if not complete:
            self.errors.append("interrupted")
        self.section = "Not measured (see the errors)"
        for key in FIGURE_KEYS:
            if key not in self.figures and key in TARGETS:
                label, unit = TARGET_LABELS[key]
                label = label.replace(" N ", f" {self.params['devices']} ")
                self.figures[key] = Figure(key, self.section, label, None, unit, TARGETS[key])

    def to_json(self) -> dict[str, Any]:
        figures = {key: {**asdict(fig), "ok": fig.ok} for key, fig in self.figures.items()}
        return {
            "machine": self.machine,
            "params": self.params,
            "figures": figures,
            "errors": self.errors,
        }


# -------------------------------------------------------- in-process engine


class Engine:
    """syncd's own engine in this process: Loader, resolve_desired, Reconciler, reconcile_many.

    The pool is a ``ClientPool`` built as ``syncd apply`` builds it; it lives as
    long as the engine, so later passes reuse connections as the daemon does.
    """

    def __init__(
        self, desired_dir: Path, state_dir: Path, *, concurrency: int, limit: float
    ) -> None:
        desired = Loader(desired_dir).load()
        if desired.errors:
            raise BenchError(f"generated desired tree is invalid: {desired.errors[0]}")
        fleet = resolve_desired(desired, environ=os.environ)
        if fleet.broken:
            raise BenchError(f"devices unusable: {next(iter(fleet.broken.values()))}")
        self.specs = list(fleet.specs.values())
        self.concurrency = concurrency
        self.limit = limit
        self.pool = ClientPool(
            timeout=10.0, keepalive_expiry=300.0
        )  # the engine alone, without handshakes
        self.reconciler = Reconciler(pool=self.pool, state=FileStateStore.open(state_dir))

    async def run(self, **expect: int) -> float:
        """One pass over every device; raise unless the outcomes are exactly ``expect``."""
        started = time.perf_counter()
        try:
            outcomes = await asyncio.wait_for(
                reconcile_many(
                    self.reconciler, self.specs, apply=True, concurrency=self.concurrency
                ),
                self.limit,
            )
        except TimeoutError:
            raise StepTimeout(f"a pass over {len(self.specs)} devices", self.limit) from None
        seconds = time.perf_counter() - started
        got = Counter(o.status for o in outcomes)
        want = Counter({k: v for k, v in expect.items() if v})
        if got != want:
            errors = [f"{o.device}: {o.failure.message}" for o in outcomes if o.failure]
            raise BenchError(f"pass expected {dict(want)}, got {dict(got)}; {errors[:3]}")
        return seconds

    async def aclose(self) -> None:
        await self.pool.aclose()


async def _get_all(
    clients: Callable[[int], httpx.AsyncClient], urls: Sequence[str], c: int
) -> None:
    pending = iter(enumerate(urls))

    async def worker() -> None:
        for i, url in pending:
            response = await clients(i).get(url)
            if response.status_code != 200 or response.json().get("success") is not True:
                raise BenchError(f"baseline GET {url}: HTTP {response.status_code}")

    await asyncio.gather(*(worker() for _ in range(min(c, len(urls)))))


class Baseline:
    """A bare httpx loop: GET /api/phone/config on every device, ``concurrency`` at once.

    ``keepalive=False``: one plain ``httpx.AsyncClient`` with
    ``max_connections=concurrency`` (at N >> concurrency, a new connection per
    GET). ``keepalive=True``: one small client per device sharing one SSL
    context, so every device's connection is kept between passes, as syncd's
    pool means to.
    """

    def __init__(self, urls: Sequence[str], concurrency: int, *, keepalive: bool) -> None:
        self.urls = [u + "/api/phone/config" for u in urls]
        self.concurrency = concurrency
        self.limit = 60.0 + 0.05 * len(urls)
        if keepalive:
            ctx = ssl.create_default_context()
            one = httpx.Limits(max_connections=1, max_keepalive_connections=1, keepalive_expiry=300)
            self.clients = [
                httpx.AsyncClient(timeout=10.0, limits=one, verify=ctx, trust_env=False)
                for _ in urls
            ]
        else:
            limits = httpx.Limits(max_connections=concurrency)
            self.clients = [httpx.AsyncClient(timeout=10.0, limits=limits, trust_env=False)]

    async def run(self) -> float:
        clients = self.clients
        pick = (lambda i: clients[i]) if len(clients) > 1 else (lambda i: clients[0])
        started = time.perf_counter()
        try:
            await asyncio.wait_for(_get_all(pick, self.urls, self.concurrency), self.limit)
        except TimeoutError:
            raise StepTimeout("the baseline", self.limit) from None
        return time.perf_counter() - started

    async def aclose(self) -> None:
        for client in self.clients:
            await client.aclose()


@dataclass
class Sample:
    seconds: float
    emulator_cpu_pct: float
    client_cpu_pct: float


async def measure(run: Callable[[], Awaitable[float]], emulator_pid: int) -> Sample:
    """Run once; the run's own time, and the CPU % of the emulator and of this process."""
    emu0, self0, wall0 = cpu_seconds(emulator_pid), time.process_time(), time.perf_counter()
    seconds = await run()
    wall = time.perf_counter() - wall0
    emu = cpu_seconds(emulator_pid) - emu0
    own = time.process_time() - self0
    return Sample(seconds, 100 * emu / wall, 100 * own / wall)


async def admin_all(
    urls: Sequence[str],
    method: str,
    path: str,
    body: Callable[[int], Any] | None = None,
    *,
    ca_file: Path | None = None,
    concurrency: int = 32,
) -> None:
    """An admin request (``/_emulator/...``) to each device, ``body(number)`` as JSON; untimed."""
    pending = iter(enumerate(urls, start=1))
    verify = ssl.create_default_context(cafile=ca_file) if ca_file else True
    async with httpx.AsyncClient(timeout=30.0, trust_env=False, verify=verify) as client:

        async def worker() -> None:
            for number, url in pending:
                payload = body(number) if body is not None else None
                response = await client.request(method, url + path, json=payload)
                if response.status_code != 200:
                    raise BenchError(f"{method} {url}{path}: HTTP {response.status_code}")

        await asyncio.gather(*(worker() for _ in range(min(concurrency, len(urls)))))


async def converge(urls: Sequence[str], ca_file: Path | None = None) -> None:
    """Put every device in its desired state through the emulator, without syncd."""
    await admin_all(
        urls,
        "PUT",
        "/_emulator/state",
        lambda number: {"accounts": [desired_account(number)]},
        ca_file=ca_file,
    )


# ------------------------------------------------------------------ phases


@dataclass
class Params:
    devices: int
    concurrency: int
    repeat: int
    edits: int
    idle_window: float
    validate_files: int
    scaling: bool
    scaling_sizes: list[int]
    workdir: Path

    def pass_limit(self, n: int) -> float:
        """Time limit of one in-process pass (a healthy one is well under a second per 500)."""
        return 30.0 + 0.03 * n

    def process_limit(self, n: int) -> float:
        """Time limit of a ``syncd apply`` process or of the daemon's convergence."""
        return 60.0 + 0.03 * n


async def engine_phase(report: Report, p: Params, emu: Emulator, tree: Path, state: Path) -> None:
    n, c = p.devices, p.concurrency
    await converge(emu.urls)
    baseline = Baseline(emu.urls, c, keepalive=False)
    keepalive = Baseline(emu.urls, c, keepalive=True)
    engine = Engine(tree, state, concurrency=c, limit=p.pass_limit(n))
    try:
        first = await engine.run(in_sync=n)
        report.add(
            "pass_first_s",
            f"first in-sync pass, {n} devices, fresh pool",
            first,
            "s",
            detail="a TCP connect per device; records each device's fingerprint in the state dir",
        )
        await baseline.run()  # warm-up
        await keepalive.run()
        steps: list[tuple[list[Sample], Callable[[], Awaitable[float]]]] = [
            ([], baseline.run),
            ([], lambda: engine.run(in_sync=n)),
            ([], keepalive.run),
        ]
        for round_ in range(p.repeat):
            for samples, run in steps if round_ % 2 == 0 else reversed(steps):
                samples.append(await measure(run, emu.pid))
        bases, passes, keeps = (samples for samples, _ in steps)
    except StepTimeout as exc:
        report.add_timeout("pass_first_s", f"in-sync pass, {n} devices", exc)
        bases = [await measure(baseline.run, emu.pid) for _ in range(p.repeat)]
        best_base = report.add_best(
            "baseline_s", f"baseline: bare httpx GET loop, {n} devices", [s.seconds for s in bases]
        )
        report.add(
            "pass_ratio",
            TARGET_LABELS["pass_ratio"][0],
            exc.seconds / best_base,
            "x",
            detail="the pass hit its time limit: the ratio is above this",
            timed_out=True,
        )
        _emulator_cpu(report, bases, [])
        raise BenchError("the in-process pass hit its time limit; group skipped") from None
    finally:
        await baseline.aclose()
        await keepalive.aclose()
    try:
        best_base = report.add_best(
            "baseline_s",
            f"baseline: bare httpx GET loop, {n} devices",
            [s.seconds for s in bases],
            detail=f"one httpx.AsyncClient, max_connections={c}: a new connection per GET",
        )
        best_keep = report.add_best(
            "baseline_keepalive_s",
            f"baseline with a kept connection per device, {n} devices",
            [s.seconds for s in keeps],
            detail="one small httpx.AsyncClient per device: connections reused across passes",
        )
        best_pass = report.add_best(
            "pass_in_sync_s",
            f"in-sync pass, {n} devices (Reconciler + reconcile_many)",
            [s.seconds for s in passes],
            detail=f"{1000 * min(s.seconds for s in passes) / n:.2f} ms per device; "
            "same engine and pool as the pass before (daemon-like)",
        )
        report.add(
            "pass_ratio",
            TARGET_LABELS["pass_ratio"][0],
            best_pass / best_base,
            "x",
            detail="best / best; per round: "
            + " ".join(f"{a.seconds / b.seconds:.2f}" for a, b in zip(passes, bases, strict=True)),
        )
        report.add(
            "pass_ratio_keepalive",
            "ratio in-sync pass / kept-connection baseline",
            best_pass / best_keep,
            "x",
            detail="syncd's work per device when both reuse connections",
        )
        _emulator_cpu(report, bases, passes)
        drifted = emu.urls[::10]
        drift_samples = []
        for round_ in range(p.repeat):
            drift = {"accounts": [{"account": 1, "displayName": f"drifted {round_}"}]}
            await admin_all(drifted, "PUT", "/_emulator/state", lambda _: drift)  # noqa: B023

            async def drifted_pass() -> float:
                return await engine.run(applied=len(drifted), in_sync=n - len(drifted))

            drift_samples.append(await measure(drifted_pass, emu.pid))
        report.add_best(
            "pass_drift_s",
            f"pass with {len(drifted)} of {n} devices drifted (PUT + verify GET)",
            [s.seconds for s in drift_samples],
            detail="drift by PUT /_emulator/state before each pass",
        )
    finally:
        await engine.aclose()


def _emulator_cpu(report: Report, bases: list[Sample], passes: list[Sample]) -> None:
    emu_base = max(s.emulator_cpu_pct for s in bases)
    report.add(
        "emulator_cpu_baseline_pct",
        "emulator CPU during the baseline (% of one core, max)",
        emu_base,
        "%",
        detail="near 100 % of a core: the emulator would be the bottleneck"
        if emu_base >= 85
        else "well below one core: the emulator is not the bottleneck",
    )
    report.add(
        "client_cpu_baseline_pct",
        "measuring process CPU during the baseline (% of one core)",
        max(s.client_cpu_pct for s in bases),
        "%",
    )
    if passes:
        report.add(
            "emulator_cpu_pass_pct",
            "emulator CPU during the in-sync pass (% of one core, max)",
            max(s.emulator_cpu_pct for s in passes),
            "%",
        )
        report.add(
            "client_cpu_pass_pct",
            "measuring process CPU during the in-sync pass (% of one core)",
            max(s.client_cpu_pct for s in passes),
            "%",
        )


def run_apply(args: list[str], expect: str, limit: float, err_path: Path) -> float:
    """Wall time of one whole ``syncd apply`` process; raise unless it reports ``expect``."""
    with err_path.open("w") as err:
        started = time.perf_counter()
        try:
            done = subprocess.run(
                [*SYNCD, "apply", *args],
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                timeout=limit,
                check=False,
                preexec_fn=die_with_parent,
            )
        except subprocess.TimeoutExpired:
            raise StepTimeout("syncd apply", limit) from None
        seconds = time.perf_counter() - started
    if done.returncode != 0 or expect not in done.stdout:
        tail = err_path.read_text(errors="replace")[-1500:]
        raise BenchError(f"syncd apply exited {done.returncode}: {done.stdout.strip()} {tail}")
    return seconds


def apply_phase(report: Report, p: Params, emu: Emulator, tree: Path, state: Path) -> None:
    n, c = p.devices, p.concurrency
    args = ["--desired", str(tree), "--state-dir", str(state), "--concurrency", str(c)]
    args += ["--log-format", "json"]
    limit = p.process_limit(n)
    err_path = p.workdir / "apply.stderr"
    asyncio.run(converge(emu.urls))
    label = f"syncd apply process, {n} in-sync devices (HTTP)"
    try:
        in_sync = [
            run_apply(args, f"{n} devices: 0 changed, {n} already in sync", limit, err_path)
            for _ in range(p.repeat)
        ]
        report.add_best(
            "apply_in_sync_s", label, in_sync, detail="start-up, loading the files, one pass, exit"
        )
    except StepTimeout as exc:
        report.add_timeout("apply_in_sync_s", label, exc)
    label = f"syncd apply process, {n} devices all needing a PUT"
    try:
        all_put = []
        for _ in range(p.repeat):
            asyncio.run(admin_all(emu.urls, "DELETE", "/_emulator/state"))
            all_put.append(run_apply(args, f"{n} devices: {n} changed", limit, err_path))
        report.add_best(
            "apply_all_put_s",
            label,
            all_put,
            detail="each device factory-reset (DELETE /_emulator/state) before the run",
        )
    except StepTimeout as exc:
        report.add_timeout("apply_all_put_s", label, exc)


def _edit_targets(n: int, edits: int) -> list[int]:
    """Device numbers to edit, spread over the fleet (distinct while edits <= n)."""
    step = next(s for s in (7919, 7907, 7901, 1) if math.gcd(s, n) == 1)
    return [1 + (k * step) % n for k in range(edits)]


def _nearest_rank(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def daemon_phase(report: Report, p: Params, emu: Emulator, tree: Path, state: Path) -> None:
    n, c = p.devices, p.concurrency
    asyncio.run(converge(emu.urls))
    args = ["--desired", str(tree), "--state-dir", str(state), "--concurrency", str(c)]
    args += ["--resync-interval", "3600", "--log-format", "json"]
    daemon = DaemonProcess(args, p.workdir)
    try:
        label = f"syncd run: start to all {n} devices in sync"
        limit = p.process_limit(n)
        try:
            converged = daemon.wait_status(lambda s: s == f"{n} devices: {n} in sync", limit)
        except StepTimeout as exc:
            report.add_timeout("daemon_converge_s", label, exc)
            report.add(
                "daemon_rss_unconverged_mb",
                "daemon RSS at that time limit (not converged)",
                rss_mb(daemon.pid),
                "MiB",
                detail=f"status {daemon.status!r}",
            )
            raise BenchError("the daemon did not converge; RSS, idle CPU, edits skipped") from None
        report.add(
            "daemon_converge_s",
            label,
            converged,
            "s",
            detail="spawn to sd_notify STATUS saying all in sync (STATUS may lag up to 1 s)",
        )
        time.sleep(1.0)
        report.add(
            "daemon_rss_mb",
            f"daemon RSS with {n} devices, converged",
            rss_mb(daemon.pid),
            "MiB",
            detail="VmRSS from /proc/PID/status",
        )
        cpu0, wall0 = cpu_seconds(daemon.pid), time.monotonic()
        time.sleep(p.idle_window)
        cpu = cpu_seconds(daemon.pid) - cpu0
        wall = time.monotonic() - wall0
        report.add(
            "daemon_idle_cpu_pct",
            f"daemon CPU while idle ({wall:.0f} s window, % of one core)",
            100 * cpu / wall,
            "%",
            detail=f"utime+stime from /proc/PID/stat: {cpu:.2f} s CPU in {wall:.1f} s; "
            f"the {BACKSTOP_SECONDS:.0f} s backstop reload is costed below",
        )
        latencies, missed = _edit_latencies(p, emu, tree)
        if missed:
            raise BenchError(f"{missed} of {p.edits} edits never reached the device in 10 s")
        ms = [1000 * x for x in latencies]
        detail = f"{len(ms)} edits; journal time.time() minus time.time() after os.replace"
        report.add(
            "edit_p50_ms", "edit-to-device latency p50", _nearest_rank(ms, 0.5), "ms", detail=detail
        )
        report.add("edit_p95_ms", "edit-to-device latency p95", _nearest_rank(ms, 0.95), "ms")
        report.add(
            "edit_max_ms",
            "edit-to-device latency max",
            max(ms),
            "ms",
            detail=f"min {min(ms):.0f} ms, mean {statistics.mean(ms):.0f} ms",
        )
        report.add(
            "daemon_rss_after_edits_mb", "daemon RSS after the edits", rss_mb(daemon.pid), "MiB"
        )
    finally:
        status = daemon.stop()
        if status not in (0, None):
            log(f"daemon exited {status} on SIGTERM")


def _edit_latencies(p: Params, emu: Emulator, tree: Path) -> tuple[list[float], int]:
    """One edit at a time: rename a changed file into place, poll the journal for its PUT.

    The journal's ``time`` is the emulator's ``time.time()`` when the request
    arrived; the same host clock as ``time.time()`` here, right after the rename.
    """
    latencies: list[float] = []
    missed = 0
    with httpx.Client(timeout=5.0, trust_env=False) as client:
        for k, number in enumerate(_edit_targets(p.devices, p.edits)):
            url = emu.urls[number - 1]
            client.delete(url + "/_emulator/journal").raise_for_status()
            name = f"Door {number:05d} edit {k}"
            path = device_path(tree, number)
            renamed = write_atomic(path, device_file(number, url, display=name))
            deadline = time.monotonic() + 10.0
            found = None
            while found is None and time.monotonic() < deadline:
                time.sleep(0.005)
                for entry in client.get(url + "/_emulator/journal").json():
                    blob = entry.get("blob") or {}
                    accounts = blob.get("accounts", []) if isinstance(blob, dict) else []
                    if entry["method"] == "PUT" and any(
                        a.get("displayName") == name for a in accounts
                    ):
                        found = entry
                        break
            if found is None:
                missed += 1
            else:
                latencies.append(found["time"] - renamed)
            time.sleep(0.1)  # let the verify GET finish: edits do not overlap
    return latencies, missed


def reload_phase(report: Report, p: Params, tree: Path) -> None:
    loader = Loader(tree)
    loader.load()
    samples = []
    for _ in range(max(3, p.repeat)):
        started = time.process_time()
        resolve_desired(loader.load(), environ=os.environ)
        samples.append(1000 * (time.process_time() - started))
    share = min(samples) / 10 / BACKSTOP_SECONDS
    report.add_best(
        "reload_no_change_ms",
        f"reload of an unchanged tree of {p.devices} files (CPU)",
        samples,
        "ms",
        detail=f"Loader.load + resolve_desired, which the daemon's backstop runs every "
        f"{BACKSTOP_SECONDS:.0f} s: {share:.2f} % of a core on average",
    )


def validate_phase(report: Report, p: Params) -> None:
    root = p.workdir / "validate-tree"
    count = p.validate_files
    urls = [f"http://10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(1, count + 1)]
    write_tree(root, urls)
    samples = []
    label = f"syncd validate process, {count} device files"
    for _ in range(p.repeat):
        started = time.perf_counter()
        try:
            done = subprocess.run(
                [*SYNCD, "validate", str(root)],
                capture_output=True,
                text=True,
                timeout=60 + count * 0.01,
                check=False,
                preexec_fn=die_with_parent,
            )
        except subprocess.TimeoutExpired:
            report.add_timeout("validate_s", label, StepTimeout("validate", 60 + count * 0.01))
            return
        samples.append(time.perf_counter() - started)
        if done.returncode != 0 or f"{count} device(s) valid" not in done.stdout:
            raise BenchError(f"syncd validate exited {done.returncode}: {done.stderr[-1500:]}")
    report.add_best(
        "validate_s",
        label,
        samples,
        detail="" if count == 10_000 else "the target is for 10,000 files",
    )


async def tls_async(report: Report, p: Params, emu: Emulator, tree: Path, state: Path) -> None:
    n, c = p.devices, p.concurrency
    await converge(emu.urls, emu.cert_path)
    firsts: list[Sample] = []
    seconds_: list[Sample] = []
    for _ in range(p.repeat):
        engine = Engine(tree, state, concurrency=c, limit=p.pass_limit(n))

        async def in_sync_pass() -> float:
            return await engine.run(in_sync=n)  # noqa: B023 - awaited within this iteration

        try:
            firsts.append(await measure(in_sync_pass, emu.pid))
            seconds_.append(await measure(in_sync_pass, emu.pid))
        except StepTimeout as exc:
            key = "tls_second_s" if len(firsts) > len(seconds_) else "tls_first_s"
            report.add_timeout(key, f"HTTPS in-sync pass, {n} devices", exc)
            raise BenchError("an HTTPS pass hit its time limit") from None
        finally:
            await engine.aclose()
    for key, samples, which, note in (
        ("tls_first_s", firsts, "1st pass, fresh pool", "a TCP connect + TLS handshake each"),
        ("tls_second_s", seconds_, "2nd pass, same pool", "connections kept from the 1st pass"),
    ):
        cpu = max(s.emulator_cpu_pct for s in samples)
        own = max(s.client_cpu_pct for s in samples)
        report.add_best(
            key,
            f"HTTPS in-sync pass, {n} devices, {which}",
            [s.seconds for s in samples],
            detail=f"{note}; CPU: emulator {cpu:.0f} %, this process {own:.0f} %",
        )


async def scaling_async(
    report: Report, p: Params, size: int, emu: Emulator, tree: Path, state: Path
) -> None:
    c = p.concurrency
    await converge(emu.urls)
    engine = Engine(tree, state, concurrency=c, limit=p.pass_limit(size))
    baseline = Baseline(emu.urls, c, keepalive=False)
    label = f"in-sync pass, {size} devices"
    try:
        await engine.run(in_sync=size)
        await baseline.run()
        passes, bases = [], []
        for _ in range(p.repeat):
            bases.append(await baseline.run())
            passes.append(await engine.run(in_sync=size))
    except StepTimeout as exc:
        report.add_timeout(f"scaling_{size}_pass_s", label, exc)
        return
    finally:
        await baseline.aclose()
        await engine.aclose()
    best = report.add_best(
        f"scaling_{size}_pass_s", label, passes, detail=f"baseline {min(bases):.3f} s"
    )
    report.add(
        f"scaling_{size}_per_device_ms",
        f"in-sync pass, {size} devices, per device",
        1000 * best / size,
        "ms",
    )
    report.add(
        f"scaling_{size}_ratio",
        f"ratio pass / baseline, {size} devices",
        best / min(bases),
        "x",
        detail="the target (<= 1.3) is for the main N above",
    )


# -------------------------------------------------------------------- main


def run(p: Params, report: Report) -> None:
    n = p.devices
    tree = p.workdir / "tree"
    state = p.workdir / "state"
    with contextlib.ExitStack() as stack:
        emu: Emulator | None = None
        with report.phase("HTTP: in-process engine vs bare httpx"):
            emu = stack.enter_context(Emulator(n, p.workdir))
            write_tree(tree, emu.urls)
            asyncio.run(engine_phase(report, p, emu, tree, state))
        if emu is not None:
            with report.phase("HTTP: whole syncd apply processes"):
                apply_phase(report, p, emu, tree, state)
            with report.phase("Daemon (syncd run, resync interval 3600 s)"):
                daemon_phase(report, p, emu, tree, state)
    with report.phase("Desired state"):
        if tree.is_dir():
            reload_phase(report, p, tree)
        validate_phase(report, p)
    with (
        report.phase("HTTPS (emulator --tls, caFile)"),
        Emulator(n, p.workdir, tls_dir=p.workdir / "certs") as emu,
    ):
        tls_tree = p.workdir / "tree-tls"
        write_tree(tls_tree, emu.urls, ca_file=emu.cert_path)
        asyncio.run(tls_async(report, p, emu, tls_tree, p.workdir / "state-tls"))
    if p.scaling:
        for size in p.scaling_sizes:
            with report.phase("Scaling (in-sync pass)"), Emulator(size, p.workdir) as emu:
                scale_tree = p.workdir / f"tree-{size}"
                write_tree(scale_tree, emu.urls)
                asyncio.run(
                    scaling_async(report, p, size, emu, scale_tree, p.workdir / f"state-{size}")
                )


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError("sizes must be whole numbers of at least 1")
    return sizes


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tests.benchmarks.fleet",
        description="Benchmark syncd against `syncd simulate` running in its own process.",
    )
    parser.add_argument("--devices", type=int, default=1000, help="fleet size N (default 1000)")
    parser.add_argument("--concurrency", type=int, default=32, help="devices in flight (32)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per timing; best is shown (3)")
    parser.add_argument("--edits", type=int, default=50, help="edits timed for latency (50)")
    parser.add_argument(
        "--idle-window", type=float, default=10.0, help="seconds of idle CPU measurement (10)"
    )
    parser.add_argument(
        "--validate-files", type=int, default=10_000, help="files for syncd validate (10000)"
    )
    parser.add_argument(
        "--scaling", action="store_true", help="also time the in-sync pass at --scaling-sizes"
    )
    parser.add_argument(
        "--scaling-sizes", type=_sizes, default=[100, 1000, 5000], help="default 100,1000,5000"
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also save figures as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    args = _parser().parse_args(argv)
    if min(args.devices, args.concurrency, args.repeat, args.edits, args.validate_files) < 1:
        raise SystemExit("--devices, --concurrency, --repeat, --edits, --validate-files: >= 1")
    out = out or sys.stdout
    # SIGTERM unwinds like Ctrl-C, so every `finally` stops its emulator and daemon.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    compile_syncd()  # syncd's processes start as an installed syncd does
    devnull = open(os.devnull, "w")  # noqa: SIM115 - the in-process engine logs here
    configure_logging(level="info", fmt="json", stream=devnull)
    workdir = Path(tempfile.mkdtemp(prefix="syncd-bench-"))
    params = Params(
        devices=args.devices,
        concurrency=args.concurrency,
        repeat=args.repeat,
        edits=args.edits,
        idle_window=args.idle_window,
        validate_files=args.validate_files,
        scaling=args.scaling,
        scaling_sizes=args.scaling_sizes,
        workdir=workdir,
    )
    report = Report({k: str(v) if isinstance(v, Path) else v for k, v in asdict(params).items()})
    log(f"work directory {workdir}")
    complete = False
    try:
        run(params, report)
        complete = True
    finally:
        devnull.close()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        report.finish(complete)
        print(report.table(), file=out, flush=True)
        if args.json is not None:
            args.json.write_text(json.dumps(report.to_json(), indent=2) + "\n")
    return 1 if report.errors else 0


if __name__ == "__main__":
    sys.exit(main())
