"""What a rollout is: the values of the state machine in :mod:`syncd.rollout`.

A :class:`Rollout` holds the waves (only devices with a pending change; waves
without one are skipped), a status per device, and the policy values it needs,
resolved when it started (``maxFailures`` as a number of devices, ``bake``,
whether to revert). Beside it: what a device's status means (settled, final,
failed), what a step answers (:class:`Step`, :class:`Event`), and what the
gate is told (:class:`Decision`, :class:`WaitReason`).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from immutables import Map

__all__ = [
    "FAILED_OR_REVERTED",
    "FINAL",
    "SETTLED",
    "Decision",
    "DeviceStatus",
    "Event",
    "Result",
    "Rollout",
    "RolloutState",
    "Step",
    "WaitReason",
    "WaveProgress",
]


class DeviceStatus(enum.StrEnum):
    PENDING = "pending"  # waits for its wave (or for the halt/pause to end)
    ACTIVE = "active"  # its PUT or health check is under way
    HEALTHY = "healthy"  # PUT accepted, verified and (where gated) registered again
    IN_SYNC = "in_sync"  # nothing to change after all
    FAILED = "failed"  # PUT rejected, not verified, or health check failed
    UNREACHABLE = "unreachable"  # not a failure; it may start again when it answers
    REVERTED = "reverted"  # failed, then given back what the PUT changed


class RolloutState(enum.StrEnum):
    RUNNING = "running"
    HALTED = "halted"
    COMPLETED = "completed"


class WaitReason(enum.StrEnum):
    WAVE = "wave"  # its wave has not started
    HALTED = "halted"
    PAUSED = "paused"
    ACTIVE = "active"  # it is already under way
    DONE = "done"  # it has its outcome in this rollout
    POLICY = "policy"  # _fleet.yaml is invalid and no valid policy is known


#: What the caller reports about one device.
Result = Literal["healthy", "in_sync", "failed", "unreachable"]

#: Statuses that count a device as settled for its wave being done.
SETTLED = frozenset(
    {
        DeviceStatus.HEALTHY,
        DeviceStatus.IN_SYNC,
        DeviceStatus.FAILED,
        DeviceStatus.UNREACHABLE,
        DeviceStatus.REVERTED,
    }
)
#: Statuses that never start again in this rollout (an unreachable device may).
FINAL = SETTLED - {DeviceStatus.UNREACHABLE}
FAILED_OR_REVERTED = frozenset({DeviceStatus.FAILED, DeviceStatus.REVERTED})


@dataclass(frozen=True)
class Event:
    """One SPEC section 7 event: its name and JSON-ready fields (``revision`` included)."""

    name: str
    fields: Mapping[str, Any]


@dataclass(frozen=True)
class Decision:
    """May this device's PUT start now? If not, why, and for a wave, which."""

    go: bool
    reason: WaitReason | None = None
    wave: str | None = None
    #: What the wait is about in one sentence (the policy file's error), if it says.
    detail: str | None = None


@dataclass(frozen=True)
class WaveProgress:
    """One wave as ``syncd status`` shows it."""

    name: str
    devices: int
    done: int
    failed: int
    state: Literal["waiting", "running", "done"]


@dataclass(frozen=True)
class Rollout:
    revision: str
    #: (wave name, its devices with a pending change), in rollout order; no empty wave.
    waves: tuple[tuple[str, tuple[str, ...]], ...]
    #: Held as an :class:`immutables.Map` whatever it is given as, so a step that
    #: changes one device copies O(log N), not the fleet (see :meth:`with_status`).
    status: Mapping[str, DeviceStatus]
    #: Index into ``waves`` of the wave under way (or where it halted, or the last).
    wave: int = 0
    state: RolloutState = RolloutState.RUNNING
    #: Failures since the start or the last resume.
    failures: int = 0
    #: Failures tolerated (``maxFailures`` resolved for this rollout's size); None: no limit.
    max_failures: int | None = None
    bake: float = 0.0
    revert: bool = False
    #: Monotonic time since which the current, done wave has had no new failure.
    bake_started: float | None = None
    #: Derived from ``waves`` and ``status`` (None: worked out here), carried from
    #: step to step so a step costs O(1), not a scan of the fleet: each device's
    #: wave, and how many devices of each wave are not settled yet.
    wave_index: Mapping[str, int] = field(default=None, compare=False, repr=False)  # type: ignore[arg-type]
    unsettled: tuple[int, ...] = field(default=None, compare=False, repr=False)  # type: ignore[arg-type]

    def __post_init__(self) -> None:
        if not isinstance(self.status, Map):
            object.__setattr__(self, "status", Map(self.status))
        if self.wave_index is None:
            index = {d: i for i, (_, ds) in enumerate(self.waves) for d in ds}
            object.__setattr__(self, "wave_index", index)
        if self.unsettled is None:
            counts = [0] * len(self.waves)
            for device, status in self.status.items():
                wave = self.wave_index.get(device)
                if wave is not None and status not in SETTLED:
                    counts[wave] += 1
            object.__setattr__(self, "unsettled", tuple(counts))

    @property
    def current_wave(self) -> str | None:
        return self.waves[self.wave][0] if self.waves else None

    @property
    def devices(self) -> tuple[str, ...]:
        return tuple(d for _, devices in self.waves for d in devices)

    @property
    def failed(self) -> tuple[str, ...]:
        """Every device that failed in this rollout (reverted or not), sorted."""
        return tuple(sorted(d for d, s in self.status.items() if s in FAILED_OR_REVERTED))

    def wave_of(self, device: str) -> int | None:
        return self.wave_index.get(device)

    def with_status(self, device: str, status: DeviceStatus) -> Mapping[str, DeviceStatus]:
        """The statuses with ``device``'s replaced: a new map sharing all the rest."""
        held = self.status
        assert isinstance(held, Map)  # __post_init__
        return held.set(device, status)


class Step(NamedTuple):
    """A new rollout, the events to log, and failed devices to revert now."""

    rollout: Rollout
    events: tuple[Event, ...] = ()
    revert: tuple[str, ...] = ()
