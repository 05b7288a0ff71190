"""The daemon's view of the fleet, as a subprocess: registration, revision, history, status, events."""

from __future__ import annotations

import json
import re
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from syncd.history import parse_time
from syncd.lock import StateLock
from tests.e2e.conftest import DaemonProcess, device_yaml, puts, syncd, write
from tests.etcd_server import free_port
from tests.git_repo import git

SIP_PASSWORD = "sip-Secret-4711"
SIP_ACCOUNT = (
    "  - account: 1\n"
    "    enabled: true\n"
    '    sipNumber: "4001"\n'
    "    displayName: {name}\n"
    "    domain: pbx.example.com\n"
    "    registrationEnabled: true\n"
    "    password: {{env: SIP1}}\n"
)
PLAIN_ACCOUNT = '  - account: 1\n    displayName: {name}\n    sipNumber: "4001"\n'


@dataclass
class Setup:
    """A desired dir, a state dir, a short control-socket path, a metrics port."""

    root: Path
    state: Path
    socket: Path
    port: int

    @property
    def env(self) -> dict[str, str]:
        return {"SIP1": SIP_PASSWORD, "SYNCD_SOCKET": str(self.socket)}

    def args(self, resync: float = 0.5, *extra: str) -> list[str]:
        return [
            "--desired", str(self.root),
            "--state-dir", str(self.state),
            "--resync-interval", str(resync),
            "--metrics-address", f"127.0.0.1:{self.port}",
            *extra,
        ]  # fmt: skip

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return syncd(*args, "--state-dir", str(self.state), env=self.env)

    def metric(self, name: str, **labels: str) -> float | None:
        text = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5).text
        for line in text.splitlines():
            if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
        return None

    def get(self, path: str) -> str:
        return httpx.get(f"http://127.0.0.1:{self.port}{path}", timeout=5).text


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    """Fresh dirs; the socket in a short directory (a Unix socket path has at most 107 bytes)."""
    short = Path(tempfile.mkdtemp(prefix="fv", dir="/tmp"))
    try:
        yield Setup(tmp_path / "desired", tmp_path / "state", short / "syncd.sock", free_port())
    finally:
        shutil.rmtree(short, ignore_errors=True)


@pytest.fixture
def run(daemon: Callable[..., DaemonProcess], setup: Setup) -> Callable[..., DaemonProcess]:
    """Start the daemon on the setup: ``run(resync, *flags)``."""

    def start(resync: float = 0.5, *extra: str) -> DaemonProcess:
        return daemon(*setup.args(resync, *extra), env=setup.env)

    return start


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def registration(url: str, *, fail: bool) -> None:
    answer = httpx.post(f"{url}/_emulator/registration", json={"account": 1, "fail": fail})
    assert answer.status_code == 200, answer.text


def registered(sim, run, setup: Setup, fleet: str | None = None) -> tuple[Any, DaemonProcess]:
    """One emulated device with a SIP account under a daemon (0.5 s resync, ``fleet`` as
    its ``_fleet.yaml``), registered."""
    dev = sim(devices=1, register_delay=0.1).devices[0]
    write(setup.root, "dev1.yaml", device_yaml(dev.url, SIP_ACCOUNT.format(name="Door")))
    if fleet is not None:
        write(setup.root, "_fleet.yaml", fleet)
    proc = run(0.5)
    proc.wait_for("apply.succeeded", device="dev1")
    wait_until(lambda: setup.metric("syncd_account_registered", device="dev1") == 1)
    return dev, proc


def resent_by_itself(proc: DaemonProcess, dev: Any) -> None:
    """The daemon sends account 1's password again on its own, and the account registers."""
    event = proc.wait_for("password.resent", device="dev1", timeout=15)
    assert event["account"] == 1 and event["reason"] == "registration"
    wait_until(lambda: dev.registered(1))


