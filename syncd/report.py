"""Render the results of a pass for people (plan text) and machines (``plan --json``)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from syncd.desired import Problem
from syncd.history import format_time
from syncd.outcome import Outcome, Tally, devices_text
from syncd.policy import FleetPolicy
from syncd.waves import assign_waves
from syncd.windows import WindowState, window_state

__all__ = ["plan_json", "plan_text", "rollout_facts", "summary"]

_STATUS = {
    "in_sync": "in_sync",
    "changes": "changes",
    "applied": "in_sync",
    "error": "error",
    "skipped": "skipped",
    "waiting": "changes",
}


def _value(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def summary(outcomes: Iterable[Outcome], broken: Mapping[str, str]) -> dict[str, int]:
    """The ``summary`` object of ``plan --json``: a device applied counts as in sync."""
    tally = Tally.of(outcomes, broken=len(broken))
    return {
        "devices": tally.devices,
        "in_sync": tally.converged,
        "changes": tally.changes,
        "errors": tally.errors,
        "skipped": tally.skipped,
    }


def plan_text(outcomes: list[Outcome], broken: Mapping[str, str]) -> str:
    """One line per changed field: ``device  account N  field: live -> desired``."""
    lines: list[str] = []
    for o in sorted(outcomes, key=lambda o: o.device):
        for c in o.changes:
            live = "(unknown)" if c.field == "password" else _value(c.live)
            desired = c.desired if c.field == "password" else _value(c.desired)
            note = "  (observe)" if o.mode.value == "observe" else ""
            lines.append(f"{o.device}  account {c.account}  {c.field}: {live} -> {desired}{note}")
        if o.failure is not None:
            lines.append(f"{o.device}  error: {o.failure.message}")
    for name, problem in sorted(broken.items()):
        lines.append(f"{name}  error: {problem}")
    s = summary(outcomes, broken)
    lines.append(
        f"{devices_text(s['devices'])}: {s['in_sync']} in sync, {s['changes']} with changes, "
        f"{s['errors']} errors, {s['skipped']} skipped"
    )
    return "\n".join(lines) + "\n"


def rollout_facts(policy: FleetPolicy | None) -> dict[str, Any]:
    """With a valid ``_fleet.yaml``: the policy, for ``plan --json``'s waves and window."""
    if policy is None:
        return {}
    return {"policy": policy, "window": window_state(policy.windows, datetime.now(UTC))}


def plan_json(
    outcomes: list[Outcome],
    broken: Mapping[str, str],
    *,
    policy: FleetPolicy | None = None,
    window: WindowState | None = None,
    invalid: Sequence[Problem] = (),
) -> str:
    """``plan --json``; with a fleet ``policy``, each device's ``wave`` and the ``window``;
    with ``invalid`` (the errors of ``_fleet.yaml``), ``invalid_files`` as status shows them."""
    devices: list[dict[str, Any]] = []
    for o in sorted(outcomes, key=lambda o: o.device):
        error = None
        if o.failure is not None:
            exc = o.failure.error
            error = {
                "kind": o.failure.kind,
                "message": o.failure.message,
                "code": exc.code if exc is not None else None,
                "param": exc.param if exc is not None else None,
            }
        devices.append(
            {
                "device": o.device,
                "url": o.url,
                "mode": o.mode.value,
                "status": _STATUS[o.status],
                "changes": [c.as_dict() for c in o.changes],
                "error": error,
            }
        )
    for name, problem in sorted(broken.items()):
        devices.append(
            {
                "device": name,
                "url": None,
                "mode": None,
                "status": "error",
                "changes": [],
                "error": {"kind": "desired", "message": problem, "code": None, "param": None},
            }
        )
    doc: dict[str, Any] = {"devices": devices, "summary": summary(outcomes, broken)}
    if policy is not None:
        waves = assign_waves([d["device"] for d in devices], policy.rollout.waves)
        for device in devices:
            device["wave"] = waves.get(device["device"])
        state = window or WindowState(True)
        next_open = format_time(state.next_open) if state.next_open is not None else None
        doc["window"] = {"open": state.open, "next_open": next_open}
    if invalid:
        doc["invalid_files"] = [
            {"file": p.file, "line": p.line, "error": p.detail} for p in invalid
        ]
    return json.dumps(doc, indent=2) + "\n"
