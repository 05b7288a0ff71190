"""SIGHUP reads the settings again: ``syncd run --config FILE`` as a subprocess, edited live."""

from __future__ import annotations

import json
import signal
import socket
import time
from pathlib import Path

from tests.e2e.conftest import device_yaml, syncd, write

ACCOUNT = '  - account: 1\n    displayName: Door\n    sipNumber: "4001"\n'


def _wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(0.05)


def _config(tmp_path: Path, fleet, **settings: object) -> Path:
    """A desired tree for ``fleet`` and a TOML settings file naming it; the file's path."""
    root = tmp_path / "desired"
    for n, dev in enumerate(fleet.devices, start=1):
        write(root, f"dev{n}.yaml", device_yaml(dev.url, ACCOUNT))
    toml = tmp_path / "syncd.toml"
    _write_toml(toml, desired_dir=str(root), state_dir=str(tmp_path / "state"), **settings)
    return toml


def _write_toml(path: Path, **settings: object) -> None:
    lines = [f"{k} = {v!r}" if isinstance(v, str) else f"{k} = {v}" for k, v in settings.items()]
    path.write_text("\n".join(lines).replace("'", '"') + "\n")


def _edit(path: Path, **settings: object) -> None:
    """Change some settings of the TOML file, keeping the others."""
    import tomllib

    current = tomllib.loads(path.read_text())
    _write_toml(path, **{**current, **settings})


def _config_gets(dev) -> int:
    return sum(1 for e in dev.journal if e.method == "GET" and e.path == "/api/phone/config")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TestLiveSettings:
    def test_new_resync_interval_and_log_level_take_effect_at_once(self, sim, daemon, tmp_path):
        """After resync_interval 60 -> 0.5 and log_level info -> debug in the file and SIGHUP,
        the device is read every half second and debug events appear."""
        fleet = sim(devices=1)
        dev = fleet.devices[0]
        toml = _config(tmp_path, fleet, resync_interval=60)
        proc = daemon("--config", str(toml))
        proc.wait_for("apply.succeeded", device="dev1")
        _edit(toml, resync_interval=0.5, log_level="debug")
        proc.proc.send_signal(signal.SIGHUP)
        event = proc.wait_for("daemon.signal", signal="SIGHUP")
        assert event["settings"] == {
            "resync_interval": {"from": 60.0, "to": 0.5},
            "log_level": {"from": "info", "to": "debug"},
        }
        proc.wait_for("desired.loaded", reason="SIGHUP")
        dev.clear_journal()
        # At 60 s, one read in the window (the SIGHUP's) at most; at 0.5 s, one about every 0.5 s.
        _wait_until(lambda: _config_gets(dev) >= 5, 20, "resyncs at the new interval")
        dev.inject(kind="status", status=503, method="GET", path="/api/phone/config", count=1)
        retry = proc.wait_for("request.retrying", device="dev1", timeout=20)
        assert retry["level"] == "debug"
        assert proc.proc.poll() is None

    def test_flags_and_environment_still_win_over_the_file(self, sim, daemon, tmp_path):
        """A setting given as a flag or in SYNCD_* at start keeps that value whatever the file says."""
        fleet = sim(devices=1)
        toml = _config(tmp_path, fleet, resync_interval=60, concurrency=5)
        proc = daemon(
            "--config", str(toml), "--resync-interval", "600", env={"SYNCD_CONCURRENCY": "7"}
        )
        proc.wait_for("apply.succeeded", device="dev1")
        _edit(toml, resync_interval=0.5, concurrency=3)
        proc.proc.send_signal(signal.SIGHUP)
        event = proc.wait_for("daemon.signal", signal="SIGHUP")
        assert event["settings"] == {}
        proc.wait_for("desired.loaded", reason="SIGHUP")
        assert not [e for e in proc.events if e.get("event", "").startswith("settings.")]


class TestRestartSettings:
    def test_a_restart_setting_is_one_warning_and_no_change(self, sim, daemon, tmp_path):
        """metrics_address and state_dir changed: one warning each naming it; nothing listens
        on the new address, the new state dir stays untouched, the devices are still served."""
        fleet = sim(devices=1)
        dev = fleet.devices[0]
        toml = _config(tmp_path, fleet, resync_interval=60)
        proc = daemon("--config", str(toml))
        proc.wait_for("apply.succeeded", device="dev1")
        port = _free_port()
        moved = tmp_path / "moved-state"
        _edit(toml, metrics_address=f"127.0.0.1:{port}", state_dir=str(moved))
        proc.proc.send_signal(signal.SIGHUP)
        assert proc.wait_for("daemon.signal", signal="SIGHUP")["settings"] == {}
        proc.wait_for("desired.loaded", reason="SIGHUP")
        warnings = [e for e in proc.events if e.get("event") == "settings.restart_needed"]
        assert sorted(w["setting"] for w in warnings) == ["metrics_address", "state_dir"]
        for warning in warnings:
            assert warning["level"] == "warning"
            assert warning["message"].startswith(f"setting {warning['setting']} changed from ")
            assert warning["message"].endswith("; it takes effect after a restart")
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0
        assert not moved.exists()
        dev.set_live(1, displayName="Hacked")
        proc.proc.send_signal(signal.SIGHUP)  # still reconciles everything on SIGHUP
        _wait_until(lambda: dev.accounts[0]["displayName"] == "Door", 15, "drift put back")


class TestBrokenSettings:
    def test_a_broken_file_is_one_warning_and_the_daemon_goes_on(self, sim, daemon, tmp_path):
        """A TOML syntax error, then a bad value: one settings.invalid each, with the sentence a
        start would give; the daemon keeps its settings and serves on; a fixed file applies."""
        fleet = sim(devices=1)
        dev = fleet.devices[0]
        toml = _config(tmp_path, fleet, resync_interval=60)
        good = toml.read_text()
        proc = daemon("--config", str(toml))
        proc.wait_for("apply.succeeded", device="dev1")

        for broken in ("resync_interval = [\n", good.replace("60", "-1")):
            toml.write_text(broken)
            at_start = syncd("run", "--config", str(toml))  # the start-up error, for reference
            assert at_start.returncode == 1
            (failed,) = [json.loads(line) for line in at_start.stderr.splitlines()]
            proc.proc.send_signal(signal.SIGHUP)
            assert proc.wait_for("daemon.signal", signal="SIGHUP")["settings"] == {}
            proc.wait_for("desired.loaded", reason="SIGHUP")
            invalid = [e for e in proc.events if e.get("event") == "settings.invalid"]
            assert len(invalid) == 1, invalid
            assert invalid[0]["level"] == "warning"
            assert str(toml) in invalid[0]["error"]
            assert invalid[0]["error"] == failed["error"]
            proc.events.remove(invalid[0])

        assert failed["error"].startswith("bad setting resync_interval (")
        toml.write_text(good.replace("60", "0.5"))
        proc.proc.send_signal(signal.SIGHUP)
        event = proc.wait_for("daemon.signal", signal="SIGHUP")
        assert event["settings"] == {"resync_interval": {"from": 60.0, "to": 0.5}}
        dev.clear_journal()
        _wait_until(lambda: _config_gets(dev) >= 4, 20, "resyncs at the fixed file's interval")
        assert proc.stop() == 0
        err = proc.proc.stderr.read() if proc.proc.stderr else ""
        assert "Traceback" not in err and "Traceback" not in "".join(proc.lines)
