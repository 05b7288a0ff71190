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
import socket
import sys
import time
from collections.abc import Iterable, Sequence
from functools import partial

from syncd import events, loop
from syncd.client import ClientPool
from syncd.command_errors import report_error
from syncd.conductor import Conductor
from syncd.control import ControlError, ControlServer, default_socket_path
from syncd.daemon_control import StatusBoard, control_server, resend_passwords
from syncd.desired import DesiredState, Loader, Problem, Resolved, name_from_path, resolve_desired
from syncd.desired.fleet import load_policy
from syncd.devices_view import DeviceView, difference_key, revision_material
from syncd.fleet_view import FleetView
from syncd.gate import Gate
from syncd.history import HistoryLog
from syncd.lock import StateDirLocked, StateLock, state_lock_error
from syncd.logs import get_logger
from syncd.metrics import Metrics, serve_metrics
from syncd.model import DeviceSpec, Mode
from syncd.monitoring import RegistrationMonitor
from syncd.notify import Notifier
from syncd.outcome import Outcome, Tally
from syncd.reconcile import HistorySink, Reconciler
from syncd.retrying import RetryPolicy
from syncd.revision import desired_revision
from syncd.settings import Settings
from syncd.sharing import SharingError, open_sharing
from syncd.slots import Lanes
from syncd.status import InvalidFile
from syncd.watching import DesiredWatcher
from syncd.worker import DeviceWorker, Timing