class TestRegistration:
    def test_lost_and_restored_follow_the_device(self, sim, run, setup):
        """A forced registration failure logs registration.lost and the gauge goes 0; lifted, restored and 1."""
        fleet = sim(devices=1, register_delay=0.2)
        url = fleet.devices[0].url
        write(setup.root, "dev1.yaml", device_yaml(url, SIP_ACCOUNT.format(name="Door")))
        proc = run(0.5)
        proc.wait_for("apply.succeeded", device="dev1")
        wait_until(lambda: setup.metric("syncd_account_registered", device="dev1") == 1)
        registration(url, fail=True)
        event = proc.wait_for("registration.lost", device="dev1")
        assert event["account"] == 1 and event["level"] == "warning"
        wait_until(lambda: setup.metric("syncd_account_registered", device="dev1") == 0)
        registration(url, fail=False)
        proc.wait_for("registration.restored", device="dev1", account=1)
        wait_until(lambda: setup.metric("syncd_account_registered", device="dev1") == 1)
        assert not [e for e in proc.events if e["event"] == "registration.lost"][1:]

    def test_monitor_false_in_fleet_yaml_turns_monitoring_off_and_back_on(self, sim, run, setup):
        """``health.monitor: false``: no phone-status reads, no gauge, no registration.lost;
        edited to true, monitoring comes back without a restart; to false, its gauge goes."""
        fleet = sim(devices=1, register_delay=0.2)
        dev = fleet.devices[0]
        write(setup.root, "dev1.yaml", device_yaml(dev.url, SIP_ACCOUNT.format(name="Door")))
        write(setup.root, "_fleet.yaml", "health:\n  monitor: false\n  registration: false\n")
        proc = run(0.3)
        proc.wait_for("apply.succeeded", device="dev1")
        registration(dev.url, fail=True)
        time.sleep(1.5)  # five resyncs
        assert [e for e in dev.journal if e.path == "/api/phone/status"] == []
        assert setup.metric("syncd_account_registered", device="dev1") is None
        assert not [e for e in proc.events if e["event"] == "registration.lost"]
        write(setup.root, "_fleet.yaml", "health:\n  monitor: true\n  registration: false\n")
        wait_until(lambda: setup.metric("syncd_account_registered", device="dev1") == 0)
        registration(dev.url, fail=False)
        wait_until(lambda: setup.metric("syncd_account_registered", device="dev1") == 1)
        write(setup.root, "_fleet.yaml", "health:\n  monitor: false\n  registration: false\n")
        wait_until(lambda: setup.metric("syncd_account_registered", device="dev1") is None)

    def test_a_device_that_cannot_report_is_warned_about_once(self, sim, run, setup):
        """Code 10 on the phone status: one warning naming the privilege; the device stays in sync."""
        fleet = sim(devices=1)
        dev = fleet.devices[0]
        dev.inject(kind="reject", count=None, path="/api/phone/status", code=10)
        write(setup.root, "dev1.yaml", device_yaml(dev.url, PLAIN_ACCOUNT.format(name="Door")))
        proc = run(0.3)
        event = proc.wait_for("registration.unsupported", device="dev1")
        assert "Phone/Calls - Monitoring" in event["error"]
        time.sleep(1.5)
        asked = [e for e in dev.journal if e.path == "/api/phone/status"]
        assert len(asked) == 1
        assert [e["event"] for e in proc.events].count("registration.unsupported") == 1
        assert setup.metric("syncd_device_in_sync", device="dev1") == 1

    def test_a_registration_slower_than_a_resync_after_a_commit_is_no_factory_reset(
        self, sim, run, setup
    ):
        """syncd's PUT of new SIP settings: the account takes longer than a resync to register
        again; that is no factory reset (no password.resent, the password sent once)."""
        fleet = sim(devices=1, register_delay=1.5)
        dev = fleet.devices[0]
        write(setup.root, "dev1.yaml", device_yaml(dev.url, SIP_ACCOUNT.format(name="Door")))
        proc = run(0.3)
        proc.wait_for("apply.succeeded", device="dev1")
        wait_until(lambda: setup.metric("syncd_account_registered", device="dev1") == 1)
        account = SIP_ACCOUNT.format(name="Door") + "    domainPort: 5099\n"
        write(setup.root, "dev1.yaml", device_yaml(dev.url, account))
        proc.wait_for("apply.succeeded", device="dev1")  # the second one
        wait_until(lambda: setup.metric("syncd_account_registered", device="dev1") == 1)
        assert not [e for e in proc.events if e["event"] == "password.resent"]
        bodies = [e.blob_text for e in dev.journal if e.method == "PUT"]
        assert len(bodies) == 2 and "password" in bodies[0] and "password" not in bodies[1]

    def test_factory_reset_in_place_gets_its_password_again(self, sim, run, setup):
        """A device reset in place (same serial) registers again: syncd resends the password itself."""
        dev, proc = registered(sim, run, setup)
        dev.factory_reset()
        resent_by_itself(proc, dev)

    def test_factory_reset_while_the_daemon_is_down_gets_its_password_again(self, sim, run, setup):
        """Reset in place while no daemon runs: the next daemon puts the settings back and,
        the state saying the account had registered under them, sends the password again."""
        dev, first = registered(sim, run, setup)
        assert first.stop() == 0
        dev.factory_reset()
        proc = run(0.5)
        proc.wait_for("apply.succeeded", device="dev1")
        resent_by_itself(proc, dev)
        assert SIP_PASSWORD not in (setup.state / "devices.jsonl").read_text()

    def test_factory_reset_under_a_health_gate_gets_its_password_again(self, sim, run, setup):
        """With _fleet.yaml's health gate, the drift correction after a reset fails its check
        (no password on the device); the desired state stays in force and the password is
        sent again by itself."""
        dev, proc = registered(sim, run, setup, fleet="health:\n  timeout: 1\n")
        dev.factory_reset()
        proc.wait_for("health.failed", device="dev1", timeout=15)
        resent_by_itself(proc, dev)


