"""``syncd apply`` as a rollout in the foreground: waves, health, bake, windows and calls.

The same :class:`~syncd.conductor.Conductor` and :class:`~syncd.gate.Gate` as
the daemon, driven by one task per device instead of a worker: a device
whose wave has not started waits to be kicked, one in a call looks again in
a few seconds, and every other outcome is final for this pass. The pass ends
when every device has its outcome and the reverts of a halt are out; its
verdict says why ``apply`` fails beyond device errors (a halt, a pause,
closed windows, devices still waiting).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from syncd import events
from syncd.client import ClientPool
from syncd.conductor import Conductor
from syncd.gate import Gate
from syncd.history import HistoryLog, format_time
from syncd.listing import in_words
from syncd.local_state import open_state
from syncd.logs import get_logger
from syncd.model import DeviceSpec
from syncd.outcome import Outcome
from syncd.policy import PolicyResult
from syncd.reconcile import Reconciler
from syncd.retrying import RetryPolicy
from syncd.rollout_values import WaitReason
from syncd.settings import Settings
from syncd.slots import PassSlots
from syncd.state import FileStateStore

__all__ = ["ApplyPass", "rollout_pass"]

#: Longest wait for the reverts of a halted rollout before ``apply`` gives up on them.
REVERT_WAIT = 60.0


@dataclass(frozen=True)
class RolloutPass:
    """Each device's last outcome, and why the pass fails besides them (None: it does not)."""

    outcomes: list[Outcome]
    verdict: str | None


async def rollout_pass(
    settings: Settings,
    *,
    specs: Mapping[str, DeviceSpec],
    fleet: Iterable[str],
    policy: PolicyResult,
    revision: str,
    ignore_windows: bool,
    on_done: Callable[[Outcome], None] | None = None,
    rollout_specs: Mapping[str, DeviceSpec[Any]] | None = None,
) -> RolloutPass:
    """Roll ``specs`` out once, in the foreground.

    ``rollout_specs``: every valid device of the tree, when ``specs`` is the few
    ``--device`` selects. The rollout is the tree's, so a selected device of a
    later wave waits for the earlier waves (which this pass does not run): a
    filter never lets a commit skip its canary.
    """
    state = open_state(settings)
    history = HistoryLog.in_state_dir(settings.state_dir)
    async with ClientPool(
        timeout=settings.request_timeout, connect_timeout=settings.connect_timeout
    ) as pool:
        run = ApplyPass(
            settings,
            pool=pool,
            state=state,
            history=history,
            devices=specs,
            revision=revision,
            ignore_windows=ignore_windows,
            on_done=on_done,
        )
        conductor = run.conductor
        conductor.load(
            policy=policy,
            specs=specs,
            revision=revision,
            fleet=fleet,
            rollout_specs=rollout_specs,
        )
        if ignore_windows and conductor.policy.windows:
            events.windows_ignored(get_logger(), revision=revision)
        outcomes = await run.drive_all(specs.values())
    return RolloutPass(outcomes, _verdict(conductor, outcomes, selected=rollout_specs is not None))


