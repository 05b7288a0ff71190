"""When a device is reconciled next: the daemon's schedule as one pure function.

In sync: the resync interval, jittered ±10 % so a fleet is not hit at once.
Unreachable (or a passing device error): 1, 2, 4 ... seconds, growing up to
the resync interval. Credentials refused: from the resync interval up to
``max_backoff``. A rejected PUT: read again at the resync interval, as in sync
(the PUT itself is not sent again until the desired state changes).

Who holds a concurrency slot while waiting on the network (:mod:`syncd.slots`):
a device whose last reconcile could not reach it waits without one
(:func:`failing_lane`), and any other attempt keeps its slot for
:func:`slot_lease` seconds only, so a dark site never takes the slots the
devices that answer need.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

__all__ = ["OutcomeKind", "failing_lane", "next_delay", "slot_lease"]

#: How the last reconcile ended, as far as the schedule cares.
OutcomeKind = Literal["ok", "transient", "auth", "rejected"]


def next_delay(
    *,
    outcome_kind: OutcomeKind,
    failures: int,
    resync_interval: float,
    max_backoff: float,
    rand: Callable[[float, float], float],
) -> float:
    """Seconds until the next reconcile.

    ``failures`` counts the failed reconciles in a row, this one included;
    ``rand(a, b)`` draws the jitter factor (``random.uniform`` in the daemon).
    """
    jitter = rand(0.9, 1.1)
    if outcome_kind in ("ok", "rejected"):
        return resync_interval * jitter
    growth = float(2 ** min(max(failures, 1) - 1, 30))
    if outcome_kind == "auth":
        return min(max_backoff, resync_interval * growth) * jitter
    return min(resync_interval, growth) * jitter


def failing_lane(last: OutcomeKind | None) -> bool:
    """Whether a device waits for its answers outside the concurrency slots.

    True when its last reconcile could not reach it: until it answers
    again, its requests wait without a slot. A device that answered, even
    with refused credentials or a rejection, is worked on like the others.
    """
    return last == "transient"


def slot_lease(request_timeout: float) -> float:
    """How long an attempt keeps its concurrency slot while no answer comes.

    A device on a working network answers within half a second or it is
    busy or gone; waiting longer needs an open socket, not one of the slots
    the devices that answer need. A quarter of the request timeout when that
    is shorter.
    """
    return min(0.5, request_timeout / 4)
