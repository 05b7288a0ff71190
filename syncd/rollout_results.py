"""What a reconcile's outcome means to the rollout: its result, and what a revert would undo."""

from __future__ import annotations

from typing import Any

from syncd.outcome import Outcome
from syncd.rollout_values import Result

__all__ = ["result_of", "undo_of"]

#: Failure kinds that fail a device in a rollout; any other error means it did not answer.
_FAILING = frozenset({"rejected", "verify", "health", "device", "api"})
#: Failure kinds after which the rollout's PUT is (or may be) in force: it can be reverted.
_APPLIED = frozenset({"health", "verify"})


def result_of(outcome: Outcome) -> Result | None:
    """What an outcome means to the rollout (None: nothing, it did not end)."""
    if outcome.status == "applied":
        return "healthy"
    if outcome.status == "in_sync":
        return "in_sync"
    if outcome.status != "error":
        return None
    kind = outcome.failure.kind if outcome.failure is not None else ""
    return "failed" if kind in _FAILING else "unreachable"


def undo_of(outcome: Outcome) -> list[dict[str, Any]] | None:
    """The changes a revert gives back when the PUT is (or may be) in force; None otherwise.

    A password is never among them.
    """
    failure = outcome.failure
    if failure is None or failure.kind not in _APPLIED:
        return None
    return [c.as_dict() for c in outcome.changes if c.field != "password"]
