"""A rollout's PUT, its health check and its revert survive a SIGKILL or SIGTERM of the daemon."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

from tests.e2e.conftest import syncd
from tests.rollouts.helpers import (
    BAD,
    ENV,
    GOOD,
    PBX,
    args,
    domain_of,
    set_domain,
    tree,
    wait_until,
)

FLEET_OPTIONS = {"devices": 4, "pbx": PBX, "register_delay": 0.2}


def _history(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "state" / "history.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _bad_puts(tmp_path: Path, device: str) -> list[dict[str, Any]]:
    """History entries of ``device``'s change PUTs to the bad PBX."""
    return [
        e
        for e in _history(tmp_path)
        if e["device"] == device
        and e["trigger"] == "change"
        and any(c["to"] == BAD for c in e["changes"])
    ]


def _bad_put_verified(proc: Any) -> None:
    """Wait until the canary's PUT to the bad PBX is verified (its health check starts)."""
    while True:
        done = proc.wait_for("apply.succeeded", device="dev1", timeout=20)
        if any(f.get("desired") == BAD for f in done["fields"]):
            return


def _status(tmp_path: Path) -> dict[str, Any]:
    shown = syncd("status", "--json", "--state-dir", str(tmp_path / "state"))
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)  # type: ignore[no-any-return]


def _state_of(tmp_path: Path, device: str) -> str:
    return next(d["state"] for d in _status(tmp_path)["devices"] if d["device"] == device)


class TestKilledDuringTheHealthCheck:
    def test_sigkill_during_the_check_is_checked_again_failed_reverted_and_in_the_history(
        self, sim, daemon, tmp_path
    ):
        """Killed while the canary's check runs: after the restart the canary shows changing, fails, stays failed, is reverted, and its PUT has one history entry."""
        fleet = sim(**FLEET_OPTIONS)
        root = tree(tmp_path, fleet, timeout=3)
        proc = daemon(*args(root, tmp_path), env=ENV)
        proc.wait_for("rollout.completed", timeout=20)
        set_domain(root, BAD)
        _bad_put_verified(proc)
        time.sleep(0.5)  # into its 3 s health check
        proc.stop(signal.SIGKILL)
        assert domain_of(fleet.devices[0]) == BAD
        again = daemon(*args(root, tmp_path), env=ENV)
        again.wait_for("desired.loaded")
        seen = []  # dev1's state while its check is done again (3 s)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "changing" not in seen:
            seen.append(_state_of(tmp_path, "dev1"))
        assert "changing" in seen, seen
        failed = again.wait_for("health.failed", device="dev1", timeout=20)
        assert failed["account"] == 1
        halted = again.wait_for("rollout.halted")
        assert halted["failed"] == ["dev1"]
        reverted = again.wait_for("apply.reverted", device="dev1", timeout=10)
        assert reverted["fields"] == [
            {"account": 1, "field": "domain", "live": BAD, "desired": GOOD}
        ]
        assert domain_of(fleet.devices[0]) == GOOD
        assert all(domain_of(d) == GOOD for d in fleet.devices[1:])
        time.sleep(2.5)  # a resync: the canary stays failed
        assert not [
            e
            for e in again.events
            if e.get("event") == "device.recovered" and e["device"] == "dev1"
        ]
        assert _state_of(tmp_path, "dev1") == "failed"
        assert again.stop() == 0
        (entry,) = _bad_puts(tmp_path, "dev1")
        assert entry["result"] == "unhealthy" and entry["wave"] == "canary"
        reverts = [e for e in _history(tmp_path) if e["trigger"] == "revert"]
        assert [(e["device"], e["result"]) for e in reverts] == [("dev1", "reverted")]

    def test_sigkill_with_on_failure_halt_leaves_the_canary_failed_not_in_sync(
        self, sim, daemon, tmp_path
    ):
        """Killed during the canary's check under onFailure halt: after the restart it fails again and stays failed through resyncs."""
        fleet = sim(**FLEET_OPTIONS)
        root = tree(tmp_path, fleet, timeout=2, on_failure="halt")
        proc = daemon(*args(root, tmp_path), env=ENV)
        proc.wait_for("rollout.completed", timeout=20)
        set_domain(root, BAD)
        _bad_put_verified(proc)
        time.sleep(0.5)
        proc.stop(signal.SIGKILL)
        again = daemon(*args(root, tmp_path), env=ENV)
        again.wait_for("rollout.halted", timeout=20)
        time.sleep(4.5)  # two resyncs find the canary equal to its unhealthy desired state
        assert not [e for e in again.events if e.get("event") == "device.recovered"]
        data = _status(tmp_path)
        devices = {d["device"]: d for d in data["devices"]}
        assert devices["dev1"]["state"] == "failed", devices["dev1"]
        assert data["summary"].get("in_sync", 0) == 0
        assert domain_of(fleet.devices[0]) == BAD  # halt: not reverted
        assert again.stop() == 0
        (entry,) = _bad_puts(tmp_path, "dev1")
        assert entry["result"] == "unhealthy"

    def test_sigterm_during_a_long_check_writes_the_entry_and_checks_again_at_start(
        self, sim, daemon, tmp_path
    ):
        """A SIGTERM that cuts a check short writes the PUT's entry at once; the restart checks again, reverts, and writes no second entry."""
        fleet = sim(**FLEET_OPTIONS)
        root = tree(tmp_path, fleet, timeout=12)  # longer than the 8 s the stop waits
        proc = daemon(*args(root, tmp_path), env=ENV)
        proc.wait_for("rollout.completed", timeout=20)
        set_domain(root, BAD)
        _bad_put_verified(proc)
        time.sleep(0.5)
        assert proc.stop() == 0
        (entry,) = _bad_puts(tmp_path, "dev1")
        assert entry["result"] == "succeeded" and "cut short" in entry["error"]
        again = daemon(*args(root, tmp_path), env=ENV)
        again.wait_for("health.failed", device="dev1", timeout=20)
        again.wait_for("apply.reverted", device="dev1", timeout=10)
        assert domain_of(fleet.devices[0]) == GOOD
        assert again.stop() == 0
        assert len(_bad_puts(tmp_path, "dev1")) == 1


