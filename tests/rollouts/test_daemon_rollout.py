"""The daemon rolls a revision out in waves, checks registration, bakes, halts and reverts."""

from __future__ import annotations

import json
import signal
import time
from datetime import datetime

from tests.e2e.conftest import syncd
from tests.rollouts.helpers import (
    BAD,
    ENV,
    GOOD,
    OTHER_GOOD,
    PBX,
    args,
    domain_of,
    put_count,
    set_domain,
    tree,
    wait_until,
    when,
)

FLEET_OPTIONS = {"devices": 4, "pbx": PBX, "register_delay": 0.2}


def _converged(proc) -> None:
    """Wait for the start-up rollout (every device new) to complete."""
    proc.wait_for("rollout.completed", timeout=20)


class TestWavesAndBake:
    def test_canary_first_then_the_rest_after_the_bake(self, sim, daemon, tmp_path):
        """The canary is applied and healthy first; the next wave starts no earlier than bake after."""
        fleet = sim(**FLEET_OPTIONS)
        root = tree(tmp_path, fleet, bake=1.0)
        proc = daemon(*args(root, tmp_path), env=ENV)
        started = proc.wait_for("rollout.started")
        assert started["waves"] == [
            {"name": "canary", "devices": 1},
            {"name": "rest", "devices": 3},
        ]
        canary = proc.wait_for("rollout.wave", wave="canary")
        assert canary["devices"] == ["dev1"]
        healthy = proc.wait_for("health.passed", device="dev1")
        rest = proc.wait_for("rollout.wave", wave="rest")
        assert when(rest) - when(healthy) >= 0.8  # bake 1 s, clocks read loosely
        _converged(proc)
        applied = [e for e in proc.events if e.get("event") == "apply.succeeded"]
        assert applied[0]["device"] == "dev1"
        assert all(when(e) >= when(rest) for e in applied[1:])
        assert {e["device"] for e in applied} == {"dev1", "dev2", "dev3", "dev4"}
        assert all(device.registered(1) for device in fleet.devices)
        assert proc.stop() == 0

    def test_a_tree_rewritten_file_by_file_is_one_rollout_canary_first(self, sim, daemon, tmp_path):
        """Every device file rewritten in place, the canary's last, over 0.6 s (as ``sed -i``
        over a big tree does): one rollout, the canary's PUT first. A load every 400 ms of
        the half-written tree had started a rollout without the canary each time."""
        fleet = sim(devices=12, pbx=PBX, register_delay=0.2)
        root = tree(tmp_path, fleet, bake=1.0)
        proc = daemon(*args(root, tmp_path), env=ENV)
        _converged(proc)
        for device in fleet.devices:
            device.clear_journal()
        for n in range(12, 0, -1):
            path = root / f"dev{n}.yaml"
            path.write_text(path.read_text().replace('sipNumber: "40', 'sipNumber: "50'))
            time.sleep(0.05)
        proc.wait_for("rollout.completed", timeout=30)
        rollouts = [e for e in proc.events if e.get("event") == "rollout.started"]
        assert len(rollouts) == 2, rollouts  # the start-up's, and this edit's
        assert rollouts[-1]["waves"] == [
            {"name": "canary", "devices": 1},
            {"name": "rest", "devices": 11},
        ]
        first = {
            n: min(e.started for e in d.journal if e.method == "PUT")
            for n, d in enumerate(fleet.devices, 1)
        }
        assert first[1] < min(first[n] for n in range(2, 13))
        assert proc.stop() == 0

    def test_a_canary_whose_put_keeps_failing_does_not_stall_the_rollout(
        self, sim, daemon, tmp_path
    ):
        """The canary answers GETs but every PUT with HTTP 500: it is unreachable, not failed,
        and its retry at every resync (2 s) does not keep restarting a 3 s bake."""
        fleet = sim(**FLEET_OPTIONS)
        fleet.devices[0].inject(kind="status", status=500, count=None, method="PUT")
        root = tree(tmp_path, fleet, bake=3.0)
        proc = daemon(*args(root, tmp_path), env=ENV)
        rest = proc.wait_for("rollout.wave", wave="rest", timeout=25)
        done = proc.wait_for("rollout.completed", timeout=20)
        assert done["failed"] == [] and not [
            e for e in proc.events if e.get("event") == "rollout.halted"
        ]
        assert [put_count(d) for d in fleet.devices[1:]] == [1, 1, 1]
        assert when(rest) >= when(proc.wait_for("rollout.wave", wave="canary")) + 3.0
        assert proc.stop() == 0

    def test_a_canary_gone_dark_settles_its_wave_after_one_attempt(self, sim, daemon, tmp_path):
        """A canary that stops answering as a commit arrives holds its wave for one timed-out read, not the retry ladder; it is unreachable, not failed, and gets the change when it answers."""
        fleet = sim(**FLEET_OPTIONS)
        root = tree(tmp_path, fleet)
        # No resync reads the canary between its going dark and the commit (it would be
        # known unreachable then, and get one attempt anyway).
        quiet = ("--request-timeout", "1", "--resync-interval", "60")
        proc = daemon(*args(root, tmp_path, *quiet), env=ENV)
        _converged(proc)
        for wave in ("canary", "rest"):  # the start-up rollout's
            proc.wait_for("rollout.wave", wave=wave)
        canary = fleet.devices[0]
        canary.inject(kind="hang", count=None)
        set_domain(root, OTHER_GOOD)
        first = proc.wait_for("rollout.wave", wave="canary", timeout=20)
        rest = proc.wait_for("rollout.wave", wave="rest", timeout=20)
        # One 1 s read and the 0.5 s bake; the ladder (three reads and two backoffs) is ~4 s.
        assert when(rest) - when(first) < 2.8
        done = proc.wait_for("rollout.completed", timeout=20)
        assert done["failed"] == []
        assert all(domain_of(d) == OTHER_GOOD for d in fleet.devices[1:])
        proc.wait_for("device.unreachable", device="dev1", timeout=10)
        canary.clear_faults()
        canary.release_hanging()
        wait_until(lambda: domain_of(canary) == OTHER_GOOD, 10)
        assert proc.stop() == 0