class TestRevisionHistoryStatus:
    def test_git_commit_shows_in_status_and_history(self, sim, run, setup):
        """After a commit, status --json shows it (SPEC 10 keys exactly) and history the change."""
        fleet = sim(devices=2)
        for n, dev in enumerate(fleet.devices, start=1):
            write(setup.root, f"dev{n}.yaml", device_yaml(dev.url, SIP_ACCOUNT.format(name="Old")))
        git(setup.root, "init", "-q")
        git(setup.root, "add", "-A")
        git(setup.root, "commit", "-qm", "first")
        proc = run(5)
        first = git(setup.root, "rev-parse", "HEAD")
        assert proc.wait_for("desired.loaded")["revision"] == first
        proc.wait_for("apply.succeeded", device="dev2")
        url = fleet.devices[0].url
        write(setup.root, "dev1.yaml", device_yaml(url, SIP_ACCOUNT.format(name="New")))
        git(setup.root, "commit", "-qam", "rename the door")
        commit = git(setup.root, "rev-parse", "HEAD")
        event = proc.wait_for("apply.succeeded", device="dev1", revision=commit)
        assert event["fields"][0]["field"] == "displayName"
        assert stat.S_IMODE(setup.socket.stat().st_mode) == 0o600

        def status() -> dict[str, Any]:
            done = setup.cli("status", "--json")
            assert done.returncode == 0, done.stderr
            data: dict[str, Any] = json.loads(done.stdout)
            return data

        data = wait_until(lambda: (d := status())["revision"] == commit and d)
        assert set(data) == {
            "revision", "node", "rollout", "window", "summary", "devices", "invalid_files",
        }  # fmt: skip
        assert set(data["rollout"]) == {"revision", "state", "wave", "failed"}
        assert set(data["window"]) == {"open", "next_open"}
        assert data["summary"]["devices"] == 2
        device_keys = {
            "device", "url", "mode", "state", "wave", "revision", "last_sync", "last_change",
            "message", "accounts", "owner",
        }  # fmt: skip
        assert all(set(d) == device_keys for d in data["devices"])
        dev1 = next(d for d in data["devices"] if d["device"] == "dev1")
        assert dev1["revision"] == commit and dev1["state"] == "in_sync"
        assert dev1["last_change"] is not None
        assert dev1["accounts"][0]["account"] == 1
        assert setup.metric("syncd_desired_info", revision=commit) == 1
        text = setup.cli("status")
        assert text.returncode == 0 and "dev1" in text.stdout and commit[:12] in text.stdout
        one = json.loads(setup.cli("status", "--json", "--device", "dev2").stdout)
        assert [d["device"] for d in one["devices"]] == ["dev2"]
        assert one["summary"]["devices"] == 1 and one["summary"]["in_sync"] == 1
        assert "dev1" not in setup.cli("status", "--device", "dev2").stdout

        done = setup.cli("history", "--json", "--device", "dev1")
        assert done.returncode == 0, done.stderr
        entries = json.loads(done.stdout)
        assert [e["revision"] for e in entries] == [first, commit]
        assert entries[-1]["trigger"] == "change" and entries[-1]["result"] == "succeeded"
        assert {"account": 1, "field": "displayName", "from": "Old", "to": "New"} in entries[-1][
            "changes"
        ]
        assert {"account": 1, "field": "password", "from": None, "to": "(set)"} in entries[0][
            "changes"
        ]
        everything = [
            json.dumps(data), text.stdout, done.stdout, setup.cli("history").stdout,
            setup.get("/"), setup.get("/status"), setup.get("/metrics"),
            (setup.state / "history.jsonl").read_text(),
            "".join(proc.lines),
        ]  # fmt: skip
        assert not [t for t in everything if SIP_PASSWORD in t]

        # A restarted daemon still knows when it last changed each device.
        assert proc.stop() == 0
        changed = parse_time(dev1["last_change"])
        again = run(5)
        again.wait_for("desired.loaded")
        restarted = wait_until(lambda: (d := status())["devices"] and d)
        dev1 = next(d for d in restarted["devices"] if d["device"] == "dev1")
        assert dev1["last_change"] is not None
        assert abs((parse_time(dev1["last_change"]) - changed).total_seconds()) < 5

    def test_a_commit_that_changes_no_desired_file_shows_at_once(self, sim, run, setup):
        """The repo holds desired/ (as the README lays it out): a commit of another file moves
        the revision in status within seconds, not at the backstop reload."""
        fleet = sim(devices=1)
        write(
            setup.root,
            "dev1.yaml",
            device_yaml(fleet.devices[0].url, PLAIN_ACCOUNT.format(name="A")),
        )
        repo = setup.root.parent
        git(repo, "init", "-q")
        git(repo, "add", "desired")
        git(repo, "commit", "-qm", "first")
        proc = run(60)
        first = git(repo, "rev-parse", "HEAD")
        assert proc.wait_for("desired.loaded")["revision"] == first
        proc.wait_for("apply.succeeded", device="dev1")  # the watches are up by then
        (repo / "NOTES.md").write_text("a note\n")
        git(repo, "add", "NOTES.md")
        git(repo, "commit", "-qm", "notes only")
        commit = git(repo, "rev-parse", "HEAD")
        loaded = proc.wait_for("desired.loaded", timeout=5, revision=commit)
        assert loaded["devices"] == 1
        wait_until(
            lambda: json.loads(setup.cli("status", "--json").stdout)["revision"] == commit, 5
        )
        assert proc.stop() == 0

    def test_apply_records_its_puts_under_a_tree_revision(self, sim, setup):
        """`syncd apply` outside Git: its PUT is in the history under a tree: revision, password as (set)."""
        fleet = sim(devices=1)
        write(
            setup.root, "dev1.yaml", device_yaml(fleet.devices[0].url, SIP_ACCOUNT.format(name="A"))
        )
        done = syncd(
            "apply", "--desired", str(setup.root), "--state-dir", str(setup.state), env=setup.env
        )
        assert done.returncode == 0, done.stderr
        (entry,) = json.loads(setup.cli("history", "--json").stdout)
        assert re.fullmatch(r"tree:[0-9a-f]{12}", entry["revision"])
        assert entry["device"] == "dev1" and entry["result"] == "succeeded"
        assert SIP_PASSWORD not in json.dumps(entry)

    def test_status_without_a_daemon_names_the_socket(self, setup):
        """`syncd status` with no daemon: exit 1, one sentence naming where it looked."""
        done = setup.cli("status")
        assert done.returncode == 1
        assert done.stderr.count("\n") == 1 and str(setup.socket) in done.stderr

    def test_history_skips_a_torn_line_and_refuses_a_bad_since(self, setup):
        """A torn last line is skipped with a warning; --since that is not a duration is one
        sentence naming the flag, exit 1 (issue 12)."""
        setup.state.mkdir()
        entry = {
            "time": "2024-05-01T10:00:00.000Z", "device": "dev1", "revision": "tree:0123456789ab",
            "trigger": "change", "wave": None, "result": "succeeded", "error": None,
            "changes": [{"account": 1, "field": "displayName", "from": "a", "to": "b"}],
        }  # fmt: skip
        (setup.state / "history.jsonl").write_text(json.dumps(entry) + '\n{"time": "2024-')
        done = setup.cli("history", "--json")
        assert done.returncode == 0
        assert [e["device"] for e in json.loads(done.stdout)] == ["dev1"]
        assert "skipped" in done.stderr
        bad = setup.cli("history", "--since", "yesterday")
        assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "duration" in bad.stderr
        assert "--since" in json.loads(bad.stderr)["error"]


