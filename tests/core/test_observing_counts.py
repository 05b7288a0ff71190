"""What the drift and apply counters count: once per incident, each PUT under one result."""

from __future__ import annotations

from syncd.devices_view import DeviceView
from syncd.diff import Change
from syncd.fleet_view import FleetView
from syncd.metrics import Metrics
from syncd.model import DeviceSpec, Mode
from syncd.observing import observe_outcome
from syncd.outcome import Failure, Outcome
from tests.core.test_device_gauges import scrape

SPEC = DeviceSpec(name="dev1", file="dev1.yaml", url="http://127.0.0.1:1", mode=Mode.ENFORCE)
HAND_MADE = (Change(1, "displayName", "Hacked", "Lobby"),)


class Recorder:
    """One device's view and the series, fed outcomes as the daemon feeds them."""

    def __init__(self) -> None:
        self.metrics = Metrics()
        self.fleet = FleetView(node="n1", devices={"dev1": DeviceView(SPEC)})
        self.now = 1000.0

    def see(self, status: str, **fields: object) -> None:
        self.now += 60
        outcome = Outcome.of(SPEC, status, **fields)  # type: ignore[arg-type]
        observe_outcome(
            outcome, fleet=self.fleet, metrics=self.metrics, revision="r1", log=None, now=self.now
        )

    def count(self, name: str, **labels: str) -> float:
        return scrape(self.metrics).get((name, tuple(sorted(labels.items()))), 0.0)


def test_a_drift_whose_correction_waits_for_a_call_counts_once() -> None:
    """Found at three resyncs while a call defers its PUT, then corrected: one drift; the same
    hand edit made again later is a second one."""
    seen = Recorder()
    for _ in range(3):
        seen.see("waiting", changes=HAND_MADE, drift=True, waiting="call")
    seen.see("applied", changes=HAND_MADE, drift=True)
    assert seen.count("syncd_drift_events_total", device="dev1") == 1
    seen.see("in_sync")
    seen.see("applied", changes=HAND_MADE, drift=True)
    assert seen.count("syncd_drift_events_total", device="dev1") == 2


def test_a_drift_seen_again_after_a_pending_change_counts_again() -> None:
    """Observe mode: a drift, then (a new revision) the same values as a pending change, then
    (the revision back) the drift again: two drift.detected in the log, so two in the counter."""
    seen = Recorder()
    seen.see("changes", changes=HAND_MADE, drift=True)
    seen.see("changes", changes=HAND_MADE, drift=True)
    seen.see("changes", changes=HAND_MADE, drift=False)
    seen.see("changes", changes=HAND_MADE, drift=True)
    assert seen.count("syncd_drift_events_total", device="dev1") == 2


def test_a_put_that_fails_its_health_check_counts_as_unhealthy_only() -> None:
    """The health check's verdict is not also a failed apply (the rollout counts it unhealthy);
    a rejected PUT is a failed one."""
    seen = Recorder()
    seen.see("error", changes=HAND_MADE, failure=Failure("health", "account 1 not registered"))
    assert seen.count("syncd_applies_total", result="failed") == 0
    seen.see("error", changes=HAND_MADE, failure=Failure("rejected", "code 12"))
    assert seen.count("syncd_applies_total", result="failed") == 1