class TestHalt:
    def test_bad_pbx_halts_at_the_canary_and_reverts_it(self, sim, daemon, tmp_path):
        """A commit to an unknown PBX: the canary fails health, the rollout halts, the canary is reverted, the rest untouched."""
        fleet = sim(**FLEET_OPTIONS)
        root = tree(tmp_path, fleet)
        proc = daemon(*args(root, tmp_path), env=ENV)
        _converged(proc)
        before = [put_count(d) for d in fleet.devices]
        set_domain(root, BAD)
        failed = proc.wait_for("health.failed", device="dev1", timeout=20)
        assert failed["account"] == 1
        halted = proc.wait_for("rollout.halted")
        assert halted["wave"] == "canary" and halted["failed"] == ["dev1"]
        reverted = proc.wait_for("apply.reverted", device="dev1")
        assert reverted["fields"] == [
            {"account": 1, "field": "domain", "live": BAD, "desired": GOOD}
        ]
        assert domain_of(fleet.devices[0]) == GOOD
        wait_until(lambda: fleet.devices[0].registered(1), 5)
        time.sleep(2.5)  # resyncs go on (every 2 s), but nothing else is changed
        assert [put_count(d) for d in fleet.devices[1:]] == before[1:]
        assert all(domain_of(d) == GOOD for d in fleet.devices)
        assert put_count(fleet.devices[0]) == before[0] + 2  # the change, and its revert
        assert not [e for e in proc.events if e.get("event") == "drift.detected"]
        # After resyncs, status still shows why: the canary failed, the others wait on the halt.
        shown = syncd("status", "--json", "--state-dir", str(tmp_path / "state"))
        assert shown.returncode == 0, shown.stderr
        data = json.loads(shown.stdout)
        devices = {d["device"]: d for d in data["devices"]}
        assert devices["dev1"]["state"] == "failed" and "register" in devices["dev1"]["message"]
        # Its last change is the revert, the last PUT syncd made to it.
        last_change = datetime.fromisoformat(devices["dev1"]["last_change"].replace("Z", "+00:00"))
        assert abs(last_change.timestamp() - when(reverted)) < 1.0
        assert data["summary"]["failed"] == 1 and data["rollout"]["failed"] == ["dev1"]
        assert {devices[f"dev{n}"]["state"] for n in (2, 3, 4)} == {"waiting"}
        assert devices["dev2"]["message"] == "the rollout halted"
        # Waiting on the halt through several resyncs, dev2's difference was news once.
        pending = [
            e
            for e in proc.events
            if e.get("event") == "change.pending"
            and e.get("device") == "dev2"
            and any(f.get("desired") == BAD for f in e.get("fields", []))
        ]
        assert len(pending) == 1
        assert proc.stop() == 0
        history = (tmp_path / "state" / "history.jsonl").read_text()
        assert '"result": "unhealthy"' in history and '"trigger": "revert"' in history

    def test_halt_without_revert_then_a_newer_revision_supersedes_it(self, sim, daemon, tmp_path):
        """onFailure halt leaves the canary as it is; a fixed commit starts a new rollout over all devices."""
        fleet = sim(**FLEET_OPTIONS)
        root = tree(tmp_path, fleet, on_failure="halt")
        proc = daemon(*args(root, tmp_path), env=ENV)
        _converged(proc)
        set_domain(root, BAD)
        halted = proc.wait_for("rollout.halted", timeout=20)
        puts_at_halt = put_count(fleet.devices[0])
        # Resyncs (every 2 s) find the canary equal to the unhealthy state, unregistered for
        # longer than a lost registration waits for a password resend.
        time.sleep(4.5)
        assert not [e for e in proc.events if e.get("event") == "apply.reverted"]
        # Its registration is lost because of the halted change, not a factory reset: no
        # password resent, no PUT to a device of a halted rollout.
        assert not [e for e in proc.events if e.get("event") == "password.resent"]
        assert put_count(fleet.devices[0]) == puts_at_halt
        assert domain_of(fleet.devices[0]) == BAD
        assert all(domain_of(d) == GOOD for d in fleet.devices[1:])
        # Equal to its desired state, but that state failed its health check: still failed.
        assert not [e for e in proc.events if e.get("event") == "device.recovered"]
        shown = json.loads(syncd("status", "--json", "--state-dir", str(tmp_path / "state")).stdout)
        (canary,) = [d for d in shown["devices"] if d["device"] == "dev1"]
        assert canary["state"] == "failed" and "not registered" in canary["message"]
        assert when(halted) < datetime.fromisoformat(canary["last_sync"]).timestamp()
        set_domain(root, OTHER_GOOD)
        started = proc.wait_for("rollout.started", timeout=10)
        assert started["revision"] != halted["revision"]
        # The load is said before what it starts.
        names = [(e.get("event"), e.get("revision")) for e in proc.events]
        loaded = names.index(("desired.loaded", started["revision"]))
        assert loaded < names.index(("rollout.started", started["revision"]))
        assert started["waves"] == [
            {"name": "canary", "devices": 1},
            {"name": "rest", "devices": 3},
        ]
        done = proc.wait_for("rollout.completed", timeout=20)
        assert done["failed"] == [] and done["devices"] == 4
        assert all(domain_of(d) == OTHER_GOOD for d in fleet.devices)
        assert all(d.registered(1) for d in fleet.devices)
        assert proc.stop() == 0


