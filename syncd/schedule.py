"""When a device is reconciled next: the daemon's schedule as one pure function.

In sync: the resync interval, jittered ±10 % so a fleet is not hit at once.
Unreachable (or a passing device error): 1, 2, 4 ... seconds, growing up to
the resync interval. Credentials refused: from the resync interval up to
``max_backoff``. A rejected PUT: not again until the desired state changes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

__all__ = ["OutcomeKind", "next_delay"]

#: How the last reconcile ended, as far as the schedule cares.
OutcomeKind = Literal["ok", "transient", "auth", "rejected"]


def next_delay(
    *,
    outcome_kind: OutcomeKind,
    failures: int,
    resync_interval: float,
    max_backoff: float,
    rand: Callable[[float, float], float],
) -> float | None:
    """Seconds until the next reconcile, or None to wait for the desired state to change.

    ``failures`` counts the failed reconciles in a row, this one included;
    ``rand(a, b)`` draws the jitter factor (``random.uniform`` in the daemon).
    """
    jitter = rand(0.9, 1.1)
    if outcome_kind == "ok":
        return resync_interval * jitter
    if outcome_kind == "rejected":
        return None
    growth = float(2 ** min(max(failures, 1) - 1, 30))
    if outcome_kind == "auth":
        return min(max_backoff, resync_interval * growth) * jitter
    return min(resync_interval, growth) * jitter
