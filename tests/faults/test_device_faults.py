"""Device and network faults against the emulator: retries, backoff, clear events, isolation.

Every test runs syncd for real (``syncd apply`` or ``syncd run`` as a
subprocess) against emulated intercoms over real sockets, makes one device
misbehave, and checks the SPEC section 6 behaviour: what is retried and how
often, which event an operator sees, that the other devices are unaffected,
and that the device converges once the fault clears.
"""

from __future__ import annotations

import itertools
import json
import signal
import socket
import time
from pathlib import Path

from syncd.simulator import run_fleet_in_thread
from tests.e2e.conftest import device_yaml, puts, syncd, write
from tests.faults.helpers import (
    ERROR_EVENTS,
    account,
    converged,
    events,
    named,
    pass_args,
    run_args,
    stamp,
    tree,
    wait_until,
)

CONFIG = "/api/phone/config"
TRANSPORT_FAULTS = {
    "http-500": {"kind": "status", "status": 500},
    "http-503": {"kind": "status", "status": 503},
    "http-502-html": {"kind": "status", "status": 502, "body": "<html>Bad gateway</html>"},
    "dropped": {"kind": "drop"},
    "not-json": {"kind": "malformed"},
    "json-without-success": {"kind": "malformed", "body": '{"result": {}}'},
    "slow": {"kind": "delay", "delay": 3.0},
}


def _apply(tmp_path: Path, root: Path, *extra: str):
    return syncd("apply", *pass_args(root, tmp_path / "state", "--request-timeout", "1", *extra))


