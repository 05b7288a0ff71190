"""The daemon's device workers, one per device in force: started, handed new specs, stopped.

:class:`DeviceWorkers` keeps the workers' map in step with the specs a reload
puts in force (and the fleet view and metrics with it), kicks them, retunes
them after a SIGHUP, and lets their reconciles in flight finish at stop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping

from syncd.devices_view import DeviceView
from syncd.fleet_view import FleetView
from syncd.metrics import Metrics
from syncd.model import DeviceSpec
from syncd.slots import Lanes
from syncd.state import StateStore
from syncd.worker import DeviceWorker, Timing

__all__ = ["DeviceWorkers"]


class DeviceWorkers:
    """The device workers by device name (``by_name``, the one map the daemon's parts read)."""

    def __init__(
        self,
        *,
        view: FleetView,
        metrics: Metrics,
        state: StateStore,
        new: Callable[[DeviceSpec], DeviceWorker],
        forget: Callable[[str], None],
        ask_again: Callable[[str], None],
    ) -> None:
        self.by_name: dict[str, DeviceWorker] = {}
        self._view = view
        self._metrics = metrics
        self._state = state
        #: Builds the worker of a device new to the daemon.
        self._new = new
        #: Drops what the reconciler keeps of a device gone.
        self._forget = forget
        #: Tells the reconciler an operator asks for a device's PUT again (a rejection
        #: of its desired state no longer stands).
        self._ask_again = ask_again

    async def update(self, specs: Mapping[str, DeviceSpec], *, kick_all: bool) -> int:
        """Stop workers of devices gone, start new ones, hand changed specs over; count them."""
        workers = self.by_name
        gone = [n for n in workers if n not in specs]
        for name in gone:
            await workers.pop(name).stop()
            self._forget(name)
        self._metrics.forget(gone)
        self._view.forget(gone)
        changed = len(gone)
        for name, spec in specs.items():
            current = workers.get(name)
            if current is None:
                self._view.devices[name] = DeviceView(
                    spec,
                    revision=self._state.applied_revision(name),
                    last_change=self._state.last_change(name),
                )
                workers[name] = self._new(spec)
                workers[name].start()
                changed += 1
            elif current.spec != spec or kick_all:
                news = current.spec != spec
                if news:
                    self._view.devices[name].update_spec(spec)
                else:  # a SIGHUP: every device, none ahead of an edit's
                    self._ask_again(name)
                current.update(spec, news=news)
                changed += 1
        self._view.version += 1
        self._metrics.devices.set(len(workers))
        return changed

    def kick(self, names: Iterable[str]) -> None:
        """Reconcile each of ``names`` now (no-op for a device not managed)."""
        for name in names:
            worker = self.by_name.get(name)
            if worker is not None:
                worker.kick()

    def ask_again(self, names: Iterable[str]) -> None:
        """Reconcile each of ``names`` now, a rejection of its desired state forgotten."""
        for name in names:
            worker = self.by_name.get(name)
            if worker is not None:
                self._ask_again(name)
                worker.kick()

    def retune(self, *, timing: Timing, lanes: Lanes) -> None:
        """Hand every worker the timing and lanes of new settings."""
        for worker in self.by_name.values():
            worker.retune(timing=timing, lanes=lanes)

    def in_flight(self) -> int:
        """How many workers are reconciling now."""
        return sum(w.running for w in self.by_name.values())

    async def drain(self, grace: float) -> None:
        """Let reconciles in flight (a PUT among them) finish, within ``grace`` seconds."""
        workers = list(self.by_name.values())
        for worker in workers:
            worker.kick(news=False)  # wake idle workers so they see `stopping` and return
        tasks = [w.task for w in workers if w.task is not None]
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
