"""Windows hold changes but not drift corrections; calls defer a PUT; apply as a rollout; the lock."""

from __future__ import annotations

import json
import signal
import time

from syncd.state import FileStateStore
from tests.e2e.conftest import syncd, write
from tests.rollouts.helpers import (
    BAD,
    ENV,
    GOOD,
    PBX,
    args,
    domain_of,
    put_count,
    tree,
    wait_until,
)

DENY_ALWAYS = 'windows:\n  - deny: {from: "00:00", to: "24:00", timezone: Europe/Prague}\n'


def _dev(root, fleet, n: int, number: str) -> None:
    url = fleet.devices[n - 1].url
    text = f'device:\n  url: {url}\naccounts:\n  - account: 1\n    sipNumber: "{number}"\n'
    write(root, f"dev{n}.yaml", text)


def _one_shot(command: str, root, tmp_path, *extra: str):
    return syncd(
        command, "--desired", str(root), "--state-dir", str(tmp_path / "state"), *extra, env=ENV
    )


def _error(result) -> str:
    """The one error sentence on stderr (a command.failed JSON line: stderr is a pipe)."""
    (error,) = [
        json.loads(line)["error"]
        for line in result.stderr.splitlines()
        if line.startswith("{") and json.loads(line)["event"] == "command.failed"
    ]
    assert error not in result.stdout
    return str(error)


def _warnings(result) -> list[str]:
    """The desired.warning events on stderr (JSON lines: stderr is a pipe)."""
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    return [e["error"] for e in lines if e["event"] == "desired.warning"]


class TestFleetWarnings:
    def test_a_fleet_warning_is_said_once_by_apply_as_by_plan(self, sim, tmp_path):
        """A _fleet.yaml warning (a deny window open all week) is one desired.warning from apply,
        changing devices or finding them in sync, as from plan."""
        fleet = sim(devices=2, pbx=PBX, register_delay=0.2)
        root = tree(tmp_path, fleet, extra=DENY_ALWAYS)
        for command, extra in (("apply", "--ignore-windows"), ("apply", ""), ("plan", "")):
            result = _one_shot(command, root, tmp_path, *([extra] if extra else []))
            assert result.returncode == 0, (command, result.stderr)
            (warning,) = _warnings(result)
            assert "open every day, all day" in warning


class TestWindows:
    def test_deny_window_holds_a_change_but_not_a_drift_correction(self, sim, daemon, tmp_path):
        """Inside a deny window a change waits (apply.deferred, window) while drift is put back at once."""
        fleet = sim(devices=2, pbx=PBX, register_delay=0.2)
        root = tree(tmp_path, fleet, extra=DENY_ALWAYS)
        first = _one_shot("apply", root, tmp_path, "--ignore-windows")
        assert first.returncode == 0, first.stderr
        (ignored,) = [
            e
            for e in map(json.loads, first.stderr.splitlines())
            if e["event"] == "apply.windows_ignored"
        ]
        assert ignored["revision"].startswith("tree:")
        closed = _one_shot("apply", root, tmp_path)
        assert closed.returncode == 0, closed.stderr  # nothing to change: no window needed
        proc = daemon(*args(root, tmp_path), env=ENV)
        proc.wait_for("desired.loaded")
        fleet.devices[1].set_live(1, sipNumber="9999")
        proc.wait_for("drift.detected", device="dev2", timeout=10)
        proc.wait_for("apply.succeeded", device="dev2", timeout=10)
        assert fleet.devices[1].accounts[0]["sipNumber"] == "4002"
        _dev(root, fleet, 1, "4091")
        proc.wait_for("change.pending", device="dev1", timeout=10)
        deferred = proc.wait_for("apply.deferred", device="dev1", timeout=10)
        assert deferred["reason"] == "window" and "until" not in deferred
        time.sleep(2.5)  # a resync later, the change still waits, logged once
        assert fleet.devices[0].accounts[0]["sipNumber"] == "4001"
        deferrals = [e for e in proc.events if e.get("event") == "apply.deferred"]
        assert len(deferrals) == 1
        assert proc.stop() == 0
        held = _one_shot("apply", root, tmp_path)
        assert held.returncode == 1
        assert "outside every maintenance window" in _error(held)
        assert fleet.devices[0].accounts[0]["sipNumber"] == "4001"

    def test_apply_outside_every_window_exits_1_without_a_put(self, sim, tmp_path):
        """A fleet waiting for its first wave in a closed window: apply stops at once with exit 1."""
        fleet = sim(devices=3, pbx=PBX, register_delay=0.2)
        root = tree(tmp_path, fleet, extra=DENY_ALWAYS)
        started = time.monotonic()
        result = _one_shot("apply", root, tmp_path)
        assert result.returncode == 1
        assert time.monotonic() - started < 15
        assert "outside every maintenance window" in _error(result)
        assert [put_count(d) for d in fleet.devices] == [0, 0, 0]


