"""Many devices, forever: watch the desired tree, resync, back off, obey signals.

Each device has one :class:`~syncd.worker.DeviceWorker`; a global semaphore
bounds how many devices are in flight, and a failing device only ever delays
itself. A reload reads the tree, reports its problems, and hands each worker
its new spec (the last valid one where a file turned invalid).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Collection, Sequence
from functools import partial

from syncd import daemon_events, events
from syncd.capacity import Capacity
from syncd.conductor import Conductor
from syncd.control import ControlServer, default_socket_path
from syncd.daemon_control import StatusBoard, control_server, resend_passwords
from syncd.desired import (
    Loader,
    Problem,
    Resolved,
    resolve_desired,
    rollout_specs,
    unmatched_patterns,
)
from syncd.desired.fleet import load_policy
from syncd.device_workers import DeviceWorkers
from syncd.fleet_view import FleetView
from syncd.gate import Gate
from syncd.history import HistoryLog
from syncd.logs import configure_logging, get_logger
from syncd.metrics import Metrics
from syncd.model import DeviceSpec
from syncd.monitoring import RegistrationMonitor
from syncd.notify import Notifier
from syncd.observing import observe_outcome, status_line
from syncd.outcome import Outcome
from syncd.permits import Permits
from syncd.reconcile import HistorySink, Reconciler
from syncd.reloading import read_desired, report_problems, specs_in_force
from syncd.retrying import RetryPolicy
from syncd.revision import desired_revision, revision_material
from syncd.settings import Settings
from syncd.settings_reload import log_reread, reread_settings
from syncd.sharing import SharingError, open_sharing
from syncd.slots import Slot
from syncd.startup import StartupError, check_desired_dir, start_control, start_metrics
from syncd.status import ClusterSummary
from syncd.ticking import backstop, heartbeat
from syncd.tuning import Tuning
from syncd.watching import DesiredWatcher
from syncd.worker import DeviceWorker

__all__ = ["Daemon"]

#: How long SIGTERM waits for reconciles in flight before cancelling them.
STOP_GRACE = 8.0


class Daemon:
    """``syncd run``: the device workers, their reloads, the status, the control socket."""

    def __init__(
        self,
        settings: Settings,
        *,
        devices: Sequence[str] = (),
        reread: Callable[[], Settings] | None = None,
    ) -> None:
        self.settings = settings
        #: Reads the settings again as at start (SIGHUP); None: SIGHUP keeps them.
        self._reread = reread
        self._settings_lock = asyncio.Lock()
        self.only = list(devices)
        self.log = get_logger()
        self.stopping = asyncio.Event()
        self.gate = Permits(settings.concurrency)
        self.capacity = Capacity(self.gate, settings.concurrency)
        self.metrics = Metrics()
        self.notifier = Notifier()
        self.desired_dir = settings.desired_dir
        self.loader = Loader(self.desired_dir)
        self._reload_lock = asyncio.Lock()
        self._hups: set[asyncio.Task[None]] = set()
        self._last_problems: set[tuple[Problem, object]] = set()
        #: Why the desired dir could not be read at the last reload (said once), or None.
        self._dir_unusable: str | None = None
        #: The desired revision in force (SPEC section 10).
        self.revision = ""
        self.socket_path = settings.socket or default_socket_path(settings.state_dir)
        try:  # standalone, or this node's share of a cluster (SPEC section 11)
            self.sharing = open_sharing(
                settings, workers=lambda: self.workers.by_name, metrics=self.metrics
            )
        except SharingError as exc:
            raise StartupError(str(exc)) from None
        self.state = self.sharing.state
        self.tuning = Tuning.of(settings, gate=self.gate, node=self.sharing.node)
        #: What the daemon saw of each device: the status and the repeating events' memory.
        self.view = self._fleet_view()
        self.workers = DeviceWorkers(
            view=self.view,
            metrics=self.metrics,
            state=self.state,
            new=self._worker,
            forget=lambda name: self.reconciler.forget(name),
            ask_again=lambda name: self.reconciler.ask_again(name),
        )
        self.history: HistorySink = self.sharing.history or HistoryLog.in_state_dir(
            settings.state_dir
        )
        self.conductor = self._conductor()
        self.reconciler = self._reconciler()
        self.monitor = RegistrationMonitor(
            reconciler=self.reconciler,
            state=self.state,
            resync_interval=settings.resync_interval,
            kick=self.kick,
            metrics=self.metrics,
            enabled=lambda: self.conductor.policy.health.monitor,
        )
        #: The STATUS line and the status snapshot the socket, the page and /metrics read.
        self.board = StatusBoard(
            view=self.view,
            notifier=self.notifier,
            sharing=self.sharing,
            rollout=self.conductor,
            summary=self.summary,
        )

    def _fleet_view(self) -> FleetView:
        view = FleetView(node=self.sharing.node or socket.gethostname())
        if self.sharing.node is not None:  # the whole fleet: other nodes' devices from etcd
            view.owner_of = self.sharing.owner_of
            view.shared = self.sharing.shared_statuses
            view.available = lambda: self.sharing.available
            view.lagging_revision = self.sharing.lagging_revision
            view.applied = self.state.applied_fingerprint
            view.cluster = lambda: ClusterSummary(
                tuple(sorted(self.sharing.members)), self.sharing.leader
            )
        return view

    def _conductor(self) -> Conductor:
        """The rollout engine: waves, health, windows; it kicks the devices it lets go."""
        return Conductor(
            state=self.state,
            kick=self.workers.kick,
            ask_again=self.workers.ask_again,
            client_of=lambda spec: self.reconciler.client(spec),
            history=self.history,
            metrics=self.metrics,
            retry=RetryPolicy(attempts=self.settings.retry_attempts),
            drives=lambda: self.sharing.may_drive(self.revision),
            owns=self.sharing.owns,
            relay=self.sharing.relay,
            changing=self.view.changing,
            changed=self._reverted,
            # a revert takes a slot like any change, ahead of devices without news
            revert_slot=lambda: Slot(self.tuning.lanes, failing_lane=False, first=True),
        )

    def _reverted(self, device: str) -> None:
        """A revert PUT changed ``device`` (the conductor has kept it in the state)."""
        self.view.changed(device, revision=self.state.applied_revision(device))

    def _reconciler(self) -> Reconciler:
        """One device, once; its PUTs pass the rollout engine's gate."""
        gate = Gate(
            policy=lambda: self.conductor.policy,
            rollout=self.conductor,
            health=self.conductor.health,
        )
        return Reconciler(
            pool=self.tuning.pool,
            state=self.state,
            retry=RetryPolicy(attempts=self.settings.retry_attempts),
            metrics=self.metrics,
            history=self.history,
            watch=self.view,
            sharing=self.sharing,
            gate=gate,
            wave_of=self.conductor.wave_of,
            unanswered=self.conductor.unanswered,
            stopping=self.stopping,
            rejections_stand=True,
        )

    # ------------------------------------------------------------------ load

    async def reload(self, *, kick_all: bool = False, why: str = "change") -> None:
        """Reload the tree; kick devices whose desired state changed (or all)."""
        async with self._reload_lock:
            desired = await read_desired(self.loader, self.desired_dir)
            if isinstance(desired, str):
                # Said when the dir becomes unusable (or the reason changes) and at SIGHUP;
                # not at every watcher event or backstop reload while it stays so.
                if desired != self._dir_unusable or why in ("start", "SIGHUP"):
                    dir_name = str(self.desired_dir)
                    events.desired_invalid(self.log, file=dir_name, line=None, error=desired)
                self._dir_unusable = desired
                return
            self._dir_unusable = None
            # Refused at start, as plan and apply refuse it; later a device may go for good.
            unmatched = unmatched_patterns(self.only, desired.devices, desired.invalid_files)
            if why == "start" and unmatched:
                raise StartupError(f"no device matches --device {unmatched[0]}")
            resolved = resolve_desired(desired, environ=os.environ, only=self.only)
            # A problem is said at start and on SIGHUP, else only when it is new or its
            # file changed: an edit of another file (or the 30 s backstop) does not repeat
            # an invalid file's desired.invalid, so an alert on it fires once per edit.
            periodic = why == "periodic"
            seen, self._last_problems = self._last_problems, self._problem_keys(resolved)
            policy = await asyncio.to_thread(load_policy, self.desired_dir)
            said = {p for p, stamp in self._last_problems if (p, stamp) in seen}
            report_problems(
                resolved,
                logged=None if why in ("start", "SIGHUP") else said,
                log=self.log,
                metrics=self.metrics,
                fleet=self.view,
                policy=policy.errors,  # logged by the conductor, once each
            )
            current = {name: worker.spec for name, worker in self.workers.by_name.items()}
            specs = specs_in_force(desired, resolved, current)
            material = revision_material(specs) + self.conductor.revision_material(policy)
            revision = desired_revision(self.desired_dir, material)
            new_revision = revision != self.revision
            self._set_revision(revision)
            self.sharing.publish_revision(revision)
            same = specs == current and not new_revision and seen == self._last_problems
            if not (periodic and same):  # said before what the load starts (a rollout, say)
                events.desired_loaded(
                    self.log,
                    devices=len(specs),
                    invalid=len(resolved.broken),
                    reason=why,
                    revision=revision,
                )
            fleet = set(desired.devices) | set(resolved.broken)
            # --device limits what this daemon acts on, never the rollout (its canary first)
            in_rollout = rollout_specs(desired, resolved, specs) if self.only else None
            self.conductor.load(
                policy=policy,
                specs=specs,
                revision=revision,
                fleet=fleet,
                rollout_specs=in_rollout,
            )
            await self.workers.update(specs, kick_all=kick_all)

    def _problem_keys(self, resolved: Resolved) -> set[tuple[Problem, object]]:
        """Each problem with the identity of its file (an edit of it says it again)."""
        return {(p, self.loader.stamp_of(p.file)) for p in resolved.problems}

    def _set_revision(self, revision: str) -> None:
        if revision != self.revision:
            self.revision = self.view.revision = revision
            self.metrics.set_revision(revision)
            self.view.version += 1

    async def _reconcile_and_monitor(self, spec: DeviceSpec) -> Outcome:
        outcome = await self.reconciler.reconcile(spec, apply=True, revision=self.revision)
        view = self.view.devices.get(spec.name)
        if view is not None:
            await self.monitor.check(spec, outcome, view)
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
            timing=self.tuning.timing,
            after=self.conductor.after,
            lanes=self.tuning.lanes,
            # news of a device whose change must wait for its wave does not go first
            urgent=lambda spec: self.conductor.may_start(spec).go,
            turn=self.conductor.turns.of,
        )

    # ------------------------------------------------------------- observing

    def observe(self, outcome: Outcome) -> None:
        if outcome.elsewhere:  # another node's device: its owner reports it
            return
        self.conductor.observe(outcome)
        observe_outcome(
            outcome,
            fleet=self.view,
            metrics=self.metrics,
            revision=self.revision,
            log=self.log,
            now=time.time(),
        )

    def summary(self) -> str:
        """The STATUS line: ``3 devices: 2 in sync, 1 failing``."""
        outcomes = [worker.last for worker in self.workers.by_name.values()]
        return status_line(outcomes, prefix=self.sharing.describe())

    # -------------------------------------------------------------- control

    def kick(self, device: str) -> None:
        """Reconcile ``device`` now (no-op for a device not managed)."""
        self.workers.kick((device,))

    def _owned_elsewhere(self, device: str) -> str | None:
        """The cluster node that owns ``device``, when it is not this one."""
        if self.sharing.node is None or self.sharing.owns(device):
            return None
        return self.sharing.owner_of(device)

    def _control_server(self) -> ControlServer:
        resend = partial(
            resend_passwords,
            workers=self.workers.by_name,
            state=self.state,
            reconciler=self.reconciler,
            elsewhere=self._owned_elsewhere,
        )
        return control_server(
            self.socket_path,
            snapshot=self.board.snapshot,
            rollout=self.conductor,
            resend=resend,
            changed=self.board.rebuild,
            leader=lambda: (self.sharing.leader, self.sharing.node),
        )

    # --------------------------------------------------------------- running

    def _background(self) -> list[asyncio.Task[None]]:
        """Start what runs while the daemon serves: the watcher, the timers, the rollout driver."""

        async def reload(why: str) -> None:
            await self.reload(why=why)

        watcher = DesiredWatcher(self.desired_dir, reload=reload, stopping=self.stopping)
        beat = heartbeat(
            self.stopping, board=self.board, notifier=self.notifier, metrics=self.metrics
        )
        jobs = {
            "watch": watcher.run(),
            "backstop": backstop(self.stopping, partial(self.reload, why="periodic")),
            "heartbeat": beat,
            "rollout": self.conductor.run(self.stopping),
        }
        return [asyncio.create_task(job, name=name) for name, job in jobs.items()]

    async def run(self) -> int:
        """Serve until SIGTERM/SIGINT: start, reload, run the background tasks, then stop."""
        check_desired_dir(self.desired_dir)
        try:
            await self.sharing.start()
        except SharingError as exc:
            raise StartupError(str(exc)) from None
        self._handle_signals()
        control = self._control_server()
        start_control(control)
        try:
            server = start_metrics(
                self.metrics, self.settings.metrics_address, status=self.board.snapshot
            )
        except StartupError:
            control.close()
            raise
        daemon_events.daemon_starting(
            self.log,
            desired_dir=str(self.desired_dir),
            state_dir=str(self.settings.state_dir),
            settings=self.settings,
        )
        try:
            await self.reload(why="start")
        except StartupError:
            await self.sharing.stop()
            control.close()
            if server is not None:
                server.shutdown()
            raise
        self.notifier.ready(self.summary())
        background = self._background()
        await self.stopping.wait()
        await self._stop(background)
        control.close()
        if server is not None:
            server.shutdown()
        self.notifier.close()
        daemon_events.daemon_stopped(self.log)
        return 0

    def _handle_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_stop, sig)
        loop.add_signal_handler(signal.SIGHUP, self._on_hup)

    async def _stop(self, background: Sequence[asyncio.Task[None]]) -> None:
        """Let the reconciles in flight finish, leave the cluster, end the background tasks."""
        self.notifier.stopping()
        daemon_events.daemon_stopping(self.log, in_flight=self.workers.in_flight())
        await self.workers.drain(STOP_GRACE)
        await self.sharing.stop()
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await self.capacity.close()
        await self.tuning.aclose()

    def _on_stop(self, sig: signal.Signals) -> None:
        """Stop first, then say so: the stop must not depend on the log line getting out."""
        if not self.stopping.is_set():
            self.stopping.set()
            daemon_events.daemon_signal(self.log, signal=sig.name)

    def _on_hup(self) -> None:
        task = asyncio.get_running_loop().create_task(self._hup(), name="SIGHUP")
        self._hups.add(task)
        task.add_done_callback(self._hups.discard)

    async def _hup(self) -> None:
        """Read the settings again, take over those that can change live, reload everything."""
        async with self._settings_lock:
            if self._reread is None:
                daemon_events.daemon_signal(self.log, signal="SIGHUP")
            else:
                reread = await reread_settings(self.settings, self._reread)
                self.settings = reread.in_force
                self._retune(reread.change.live)
                log_reread(reread, log=self.log)
        await self.reload(kick_all=True, why="SIGHUP")

    def _retune(self, changed: Collection[str]) -> None:
        """Put ``changed`` settings (live ones, see syncd.settings_change) in force."""
        if not changed:
            return
        settings = self.settings
        if {"log_level", "log_format"} & set(changed):
            configure_logging(level=settings.log_level, fmt=settings.log_format, stream=sys.stdout)
        self.capacity.resize(settings.concurrency)
        self.tuning.retune(settings, changed)
        retry = RetryPolicy(attempts=settings.retry_attempts)
        self.reconciler.retune(pool=self.tuning.pool, retry=retry)
        self.conductor.retune(retry)
        self.monitor.retune(settings.resync_interval)
        self.workers.retune(timing=self.tuning.timing, lanes=self.tuning.lanes)
