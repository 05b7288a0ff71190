"""The rollout of one desired revision, as a pure state machine.

The daemon (or ``syncd apply``) feeds it facts — a device's outcome, the
monotonic clock — and does what it answers: which device may start now, which
events to log, which failed devices to revert. Nothing here reads a clock,
the network or a file, so every rule is a unit test.

A :class:`~syncd.rollout_values.Rollout` is a value: each function returns a
new one. A pause is not part of it: it survives new revisions, so the caller
keeps it and passes it in. :mod:`syncd.saved_rollout` carries it through the
state store as plain JSON.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from syncd.policy import FleetPolicy
from syncd.rollout_values import (
    FAILED_OR_REVERTED,
    FINAL,
    SETTLED,
    Decision,
    DeviceStatus,
    Event,
    Result,
    Rollout,
    RolloutState,
    Step,
    WaitReason,
    WaveProgress,
)

__all__ = [
    "abandoned",
    "begin",
    "may_start",
    "progress",
    "record",
    "recovers",
    "restarted",
    "resume",
    "retry_failed",
    "reverted",
    "reverts_due",
    "start",
    "tick",
]


# ---------------------------------------------------------------- decisions


def start(
    revision: str, pending: Mapping[str, str], wave_order: Sequence[str], policy: FleetPolicy
) -> Step:
    """A rollout of ``revision`` over ``pending`` (device -> wave), its first wave started.

    ``wave_order`` names the waves in order (see ``waves.wave_order``); a wave
    not in it runs after those that are. With nothing pending the rollout is
    completed at once and logs nothing.
    """
    order = list(wave_order) + sorted(set(pending.values()) - set(wave_order))
    waves = tuple(
        (name, tuple(sorted(d for d, w in pending.items() if w == name))) for name in order
    )
    waves = tuple(w for w in waves if w[1])
    rollout = Rollout(
        revision=revision,
        waves=waves,
        status=dict.fromkeys(pending, DeviceStatus.PENDING),
        max_failures=policy.max_failures_for(len(pending)),
        bake=policy.rollout.bake,
        revert=policy.rollout.on_failure == "revert",
    )
    if not waves:
        return Step(dataclasses.replace(rollout, state=RolloutState.COMPLETED))
    started = _event(
        rollout,
        "rollout.started",
        waves=[{"name": name, "devices": len(devices)} for name, devices in waves],
    )
    return Step(rollout, (started, _wave_event(rollout)))


def may_start(
    rollout: Rollout, device: str, *, paused: bool, active_elsewhere: bool = False
) -> Decision:
    """Whether ``device``'s PUT may start now as far as the rollout goes.

    Windows and calls are checked apart. A device not in the rollout is not
    held by it (a drift correction, say). ``active_elsewhere``: a device under
    way was started by another node, whose PUT is over for this one (a cluster
    follower asking: the device's ownership key outlives the other's PUT).
    """
    status = rollout.status.get(device)
    if status is None:
        return Decision(True)
    if status in FINAL:
        return Decision(False, WaitReason.DONE)
    if status is DeviceStatus.ACTIVE and not active_elsewhere:
        return Decision(False, WaitReason.ACTIVE)
    if rollout.state is RolloutState.HALTED:
        return Decision(False, WaitReason.HALTED)
    if paused:
        return Decision(False, WaitReason.PAUSED)
    index = rollout.wave_of(device)
    if rollout.state is RolloutState.RUNNING and index is not None and index > rollout.wave:
        return Decision(False, WaitReason.WAVE, rollout.waves[index][0])
    return Decision(True)


def abandoned(rollout: Rollout, device: str) -> Rollout:
    """``device``'s reconcile ended without its PUT (another node took the device, say):
    it is pending again, not under way for ever."""
    if rollout.status.get(device) is not DeviceStatus.ACTIVE:
        return rollout
    return _with(rollout, device, DeviceStatus.PENDING)


def begin(rollout: Rollout, device: str) -> Rollout:
    """``device``'s PUT has started (call after a ``go`` from :func:`may_start`).

    An unreachable device tried again stays settled until its outcome: its wave
    was done without it, and its retries at every resync must not hold the
    wave's bake back for ever (a failure of it still restarts the bake).
    """
    if rollout.status.get(device) is not DeviceStatus.PENDING:
        return rollout
    bake_started = rollout.bake_started
    if rollout.wave_of(device) == rollout.wave:
        bake_started = None  # the wave is not done while one of its devices is under way
    return _with(rollout, device, DeviceStatus.ACTIVE, bake_started=bake_started)


def record(
    rollout: Rollout, device: str, result: Result, now: float, *, paused: bool = False
) -> Step:
    """``device``'s outcome: settle it, count a failure, maybe halt, maybe start the next wave.

    ``now`` is monotonic. An outcome for a device that already has a final one
    in this rollout, or is not in it, changes nothing, but for a failed device
    found healthy later under the same desired state (its accounts registered at
    last) when the rollout does not revert: it is no failure of the rollout any
    more (``rollout.completed`` would name a healthy device), the count of
    failures that halted it stays.
    """
    status = rollout.status.get(device)
    if recovers(rollout, device, result):
        return _advance(_with(rollout, device, DeviceStatus(result)), now, paused=paused)
    if status is None or status in FINAL:
        return Step(rollout)
    new = DeviceStatus(result)
    if new is not DeviceStatus.FAILED:
        return _advance(_with(rollout, device, new), now, paused=paused)
    bake_started = rollout.bake_started
    if rollout.wave_of(device) == rollout.wave:
        bake_started = None  # bake measures time with no new failure: it starts over
    failed = _with(rollout, device, new, failures=rollout.failures + 1, bake_started=bake_started)
    if failed.state is RolloutState.HALTED:
        return Step(failed, (), (device,) if failed.revert else ())
    if failed.state is RolloutState.COMPLETED:
        return Step(failed)
    if failed.max_failures is not None and failed.failures > failed.max_failures:
        halted = dataclasses.replace(failed, state=RolloutState.HALTED, bake_started=None)
        event = _event(
            halted, "rollout.halted", wave=halted.current_wave, failed=list(halted.failed)
        )
        return Step(halted, (event,), reverts_due(halted))
    return _advance(failed, now, paused=paused)


#: Outcomes that show a device sound under the rollout's desired state.
_SOUND = ("healthy", "in_sync")


def recovers(rollout: Rollout, device: str, result: Result) -> bool:
    """Whether ``result`` takes ``device`` off the rollout's failures: it failed, is sound
    now under the same desired state, and the rollout does not revert its failures."""
    return (
        rollout.status.get(device) is DeviceStatus.FAILED
        and not rollout.revert
        and result in _SOUND
    )


def tick(rollout: Rollout, now: float, *, paused: bool = False) -> Step:
    """Let time pass: a done wave whose bake is over hands over to the next one."""
    return _advance(rollout, now, paused=paused)


def resume(rollout: Rollout) -> Rollout:
    """A halted rollout runs again: devices not yet done go on, failures count from zero.

    Its current wave's bake starts over at the next :func:`tick`. Anything
    other than a halted rollout is returned as it is.
    """
    if rollout.state is not RolloutState.HALTED:
        return rollout
    return dataclasses.replace(rollout, state=RolloutState.RUNNING, failures=0, bake_started=None)


def retry_failed(rollout: Rollout) -> Rollout:
    """A completed rollout's failed devices get another try (``syncd rollout resume``).

    They are pending again and the rollout runs from the first wave holding one,
    failures counted from zero; the devices done stay done, so the waves after
    it complete as their devices settle again. Anything else is returned as it is.
    """
    failed = set(rollout.failed)
    if rollout.state is not RolloutState.COMPLETED or not failed:
        return rollout
    status = {d: DeviceStatus.PENDING if d in failed else s for d, s in rollout.status.items()}
    first = min(rollout.wave_index[d] for d in failed if d in rollout.wave_index)
    return dataclasses.replace(
        rollout,
        status=status,
        wave=first,
        state=RolloutState.RUNNING,
        failures=0,
        bake_started=None,
        unsettled=None,  # type: ignore[arg-type]  # worked out again from the new status
    )


def reverted(rollout: Rollout, device: str) -> Rollout:
    """A failed device has been given back what the rollout's PUT changed (or had nothing to)."""
    if rollout.status.get(device) is not DeviceStatus.FAILED:
        return rollout
    return _with(rollout, device, DeviceStatus.REVERTED)