class TestOperator:
    def test_passwords_resend_through_the_running_daemon(self, sim, run, setup):
        """`syncd passwords resend` with the daemon running sends the password again at once."""
        fleet = sim(devices=1)
        dev = fleet.devices[0]
        write(setup.root, "dev1.yaml", device_yaml(dev.url, SIP_ACCOUNT.format(name="Door")))
        proc = run(30)
        proc.wait_for("apply.succeeded", device="dev1")
        dev.clear_journal()
        done = setup.cli("passwords", "resend", "dev1")
        assert done.returncode == 0, done.stderr
        event = proc.wait_for("password.resent", device="dev1")
        assert event["reason"] == "operator" and event["account"] == 1
        (put,) = puts(dev)
        assert put.blob["accounts"][0]["password"] == SIP_PASSWORD
        unknown = setup.cli("passwords", "resend", "nope")
        assert unknown.returncode == 1 and "nope" in unknown.stderr
        assert proc.stop() == 0
        # No daemon: the state is changed directly, for a device the desired state has only.
        desired = ("--desired", str(setup.root))
        offline = setup.cli("passwords", "resend", "dev1", *desired)
        assert offline.returncode == 0 and "marked due" in offline.stdout, offline.stderr
        unknown = setup.cli("passwords", "resend", "nope", *desired)
        assert unknown.returncode == 1 and "no device nope in" in unknown.stderr
        # A syncd apply holding the state dir: the records are not written under it.
        records = (setup.state / "devices.jsonl").read_bytes()
        with StateLock.acquire(setup.state):
            locked = setup.cli("passwords", "resend", "dev1", *desired)
        assert locked.returncode == 1 and "in use by another syncd" in locked.stderr
        assert (setup.state / "devices.jsonl").read_bytes() == records
        # The next run sends it, and says so as it does through the daemon; once.
        for sends in (1, 0):
            applied = setup.cli("apply", *desired)
            assert applied.returncode == 0, applied.stderr
            resent = [
                e
                for e in map(json.loads, applied.stderr.splitlines())
                if e["event"] == "password.resent"
            ]
            assert [(e["device"], e["reason"]) for e in resent] == [("dev1", "operator")] * sends


