"""Render the results of a pass for people (plan text) and machines (``plan --json``)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from syncd.reconcile import Outcome

__all__ = ["plan_json", "plan_text", "summary"]

_STATUS = {
    "in_sync": "in_sync",
    "changes": "changes",
    "applied": "in_sync",
    "error": "error",
    "skipped": "skipped",
}


def _value(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def summary(outcomes: Iterable[Outcome], broken: Mapping[str, str]) -> dict[str, int]:
    counts = {"devices": 0, "in_sync": 0, "changes": 0, "errors": 0, "skipped": 0}
    for outcome in outcomes:
        counts["devices"] += 1
        status = _STATUS[outcome.status]
        counts["errors" if status == "error" else status] += 1
    counts["devices"] += len(broken)
    counts["errors"] += len(broken)
    return counts


def plan_text(outcomes: list[Outcome], broken: Mapping[str, str]) -> str:
    """One line per changed field: ``device  account N  field: live -> desired``."""
    lines: list[str] = []
    for o in sorted(outcomes, key=lambda o: o.device):
        for c in o.changes:
            live = "(unknown)" if c.field == "password" else _value(c.live)
            desired = c.desired if c.field == "password" else _value(c.desired)
            note = "  (observe)" if o.mode.value == "observe" else ""
            lines.append(f"{o.device}  account {c.account}  {c.field}: {live} -> {desired}{note}")
        if o.status == "error":
            lines.append(f"{o.device}  error: {o.error_message}")
    for name, problem in sorted(broken.items()):
        lines.append(f"{name}  error: {problem}")
    s = summary(outcomes, broken)
    lines.append(
        f"{s['devices']} devices: {s['in_sync']} in sync, {s['changes']} with changes, "
        f"{s['errors']} errors, {s['skipped']} skipped"
    )
    return "\n".join(lines) + "\n"


def plan_json(outcomes: list[Outcome], broken: Mapping[str, str]) -> str:
    devices: list[dict[str, Any]] = []
    for o in sorted(outcomes, key=lambda o: o.device):
        error = None
        if o.status == "error":
            exc = o.error
            error = {
                "kind": o.error_kind,
                "message": o.error_message,
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
    return json.dumps({"devices": devices, "summary": summary(outcomes, broken)}, indent=2) + "\n"