def reverts_due(rollout: Rollout) -> tuple[str, ...]:
    """Failed devices still to revert: with ``onFailure: revert``, once the rollout halted.

    The daemon asks this after a restart too, so a SIGKILL between the halt
    and the revert loses no revert.
    """
    if not rollout.revert or rollout.state is not RolloutState.HALTED:
        return ()
    return tuple(sorted(d for d, s in rollout.status.items() if s is DeviceStatus.FAILED))


def restarted(rollout: Rollout) -> Rollout:
    """The rollout as a freshly started process should take it from the state store.

    A device that was under way starts again (its GET shows whether the PUT
    landed), and a bake under way starts over: monotonic time does not survive
    a restart, and waiting a bake twice is safer than skipping one.
    """
    status = {
        d: DeviceStatus.PENDING if s is DeviceStatus.ACTIVE else s
        for d, s in rollout.status.items()
    }
    return dataclasses.replace(rollout, status=status, bake_started=None)


def progress(rollout: Rollout) -> tuple[WaveProgress, ...]:
    """Per wave: devices, how many are settled, how many failed, and where it stands."""
    out = []
    for i, (name, devices) in enumerate(rollout.waves):
        statuses = [rollout.status[d] for d in devices]
        done = sum(s in SETTLED for s in statuses)
        failed = sum(s in FAILED_OR_REVERTED for s in statuses)
        state: Literal["waiting", "running", "done"] = (
            "waiting" if i > rollout.wave else "done" if done == len(devices) else "running"
        )
        out.append(WaveProgress(name, len(devices), done, failed, state))
    return tuple(out)