class TestOneShotTransportFaults:
    def test_transient_faults_are_retried_within_the_pass(self, sim, tmp_path):
        """Each device answering its config read twice with a fault (5xx, HTML, dropped, not JSON, no success flag, too slow) logs two request.retrying events at debug (attempt, delay, error) and converges on the third try; a healthy device never retries."""
        fleet = sim(devices=len(TRANSPORT_FAULTS) + 1)
        for dev, fault in zip(fleet.devices, TRANSPORT_FAULTS.values(), strict=False):
            dev.inject(count=2, path=CONFIG, **fault)  # (the call status is read alongside)
        result = _apply(tmp_path, tree(tmp_path / "desired", fleet), "--log-level", "debug")
        assert result.returncode == 0, result.stderr
        evs = events(result.stderr)
        assert named(evs, "apply.retrying") == []  # only reads were retried
        for n, (label, dev) in enumerate(
            zip(TRANSPORT_FAULTS, fleet.devices, strict=False), start=1
        ):
            retries = named(evs, "request.retrying", device=f"dev{n}")
            assert [e["attempt"] for e in retries] == [1, 2], label
            for event in retries:
                assert event["level"] == "debug" and event["request"] == "GET", label
                assert event["delay"] > 0 and dev.url in event["error"], label
            assert converged(dev, f"Door {n}"), label
            assert dev.faults == [], label
        healthy = f"dev{len(fleet.devices)}"
        assert not [e for e in evs if e.get("device") == healthy and e["event"] in ERROR_EVENTS]
        assert converged(fleet.devices[-1], f"Door {len(fleet.devices)}")

    def test_persistent_faults_report_unreachable_and_exit_1(self, sim, tmp_path):
        """A device failing all 3 attempts (503, dropped, not JSON, too slow) is device.unreachable kind transport, gets no PUT and fails apply; a healthy device converges; the next pass converges them all."""
        labels = ("http-503", "dropped", "not-json", "slow")
        fleet = sim(devices=len(labels) + 1)
        for dev, label in zip(fleet.devices, labels, strict=False):
            dev.inject(count=3, path=CONFIG, **TRANSPORT_FAULTS[label])
        root = tree(tmp_path / "desired", fleet)
        result = _apply(tmp_path, root, "--log-level", "debug")
        assert result.returncode == 1
        evs = events(result.stderr)
        for n, (label, dev) in enumerate(zip(labels, fleet.devices, strict=False), start=1):
            assert len(named(evs, "request.retrying", device=f"dev{n}")) == 2, label
            (event,) = named(evs, "device.unreachable", device=f"dev{n}")
            assert event["level"] == "error" and event["kind"] == "transport", label
            assert dev.url in event["error"], label
            assert puts(dev) == [] and dev.accounts[0]["displayName"] == "", label
            assert f"dev{n}: " in result.stdout, label  # the per-device result line
        assert converged(fleet.devices[-1], f"Door {len(fleet.devices)}")
        assert "Traceback" not in result.stderr
        # Once the faults are gone the next pass converges every device.
        assert _apply(tmp_path, root).returncode == 0
        for n, dev in enumerate(fleet.devices, start=1):
            assert converged(dev, f"Door {n}")

    def test_failing_put_is_apply_failed_and_changes_nothing(self, sim, tmp_path):
        """HTTP 503 on every PUT attempt is apply.failed (kind transport) after 3 tries, and the device keeps its old values."""
        fleet = sim(devices=2)
        dev1, dev2 = fleet.devices
        dev1.inject(kind="status", status=503, method="PUT", count=3)
        result = _apply(tmp_path, tree(tmp_path / "desired", fleet), "--log-level", "debug")
        assert result.returncode == 1
        evs = events(result.stderr)
        retries = named(evs, "apply.retrying", device="dev1")
        assert [e["request"] for e in retries] == ["PUT", "PUT"]
        (failed,) = named(evs, "apply.failed", device="dev1")
        assert failed["kind"] == "transport" and "503" in failed["error"]
        assert {e["revision"] for e in retries} == {failed["revision"]}  # SPEC 7: apply.* carry it
        assert failed["revision"].startswith("tree:")
        assert len(puts(dev1)) == 3 and dev1.accounts[0]["displayName"] == ""
        assert converged(dev2, "Door 2")

    def test_put_failing_the_same_way_warns_once_and_reads_retry_quietly(self, sim, tmp_path):
        """A PUT failing with the same 503 three times logs one apply.retrying at warning, the next at debug, then apply.failed; a new failure warns again; a retried GET logs only request.retrying at debug."""
        fleet = sim(devices=3)
        same, changing, read = fleet.devices
        same.inject(kind="status", status=503, method="PUT", count=3)
        changing.inject(kind="status", status=503, method="PUT", count=1)
        changing.inject(kind="status", status=500, method="PUT", count=1)
        read.inject(kind="status", status=503, method="GET", path=CONFIG, count=2)
        result = _apply(tmp_path, tree(tmp_path / "desired", fleet), "--log-level", "debug")
        assert result.returncode == 1, result.stderr
        evs = events(result.stderr)
        retries = named(evs, "apply.retrying", device="dev1")
        assert [(e["attempt"], e["level"]) for e in retries] == [(1, "warning"), (2, "debug")]
        assert all("503" in e["error"] and e["delay"] > 0 for e in retries)
        loud = [
            (e["event"], e["level"])
            for e in evs
            if e.get("device") == "dev1" and e["level"] in ("warning", "error")
        ]
        assert loud == [("apply.retrying", "warning"), ("apply.failed", "error")]
        assert len(puts(same)) == 3 and same.accounts[0]["displayName"] == ""
        # A second, different failure of the same PUT is news: it warns again.
        retries = named(evs, "apply.retrying", device="dev2")
        assert [e["level"] for e in retries] == ["warning", "warning"]
        assert ["503" in retries[0]["error"], "500" in retries[1]["error"]] == [True, True]
        assert converged(changing, "Door 2")
        # A read retried is routine: debug, under its own name, never apply.retrying.
        assert named(evs, "apply.retrying", device="dev3") == []
        reads = named(evs, "request.retrying", device="dev3")
        assert [(e["attempt"], e["level"], e["request"]) for e in reads] == [
            (1, "debug", "GET"),
            (2, "debug", "GET"),
        ]
        assert named(evs, "request.retrying", device="dev1") == []
        assert converged(read, "Door 3")

    def test_a_lasting_put_failure_is_news_once_not_every_pass(self, sim, daemon, tmp_path):
        """A PUT failing the same way pass after pass: one apply.retrying warning and one apply.failed error, then debug; every PUT is still in the history; success ends it."""
        fleet = sim(devices=1)
        (dev1,) = fleet.devices
        dev1.inject(kind="status", status=503, method="PUT", count=9)
        root = tree(tmp_path / "desired", fleet)
        proc = daemon(*run_args(root, tmp_path / "state", "--log-level", "debug", resync=0.5))
        proc.wait_for("apply.succeeded", device="dev1", timeout=30)
        failed = named(proc.events, "apply.failed", device="dev1")
        retries = named(proc.events, "apply.retrying", device="dev1")
        assert len(failed) >= 3, failed  # 9 failures: 3 passes of 3 attempts, give or take
        assert [e["level"] for e in failed] == ["error"] + ["debug"] * (len(failed) - 1)
        assert [e["level"] for e in retries] == ["warning"] + ["debug"] * (len(retries) - 1)
        assert all("503" in e["error"] for e in failed + retries)
        assert len(puts(dev1)) == 10 and converged(dev1, "Door 1")
        assert proc.stop() == 0
        history = (tmp_path / "state" / "history.jsonl").read_text().splitlines()
        results = [json.loads(line)["result"] for line in history]
        assert results == ["failed"] * len(failed) + ["succeeded"]

    def test_plan_json_names_the_transport_error(self, sim, tmp_path):
        """plan --json reports a device that keeps failing as status error, kind transport, and exits 1."""
        fleet = sim(devices=2)
        fleet.devices[0].inject(kind="malformed", count=3)
        root = tree(tmp_path / "desired", fleet)
        result = syncd("plan", "--json", *pass_args(root, tmp_path / "state"))
        assert result.returncode == 1
        by_name = {d["device"]: d for d in json.loads(result.stdout)["devices"]}
        assert by_name["dev1"]["status"] == "error"
        assert by_name["dev1"]["error"]["kind"] == "transport"
        assert "not JSON" in by_name["dev1"]["error"]["message"]
        assert by_name["dev2"]["status"] == "changes"