__all__ = ["Daemon", "run_daemon"]

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
        self._last_problems: set[Problem] = set()
        self._timing = Timing(settings.resync_interval, settings.max_backoff)
        try:  # standalone, or this node's share of a cluster (SPEC section 11)
            self.sharing = open_sharing(
                settings, workers=lambda: self.workers, metrics=self.metrics
            )
        except SharingError as exc:
            raise StartupError(str(exc)) from None
        self.state = self.sharing.state
        self.pool = ClientPool(
            timeout=settings.request_timeout,
            connect_timeout=settings.connect_timeout,
            keepalive_expiry=settings.resync_interval * 1.2 + 5,
            node=self.sharing.node,
        )
        #: What the daemon saw of each device: the status and the repeating events' memory.
        self.view = FleetView(node=self.sharing.node or socket.gethostname())
        if self.sharing.node is not None:  # the whole fleet: other nodes' devices from etcd
            self.view.owner_of = self.sharing.owner_of
            self.view.shared = self.sharing.shared_statuses
        self.history: HistorySink = self.sharing.history or HistoryLog.in_state_dir(
            settings.state_dir
        )
        self.conductor = Conductor(
            state=self.state,
            kick=self._kick,
            client_of=lambda spec: self.reconciler.client(spec),
            history=self.history,
            metrics=self.metrics,
            retry=RetryPolicy(attempts=settings.retry_attempts),
        )
        gate = Gate(
            policy=lambda: self.conductor.policy,
            rollout=self.conductor,
            health=self.conductor.health,
        )
        self.reconciler = Reconciler(
            pool=self.pool,
            state=self.state,
            retry=RetryPolicy(attempts=settings.retry_attempts),
            metrics=self.metrics,
            history=self.history,
            watch=self.view,
            sharing=self.sharing,
            gate=gate,
        )
        self.monitor = RegistrationMonitor(
            reconciler=self.reconciler,
            resync_interval=settings.resync_interval,
            kick=self.kick,
            metrics=self.metrics,
        )
        #: The desired revision in force (SPEC section 10).
        self.revision = ""
        self.socket_path = settings.socket or default_socket_path(settings.state_dir)
        #: The STATUS line and the status snapshot the socket, the page and /metrics read.
        self.board = StatusBoard(
            view=self.view,
            notifier=self.notifier,
            sharing=self.sharing,
            rollout=self.conductor,
            summary=self.summary,
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
            policy = await asyncio.to_thread(load_policy, self.desired_dir)
            revision = desired_revision(self.desired_dir, revision_material(specs))
            new_revision = revision != self.revision
            self._set_revision(revision)
            self.sharing.publish_revision(revision)
            self.conductor.load(policy=policy, specs=specs, revision=revision)
            changed = await self._update_workers(specs, kick_all=kick_all)
            if periodic and not changed and not new_revision and seen == self._last_problems:
                return
            events.desired_loaded(
                self.log,
                devices=len(self.workers),
                invalid=len(resolved.broken),
                reason=why,
                revision=revision,
            )

    def _set_revision(self, revision: str) -> None:
        if revision != self.revision:
            self.revision = self.view.revision = revision
            self.metrics.set_revision(revision)
            self.view.version += 1

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
                device = name_from_path(problem.file)
                named = device if device in resolved.broken else None
                events.desired_problem(self.log, problem, device=named)
        errors = [p for p in resolved.problems if not p.warning]
        self.metrics.load_errors.inc(len({p.file for p in errors}))
        self.metrics.invalid_files.set(len(resolved.broken))
        self.metrics.set_desired_invalid(resolved.broken)
        self.view.invalid_files = tuple(InvalidFile(p.file, p.line, str(p)) for p in errors)
        self.view.version += 1
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
        self.view.forget(gone)
        changed = len(gone)
        for name, spec in specs.items():
            current = self.workers.get(name)
            if current is None:
                revision = self.state.applied_revision(name)
                self.view.devices[name] = DeviceView(spec, revision=revision)
                self.workers[name] = self._worker(spec)
                self.workers[name].start()
                changed += 1
            elif current.spec != spec or kick_all:
                if current.spec != spec:
                    self.view.devices[name].update_spec(spec)
                current.update(spec)
                changed += 1
        self.view.version += 1
        self.metrics.devices.set(len(self.workers))
        return changed

    async def _reconcile_and_monitor(self, spec: DeviceSpec) -> Outcome:
        outcome = await self.reconciler.reconcile(spec, apply=True, revision=self.revision)
        view = self.view.devices.get(spec.name)
        if view is not None:
            try:
                await self.monitor.check(spec, outcome, view)
            except Exception as exc:  # monitoring must never fail a reconcile
                events.registration_unreadable(
                    self.log.bind(device=spec.name),
                    error=f"internal error: {type(exc).__name__}: {exc}",
                )
        return outcome

    def _worker(self, spec: DeviceSpec) -> DeviceWorker:
        async def run(spec: DeviceSpec) -> Outcome:
            return await self.sharing.turn(spec, partial(self._reconcile_and_monitor, spec))

        return DeviceWorker(
            spec,
            run=run,
            report=self.observe,
            gate=self.gate,
            stopping=self.stopping,
            timing=self._timing,
            after=self.conductor.after,
            lanes=self.lanes,
        )

    def _kick(self, names: Iterable[str]) -> None:
        for name in names:
            worker = self.workers.get(name)
            if worker is not None:
                worker.kick()

    # ------------------------------------------------------------- observing

    def observe(self, outcome: Outcome) -> None:
        if outcome.elsewhere:  # another node's device: its owner reports it
            return
        self.conductor.observe(outcome)
        m = self.metrics
        now = time.time()
        view = self.view.devices.get(outcome.device)
        if view is not None:
            self.view.version += 1
            recovered = view.observe(outcome, now, revision=self.revision)
            if recovered is not None:
                log = self.log.bind(device=outcome.device)
                events.device_recovered(log, failing_for=round(recovered, 1))
            m.set_failing(outcome.device, view.failing_kind)
        if outcome.status in ("in_sync", "applied"):
            m.in_sync.labels(outcome.device).set(1)
            m.last_success.labels(outcome.device).set(now)
        elif outcome.status == "skipped":
            with contextlib.suppress(KeyError):  # parked on purpose: no in-sync series
                m.in_sync.remove(outcome.device)
        else:
            m.in_sync.labels(outcome.device).set(0)
        # In observe mode a lasting difference counts once, until it goes away or changes.
        if outcome.drift and (
            outcome.mode is not Mode.OBSERVE
            or view is None
            or view.first("observe-count", difference_key(outcome.changes), now)
        ):
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
            "waiting": tally.waiting,
            "failing": tally.errors,
            "skipped": tally.skipped,
            "pending": tally.pending,
        }
        parts = ", ".join(f"{n} {k}" for k, n in counts.items() if n)
        return f"{self.sharing.describe()}{len(self.workers)} devices: {parts or 'none'}"

    # -------------------------------------------------------------- control

    def kick(self, device: str) -> None:
        """Reconcile ``device`` now (no-op for a device not managed)."""
        worker = self.workers.get(device)
        if worker is not None:
            worker.kick()

    def _control_server(self) -> ControlServer:
        def resend(device: str) -> str:
            return resend_passwords(
                device, workers=self.workers, state=self.state, reconciler=self.reconciler
            )

        return control_server(
            self.socket_path, snapshot=self.board.snapshot, rollout=self.conductor, resend=resend
        )

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
            self.board.update()  # once a tick: a summary costs a walk over the fleet
            if interval and now - last_ping >= interval:
                self.notifier.watchdog()
                last_ping = now
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), tick)

    async def run(self) -> int:
        self._check_desired_dir()
        try:
            await self.sharing.start()
        except SharingError as exc:
            raise StartupError(str(exc)) from None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_stop, sig)
        loop.add_signal_handler(signal.SIGHUP, self._on_hup)
        server = None
        control = self._control_server()
        try:
            control.start()
        except ControlError as exc:
            raise StartupError(f"{exc} (setting socket)") from None
        if self.settings.metrics_address:
            try:
                server, _ = serve_metrics(
                    self.metrics,
                    self.settings.metrics_address,
                    stale_after=10.0,
                    status=self.board.snapshot,
                )
            except (OSError, ValueError, OverflowError) as exc:  # port > 65535: OverflowError
                control.close()
                raise StartupError(
                    f"bad setting metrics_address {self.settings.metrics_address!r}: {exc}"
                ) from None
        events.daemon_starting(
            self.log,
            desired_dir=str(self.desired_dir),
            state_dir=str(self.settings.state_dir),
            settings=self.settings,
        )
        await self.reload(why="start")
        self.notifier.ready(self.summary())
        background = [
            asyncio.create_task(self._watcher().run(), name="watch"),
            asyncio.create_task(self._backstop(), name="backstop"),
            asyncio.create_task(self._heartbeat(), name="heartbeat"),
            asyncio.create_task(self.conductor.run(self.stopping), name="rollout"),
        ]
        await self.stopping.wait()
        self.notifier.stopping()
        events.daemon_stopping(self.log, in_flight=sum(w.running for w in self.workers.values()))
        await self._drain(self.workers.values())
        await self.sharing.stop()
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await self.pool.aclose()
        control.close()
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
        lock = StateLock.acquire(settings.state_dir)
    except (StateDirLocked, OSError) as exc:
        message = state_lock_error(settings.state_dir, exc)
        events.daemon_failed(get_logger(), error=message)
        report_error(message, stream=sys.stderr)
        return 1
    with lock:
        try:
            return loop.run(main())
        except StartupError as exc:
            report_error(str(exc), stream=sys.stderr)
            return 1