class TestQuietEvents:
    def test_unreachable_is_logged_once_and_recovery_is_an_event(self, sim, run, setup):
        """A dead device logs device.unreachable once over many short resyncs, then device.recovered."""
        fleet = sim(devices=1)
        dev = fleet.devices[0]
        write(setup.root, "dev1.yaml", device_yaml(dev.url, PLAIN_ACCOUNT.format(name="Door")))
        dev.inject(kind="drop", count=None)
        proc = run(0.5)
        proc.wait_for("device.unreachable", device="dev1")
        assert setup.metric("syncd_device_failing", device="dev1", kind="transport") == 1
        time.sleep(5)
        assert [e["event"] for e in proc.events].count("device.unreachable") == 1
        dev.clear_faults()
        event = proc.wait_for("device.recovered", device="dev1")
        assert event["failing_for"] >= 4
        assert setup.metric("syncd_device_failing", device="dev1") is None

    def test_recovery_counts_the_failed_reconciles_timeouts(self, sim, run, setup):
        """A device that stops answering: the reconcile that gave up on it waited a whole
        request timeout, and device.recovered's failing_for counts that wait too."""
        fleet = sim(devices=1)
        dev = fleet.devices[0]
        write(setup.root, "dev1.yaml", device_yaml(dev.url, PLAIN_ACCOUNT.format(name="Door")))
        dev.inject(kind="hang", count=None)
        proc = run(0.5, "--request-timeout", "1")
        unreachable = proc.wait_for("device.unreachable", device="dev1")
        dev.clear_faults()
        recovered = proc.wait_for("device.recovered", device="dev1")
        seen = parse_time(recovered["timestamp"]) - parse_time(unreachable["timestamp"])
        assert recovered["failing_for"] >= seen.total_seconds() + 0.9

    def test_wrong_credentials_log_auth_failed(self, sim, run, setup):
        """Credentials the device refuses log auth.failed, not device.unreachable."""
        fleet = sim(devices=1, auth="digest")
        dev = fleet.devices[0]
        extra = "    username: admin\n    password: wrong\n"
        text = device_yaml(dev.url, PLAIN_ACCOUNT.format(name="Door"))
        write(
            setup.root,
            "dev1.yaml",
            text.replace("    method: none\n", "    method: digest\n" + extra),
        )
        proc = run(0.5)
        event = proc.wait_for("auth.failed", device="dev1")
        assert event["level"] == "error"
        assert "device.unreachable" not in [e["event"] for e in proc.events]

    def test_observe_drift_counts_once_and_suspend_is_quiet(self, sim, run, setup):
        """Observe mode: one drift.detected and one count for a lasting difference; suspend: no series."""
        fleet = sim(devices=2)
        observed, parked = fleet.devices
        write(
            setup.root, "dev1.yaml", device_yaml(observed.url, PLAIN_ACCOUNT.format(name="Door 1"))
        )
        write(setup.root, "dev2.yaml", device_yaml(parked.url, PLAIN_ACCOUNT.format(name="Door 2")))
        proc = run(0.3)
        proc.wait_for("apply.succeeded", device="dev1")
        proc.wait_for("apply.succeeded", device="dev2")
        account = PLAIN_ACCOUNT.format(name="Door 1")
        write(setup.root, "dev1.yaml", device_yaml(observed.url, account, "  mode: observe\n"))
        write(setup.root, "dev2.yaml", device_yaml(parked.url, "", "  mode: suspend\n"))
        proc.wait_for("reconcile.skipped", device="dev2")
        observed.set_live(1, displayName="Hacked")
        proc.wait_for("drift.detected", device="dev1")
        time.sleep(2)
        names = [(e["event"], e.get("device")) for e in proc.events]
        assert names.count(("drift.detected", "dev1")) == 1
        assert names.count(("reconcile.skipped", "dev2")) == 1
        assert setup.metric("syncd_drift_events_total", device="dev1") == 1
        assert setup.metric("syncd_device_in_sync", device="dev2") is None
        assert observed.accounts[0]["displayName"] == "Hacked"

    def test_invalid_file_names_the_device(self, sim, run, setup):
        """A device file turned invalid: desired.invalid names the device, and its gauge is 1."""
        fleet = sim(devices=1)
        dev = fleet.devices[0]
        write(setup.root, "dev1.yaml", device_yaml(dev.url, PLAIN_ACCOUNT.format(name="Door")))
        proc = run(5)
        proc.wait_for("apply.succeeded", device="dev1")
        write(setup.root, "dev1.yaml", device_yaml(dev.url, "  - account: 1\n    domainPort: x\n"))
        event = proc.wait_for("desired.invalid", file="dev1.yaml")
        assert event["device"] == "dev1"
        wait_until(lambda: setup.metric("syncd_device_desired_invalid", device="dev1") == 1)
        # The snapshot is rebuilt once a second.
        (invalid,) = wait_until(lambda: json.loads(setup.get("/status"))["invalid_files"])
        assert invalid["file"] == "dev1.yaml" and "domainPort" in invalid["error"]
        assert not invalid["error"].startswith("dev1.yaml")  # the view adds file:line itself
