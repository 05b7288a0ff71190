"""``syncd run`` as a subprocess, as systemd runs it, against emulated intercoms."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import SYNCD, device_yaml, puts, write

ACCOUNT = '  - account: 1\n    displayName: {name}\n    sipNumber: "4001"\n'


def _setup(tmp_path: Path, fleet, name: str = "Door") -> Path:
    root = tmp_path / "desired"
    for n, dev in enumerate(fleet.devices, start=1):
        write(root, f"dev{n}.yaml", device_yaml(dev.url, ACCOUNT.format(name=f"{name} {n}")))
    return root


def _args(root: Path, tmp_path: Path, *extra: str) -> list[str]:
    return [
        "--desired",
        str(root),
        "--state-dir",
        str(tmp_path / "state"),
        "--resync-interval",
        "2",
        *extra,
    ]


def _wait_until(predicate, timeout: float = 10.0) -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)
    return time.monotonic() - started


class TestConverging:
    def test_start_converges_and_logs_json_lines(self, sim, daemon, tmp_path):
        """At start every device is applied; every stdout line is JSON with timestamp, level, event."""
        fleet = sim(devices=3)
        proc = daemon(*_args(_setup(tmp_path, fleet), tmp_path))
        for n in (1, 2, 3):
            proc.wait_for("apply.succeeded", device=f"dev{n}")
        assert proc.stop() == 0
        assert proc.lines
        for line in proc.lines:
            event = json.loads(line)
            assert {"timestamp", "level", "event"} <= event.keys()
            assert event["timestamp"].endswith("Z")
            assert event["level"] in ("debug", "info", "warning", "error")

    def test_atomic_rename_edit_reaches_device_quickly(self, sim, daemon, tmp_path):
        """A file renamed into place is applied to its device within 3 seconds."""
        fleet = sim(devices=2)
        root = _setup(tmp_path, fleet)
        proc = daemon(*_args(root, tmp_path, "--resync-interval", "600"))
        proc.wait_for("apply.succeeded", device="dev1")
        proc.wait_for("apply.succeeded", device="dev2")
        write(root, "dev1.yaml", device_yaml(fleet.devices[0].url, ACCOUNT.format(name="Edited")))
        took = _wait_until(lambda: fleet.devices[0].accounts[0]["displayName"] == "Edited", 3.0)
        assert took < 3.0
        proc.wait_for("change.pending", device="dev1")
        assert fleet.devices[1].accounts[0]["displayName"] == "Door 2"

    def test_drift_is_reported_and_corrected(self, sim, daemon, tmp_path):
        """A hand change on the device yields drift.detected and is put back."""
        fleet = sim(devices=1)
        proc = daemon(*_args(_setup(tmp_path, fleet), tmp_path))
        proc.wait_for("apply.succeeded", device="dev1")
        fleet.devices[0].set_live(1, displayName="Hacked")
        event = proc.wait_for("drift.detected", device="dev1", timeout=10)
        assert event["level"] == "warning"
        assert event["fields"] == [
            {"account": 1, "field": "displayName", "live": "Hacked", "desired": "Door 1"}
        ]
        _wait_until(lambda: fleet.devices[0].accounts[0]["displayName"] == "Door 1")

    def test_drift_survives_restart_as_drift(self, sim, daemon, tmp_path):
        """After a restart, a device changed by hand is still drift, not a pending change."""
        fleet = sim(devices=1)
        root = _setup(tmp_path, fleet)
        first = daemon(*_args(root, tmp_path))
        first.wait_for("apply.succeeded", device="dev1")
        assert first.stop() == 0
        fleet.devices[0].set_live(1, sipNumber="666")
        second = daemon(*_args(root, tmp_path))
        second.wait_for("drift.detected", device="dev1")


class TestBadEdits:
    def test_broken_yaml_never_reaches_device_and_fix_is_applied(self, sim, daemon, tmp_path):
        """A broken file logs desired.invalid, sends nothing, keeps the daemon up; the fix applies."""
        fleet = sim(devices=2)
        root = _setup(tmp_path, fleet)
        proc = daemon(*_args(root, tmp_path))
        proc.wait_for("apply.succeeded", device="dev1")
        proc.wait_for("apply.succeeded", device="dev2")
        dev = fleet.devices[0]
        dev.clear_journal()
        write(root, "dev1.yaml", device_yaml(dev.url, "  - account: 1\n    domainPort: abc\n"))
        event = proc.wait_for("desired.invalid", file="dev1.yaml")
        assert event["line"] == 7 and "domainPort" in event["error"]
        dev.set_live(1, displayName="Hacked")  # the last valid state stays in force
        _wait_until(lambda: dev.accounts[0]["displayName"] == "Door 1")
        assert all("domainPort" not in json.dumps(p.blob) for p in puts(dev))
        write(root, "dev1.yaml", device_yaml(dev.url, ACCOUNT.format(name="Fixed")))
        _wait_until(lambda: dev.accounts[0]["displayName"] == "Fixed")
        assert proc.proc.poll() is None

    def test_an_invalid_file_is_said_once_per_edit_of_it(self, sim, daemon, tmp_path):
        """desired.invalid for a file is not repeated when other files change; it is said
        again when that file is edited (still broken) and on SIGHUP."""
        fleet = sim(devices=2)
        root = _setup(tmp_path, fleet)
        proc = daemon(*_args(root, tmp_path))
        proc.wait_for("apply.succeeded", device="dev2")
        dev1, dev2 = fleet.devices
        broken = device_yaml(dev1.url, "  - account: 1\n    domainPort: abc\n")
        write(root, "dev1.yaml", broken)
        proc.wait_for("desired.invalid", file="dev1.yaml")
        for name in ("Edit one", "Edit two"):  # edits of another file: no repeat
            write(root, "dev2.yaml", device_yaml(dev2.url, ACCOUNT.format(name=name)))
            _wait_until(lambda n=name: dev2.accounts[0]["displayName"] == n)
        write(root, "dev1.yaml", broken + "# still broken\n")  # its own edit: said again
        proc.wait_for("desired.invalid", file="dev1.yaml")
        proc.proc.send_signal(signal.SIGHUP)  # and on SIGHUP
        proc.wait_for("desired.invalid", file="dev1.yaml")
        time.sleep(0.5)
        said = [e for e in proc.events if e.get("event") == "desired.invalid"]
        assert len(said) == 3, said

    def test_symlink_swap_of_desired_dir_reloads(self, sim, daemon, tmp_path):
        """Swapping a desired-dir symlink to a new checkout (git-sync style) applies it."""
        fleet = sim(devices=1)
        url = fleet.devices[0].url
        old = tmp_path / "rev-a"
        new = tmp_path / "rev-b"
        write(old, "dev1.yaml", device_yaml(url, ACCOUNT.format(name="Rev A")))
        write(new, "dev1.yaml", device_yaml(url, ACCOUNT.format(name="Rev B")))
        link = tmp_path / "current"
        link.symlink_to(old)
        proc = daemon(
            "--desired",
            str(link),
            "--state-dir",
            str(tmp_path / "state"),
            "--resync-interval",
            "600",
        )
        proc.wait_for("apply.succeeded", device="dev1")
        tmp_link = tmp_path / ".current.tmp"
        tmp_link.symlink_to(new)
        os.replace(tmp_link, link)
        _wait_until(lambda: fleet.devices[0].accounts[0]["displayName"] == "Rev B", 5.0)


class TestConnections:
    def test_a_visit_shares_a_connection_and_a_resync_opens_a_new_one(self, sim, daemon, tmp_path):
        """The requests of one visit ride one connection; none is held until the next resync.

        A real device drops an idle connection long before a resync interval, and
        10,000 held connections cost ~50 MiB. The first visit, a change, reads the
        device's calls alongside its config: on a second connection.
        """
        fleet = sim(devices=1)
        proc = daemon(*_args(_setup(tmp_path, fleet), tmp_path))
        dev = fleet.devices[0]

        def visits() -> list[set[str]]:
            out: list[set[str]] = []
            last = None
            for e in list(dev.journal):
                if last is None or e.started - last > 1.0:
                    out.append(set())
                out[-1].add(e.peer)
                last = e.finished
            return out

        _wait_until(lambda: len(visits()) >= 3, 15)
        assert proc.stop() == 0
        seen = visits()
        assert len(seen[0]) == 2 and all(len(peers) == 1 for peers in seen[1:]), seen
        peers = sum(len(visit) for visit in seen)
        assert len(set().union(*seen)) == peers, f"a connection outlived its visit: {seen}"


class TestSignals:
    def test_sighup_reconciles_everything_now(self, sim, daemon, tmp_path):
        """SIGHUP reloads and reconciles all devices without waiting for the resync."""
        fleet = sim(devices=2)
        proc = daemon(*_args(_setup(tmp_path, fleet), tmp_path, "--resync-interval", "600"))
        proc.wait_for("apply.succeeded", device="dev1")
        proc.wait_for("apply.succeeded", device="dev2")
        for dev in fleet.devices:
            dev.set_live(1, displayName="Hacked")
        proc.proc.send_signal(signal.SIGHUP)
        proc.wait_for("desired.loaded", reason="SIGHUP")
        _wait_until(lambda: all(d.accounts[0]["displayName"] != "Hacked" for d in fleet.devices))

    def test_an_edit_saved_during_a_sighup_pass_goes_ahead_of_it(self, sim, daemon, tmp_path):
        """SIGHUP queues a read of every device (30 devices answering in 200 ms, concurrency
        2: a 3 s pass); a file saved meanwhile is read and PUT ahead of that queue, not
        after it (issue 15's audit: 13.5 s behind a 10,000-device pass)."""
        fleet = sim(devices=30)
        root = _setup(tmp_path, fleet)
        proc = daemon(*_args(root, tmp_path, "--resync-interval", "600", "--concurrency", "2"))
        for n in range(1, 31):
            proc.wait_for("apply.succeeded", device=f"dev{n}")
        for dev in fleet.devices:
            dev.latency = 0.2
        hup = time.time()
        proc.proc.send_signal(signal.SIGHUP)
        proc.wait_for("desired.loaded", reason="SIGHUP")
        edited = fleet.devices[-1]
        write(root, "dev30.yaml", device_yaml(edited.url, ACCOUNT.format(name="Door 30 edited")))
        proc.wait_for("apply.succeeded", device="dev30")
        put = next(e for e in edited.journal if e.method == "PUT" and e.started > hup)
        reads = [
            e.started
            for dev in fleet.devices[:-1]
            for e in dev.journal
            if e.method == "GET" and e.path == "/api/phone/config" and e.started > hup
        ]
        before = sum(1 for started in reads if started < put.started)
        assert before < 15, f"{before} of the SIGHUP's 29 reads went before the edit's PUT"
        assert proc.stop() == 0

    def test_sigterm_lets_put_in_flight_finish(self, sim, daemon, tmp_path):
        """SIGTERM during a slow PUT exits 0 within 10 s, after the PUT was applied."""
        fleet = sim(devices=1)
        dev = fleet.devices[0]
        dev.inject(kind="delay", delay=2.0, method="PUT", count=1)
        proc = daemon(*_args(_setup(tmp_path, fleet), tmp_path))
        proc.wait_for("change.pending", device="dev1")
        time.sleep(0.3)
        started = time.monotonic()
        assert proc.stop(signal.SIGTERM) == 0
        assert time.monotonic() - started < 10
        assert dev.accounts[0]["displayName"] == "Door 1"
        proc.wait_for("apply.succeeded", device="dev1", timeout=1)

    def test_sigterm_starts_no_put_whose_read_was_in_flight(self, sim, daemon, tmp_path):
        """SIGTERM while a device's config GET is in flight: the GET may finish, but the PUT
        it leads to is not started (stop starting work); the change waits for the next start."""
        fleet = sim(devices=1)
        dev = fleet.devices[0]
        dev.inject(kind="delay", delay=1.5, method="GET", path="/api/phone/config", count=1)
        proc = daemon(*_args(_setup(tmp_path, fleet), tmp_path))
        proc.wait_for("desired.loaded")
        time.sleep(0.5)  # the first reconcile's GET is held by the device
        assert proc.stop(signal.SIGTERM) == 0
        assert [e.method for e in dev.journal if e.method == "PUT"] == []
        assert dev.accounts[0]["displayName"] != "Door 1"
        skipped = proc.wait_for("reconcile.skipped", device="dev1", timeout=1)
        assert skipped["reason"] == "the daemon is stopping"

    def test_sigterm_after_the_log_reader_has_gone(self, sim, tmp_path):
        """With its log pipe closed, SIGTERM during a PUT still exits 0 within 10 s, with no traceback."""
        fleet = sim(devices=1)
        dev = fleet.devices[0]
        dev.inject(kind="delay", delay=1.0, method="PUT", count=1)
        run = [*SYNCD, "run", *_args(_setup(tmp_path, fleet), tmp_path)]
        with subprocess.Popen(
            run, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        ) as proc:
            try:
                assert proc.stdout is not None and proc.stderr is not None
                for line in proc.stdout:
                    if '"desired.loaded"' in line:
                        break
                proc.stdout.close()  # every later log line meets a broken pipe
                time.sleep(0.3)
                started = time.monotonic()
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(timeout=10) == 0
                assert time.monotonic() - started < 10
                assert proc.stderr.read() == ""
            finally:
                proc.kill()
        assert dev.accounts[0]["displayName"] == "Door 1"

    def test_hung_device_does_not_delay_the_others(self, sim, daemon, tmp_path):
        """A device that never answers in time leaves the others converging at once."""
        fleet = sim(devices=3)
        fleet.devices[0].inject(kind="delay", delay=30.0, count=50)
        proc = daemon(*_args(_setup(tmp_path, fleet), tmp_path, "--request-timeout", "5"))
        started = time.monotonic()
        proc.wait_for("apply.succeeded", device="dev2")
        proc.wait_for("apply.succeeded", device="dev3")
        assert time.monotonic() - started < 4
        assert proc.stop() == 0


class TestStartup:
    def test_missing_desired_dir_is_fatal_with_one_sentence(self, daemon, tmp_path):
        """A missing desired dir stops start-up with a non-zero exit and a clear message."""
        proc = daemon("--desired", str(tmp_path / "nope"), "--state-dir", str(tmp_path / "s"))
        code = proc.proc.wait(timeout=15)
        assert code != 0
        err = proc.proc.stderr.read()
        assert "does not exist" in err and "Traceback" not in err

    @pytest.mark.parametrize(
        ("flag", "value"), [("--resync-interval", "-1"), ("--concurrency", "0")]
    )
    def test_bad_setting_is_fatal_naming_it(self, daemon, tmp_path, flag, value):
        """A bad setting value exits non-zero naming the setting."""
        proc = daemon("--desired", str(tmp_path), flag, value)
        assert proc.proc.wait(timeout=15) != 0
        err = proc.proc.stderr.read()
        assert flag.lstrip("-").replace("-", "_") in err and "Traceback" not in err

    def test_unusable_state_dir_is_fatal(self, daemon, tmp_path):
        """A state dir that cannot be created exits non-zero naming it."""
        blocker = tmp_path / "file"
        blocker.write_text("x")
        proc = daemon("--desired", str(tmp_path), "--state-dir", str(blocker / "state"))
        assert proc.proc.wait(timeout=15) != 0
        assert "state directory" in proc.proc.stderr.read()


class TestNotify:
    def test_ready_status_watchdog_and_stopping_reach_notify_socket(self, sim, daemon, tmp_path):
        """READY=1, STATUS=, WATCHDOG=1 and STOPPING=1 arrive on $NOTIFY_SOCKET."""
        fleet = sim(devices=1)
        path = str(tmp_path / "notify.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        sock.settimeout(0.2)
        proc = daemon(
            *_args(_setup(tmp_path, fleet), tmp_path),
            env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"},
        )
        proc.wait_for("apply.succeeded", device="dev1")
        time.sleep(1.0)
        assert proc.stop() == 0
        messages = []
        while True:
            try:
                messages.append(sock.recv(4096).decode())
            except TimeoutError:
                break
        sock.close()
        text = "\n".join(messages)
        assert messages[0].startswith("READY=1")
        assert "STATUS=1 device:" in text
        assert text.count("WATCHDOG=1") >= 2
        assert "STOPPING=1" in messages[-1]
