"""The fleet policy of ``_fleet.yaml``: waves, health, maintenance windows, calls.

A :class:`FleetPolicy` is made of frozen values, read and checked from
``_fleet.yaml`` by :mod:`syncd.policy_schema`; without the file,
:data:`DEFAULT_POLICY` applies (no health gate, one wave, no halting; call
deferral and registration monitoring on).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Literal

from syncd.desired.result import Problem

__all__ = [
    "ALL_DAYS",
    "DAY_NAMES",
    "DEFAULT_POLICY",
    "UNMATCHED_WAVE",
    "CallsPolicy",
    "FleetPolicy",
    "HealthPolicy",
    "OnFailure",
    "PolicyResult",
    "RolloutPolicy",
    "Wave",
    "Window",
    "WindowKind",
    "policy_material",
]

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
#: Monday is 0, as ``datetime.weekday()`` counts.
ALL_DAYS: frozenset[int] = frozenset(range(7))
#: The wave of devices that no wave of the policy matches (it runs last); reserved.
UNMATCHED_WAVE = "unmatched"

OnFailure = Literal["halt", "revert"]
WindowKind = Literal["allow", "deny"]


@dataclass(frozen=True)
class Wave:
    """One wave: device-name globs, a percentage of the devices left, or (neither) the rest."""

    name: str
    devices: tuple[str, ...] | None = None
    percent: int | None = None


@dataclass(frozen=True)
class RolloutPolicy:
    waves: tuple[Wave, ...] = ()
    #: Seconds a done wave must stay free of new failures before the next starts.
    bake: float = 0.0
    #: Failed devices tolerated per rollout: a number, "N%", or None for no limit.
    max_failures: int | str | None = None
    on_failure: OnFailure = "halt"


@dataclass(frozen=True)
class HealthPolicy:
    registration: bool = True
    timeout: float = 60.0
    monitor: bool = True


@dataclass(frozen=True)
class Window:
    """An allow or deny window: on ``days`` (0 = Monday) from ``start`` to ``end``.

    ``start`` and ``end`` are minutes after local midnight in ``tz``; ``end`` may
    be 1440 (24:00), and an ``end`` before ``start`` crosses midnight into the
    next day (the window belongs to the day it starts on).
    """

    kind: WindowKind
    days: frozenset[int] = ALL_DAYS
    start: int = 0
    end: int = 1440
    tz: str = "UTC"


@dataclass(frozen=True)
class CallsPolicy:
    wait_for_idle: bool = True
    max_wait: float = 300.0


@dataclass(frozen=True)
class FleetPolicy:
    rollout: RolloutPolicy = field(default_factory=RolloutPolicy)
    health: HealthPolicy = field(default_factory=HealthPolicy)
    windows: tuple[Window, ...] = ()
    calls: CallsPolicy = field(default_factory=CallsPolicy)

    def max_failures_for(self, total_devices: int) -> int | None:
        """Failed devices tolerated in a rollout of ``total_devices``; None: no limit.

        "N%" rounds down: with 10 % of 12 devices one failure is tolerated, a second halts.
        """
        limit = self.rollout.max_failures
        if isinstance(limit, str):
            return total_devices * int(limit[:-1]) // 100
        return limit


#: The policy without ``_fleet.yaml``: no health gate, one wave, no halting.
DEFAULT_POLICY = FleetPolicy(health=HealthPolicy(registration=False))


@dataclass
class PolicyResult:
    """The policy read from ``_fleet.yaml``, or None when absent or invalid, and problems."""

    policy: FleetPolicy | None
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if not p.warning]


def policy_material(policy: FleetPolicy | None, *, invalid: bool = False) -> str:
    """What a ``tree:`` revision hashes of ``_fleet.yaml`` (SPEC 10: the policy is part
    of the desired state): the policy in force as values (a comment changes nothing),
    a mark when the file is invalid and no valid policy is known, nothing without it."""
    if invalid:
        return "_fleet.yaml: invalid\n"
    if policy is None:
        return ""
    values = json.dumps(asdict(policy), sort_keys=True, default=sorted)
    return f"_fleet.yaml={values}\n"
