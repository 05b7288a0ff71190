"""The fleet policy in force: the last valid ``_fleet.yaml``, each device's wave, the windows.

An invalid ``_fleet.yaml`` keeps the last valid policy in force, and each of
its problems is logged once, when it first appears. Without the file the
default policy applies (:data:`syncd.policy.DEFAULT_POLICY`).

An invalid ``_fleet.yaml`` with no valid one read before (a start, or a file
that appears invalid) leaves no policy a change could be rolled out under:
:attr:`PolicyInForce.invalid` names its first error, and until the file is
fixed no rollout starts and no change goes out (drift corrections do, under
the default policy: they are no rollout's). While the file is invalid, a new
revision (a Git commit that broke it) with the same pending changes keeps the
rollout in force, a halted one halted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from syncd import events
from syncd.desired import Problem
from syncd.policy import DEFAULT_POLICY, FleetPolicy, PolicyResult, policy_material
from syncd.waves import assign_waves, wave_order
from syncd.windows import WindowState, window_state

__all__ = ["PolicyInForce"]


class PolicyInForce:
    """The policy a rollout runs under, kept across reloads; one per conductor."""

    def __init__(self, *, log: Any, wall: Callable[[], datetime]) -> None:
        self.policy: FleetPolicy = DEFAULT_POLICY
        #: Whether a valid ``_fleet.yaml`` was ever read (an invalid one keeps the last).
        self.fleet_file = False
        self._log = log
        self._wall = wall
        #: The first error of an invalid ``_fleet.yaml`` while no valid policy is known.
        self.invalid: Problem | None = None
        #: Whether ``_fleet.yaml`` is invalid now (the last valid policy may be in force).
        self.file_invalid = False
        self._problems: set[Problem] = set()
        self._waves: dict[str, str] = {}

    def use(self, result: PolicyResult, fleet: Iterable[str]) -> None:
        """A (re)load: ``_fleet.yaml``'s policy if valid; the waves of every device of ``fleet``."""
        problems = set(result.problems)
        for problem in sorted(problems - self._problems, key=str):
            events.desired_problem(self._log, problem)
        self._problems = problems
        self.file_invalid = bool(result.errors)
        if not result.errors:
            self.policy = result.policy if result.policy is not None else DEFAULT_POLICY
            self.fleet_file = result.policy is not None
            self.invalid = None
        elif not self.fleet_file:
            self.invalid = result.errors[0]
        # No wave is anyone's while no policy says what the waves are.
        waves = assign_waves(fleet, self.policy.rollout.waves) if self.invalid is None else {}
        self._waves = waves

    def material(self, result: PolicyResult) -> str:
        """What the ``tree:`` revision hashes of the policy once ``result`` is in :meth:`use`."""
        if not result.errors:
            return policy_material(result.policy)
        if self.fleet_file:
            return policy_material(self.policy)  # the last valid one stays in force
        return policy_material(None, invalid=True)

    def wave_of(self, device: str) -> str | None:
        """The device's wave under the policy in force."""
        return self._waves.get(device)

    def waves_of(self, devices: Iterable[str]) -> dict[str, str]:
        """Device -> its wave, for ``devices`` of the fleet last given to :meth:`use`."""
        return {device: self._waves[device] for device in devices}

    def wave_order(self) -> tuple[str, ...]:
        return wave_order(self.policy.rollout.waves)

    def window(self) -> WindowState:
        return window_state(self.policy.windows, self._wall())

    def windows_open(self) -> bool:
        """No window is set, or one is open now."""
        return not self.policy.windows or self.window().open