class TestPauseResume:
    def test_resume_continues_a_halted_rollout_with_the_devices_not_done(
        self, sim, daemon, tmp_path
    ):
        """A canary that fails to register halts; `rollout resume` (on the state dir) lets the rest go on."""
        fleet = sim(**FLEET_OPTIONS)
        root = tree(tmp_path, fleet, on_failure="halt")
        fleet.devices[0].fail_registration(1)
        proc = daemon(*args(root, tmp_path), env=ENV)
        proc.wait_for("rollout.halted", timeout=20)
        time.sleep(0.5)
        assert [put_count(d) for d in fleet.devices[1:]] == [0, 0, 0]
        assert proc.stop() == 0
        state = ["--state-dir", str(tmp_path / "state"), "--desired", str(root)]
        resumed = syncd("rollout", "resume", *state)
        assert resumed.returncode == 0, resumed.stderr
        assert "resumed" in resumed.stdout
        again = daemon(*args(root, tmp_path), env=ENV)
        done = again.wait_for("rollout.completed", timeout=20)
        assert done["failed"] == ["dev1"]
        assert [put_count(d) for d in fleet.devices[1:]] == [1, 1, 1]
        assert put_count(fleet.devices[0]) == 1  # failed in this rollout: not tried again
        assert again.stop() == 0

    def test_resume_tries_a_device_that_rejected_its_change_again(self, sim, daemon, tmp_path):
        """A canary whose PUT is rejected (code 12) is held, not PUT again by itself; once the
        rollout completes without it, `rollout resume` (through the daemon) sends it again."""
        fleet = sim(**FLEET_OPTIONS)
        root = tree(tmp_path, fleet, on_failure="halt")
        canary = fleet.devices[0]
        canary.inject(kind="reject", code=12, method="PUT", count=1)
        proc = daemon(*args(root, tmp_path), env=ENV)
        proc.wait_for("rollout.halted", timeout=20)
        state = ["--state-dir", str(tmp_path / "state"), "--desired", str(root)]
        assert syncd("rollout", "resume", *state).returncode == 0  # the rest go on
        done = proc.wait_for("rollout.completed", timeout=20)
        assert done["failed"] == ["dev1"] and put_count(canary) == 1
        assert syncd("rollout", "resume", *state).returncode == 0  # the failed one again
        done = proc.wait_for("rollout.completed", timeout=20)
        assert done["failed"] == [] and put_count(canary) == 2
        assert proc.stop() == 0

    def test_a_paused_rollout_starts_nothing_until_resumed(self, sim, daemon, tmp_path):
        """A pause (taken with no daemon running) survives the start; resume lets the devices go."""
        fleet = sim(**FLEET_OPTIONS)
        root = tree(tmp_path, fleet)
        state = ["--state-dir", str(tmp_path / "state"), "--desired", str(root)]
        refused = syncd("rollout", "pause", *state)  # a mistyped path must not say "paused"
        assert refused.returncode == 1 and not (tmp_path / "state").exists()
        assert f"mkdir -p {tmp_path / 'state'}" in refused.stderr
        (tmp_path / "state").mkdir()
        paused = syncd("rollout", "pause", *state)
        assert paused.returncode == 0, paused.stderr
        proc = daemon(*args(root, tmp_path), env=ENV)
        proc.wait_for("rollout.started")
        time.sleep(2.5)
        assert [put_count(d) for d in fleet.devices] == [0, 0, 0, 0]
        assert proc.stop() == 0
        assert syncd("rollout", "resume", *state).returncode == 0
        again = daemon(*args(root, tmp_path), env=ENV)
        again.wait_for("rollout.completed", timeout=20)
        assert [put_count(d) for d in fleet.devices] == [1, 1, 1, 1]
        assert again.stop() == 0


class TestRestart:
    def test_sigkill_during_the_bake_continues_at_the_same_wave(self, sim, daemon, tmp_path):
        """Killed while the canary bakes: the restarted daemon does not touch or re-check the canary, then runs the rest."""
        fleet = sim(**FLEET_OPTIONS)
        root = tree(tmp_path, fleet, bake=2.0)
        proc = daemon(*args(root, tmp_path), env=ENV)
        proc.wait_for("health.passed", device="dev1")
        time.sleep(0.3)  # the outcome is saved right after the event; the bake lasts 2 s
        proc.stop(signal.SIGKILL)
        again = daemon(*args(root, tmp_path), env=ENV)
        again.wait_for("rollout.wave", wave="rest", timeout=20)
        again.wait_for("rollout.completed", timeout=20)
        names = [e.get("event") for e in again.events]
        assert "rollout.started" not in names
        assert not [
            e
            for e in again.events
            if e.get("device") == "dev1"
            and e.get("event") in ("health.passed", "apply.succeeded", "change.pending")
        ]
        assert [put_count(d) for d in fleet.devices] == [1, 1, 1, 1]
        assert again.stop() == 0