class TestDaemonTransportFaults:
    def test_each_device_its_own_fault_others_unaffected_all_converge(self, sim, daemon, tmp_path):
        """Devices answering 503, dropping, sending non-JSON or hanging past the timeout are retried, reported unreachable, backed off and converged; a healthy device converges first."""
        fleet = sim(devices=5)
        faults = {
            "dev1": {"kind": "status", "status": 503},
            "dev2": {"kind": "drop"},
            "dev3": {"kind": "malformed"},
            "dev4": {"kind": "delay", "delay": 2.0},
        }
        for n, fault in enumerate(faults.values()):
            fleet.devices[n].inject(count=5, **fault)  # 3 in the first pass, 2 in the next
        root = tree(tmp_path / "desired", fleet)
        proc = daemon(
            *run_args(
                root,
                tmp_path / "state",
                "--request-timeout",
                "0.5",
                "--log-level",
                "debug",
                resync=2,
            )
        )
        healthy = proc.wait_for("apply.succeeded", device="dev5", timeout=30)
        for name in faults:
            unreachable = proc.wait_for("device.unreachable", device=name, timeout=30)
            assert unreachable["kind"] == "transport" and unreachable["level"] == "error"
            assert stamp(healthy) < stamp(unreachable)  # a failing device delays only itself
            succeeded = proc.wait_for("apply.succeeded", device=name, timeout=30)
            # Backoff after the first failed pass is 1 s (jittered), not the resync interval.
            assert 0.8 <= stamp(succeeded) - stamp(unreachable) < 8
        for n, dev in enumerate(fleet.devices, start=1):
            assert converged(dev, f"Door {n}")
            assert dev.faults == []
        retrying = [e for e in proc.events if e.get("event") == "request.retrying"]
        assert {e["device"] for e in retrying} == set(faults)
        assert named(proc.events, "apply.retrying") == []
        # Converged devices stay put: resyncs read them but send nothing more.
        before = [len(puts(d)) for d in fleet.devices]
        time.sleep(2)
        assert [len(puts(d)) for d in fleet.devices] == before == [1] * 5
        assert proc.stop() == 0

    def test_outage_retries_stay_bounded_and_recovery_is_within_a_resync(
        self, sim, daemon, tmp_path
    ):
        """While a device drops every connection it is retried at 1, 2, 2... s (capped at the resync interval), not hammered; once it answers it converges within one interval."""
        fleet = sim(devices=2)
        dev1, dev2 = fleet.devices
        root = tree(tmp_path / "desired", fleet)
        dev1.inject(kind="drop", count=10_000)
        proc = daemon(*run_args(root, tmp_path / "state", resync=2))
        proc.wait_for("apply.succeeded", device="dev2", timeout=20)
        proc.wait_for("device.unreachable", device="dev1", timeout=20)
        time.sleep(4.5)
        # Logged when it becomes unreachable, not at every pass (the metric carries the rest).
        assert len(named(proc.events, "device.unreachable", device="dev1")) == 1
        # 4.5 s of outage after the first failure: backoff 1, 2, 2 allows at most 4 passes
        # of 3 attempts each (plus one pass under way).
        passes = -(-len(dev1.journal) // 3)
        assert 2 <= passes <= 5, passes
        dev2.set_live(1, displayName="Hacked")  # the healthy device is still served
        wait_until(lambda: converged(dev2, "Door 2"), 15, "dev2 drift corrected")
        dev1.clear_faults()
        cleared = time.monotonic()
        wait_until(lambda: converged(dev1, "Door 1"), 15, "dev1 converged")
        assert (
            time.monotonic() - cleared < 2 * 1.1 + 3
        )  # the backoff never exceeds the resync interval
        assert proc.stop() == 0

    def test_device_that_disappears_and_comes_back(self, sim, daemon, tmp_path):
        """A device whose server goes away is device.unreachable (connection refused) while the rest is served; when it is back (factory state) it is converged again."""
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        other = sim(devices=1).devices[0]
        root = tmp_path / "desired"
        url = f"http://127.0.0.1:{port}"
        write(root, "gone.yaml", device_yaml(url, account("Gate")))
        write(root, "other.yaml", device_yaml(other.url, account("Other")))
        with run_fleet_in_thread(devices=1, port=port) as first:
            proc = daemon(*run_args(root, tmp_path / "state", "--log-level", "debug", resync=2))
            proc.wait_for("apply.succeeded", device="gone", timeout=20)
            assert converged(first.devices[0], "Gate")
        proc.wait_for("request.retrying", device="gone", timeout=20)
        event = proc.wait_for("device.unreachable", device="gone", timeout=20)
        assert event["kind"] == "transport" and url in event["error"]
        other.set_live(1, displayName="Hacked")
        wait_until(lambda: converged(other, "Other"), 15, "other device served during the outage")
        with run_fleet_in_thread(devices=1, port=port) as second:
            back = second.devices[0]
            wait_until(lambda: converged(back, "Gate"), 15, "device converged after coming back")
            # Same desired state, applied before: the factory values are drift, not a change.
            drift = proc.wait_for("drift.detected", device="gone", timeout=5)
            assert {"account": 1, "field": "displayName", "live": "", "desired": "Gate"} in drift[
                "fields"
            ]
            proc.wait_for("apply.succeeded", device="gone", timeout=5)
        assert proc.stop() == 0


class TestRejections:
    def test_rejected_put_is_not_retried_until_the_desired_state_changes(
        self, sim, daemon, tmp_path
    ):
        """A PUT refused with code 11, 12 or 13 is apply.failed with code and param, sent once per desired version however many resyncs pass or other devices' edits come, and tried again on SIGHUP or when the file is edited."""
        fleet = sim(devices=4)
        codes = {"dev1": 11, "dev2": 12, "dev3": 13}
        for n, code in enumerate(codes.values()):
            # Refuse the first try, the SIGHUP retry and the second desired version; the third goes through.
            fleet.devices[n].inject(
                kind="reject", code=code, param="domainPort", method="PUT", count=3
            )
        root = tree(tmp_path / "desired", fleet)
        proc = daemon(*run_args(root, tmp_path / "state", resync=1))
        proc.wait_for("apply.succeeded", device="dev4", timeout=20)
        for name, code in codes.items():
            failed = proc.wait_for("apply.failed", device=name, timeout=20)
            assert (failed["code"], failed["param"], failed["kind"]) == (
                code,
                "domainPort",
                "rejected",
            )
            assert failed["level"] == "error" and failed["description"]
        time.sleep(2.5)  # resync intervals pass: a rejected PUT is not repeated

        def expect(count: int, why: str) -> None:
            for n, name in enumerate(codes):
                wait_until(
                    lambda d=fleet.devices[n]: len(puts(d)) >= count, 15, f"{name} PUT {why}"
                )
            time.sleep(1.5)
            for n, name in enumerate(codes):
                assert len(puts(fleet.devices[n])) == count, (name, why)

        expect(1, "first")
        # Another device's edit is a new revision (and rollout), not a new desired state of theirs.
        write(root, "dev4.yaml", device_yaml(fleet.devices[3].url, account("Door 4 v2")))
        proc.wait_for("apply.succeeded", device="dev4", timeout=20)
        expect(1, "after another device's edit")
        proc.proc.send_signal(signal.SIGHUP)  # the operator asks for everything now
        expect(2, "after SIGHUP")
        for version, count in (("v2", 3), ("v3", 4)):
            for n, name in enumerate(codes, start=1):
                write(
                    root,
                    f"{name}.yaml",
                    device_yaml(fleet.devices[n - 1].url, account(f"Door {n} {version}")),
                )
            expect(count, f"of {version}")
        for n, name in enumerate(codes, start=1):
            assert converged(fleet.devices[n - 1], f"Door {n} v3"), name
            proc.wait_for("apply.succeeded", device=name, timeout=5)
        retried = [e for e in proc.events if e.get("event") == "apply.retrying"]
        assert retried == []
        assert len(puts(fleet.devices[3])) == 2
        assert proc.stop() == 0

    def test_a_standing_rejection_is_read_not_sent_across_a_restart(self, sim, daemon, tmp_path):
        """After a rejected PUT the device is still read at every resync (a hand-made change
        on it is reported), its PUT is not sent again, also by a new daemon after a restart
        (no second apply.failed: one reconcile.skipped saying why); a SIGHUP sends it."""
        fleet = sim(devices=1)
        dev = fleet.devices[0]
        dev.inject(kind="reject", code=12, param="displayName", method="PUT", count=1)
        root = tree(tmp_path / "desired", fleet)
        args = run_args(root, tmp_path / "state", resync=0.5)
        proc = daemon(*args)
        proc.wait_for("change.pending", device="dev1", timeout=20)
        proc.wait_for("apply.failed", device="dev1", timeout=20)
        rejected_at = puts(dev)[0].started
        wait_until(
            lambda: (
                sum(e.method == "GET" and e.started > rejected_at + 1.5 for e in dev.journal) >= 2
            ),
            10,
            "GETs at the resyncs after the rejection",
        )
        dev.set_live(1, sipNumber="7777")  # someone changes the device meanwhile
        noticed = proc.wait_for("change.pending", device="dev1", timeout=10)
        assert {"account": 1, "field": "sipNumber", "live": "7777", "desired": "4001"} in (
            noticed["fields"]
        )
        assert len(puts(dev)) == 1
        assert proc.stop() == 0

        again = daemon(*args)  # a restart (an upgrade): the rejection still stands
        skipped = again.wait_for("reconcile.skipped", device="dev1", timeout=20)
        assert "rejected the PUT of this desired state" in skipped["reason"]
        time.sleep(1.5)  # three resyncs
        assert len(puts(dev)) == 1
        assert named(again.events, "apply.failed", device="dev1") == []
        status = json.loads(
            syncd("status", "--state-dir", str(tmp_path / "state"), "--json").stdout
        )
        assert [d["state"] for d in status["devices"]] == ["failed"]
        again.proc.send_signal(signal.SIGHUP)  # the operator asks again: it goes through now
        again.wait_for("apply.succeeded", device="dev1", timeout=20)
        assert len(puts(dev)) == 2 and converged(dev, "Door 1")
        assert again.stop() == 0

    def test_code_14_is_retried_within_the_pass_and_after_backoff(self, sim, daemon, tmp_path):
        """code 14 (unspecified processing error) is retried: twice within a pass, then after a short backoff, until the PUT goes through."""
        fleet = sim(devices=2)
        dev1, dev2 = fleet.devices
        dev1.inject(kind="reject", code=14, method="PUT", count=4)
        root = tree(tmp_path / "desired", fleet)
        proc = daemon(*run_args(root, tmp_path / "state", "--log-level", "debug", resync=2))
        failed = proc.wait_for("apply.failed", device="dev1", timeout=20)
        assert failed["code"] == 14 and failed["kind"] == "rejected"
        succeeded = proc.wait_for("apply.succeeded", device="dev1", timeout=20)
        assert stamp(succeeded) - stamp(failed) < 8
        retries = named(proc.events, "apply.retrying", device="dev1")
        assert [e["request"] for e in retries] == ["PUT"] * 3
        # The first retry warns; the same failure again, in this pass or the next, is at debug.
        assert [e["level"] for e in retries] == ["warning", "debug", "debug"]
        assert [e.code for e in puts(dev1)] == [14, 14, 14, 14, None]
        assert converged(dev1, "Door 1") and converged(dev2, "Door 2")
        assert proc.stop() == 0


class TestVerify:
    def test_put_accepted_but_not_kept_is_reported_and_retried(self, sim, daemon, tmp_path):
        """A PUT the device accepts but whose value is gone by the verifying GET is apply.failed naming the field (kind verify), then retried within the resync interval until it holds."""
        fleet = sim(devices=2)
        dev1, dev2 = fleet.devices
        config = "/api/phone/config"  # (a call-status GET comes between them)
        dev1.inject(kind="delay", delay=0.0, method="GET", path=config)  # the reading GET: at once
        dev1.inject(kind="delay", delay=1.5, method="GET", path=config)  # the verifying GET: late
        root = tree(tmp_path / "desired", fleet)
        proc = daemon(*run_args(root, tmp_path / "state", resync=2))
        wait_until(lambda: puts(dev1), 15, "the PUT")
        dev1.set_live(1, displayName="Overwritten")  # something on the device undoes it
        failed = proc.wait_for("apply.failed", device="dev1", timeout=10)
        assert "did not take" in failed["error"] and "displayName" in failed["error"]
        assert failed["kind"] == "verify"
        assert failed["fields"] == [
            {"account": 1, "field": "displayName", "live": "Overwritten", "desired": "Door 1"}
        ]
        succeeded = proc.wait_for("apply.succeeded", device="dev1", timeout=10)
        assert stamp(succeeded) - stamp(failed) < 2 * 1.1 + 2
        assert converged(dev1, "Door 1") and converged(dev2, "Door 2")
        assert len(puts(dev1)) == 2
        assert proc.stop() == 0


class TestAuthFaults:
    def test_auth_refusals_back_off_growing_then_converge(self, sim, daemon, tmp_path):
        """PUTs refused with code 8, 9 or 10 are one auth.failed each (not an apply.failed at every attempt), not retried in the pass (but a first 401 once), retried after growing delays from the resync interval, and converge when accepted."""
        fleet = sim(devices=4)
        codes = {"dev1": 8, "dev2": 9, "dev3": 10}
        for n, code in enumerate(codes.values()):
            # Three refused passes; code 9 comes as HTTP 401, whose first answer is retried once.
            count = 6 if code == 9 else 3
            fleet.devices[n].inject(kind="reject", code=code, method="PUT", count=count)
        root = tree(tmp_path / "desired", fleet)
        proc = daemon(*run_args(root, tmp_path / "state", resync=1))
        proc.wait_for("apply.succeeded", device="dev4", timeout=20)
        for n, (name, code) in enumerate(codes.items()):
            proc.wait_for("apply.succeeded", device=name, timeout=30)
            failed = named(proc.events, "auth.failed", device=name)
            assert [(e["code"], e["level"]) for e in failed] == [(code, "error")], failed
            assert named(proc.events, "apply.failed", device=name) == []
            sent = puts(fleet.devices[n])
            assert len(sent) == (7 if code == 9 else 4)
            # An attempt is a PUT and, for a first 401, its retry at once: code 9's
            # refused attempts are pairs (grouped by count, not by a time a busy machine
            # may stretch), then the accepted PUT.
            attempts = [e.started for e in (sent[::2] if code == 9 else sent)]
            gaps = [b - a for a, b in itertools.pairwise(attempts)]
            # Backoff starts at the resync interval (1 s) and doubles: about 1, 2, 4 s.
            assert len(gaps) == 3, gaps
            assert gaps[0] >= 0.8, gaps
            assert gaps[2] >= 1.5 * gaps[0] and gaps[2] >= 2.5, gaps
            retries = named(proc.events, "apply.retrying", device=name)
            assert len(retries) == (3 if code == 9 else 0), retries
            assert converged(fleet.devices[n], f"Door {n + 1}")
        assert len(puts(fleet.devices[3])) == 1
        assert proc.stop() == 0

    def test_wrong_api_password_is_auth_error_others_fine_fix_applies_at_once(
        self, sim, daemon, tmp_path
    ):
        """A device with a wrong Digest password is auth.failed code 9 and backs off, the others converge, and correcting the password in the file applies at once."""
        fleet = sim(devices=3, auth="digest", username="syncd", password="right-api-pass")
        root = tmp_path / "desired"
        auth = "  auth:\n    method: digest\n    username: syncd\n    password: {{env: {var}}}\n"
        for n, dev in enumerate(fleet.devices, start=1):
            var = "WRONG_API_PW" if n == 1 else "API_PW"
            text = (
                f"device:\n  url: {dev.url}\n"
                + auth.format(var=var)
                + "accounts:\n"
                + account(f"Door {n}")
            )
            write(root, f"dev{n}.yaml", text)
        env = {"API_PW": "right-api-pass", "WRONG_API_PW": "wrong-api-pass"}
        proc = daemon(*run_args(root, tmp_path / "state", "--resync-interval", "600"), env=env)
        event = proc.wait_for("auth.failed", device="dev1", timeout=20)
        assert (event["code"], event["level"]) == (9, "error")
        assert "wrong-api-pass" not in json.dumps(event)
        proc.wait_for("apply.succeeded", device="dev2", timeout=20)
        proc.wait_for("apply.succeeded", device="dev3", timeout=20)
        dev1 = fleet.devices[0]
        assert puts(dev1) == []
        time.sleep(2)
        # One pass: two attempts (a first 401 is retried once), each a challenge and an answer.
        assert len(dev1.journal) <= 4
        write(root, "dev1.yaml", (root / "dev1.yaml").read_text().replace("WRONG_API_PW", "API_PW"))
        wait_until(lambda: converged(dev1, "Door 1"), 10, "dev1 converged after the fix")
        proc.wait_for("apply.succeeded", device="dev1", timeout=5)
        assert proc.stop() == 0

    def test_stale_digest_nonce_is_invisible(self, sim, daemon, tmp_path):
        """An expired Digest nonce (on GET, and on a PUT carrying a password) is answered by one retry under the fresh challenge: no retry, failure or unreachable event, and the device converges."""
        fleet = sim(
            devices=2, auth="digest", username="syncd", password="api-pass", nonce_lifetime=1.0
        )
        root = tmp_path / "desired"
        auth = "  auth:\n    method: digest\n    username: syncd\n    password: {env: API_PW}\n"
        for n, dev in enumerate(fleet.devices, start=1):
            text = f"device:\n  url: {dev.url}\n" + auth + "accounts:\n"
            text += account(f"Door {n}", password="{env: SIP_PW}")
            write(root, f"dev{n}.yaml", text)
        dev1 = fleet.devices[0]
        # The PUT waits 1.5 s before the device checks its nonce: longer than the nonce lives.
        dev1.inject(kind="delay", delay=1.5, method="PUT")
        env = {"API_PW": "api-pass", "SIP_PW": "sip-pass"}
        proc = daemon(*run_args(root, tmp_path / "state", resync=2), env=env)
        proc.wait_for("apply.succeeded", device="dev1", timeout=20)
        assert dev1.passwords[1] == "sip-pass"
        put_answers = [(e.status, e.code) for e in puts(dev1)]
        assert put_answers == [(401, 9), (200, None)]
        time.sleep(2.5)  # a resync after the nonce expired: its GET meets a stale nonce
        expired = time.time()
        dev1.expire_nonces()
        dev1.set_live(1, displayName="Hacked")
        proc.wait_for("drift.detected", device="dev1", timeout=10)
        wait_until(lambda: converged(dev1, "Door 1"), 10, "drift corrected")
        proc.wait_for("apply.succeeded", device="dev1", timeout=5)
        stale = [e for e in dev1.journal if e.time >= expired and e.status == 401]
        assert stale and all(e.code == 9 for e in stale)
        bad = [e for e in proc.events if e.get("event") in ERROR_EVENTS]
        assert bad == []
        assert len([e for e in puts(dev1) if e.status == 200]) == 2
        assert proc.stop() == 0


class TestTls:
    def test_certificate_that_fails_verification(self, sim, tmp_path):
        """Without caFile a self-signed device is device.unreachable kind tls naming the reason, not retried; a missing caFile is kind tls too; with caFile it converges."""
        fleet = sim(devices=3, tls=True)
        assert fleet.cert_path is not None
        root = tmp_path / "desired"
        with_ca = f"  tls:\n    caFile: {fleet.cert_path}\n"
        missing_ca = f"  tls:\n    caFile: {tmp_path / 'nope.pem'}\n"
        for n, extra in ((1, ""), (2, with_ca), (3, missing_ca)):
            dev = fleet.devices[n - 1]
            write(root, f"dev{n}.yaml", device_yaml(dev.url, account(f"Door {n}"), extra))
        result = _apply(tmp_path, root)
        assert result.returncode == 1
        evs = events(result.stderr)
        (event,) = named(evs, "device.unreachable", device="dev1")
        assert event["kind"] == "tls" and "certificate verif" in event["error"]
        assert "self-signed" in event["error"] or "self signed" in event["error"]
        (event,) = named(evs, "device.unreachable", device="dev3")
        assert event["kind"] == "tls" and "caFile" in event["error"]
        assert [e for e in evs if e.get("event") == "apply.retrying"] == []
        assert fleet.devices[0].journal == [] and fleet.devices[2].journal == []
        assert converged(fleet.devices[1], "Door 2")
        plan = syncd("plan", "--json", *pass_args(root, tmp_path / "state"))
        by_name = {d["device"]: d for d in json.loads(plan.stdout)["devices"]}
        assert by_name["dev1"]["error"]["kind"] == "tls"
        assert by_name["dev2"]["status"] == "in_sync"
        assert "Traceback" not in result.stderr + plan.stderr
