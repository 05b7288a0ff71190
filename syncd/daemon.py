"""Many devices, forever: watch the desired tree, resync, back off, obey signals.

Each device has one :class:`DeviceWorker` task. A worker sleeps until its
next resync (jittered), until it is kicked (its desired state changed, SIGHUP),
or until the daemon stops; then it reconciles, never twice at once: kicks that
arrive during a run fold into one more run. A global semaphore bounds how many
devices are in flight. A failing device only ever delays itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import stat
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import watchfiles

from syncd import loop
from syncd.client import REJECT_CODES, AuthError, ClientPool, RejectedError
from syncd.desired import DEFAULTS_FILE, SUFFIXES, Loader, Problem
from syncd.fleet import build_fleet
from syncd.logs import get_logger
from syncd.metrics import Metrics, serve_metrics
from syncd.model import DeviceSpec
from syncd.notify import Notifier
from syncd.reconcile import Outcome, Reconciler
from syncd.retrying import RetryPolicy
from syncd.settings import Settings
from syncd.state import StateError, StateStore

__all__ = ["Daemon", "StartupError", "run_daemon"]

#: How long SIGTERM waits for reconciles in flight before cancelling them.
STOP_GRACE = 8.0
#: Full reloads happen at least this often even if no file event arrives.
BACKSTOP_RELOAD = 30.0
#: How often the desired dir's real path is checked (a symlink swapped by git-sync).
LINK_CHECK = 0.5


class StartupError(Exception):
    """A fatal start-up problem: one sentence naming the dir or setting."""


class DeviceWorker:
    """Schedules one device: coalescing kicks, resync timer, backoff after failures."""

    def __init__(self, daemon: Daemon, spec: DeviceSpec) -> None:
        self.daemon = daemon
        self.spec = spec
        self.kicked = asyncio.Event()
        self.failures = 0
        self.running = False
        self.last: Outcome | None = None
        self.task: asyncio.Task[None] | None = None

    def kick(self) -> None:
        self.kicked.set()

    def start(self) -> None:
        self.kick()
        self.task = asyncio.create_task(self._loop(), name=f"device:{self.spec.name}")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    def _next_delay(self, outcome: Outcome) -> float | None:
        """Seconds until this device's next reconcile; None waits for a kick.

        In sync: the resync interval, jittered ±10 %. Unreachable: 1, 2, 4 ...
        seconds, growing up to the resync interval. Credentials refused: from
        the resync interval up to ``max_backoff``. A rejected PUT: not again
        until the desired state changes.
        """
        settings = self.daemon.settings
        jitter = random.uniform(0.9, 1.1)
        if outcome.ok:
            self.failures = 0
            return settings.resync_interval * jitter
        self.failures += 1
        error = outcome.error
        if isinstance(error, RejectedError) and error.code in REJECT_CODES:
            return None
        growth = float(2 ** min(self.failures - 1, 30))
        if isinstance(error, AuthError):
            return min(settings.max_backoff, settings.resync_interval * growth) * jitter
        return min(settings.resync_interval, growth) * jitter

    async def _loop(self) -> None:
        delay: float | None = None
        while not self.daemon.stopping.is_set():
            if not self.kicked.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.kicked.wait(), delay)
            if self.daemon.stopping.is_set():
                return
            self.kicked.clear()
            async with self.daemon.gate:
                if self.daemon.stopping.is_set():
                    return
                self.running = True
                try:
                    outcome = await self.daemon.reconciler.reconcile(self.spec, apply=True)
                except Exception as exc:  # a bug must not end this device's schedule
                    self.daemon.log.error(
                        "apply.failed",
                        device=self.spec.name,
                        error=f"internal error: {type(exc).__name__}: {exc}",
                        code=None,
                        param=None,
                        description=None,
                    )
                    outcome = Outcome(
                        self.spec.name,
                        self.spec.url,
                        self.spec.mode,
                        "error",
                        error_kind="internal",
                        error_message=str(exc),
                    )
                finally:
                    self.running = False
            self.last = outcome
            self.daemon.observe(outcome)
            delay = self._next_delay(outcome)


class Daemon:
    def __init__(self, settings: Settings, *, devices: Sequence[str] = ()) -> None:
        self.settings = settings
        self.only = list(devices)
        self.log = get_logger()
        self.stopping = asyncio.Event()
        self.gate = asyncio.Semaphore(settings.concurrency)
        self.workers: dict[str, DeviceWorker] = {}
        self.metrics = Metrics()
        self.notifier = Notifier()
        self.desired_dir = settings.desired_dir
        self.loader = Loader(self.desired_dir)
        self._real_dir = self._realpath()
        self._reload_lock = asyncio.Lock()
        self._last_status = ""
        self._last_problems: set[Problem] = set()
        state_dir = settings.state_dir
        try:
            self.state = StateStore.open(state_dir)
        except StateError as exc:
            raise StartupError(str(exc)) from None
        self.pool = ClientPool(
            timeout=settings.request_timeout,
            keepalive_expiry=settings.resync_interval * 1.2 + 5,
        )
        self.reconciler = Reconciler(
            pool=self.pool,
            state=self.state,
            retry=RetryPolicy(attempts=settings.retry_attempts),
            metrics=self.metrics,
        )

    def _realpath(self) -> Path:
        return Path(os.path.realpath(self.desired_dir))

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
            if not self.desired_dir.is_dir():
                self.log.error(
                    "desired.invalid",
                    file=str(self.desired_dir),
                    line=None,
                    error=f"desired dir {self.desired_dir} is missing; keeping the last state",
                )
                return
            desired = await asyncio.to_thread(self.loader.load)
            unreadable = [p for p in desired.problems if p.file == "."]
            if unreadable:
                # An unreadable desired dir says nothing about the devices: keep them all.
                self.log.error(
                    "desired.invalid",
                    file=str(self.desired_dir),
                    line=None,
                    error=f"{unreadable[0].message}; keeping the last state",
                )
                return
            fleet = build_fleet(desired, environ=os.environ, only=self.only)
            # The 30 s backstop repeats only what is new, so journald is not flooded.
            periodic = why == "periodic"
            seen, self._last_problems = self._last_problems, set(fleet.problems)
            for problem in fleet.problems:
                if periodic and problem in seen:
                    continue
                if problem.warning:
                    self.log.warning(
                        "desired.warning", file=problem.file, line=problem.line, error=str(problem)
                    )
                else:
                    self.log.error(
                        "desired.invalid", file=problem.file, line=problem.line, error=str(problem)
                    )
            errors = [p for p in fleet.problems if not p.warning]
            self.metrics.load_errors.inc(len({p.file for p in errors}))
            self.metrics.invalid_files.set(len(fleet.broken))
            specs = dict(fleet.specs)
            # The last valid state of a device whose file is now invalid stays in force.
            bad_files = set(desired.invalid_files) | {
                w.spec.file for w in self.workers.values() if w.spec.name in fleet.broken
            }
            for name, worker in self.workers.items():
                if name not in specs and worker.spec.file in bad_files:
                    specs[name] = worker.spec
            gone = [n for n in self.workers if n not in specs]
            for name in gone:
                await self.workers.pop(name).stop()
                self.reconciler.forget(name)
            self.metrics.forget(gone)
            changed = len(gone)
            for name, spec in specs.items():
                current = self.workers.get(name)
                if current is None:
                    self.workers[name] = DeviceWorker(self, spec)
                    self.workers[name].start()
                    changed += 1
                elif current.spec != spec or kick_all:
                    current.spec = spec
                    current.failures = 0
                    current.kick()
                    changed += 1
            self.metrics.devices.set(len(self.workers))
            if periodic and not changed and seen == self._last_problems:
                return
            self.log.info(
                "desired.loaded",
                devices=len(self.workers),
                invalid=len(fleet.broken),
                reason=why,
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
        counts = {"in sync": 0, "differing": 0, "failing": 0, "skipped": 0, "pending": 0}
        for worker in self.workers.values():
            last = worker.last
            if last is None:
                counts["pending"] += 1
            elif last.status in ("in_sync", "applied"):
                counts["in sync"] += 1
            elif last.status == "changes":
                counts["differing"] += 1
            elif last.status == "skipped":
                counts["skipped"] += 1
            else:
                counts["failing"] += 1
        parts = ", ".join(f"{n} {k}" for k, n in counts.items() if n)
        return f"{len(self.workers)} devices: {parts or 'none'}"

    def _update_status(self) -> None:
        status = self.summary()
        if status != self._last_status:
            self._last_status = status
            self.notifier.status(status)

    # --------------------------------------------------------------- running

    async def _watch(self) -> None:
        """Reload when a YAML file (or a defaults file) under the desired dir changes."""
        first = True
        reported_missing = False
        while not self.stopping.is_set():
            target = self._realpath()
            identity = _dir_identity(target)
            if identity is None:
                # Removed (rm -rf and a fresh clone, say): keep the last state until it is back.
                first = False
                if not reported_missing:
                    reported_missing = True
                    await self.reload(why="desired dir missing")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), LINK_CHECK)
                continue
            reported_missing = False
            if not first:
                # Relinked, replaced or back: what changed while unwatched counts too.
                self._real_dir = target
                await self.reload(why="desired dir relinked")
            first = False
            stop_watch = asyncio.Event()
            relinked = asyncio.create_task(self._watch_link(target, identity, stop_watch))
            try:
                async for changes in watchfiles.awatch(
                    target,
                    stop_event=stop_watch,
                    debounce=400,
                    step=30,
                    watch_filter=_desired_filter,
                    recursive=True,
                    ignore_permission_denied=True,
                ):
                    if self.stopping.is_set():
                        break
                    await self.reload(why="files changed")
                    del changes
            except (FileNotFoundError, RuntimeError, OSError) as exc:
                self.log.warning("desired.watch_failed", error=str(exc))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), 1.0)
            finally:
                relinked.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await relinked

    async def _watch_link(
        self, target: Path, identity: tuple[int, int], stop_watch: asyncio.Event
    ) -> None:
        """Stop the watcher when the desired dir resolves elsewhere (symlink swap) or is
        no longer the directory watched (removed, or replaced by a new one)."""
        while not self.stopping.is_set():
            await asyncio.sleep(LINK_CHECK)
            if self._realpath() != target or _dir_identity(target) != identity:
                break
        stop_watch.set()

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
        self.log.info(
            "daemon.starting",
            desired_dir=str(self.desired_dir),
            state_dir=str(self.settings.state_dir),
        )
        await self.reload(why="start")
        self.notifier.ready(self.summary())
        background = [
            asyncio.create_task(self._watch(), name="watch"),
            asyncio.create_task(self._backstop(), name="backstop"),
            asyncio.create_task(self._heartbeat(), name="heartbeat"),
        ]
        await self.stopping.wait()
        self.notifier.stopping()
        self.log.info("daemon.stopping", in_flight=sum(w.running for w in self.workers.values()))
        await self._drain(self.workers.values())
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await self.pool.aclose()
        if server is not None:
            server.shutdown()
        self.notifier.close()
        self.log.info("daemon.stopped")
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
            self.log.info("daemon.signal", signal=sig.name)
            self.stopping.set()

    def _on_hup(self) -> None:
        self.log.info("daemon.signal", signal="SIGHUP")
        asyncio.get_running_loop().create_task(self.reload(kick_all=True, why="SIGHUP"))


def _dir_identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the directory at ``path``; None if there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISDIR(st.st_mode) else None


def _desired_filter(change: watchfiles.Change, path: str) -> bool:
    name = os.path.basename(path)
    if name.startswith("."):
        # Editors and git write through hidden temp files, then rename into place;
        # the rename shows up as an event on the real name.
        return False
    return name.endswith(SUFFIXES) or name == DEFAULTS_FILE or "." not in name


def run_daemon(settings: Settings, *, devices: Sequence[str] = ()) -> int:
    """Entry point of ``syncd run``: 0 after SIGTERM/SIGINT, 1 on a fatal start-up error."""

    async def main() -> int:
        try:
            daemon = Daemon(settings, devices=devices)
            return await daemon.run()
        except StartupError as exc:
            get_logger().error("daemon.failed", error=str(exc))
            raise

    try:
        return loop.run(main())
    except StartupError as exc:
        import sys

        print(f"syncd: error: {exc}", file=sys.stderr)
        return 1
