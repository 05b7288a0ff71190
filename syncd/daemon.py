"""Many devices, forever: watch the desired tree, resync, back off, obey signals.

Each device has one :class:`~syncd.worker.DeviceWorker`; a global semaphore
bounds how many devices are in flight, and a failing device only ever delays
itself. A reload reads the tree, reports its problems, and hands each worker
its new spec (the last valid one where a file turned invalid).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Iterable, Sequence

from syncd import events, loop
from syncd.client import ClientPool
from syncd.desired import DesiredState, Loader, Problem, Resolved, resolve_desired
from syncd.logs import get_logger
from syncd.metrics import Metrics, serve_metrics
from syncd.model import DeviceSpec
from syncd.notify import Notifier
from syncd.outcome import Outcome, Tally
from syncd.reconcile import Reconciler
from syncd.retrying import RetryPolicy
from syncd.settings import Settings
from syncd.slots import Lanes
from syncd.state import FileStateStore, StateError
from syncd.watching import DesiredWatcher
from syncd.worker import DeviceWorker, Timing

__all__ = ["run_daemon"]

#: How long SIGTERM waits for reconciles in flight before cancelling them.
STOP_GRACE = 8.0
#: Full reloads happen at least this often even if no file event arrives.
BACKSTOP_RELOAD = 30.0


class StartupError(Exception):
    """A fatal start-up problem: one sentence naming the dir or setting."""


class Daemon:
    def __init__(self, settings: Settings, *, devices: Sequence[str] = ()) -> None:
        self.settings = settings
        self.only = list(devices)
        self.log = get_logger()
        self.stopping = asyncio.Event()
        self.gate = asyncio.Semaphore(settings.concurrency)
        self.lanes = Lanes.for_daemon(self.gate, request_timeout=settings.request_timeout)
        self.workers: dict[str, DeviceWorker] = {}
        self.metrics = Metrics()
        self.notifier = Notifier()
        self.desired_dir = settings.desired_dir
        self.loader = Loader(self.desired_dir)
        self._reload_lock = asyncio.Lock()
        self._last_status = ""
        self._last_problems: set[Problem] = set()
        self._timing = Timing(settings.resync_interval, settings.max_backoff)
        try:
            self.state = FileStateStore.open(settings.state_dir)
        except StateError as exc:
            raise StartupError(str(exc)) from None
        self.pool = ClientPool(
            timeout=settings.request_timeout,
            connect_timeout=settings.connect_timeout,
            keepalive_expiry=settings.resync_interval * 1.2 + 5,
        )
        self.reconciler = Reconciler(
            pool=self.pool,
            state=self.state,
            retry=RetryPolicy(attempts=settings.retry_attempts),
            metrics=self.metrics,
        )

    def _check_desired_dir(self) -> None:
        if not self.desired_dir.is_dir():
            raise StartupError(
                f"desired dir {self.desired_dir} does not exist or is not a directory"
            )
        if not os.access(self.desired_dir, os.R_OK | os.X_OK):
            raise StartupError(f"desired dir {self.desired_dir} is not readable")

    # ------------------------------------------------------------------ load

    async def reload(self, *, kick_all: bool = False, why: str = "change") -> None:
        """Reload the tree; kick devices whose desired state changed (or all)."""
        async with self._reload_lock:
            desired = await self._load()
            if desired is None:
                return
            resolved = resolve_desired(desired, environ=os.environ, only=self.only)
            # The 30 s backstop repeats only what is new, so journald is not flooded.
            periodic = why == "periodic"
            seen = self._report_problems(resolved, only_new=periodic)
            specs = self._specs_in_force(desired, resolved)
            changed = await self._update_workers(specs, kick_all=kick_all)
            if periodic and not changed and seen == self._last_problems:
                return
            events.desired_loaded(
                self.log, devices=len(self.workers), invalid=len(resolved.broken), reason=why
            )

    async def _load(self) -> DesiredState | None:
        """The tree as it is now, or None (logged) when the desired dir cannot be read."""
        if not self.desired_dir.is_dir():
            message = f"desired dir {self.desired_dir} is missing; keeping the last state"
            events.desired_invalid(self.log, file=str(self.desired_dir), line=None, error=message)
            return None
        desired = await asyncio.to_thread(self.loader.load)
        unreadable = [p for p in desired.problems if p.file == "."]
        if unreadable:
            # An unreadable desired dir says nothing about the devices: keep them all.
            message = f"{unreadable[0].message}; keeping the last state"
            events.desired_invalid(self.log, file=str(self.desired_dir), line=None, error=message)
            return None
        return desired

    def _report_problems(self, resolved: Resolved, *, only_new: bool) -> set[Problem]:
        """Log the problems (with ``only_new``, those not logged last time); the previous set."""
        seen, self._last_problems = self._last_problems, set(resolved.problems)
        for problem in resolved.problems:
            if not (only_new and problem in seen):
                events.desired_problem(self.log, problem)
        errors = [p for p in resolved.problems if not p.warning]
        self.metrics.load_errors.inc(len({p.file for p in errors}))
        self.metrics.invalid_files.set(len(resolved.broken))
        return seen

    def _specs_in_force(self, desired: DesiredState, resolved: Resolved) -> dict[str, DeviceSpec]:
        """The usable specs, plus the last valid state of each device whose file is now invalid."""
        specs = dict(resolved.specs)
        bad_files = set(desired.invalid_files) | {
            w.spec.file for w in self.workers.values() if w.spec.name in resolved.broken
        }
        for name, worker in self.workers.items():
            if name not in specs and worker.spec.file in bad_files:
                specs[name] = worker.spec
        return specs

    async def _update_workers(self, specs: dict[str, DeviceSpec], *, kick_all: bool) -> int:
        """Stop workers of devices gone, start new ones, hand changed specs over; count them."""
        gone = [n for n in self.workers if n not in specs]
        for name in gone:
            await self.workers.pop(name).stop()
            self.reconciler.forget(name)
        self.metrics.forget(gone)
        changed = len(gone)
        for name, spec in specs.items():
            current = self.workers.get(name)
            if current is None:
                self.workers[name] = self._worker(spec)
                self.workers[name].start()
                changed += 1
            elif current.spec != spec or kick_all:
                current.update(spec)
                changed += 1
        self.metrics.devices.set(len(self.workers))
        return changed

    def _worker(self, spec: DeviceSpec) -> DeviceWorker:
        async def run(spec: DeviceSpec) -> Outcome:
            return await self.reconciler.reconcile(spec, apply=True)

        return DeviceWorker(
            spec,
            run=run,
            report=self.observe,
            gate=self.gate,
            stopping=self.stopping,
            timing=self._timing,
            lanes=self.lanes,
        )

    # ------------------------------------------------------------- observing

    def observe(self, outcome: Outcome) -> None:
        m = self.metrics
        if outcome.status in ("in_sync", "applied"):
            m.in_sync.labels(outcome.device).set(1)
            m.last_success.labels(outcome.device).set(time.time())
        elif outcome.status != "skipped":
            m.in_sync.labels(outcome.device).set(0)
        if outcome.drift:
            m.drift.labels(outcome.device).inc()
        if outcome.status == "applied":
            m.applies.labels("succeeded").inc()
        elif outcome.status == "error" and outcome.changes:
            m.applies.labels("failed").inc()

    def summary(self) -> str:
        """The STATUS line: ``3 devices: 2 in sync, 1 failing``."""
        tally = Tally.of(w.last for w in self.workers.values())
        counts = {
            "in sync": tally.converged,
            "differing": tally.changes,
            "failing": tally.errors,
            "skipped": tally.skipped,
            "pending": tally.pending,
        }
        parts = ", ".join(f"{n} {k}" for k, n in counts.items() if n)
        return f"{len(self.workers)} devices: {parts or 'none'}"

    def _update_status(self) -> None:
        status = self.summary()
        if status != self._last_status:
            self._last_status = status
            self.notifier.status(status)

    # --------------------------------------------------------------- running

    def _watcher(self) -> DesiredWatcher:
        async def reload(why: str) -> None:
            await self.reload(why=why)

        return DesiredWatcher(self.desired_dir, reload=reload, stopping=self.stopping)

    async def _backstop(self) -> None:
        while not self.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), BACKSTOP_RELOAD)
            if not self.stopping.is_set():
                await self.reload(why="periodic")

    async def _heartbeat(self) -> None:
        interval = self.notifier.watchdog_interval()
        tick = min(interval, 1.0) if interval else 1.0
        last_ping = 0.0
        while not self.stopping.is_set():
            now = time.monotonic()
            self.metrics.heartbeat = now
            self._update_status()  # once a tick: a summary costs a walk over the fleet
            if interval and now - last_ping >= interval:
                self.notifier.watchdog()
                last_ping = now
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), tick)

    async def run(self) -> int:
        self._check_desired_dir()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_stop, sig)
        loop.add_signal_handler(signal.SIGHUP, self._on_hup)
        server = None
        if self.settings.metrics_address:
            try:
                server, _ = serve_metrics(
                    self.metrics, self.settings.metrics_address, stale_after=10.0
                )
            except (OSError, ValueError, OverflowError) as exc:  # port > 65535: OverflowError
                raise StartupError(
                    f"bad setting metrics_address {self.settings.metrics_address!r}: {exc}"
                ) from None
        events.daemon_starting(
            self.log, desired_dir=str(self.desired_dir), state_dir=str(self.settings.state_dir)
        )
        await self.reload(why="start")
        self.notifier.ready(self.summary())
        background = [
            asyncio.create_task(self._watcher().run(), name="watch"),
            asyncio.create_task(self._backstop(), name="backstop"),
            asyncio.create_task(self._heartbeat(), name="heartbeat"),
        ]
        await self.stopping.wait()
        self.notifier.stopping()
        events.daemon_stopping(self.log, in_flight=sum(w.running for w in self.workers.values()))
        await self._drain(self.workers.values())
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await self.pool.aclose()
        if server is not None:
            server.shutdown()
        self.notifier.close()
        events.daemon_stopped(self.log)
        return 0

    async def _drain(self, workers: Iterable[DeviceWorker]) -> None:
        """Let reconciles in flight (a PUT among them) finish, within the grace period."""
        for worker in workers:
            worker.kick()  # wake idle workers so they see `stopping` and return
        tasks = [w.task for w in workers if w.task is not None]
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=STOP_GRACE)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    def _on_stop(self, sig: signal.Signals) -> None:
        if not self.stopping.is_set():
            events.daemon_signal(self.log, signal=sig.name)
            self.stopping.set()

    def _on_hup(self) -> None:
        events.daemon_signal(self.log, signal="SIGHUP")
        asyncio.get_running_loop().create_task(self.reload(kick_all=True, why="SIGHUP"))


def run_daemon(settings: Settings, *, devices: Sequence[str] = ()) -> int:
    """Entry point of ``syncd run``: 0 after SIGTERM/SIGINT, 1 on a fatal start-up error."""

    async def main() -> int:
        try:
            daemon = Daemon(settings, devices=devices)
            return await daemon.run()
        except StartupError as exc:
            events.daemon_failed(get_logger(), error=str(exc))
            raise

    try:
        return loop.run(main())
    except StartupError as exc:
        print(f"syncd: error: {exc}", file=sys.stderr)
        return 1
