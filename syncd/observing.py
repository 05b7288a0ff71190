"""What the daemon makes of each reconcile's outcome: the device's view and its series.

:func:`observe_outcome` feeds the device's :class:`~syncd.devices_view.DeviceView`
(``device.recovered`` when a failing device converges) and the Prometheus
series (in sync, last success, failing kind, drift, applies).
:func:`status_line` adds the fleet's last outcomes up to the STATUS line.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from syncd import events
from syncd.devices_view import difference_key
from syncd.fleet_view import FleetView
from syncd.outcome import Outcome, Tally, devices_text

if TYPE_CHECKING:  # prometheus-client is imported only where metrics are served
    from syncd.metrics import Metrics

__all__ = ["observe_outcome", "status_line"]


def observe_outcome(
    outcome: Outcome, *, fleet: FleetView, metrics: Metrics, revision: str, log: Any, now: float
) -> None:
    """Take ``outcome`` of a device this node reconciled into its view and the series."""
    view = fleet.devices.get(outcome.device)
    # A lasting difference counts once, until it goes away or changes: in observe mode,
    # and in enforce mode while its correction waits (a call, say) and when it is made.
    # A difference that is no drift (a new desired state not applied yet) ends it, as
    # drift.detected has it: the drift seen again after that is logged and counted again.
    drift = outcome.drift and (
        view is None or view.first("drift-count", difference_key(outcome.changes), now)
    )
    if view is not None and outcome.changes and not outcome.drift:
        view.end("drift-count")
    if view is not None:
        fleet.version += 1
        recovered = view.observe(outcome, now, revision=revision)
        if recovered is not None:
            events.device_recovered(
                log.bind(device=outcome.device), failing_for=round(recovered, 1)
            )
        metrics.set_failing(outcome.device, view.failing_kind)
    _count(outcome, drift=drift, metrics=metrics, now=now)


def _count(outcome: Outcome, *, drift: bool, metrics: Metrics, now: float) -> None:
    """The series ``outcome`` moves: in sync and last success, drift (``drift``: news),
    applies by result."""
    device = outcome.device
    if outcome.status in ("in_sync", "applied"):
        metrics.set_in_sync(device, True, now)
    elif outcome.status == "skipped":
        metrics.set_in_sync(device, None, now)  # parked on purpose: no in-sync series
    else:
        metrics.set_in_sync(device, False, now)
    if drift:
        metrics.drift.labels(device).inc()
    if outcome.status == "applied":
        metrics.applies.labels("succeeded").inc()
    elif outcome.status == "error" and outcome.changes and not outcome.unhealthy:
        metrics.applies.labels("failed").inc()  # an accepted PUT's failed health check: "unhealthy"


def status_line(outcomes: Iterable[Outcome | None], *, prefix: str = "") -> str:
    """The STATUS line of the devices' last outcomes: ``3 devices: 2 in sync, 1 failing``."""
    last = list(outcomes)
    tally = Tally.of(last)
    counts = {
        "in sync": tally.converged,
        "differing": tally.changes,
        "waiting": tally.waiting,
        "failing": tally.errors,
        "skipped": tally.skipped,
        "pending": tally.pending,
    }
    parts = ", ".join(f"{n} {k}" for k, n in counts.items() if n)
    return f"{prefix}{devices_text(len(last))}: {parts or 'none'}"
