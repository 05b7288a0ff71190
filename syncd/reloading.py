"""The steps of the daemon's reload of the desired tree, apart from its workers.

:func:`read_desired` reads the tree, or says why the desired dir cannot be
read (that says nothing about the devices: they all keep their state).
:func:`report_problems` logs the tree's problems and shows them in the status
and the series. :func:`specs_in_force` keeps the last valid state of each
device whose file turned invalid.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence, Set
from pathlib import Path
from typing import TYPE_CHECKING, Any

from syncd import events
from syncd.desired import DesiredState, Loader, Problem, Resolved, name_from_path
from syncd.fleet_view import FleetView
from syncd.model import DeviceSpec
from syncd.status import InvalidFile

if TYPE_CHECKING:  # prometheus-client is imported only where metrics are served
    from syncd.metrics import Metrics

__all__ = ["read_desired", "report_problems", "specs_in_force"]


async def read_desired(loader: Loader, desired_dir: Path) -> DesiredState | str:
    """The tree as it is now, or why the desired dir cannot be read: that says nothing
    about the devices, which all keep their state (the caller says it, once)."""
    if not desired_dir.is_dir():
        return f"desired dir {desired_dir} is missing; keeping the last state"
    desired = await asyncio.to_thread(loader.load)
    unreadable = [p for p in desired.problems if p.file == "."]
    if unreadable:
        return f"{unreadable[0].message}; keeping the last state"
    return desired


def report_problems(
    resolved: Resolved,
    *,
    logged: Set[Problem] | None,
    log: Any,
    metrics: Metrics,
    fleet: FleetView,
    policy: Sequence[Problem] = (),
) -> None:
    """Log the problems (all, or those not in ``logged``); count them, show the invalid files.

    ``policy`` are the errors of ``_fleet.yaml``: counted and shown, not logged here.
    """
    for problem in resolved.problems:
        if logged is None or problem not in logged:
            device = name_from_path(problem.file)
            named = device if device in resolved.broken else None
            events.desired_problem(log, problem, device=named)
    errors = [*(p for p in resolved.problems if not p.warning), *policy]
    invalid_files = len({p.file for p in errors})
    metrics.load_errors.inc(invalid_files)
    metrics.invalid_files.set(invalid_files)
    metrics.set_desired_invalid(resolved.broken)
    fleet.invalid_files = tuple(InvalidFile(p.file, p.line, p.detail) for p in errors)
    fleet.version += 1


def specs_in_force(
    desired: DesiredState, resolved: Resolved, current: Mapping[str, DeviceSpec]
) -> dict[str, DeviceSpec]:
    """The usable specs, plus the ``current`` spec of each device whose file is now invalid.

    A spec equal to the current one is the current object: the daemon holds one
    copy per device, not one more per reload.
    """
    specs = {n: current[n] if current.get(n) == s else s for n, s in resolved.specs.items()}
    bad_files = set(desired.invalid_files) | {
        spec.file for spec in current.values() if spec.name in resolved.broken
    }
    for name, spec in current.items():
        if name not in specs and spec.file in bad_files:
            specs[name] = spec
    return specs