class TestFailedRevert:
    def test_a_failed_revert_is_in_the_history_and_tried_again_until_it_goes_out(
        self, sim, daemon, tmp_path
    ):
        """The revert PUT fails: it is in the history, a resync of the failed canary keeps its values, and the revert is tried again when the device takes PUTs."""
        fleet = sim(**FLEET_OPTIONS)
        root = tree(tmp_path, fleet)
        proc = daemon(*args(root, tmp_path), env=ENV)
        proc.wait_for("rollout.completed", timeout=20)
        set_domain(root, BAD)
        _bad_put_verified(proc)
        canary = fleet.devices[0]
        canary.inject(kind="status", status=503, method="PUT", count=None)
        failed = proc.wait_for("apply.failed", device="dev1", timeout=30)
        assert failed["error"].startswith("revert failed"), failed
        since = time.time()
        # A resync reads the failed canary's registration (it is equal to its unhealthy state).
        wait_until(
            lambda: any(
                e.path == "/api/phone/status" and "account" not in e.query and e.time > since
                for e in canary.journal
            ),
            15,
        )
        canary.clear_faults()
        reverted = proc.wait_for("apply.reverted", device="dev1", timeout=15)
        assert reverted["fields"] == [
            {"account": 1, "field": "domain", "live": BAD, "desired": GOOD}
        ]
        assert domain_of(canary) == GOOD
        assert proc.stop() == 0
        reverts = [
            (e["device"], e["result"]) for e in _history(tmp_path) if e["trigger"] == "revert"
        ]
        assert reverts[0] == ("dev1", "failed") and reverts[-1] == ("dev1", "reverted")