# ----------------------------------------------------------------- internals


def _advance(rollout: Rollout, now: float, *, paused: bool) -> Step:
    """Complete the rollout, or move past done waves whose bake is over."""
    events: list[Event] = []
    while rollout.state is RolloutState.RUNNING and rollout.waves:
        if rollout.unsettled[rollout.wave]:
            rollout = dataclasses.replace(rollout, bake_started=None)
            break
        if rollout.wave == len(rollout.waves) - 1:
            rollout = dataclasses.replace(rollout, state=RolloutState.COMPLETED, bake_started=None)
            events.append(
                _event(
                    rollout,
                    "rollout.completed",
                    devices=len(rollout.status),
                    failed=list(rollout.failed),
                )
            )
            break
        if rollout.bake_started is None:
            rollout = dataclasses.replace(rollout, bake_started=now)
        assert rollout.bake_started is not None
        if paused or now - rollout.bake_started < rollout.bake:
            break
        rollout = dataclasses.replace(rollout, wave=rollout.wave + 1, bake_started=None)
        events.append(_wave_event(rollout))
    return Step(rollout, tuple(events))


def _with(rollout: Rollout, device: str, status: DeviceStatus, **changes: Any) -> Rollout:
    unsettled = rollout.unsettled
    wave = rollout.wave_index.get(device)
    settles = (status in SETTLED) - (rollout.status.get(device) in SETTLED)
    if wave is not None and settles:
        unsettled = (*unsettled[:wave], unsettled[wave] - settles, *unsettled[wave + 1 :])
    status_now = rollout.with_status(device, status)
    return dataclasses.replace(rollout, status=status_now, unsettled=unsettled, **changes)


def _event(rollout: Rollout, name: str, **fields: Any) -> Event:
    return Event(name, {"revision": rollout.revision, **fields})


def _wave_event(rollout: Rollout) -> Event:
    name, devices = rollout.waves[rollout.wave]
    return _event(rollout, "rollout.wave", wave=name, devices=len(devices))