class TestCalls:
    def test_a_call_defers_the_put_until_it_ends(self, sim, daemon, tmp_path):
        """A device in a call gets its PUT only after the call ends (apply.deferred, call)."""
        fleet = sim(devices=2, pbx=PBX, register_delay=0.2)
        root = tree(tmp_path, fleet, policy=False)
        proc = daemon(*args(root, tmp_path), env=ENV)
        proc.wait_for("apply.succeeded", device="dev1")
        proc.wait_for("apply.succeeded", device="dev2")
        before = put_count(fleet.devices[0])
        fleet.devices[0].start_call()
        _dev(root, fleet, 1, "4091")
        deferred = proc.wait_for("apply.deferred", device="dev1", timeout=10)
        assert deferred["reason"] == "call"
        time.sleep(1.0)
        assert put_count(fleet.devices[0]) == before
        ended = time.monotonic()
        fleet.devices[0].end_calls()
        wait_until(lambda: put_count(fleet.devices[0]) == before + 1, 8)
        assert time.monotonic() - ended < 6
        assert fleet.devices[0].accounts[0]["sipNumber"] == "4091"
        assert len([e for e in proc.events if e.get("event") == "apply.deferred"]) == 1
        assert proc.stop() == 0

    def test_an_unusable_call_status_is_read_again_and_never_taken_as_idle(self, sim, tmp_path):
        """A garbled call-status answer is retried (it then lists the call: no PUT); one that
        stays unusable fails the device naming the read, still without a PUT."""
        fleet = sim(devices=4, pbx=PBX, register_delay=0.2)
        root = tree(tmp_path, fleet, policy=False)
        busy, broken, erring, dropping = fleet.devices
        dropping.inject(kind="drop", path="/api/call/status", count=None)
        busy.start_call()
        busy.inject(kind="malformed", path="/api/call/status", count=1)
        broken.inject(kind="status", status=503, path="/api/call/status", count=None)
        erring.start_call()  # code 14 is no "cannot report": it may hide this call
        erring.inject(kind="reject", code=14, path="/api/call/status", count=None)
        _fleet = "calls:\n  maxWait: 2\n"
        write(root, "_fleet.yaml", _fleet)
        result = _one_shot("apply", root, tmp_path)
        assert result.returncode == 1
        assert put_count(busy) == 1  # after the call's maxWait, not on the garbled answer
        assert put_count(broken) == 0 and put_count(erring) == 0 and put_count(dropping) == 0
        events = [json.loads(line) for line in result.stderr.splitlines() if line[:1] == "{"]
        (deferred,) = [e for e in events if e["event"] == "apply.deferred"]
        assert deferred["device"] == "dev1" and deferred["reason"] == "call"
        (failed,) = [e for e in events if e.get("device") == "dev2" and e["level"] == "error"]
        assert failed["event"] == "device.unreachable" and failed["kind"] == "transport"
        assert "/api/call/status answered HTTP 503" in failed["error"]
        (refused,) = [e for e in events if e.get("device") == "dev3" and e["level"] == "error"]
        assert refused["code"] == 14
        (dropped,) = [e for e in events if e.get("device") == "dev4" and e["level"] == "error"]
        assert "/api/call/status connection failed" in dropped["error"]
        assert not [e for e in events if e["event"] == "calls.unknown"]