class ApplyPass:
    """One pass: the daemon's conductor, gate and reconciler, and a task per device."""

    def __init__(
        self,
        settings: Settings,
        *,
        pool: ClientPool,
        state: FileStateStore,
        history: HistoryLog,
        devices: Iterable[str],
        revision: str,
        ignore_windows: bool,
        on_done: Callable[[Outcome], None] | None,
    ) -> None:
        self._kicked = {name: asyncio.Event() for name in devices}
        self._revision = revision
        self._on_done = on_done
        self._slots = PassSlots(settings.concurrency)
        self._concurrency = settings.concurrency
        #: Devices whose task is not waiting for its wave (a kicked one counts from its
        #: kick, before its task wakes); none left and the wave unsettled: nothing can
        #: move the rollout on in this pass (a closed window, say).
        self._moving = len(self._kicked)
        #: Devices whose task waits for its wave and has not been kicked.
        self._waiting: set[str] = set()
        retry = RetryPolicy(attempts=settings.retry_attempts)
        self.conductor = conductor = Conductor(
            state=state,
            kick=self._kick,
            client_of=lambda spec: self._reconciler.client(spec),
            history=history,
            retry=retry,
        )
        gate = Gate(
            policy=lambda: conductor.policy,
            rollout=conductor,
            health=conductor.health,
            ignore_windows=ignore_windows,
        )
        self._reconciler = Reconciler(
            pool=pool,
            state=state,
            retry=retry,
            gate=gate,
            history=history,
            wave_of=conductor.wave_of,
            watch=_Once(),
            unanswered=conductor.unanswered,
        )

    def _kick(self, names: Iterable[str]) -> None:
        for name in names:
            event = self._kicked.get(name)
            if event is None:
                continue
            event.set()
            if name in self._waiting:  # moving from now: a task of a later wave whose
                self._waiting.discard(name)  # wait times out before this one wakes
                self._moving += 1  # must not take the pass for stuck

    def _stuck(self) -> bool:
        return self._moving == 0 and not self.conductor.wave_done()

    async def drive_all(self, specs: Iterable[DeviceSpec]) -> list[Outcome]:
        """Each device's last outcome, once the reverts of a halt are out (or given up on)."""
        stopping = asyncio.Event()
        ticking = asyncio.create_task(self.conductor.run(stopping), name="rollout")
        drives: list[asyncio.Task[Outcome]] = []
        try:
            for index, spec in enumerate(specs):
                drives.append(asyncio.create_task(self._drive(spec)))
                if index < self._concurrency or index % self._concurrency == 0:
                    await asyncio.sleep(0)  # requests leave while the rest are started
            outcomes = list(await asyncio.gather(*drives))
            await self.conductor.settle(REVERT_WAIT)
        finally:
            for drive in drives:
                drive.cancel()
            stopping.set()
            await ticking
        return outcomes

    async def _drive(self, spec: DeviceSpec) -> Outcome:
        """Reconcile ``spec`` until its outcome is final for this pass."""
        while True:
            outcome = await self._once(spec)
            if outcome.status == "error" and self._before_its_wave(spec):
                # Unreachable before its wave began (every device is read at the start):
                # tried again when the wave starts, where its failure settles it.
                if not await self._wave_started(spec.name):
                    break
                continue
            if outcome.status != "waiting":
                break
            if outcome.retry_after is not None:  # a call: look again soon
                await asyncio.sleep(outcome.retry_after)
                continue
            if outcome.waiting != "wave" or not await self._wave_started(spec.name):
                break
        self._moving -= 1
        if self._on_done is not None:
            self._on_done(outcome)
        return outcome

    def _before_its_wave(self, spec: DeviceSpec) -> bool:
        """Whether the device's change waits for a wave of this rollout not begun yet."""
        decision = self.conductor.may_start(spec)
        return not decision.go and decision.reason is WaitReason.WAVE

    async def _wave_started(self, name: str) -> bool:
        """Wait for the device's wave to start (True), or for the rollout to stop moving."""
        event = self._kicked[name]
        if event.is_set():  # kicked while its reconcile ran
            return True
        self._moving -= 1
        self._waiting.add(name)
        try:
            return await _kicked(event, self.conductor, self._stuck)
        finally:
            if name in self._waiting:  # not kicked (stuck, or cancelled): moving again
                self._waiting.discard(name)
                self._moving += 1

    async def _once(self, spec: DeviceSpec) -> Outcome:
        self._kicked[spec.name].clear()
        async with self.conductor.turns.of(spec.name):  # no revert of it meanwhile
            outcome = await self._slots.run(
                lambda: self._reconciler.reconcile(spec, apply=True, revision=self._revision)
            )
            outcome = await self.conductor.after(spec, outcome)
        self.conductor.observe(outcome)
        return outcome


async def _kicked(event: asyncio.Event, conductor: Conductor, stuck: Callable[[], bool]) -> bool:
    """Wait for the device's wave to start (True), or for the rollout to stop moving (False)."""
    while conductor.state == "running" and not stuck():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), 0.25)
            return True
    return event.is_set()


def _verdict(conductor: Conductor, outcomes: list[Outcome], *, selected: bool) -> str | None:
    if conductor.state == "halted":
        failed = in_words(conductor.rollout.failed) if conductor.rollout else ""
        return f"the rollout halted: failed devices: {failed}"
    waiting = [o for o in outcomes if o.status == "waiting"]
    if conductor.state == "paused" and waiting:
        return "the rollout is paused (`syncd rollout resume` continues it)"
    if any(o.waiting == "window" for o in waiting):
        next_open = conductor.window().next_open
        when = f"; the next opens at {format_time(next_open)}" if next_open else ""
        return (
            f"outside every maintenance window{when} "
            "(`syncd apply --ignore-windows` overrides them in an emergency)"
        )
    failed_before = sorted(o.device for o in waiting if o.failed_in_rollout)
    if failed_before:
        return (
            f"failed in this revision's rollout: {in_words(failed_before)} "
            "(`syncd rollout resume` tries them again)"
        )
    if waiting:
        names = in_words(sorted(o.device for o in waiting))
        if selected and all(o.waiting == "wave" for o in waiting):
            wave = conductor.rollout.current_wave if conductor.rollout else None
            return (
                f"{len(waiting)} device(s) wait for their wave: {names}; this revision's "
                f"rollout is at wave {wave}, whose devices --device did not select "
                "(`syncd apply` without --device runs it)"
            )
        return f"{len(waiting)} device(s) still wait for the rollout: {names}"
    return None


class _Once:
    """The pass's memory of what it logged: a device reconciled again (when its wave
    starts, after a call) does not repeat the same ``change.pending`` or error."""

    def __init__(self) -> None:
        self._said: set[tuple[str, str, Hashable]] = set()
        self._last: dict[tuple[str, str], Hashable] = {}

    def first(self, device: str, topic: str, key: Hashable) -> bool:
        said = (device, topic, key)
        self._last[device, topic] = key
        if said in self._said:
            return False
        self._said.add(said)
        return True

    def logged_key(self, device: str, topic: str) -> Hashable | None:
        return self._last.get((device, topic))

    def changing(self, device: str) -> None:
        pass