class TestApply:
    def test_apply_exits_1_when_the_rollout_halts(self, sim, tmp_path):
        """A bad PBX: the canary fails health and is reverted, the rest untouched, exit 1."""
        fleet = sim(devices=3, pbx=PBX, register_delay=0.2)
        root = tree(tmp_path, fleet)
        first = _one_shot("apply", root, tmp_path)
        assert first.returncode == 0
        # A device of the later wave, read at the start and again when its wave starts,
        # says its pending change once.
        pending = [
            json.loads(line)["device"]
            for line in first.stderr.splitlines()
            if line[:1] == "{" and json.loads(line)["event"] == "change.pending"
        ]
        assert sorted(pending) == ["dev1", "dev2", "dev3"]
        write(root, "_defaults.yaml", (root / "_defaults.yaml").read_text().replace(GOOD, BAD))
        before = [put_count(d) for d in fleet.devices]
        result = _one_shot("apply", root, tmp_path)
        assert result.returncode == 1
        assert "rollout halted" in _error(result) and "dev1" in _error(result)
        # Every device is in the summary: the two that never started are counted as waiting.
        assert "3 devices: 0 changed, 0 already in sync" in result.stdout
        assert "1 failed, 0 skipped, 2 waiting" in result.stdout
        names = [
            json.loads(line)["event"] for line in result.stderr.splitlines() if line[:1] == "{"
        ]
        assert "health.failed" in names and "rollout.halted" in names and "apply.reverted" in names
        assert domain_of(fleet.devices[0]) == GOOD
        assert [put_count(d) for d in fleet.devices[1:]] == before[1:]
        # The reverted canary holds the first revision's values: status says that revision.
        (good,) = {
            json.loads(line)["revision"]
            for line in first.stderr.splitlines()
            if line[:1] == "{" and json.loads(line)["event"] == "rollout.completed"
        }
        assert FileStateStore.open(tmp_path / "state").applied_revision("dev1") == good

    def test_a_dark_device_in_a_later_wave_does_not_stop_the_rollout(self, sim, tmp_path):
        """A device that does not answer, in the rest wave: found dark at the first read,
        it is tried again when its wave starts and settles there as unreachable; the rest
        wave's other devices get their PUT and the rollout completes (exit 1: one device
        unreachable, not 'still wait for the rollout')."""
        fleet = sim(devices=2, pbx=PBX, register_delay=0.2)
        root = tree(tmp_path, fleet)
        write(root, "dark.yaml", "device:\n  url: http://127.0.0.1:9\naccounts:\n  - account: 1\n")
        result = _one_shot("apply", root, tmp_path, "--request-timeout", "1")
        events = [json.loads(line) for line in result.stderr.splitlines() if line[:1] == "{"]
        names = [e["event"] for e in events]
        assert "rollout.completed" in names, result.stderr
        assert [put_count(d) for d in fleet.devices] == [1, 1]
        assert result.returncode == 1
        assert "still wait" not in result.stderr and "2 changed" in result.stdout

    def test_device_filter_never_skips_the_canary(self, sim, tmp_path):
        """`apply --device dev2` on a commit not rolled out yet: dev2 (wave rest) waits for
        the canary, which the filter did not select: no PUT anywhere, exit 1 saying so. The
        canary's own apply rolls it; then `--device dev2` gets its PUT."""
        fleet = sim(devices=3, pbx=PBX, register_delay=0.2)
        root = tree(tmp_path, fleet)
        only = _one_shot("apply", root, tmp_path, "--device", "dev2")
        assert only.returncode == 1
        assert _error(only) == (
            "1 device(s) wait for their wave: dev2; this revision's rollout is at wave canary, "
            "whose devices --device did not select (`syncd apply` without --device runs it)"
        )
        assert [put_count(d) for d in fleet.devices] == [0, 0, 0]
        canary = _one_shot("apply", root, tmp_path, "--device", "dev1")
        assert canary.returncode == 0, canary.stdout + canary.stderr
        assert [put_count(d) for d in fleet.devices] == [1, 0, 0]
        rest = _one_shot("apply", root, tmp_path, "--device", "dev2")
        assert rest.returncode == 0, rest.stdout + rest.stderr
        assert [put_count(d) for d in fleet.devices] == [1, 1, 0]

    def test_a_device_failed_in_a_completed_rollout_is_tried_again_on_resume(self, sim, tmp_path):
        """A PUT rejected in a rollout that completes (no maxFailures): the next apply names the
        device as failed in this revision's rollout, without a PUT; `rollout resume` lets the
        next apply try it again."""
        fleet = sim(devices=2, pbx=PBX, register_delay=0.2)
        root = tree(tmp_path, fleet)
        write(
            root,
            "_fleet.yaml",
            "rollout:\n  waves:\n    - {name: canary, devices: [dev1]}\n    - {name: rest}\n"
            "health:\n  registration: false\n",
        )
        fleet.devices[1].inject(kind="reject", code=12, param="sipNumber", method="PUT")
        first = _one_shot("apply", root, tmp_path)
        assert first.returncode == 1 and "1 failed" in first.stdout, first.stdout
        again = _one_shot("apply", root, tmp_path)
        assert again.returncode == 1
        assert "failed in this revision's rollout: dev2" in _error(again)
        assert "1 already in sync, 0 observed with differences, 1 failed" in again.stdout
        assert put_count(fleet.devices[1]) == 1
        state = ["--state-dir", str(tmp_path / "state"), "--desired", str(root)]
        resumed = syncd("rollout", "resume", *state)
        assert resumed.returncode == 0 and "resumed" in resumed.stdout, resumed.stderr
        last = _one_shot("apply", root, tmp_path)
        assert last.returncode == 0, last.stdout + last.stderr
        assert fleet.devices[1].accounts[0]["sipNumber"] == "4002"

    def test_plan_json_names_waves_and_the_window(self, sim, tmp_path):
        """With _fleet.yaml, plan --json gives each device its wave and the window's state."""
        fleet = sim(devices=2, pbx=PBX, register_delay=0.2)
        root = tree(tmp_path, fleet, extra=DENY_ALWAYS)
        result = _one_shot("plan", root, tmp_path, "--json")
        assert result.returncode == 2, result.stderr
        doc = json.loads(result.stdout)
        assert {d["device"]: d["wave"] for d in doc["devices"]} == {
            "dev1": "canary",
            "dev2": "rest",
        }
        assert doc["window"] == {"open": False, "next_open": None}
        (root / "_fleet.yaml").unlink()
        plain = json.loads(_one_shot("plan", root, tmp_path, "--json").stdout)
        assert "window" not in plain and "wave" not in plain["devices"][0]


class TestLock:
    def test_a_second_syncd_on_the_state_dir_exits_naming_the_holder(self, sim, daemon, tmp_path):
        """apply while run holds the state dir: exit 1 naming its PID; after a SIGKILL the lock is free."""
        fleet = sim(devices=1, pbx=PBX, register_delay=0.2)
        root = tree(tmp_path, fleet, policy=False)
        proc = daemon(*args(root, tmp_path), env=ENV)
        proc.wait_for("apply.succeeded", device="dev1")
        second = _one_shot("apply", root, tmp_path)
        assert second.returncode == 1
        assert f"PID {proc.proc.pid}" in second.stderr
        assert "Traceback" not in second.stderr
        another = syncd("run", *args(root, tmp_path), env=ENV, timeout=20)
        assert another.returncode == 1 and f"PID {proc.proc.pid}" in another.stderr
        proc.stop(signal.SIGKILL)
        after = _one_shot("apply", root, tmp_path)
        assert after.returncode == 0, after.stderr
