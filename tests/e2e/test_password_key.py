"""The password-record key: every command keys the records as the daemon does (SPEC 3, 4)."""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import device_yaml, puts, syncd, write

PASSWORD = "pw-key-s3cret"


class Setup:
    """A desired tree of one device with a managed password, a state dir, a short socket."""

    def __init__(self, tmp_path: Path, url: str, socket: Path) -> None:
        self.root = tmp_path / "desired"
        self.state = tmp_path / "state"
        self.socket = socket
        write(
            self.root, "dev1.yaml", device_yaml(url, "  - account: 1\n    password: {env: SIP1}\n")
        )
        self.env = {"SIP1": PASSWORD, "SYNCD_SOCKET": str(socket), "SYNCD_LOG_FORMAT": "json"}

    def args(self) -> list[str]:
        return ["--desired", str(self.root), "--state-dir", str(self.state)]

    def cli(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return syncd(*args, *self.args(), env={**self.env, **env})


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A short directory for the control socket (a Unix socket path has at most 107 bytes)."""
    short = Path(tempfile.mkdtemp(prefix="pk", dir="/tmp"))
    try:
        yield short
    finally:
        shutil.rmtree(short, ignore_errors=True)


def _events(stderr: str, name: str) -> list[dict[str, Any]]:
    found = []
    for line in stderr.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("event") == name:
            found.append(event)
    return found


def _wait_in_sync(setup: Setup, timeout: float = 15) -> None:
    """Until the running daemon reports its one device in sync (after its first reconcile)."""
    deadline = time.monotonic() + timeout
    while True:
        done = setup.cli("status", "--json")
        if done.returncode == 0 and json.loads(done.stdout)["devices"][0]["state"] == "in_sync":
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the daemon did not report dev1 in sync: {done.stdout}")
        time.sleep(0.1)


class TestPasswordKeyFile:
    def test_one_shot_commands_and_the_daemon_agree_on_the_records(
        self, sim, daemon, tmp_path, short_dir
    ):
        """With password_key_file set, apply then run then plan and apply: the password goes once; plan exits 0."""
        dev = sim(devices=1).devices[0]
        setup = Setup(tmp_path, dev.url, short_dir / "syncd.sock")
        key = tmp_path / "password-key"
        key.write_text(secrets.token_hex(32) + "\n")
        setup.env["SYNCD_PASSWORD_KEY_FILE"] = str(key)
        first = setup.cli("apply")
        assert first.returncode == 0, first.stderr
        assert len(puts(dev)) == 1
        proc = daemon(*setup.args(), "--resync-interval", "30", env=setup.env)
        proc.wait_for("desired.loaded")
        _wait_in_sync(setup)
        assert proc.stop() == 0
        assert len(puts(dev)) == 1, "the daemon sent the password applied by apply again"
        plan = setup.cli("plan")
        assert plan.returncode == 0, plan.stdout + plan.stderr
        assert "(will be set)" not in plan.stdout
        again = setup.cli("apply")
        assert again.returncode == 0, again.stderr
        assert len(puts(dev)) == 1, "apply sent the password the daemon applied again"
        # The systemd credential is the same key by another road.
        credentials = tmp_path / "credentials"
        credentials.mkdir()
        shutil.copy(key, credentials / "syncd-password-key")
        del setup.env["SYNCD_PASSWORD_KEY_FILE"]
        by_credential = setup.cli("plan", CREDENTIALS_DIRECTORY=str(credentials))
        assert by_credential.returncode == 0, by_credential.stdout + by_credential.stderr
        key_hex = key.read_text().strip()
        for result in (first, plan, again, by_credential):
            assert key_hex not in result.stdout + result.stderr
            assert PASSWORD not in result.stdout + result.stderr
        assert not any(key_hex in line for line in proc.lines)

    @pytest.mark.parametrize("command", ["plan", "apply"])
    def test_a_missing_key_file_is_one_sentence_and_exit_1(self, sim, tmp_path, command):
        """A password_key_file that does not exist: one sentence naming the setting, exit 1, no request."""
        dev = sim(devices=1).devices[0]
        setup = Setup(tmp_path, dev.url, tmp_path / "syncd.sock")
        missing = tmp_path / "no-such-key"
        result = setup.cli(command, SYNCD_PASSWORD_KEY_FILE=str(missing))
        assert result.returncode == 1, result.stdout + result.stderr
        (failed,) = _events(result.stderr, "command.failed")
        assert failed["error"].startswith("password_key_file: ")
        assert str(missing) in failed["error"]
        assert "Traceback" not in result.stderr
        assert dev.journal == []


class TestDamagedStateKey:
    def test_a_damaged_state_key_is_replaced_and_said_once(self, sim, tmp_path):
        """An emptied STATE/key: plan and apply warn once (state.key_damaged), apply sends the password again, then all is quiet."""
        dev = sim(devices=1).devices[0]
        setup = Setup(tmp_path, dev.url, tmp_path / "syncd.sock")
        assert setup.cli("apply").returncode == 0
        key_file = setup.state / "key"
        key_file.write_text("")
        plan = setup.cli("plan")
        assert plan.returncode == 2, plan.stdout + plan.stderr
        (warned,) = _events(plan.stderr, "state.key_damaged")
        assert warned["level"] == "warning" and warned["file"] == str(key_file)
        assert key_file.read_text() == "", "plan wrote the state dir"
        repaired = setup.cli("apply")
        assert repaired.returncode == 0, repaired.stderr
        (warned,) = _events(repaired.stderr, "state.key_damaged")
        assert warned["file"] == str(key_file) and "sent once more" in warned["message"]
        assert len(puts(dev)) == 2
        new_key = key_file.read_text().strip()
        assert len(bytes.fromhex(new_key)) == 32
        quiet = setup.cli("apply")
        assert quiet.returncode == 0 and len(puts(dev)) == 2
        assert _events(quiet.stderr, "state.key_damaged") == []
        key_file.write_text("not a key at all\n")
        garbage = setup.cli("apply")
        assert len(_events(garbage.stderr, "state.key_damaged")) == 1
        assert len(puts(dev)) == 3
        for result in (plan, repaired, quiet, garbage):
            assert new_key not in result.stdout + result.stderr
            assert PASSWORD not in result.stdout + result.stderr


class TestDamagedDeviceRecord:
    @pytest.mark.parametrize(
        ("line", "device"),
        [("garbage", None), ("[1, 2]", None), ('{"device": "dev1", "passwords": 5}', "dev1")],
    )
    def test_a_damaged_record_is_said_once_and_its_password_sent_again(
        self, sim, tmp_path, line, device
    ):
        """A damaged line in STATE/devices.jsonl: plan and apply warn once naming the file (state.record_damaged, with the device when the line names it), apply sends the password again and rewrites the records, then all is quiet."""
        dev = sim(devices=1).devices[0]
        setup = Setup(tmp_path, dev.url, tmp_path / "syncd.sock")
        assert setup.cli("apply").returncode == 0
        records = setup.state / "devices.jsonl"
        with records.open("a") as file:
            file.write(line + "\n")
        content = records.read_text()
        plan = setup.cli("plan")
        assert plan.returncode == 2, plan.stdout + plan.stderr
        assert "dev1  account 1  password: (unknown) ->" in plan.stdout, plan.stdout
        (warned,) = _events(plan.stderr, "state.record_damaged")
        assert warned["level"] == "warning" and warned["file"] == str(records)
        assert warned.get("device") == device and "passwords" in warned["message"]
        assert records.read_text() == content, "plan wrote the state dir"
        repaired = setup.cli("apply")
        assert repaired.returncode == 0, repaired.stderr
        (warned,) = _events(repaired.stderr, "state.record_damaged")
        assert warned["file"] == str(records) and "sent once more" in warned["message"]
        assert len(puts(dev)) == 2
        lines = records.read_text().splitlines()
        assert [json.loads(text)["device"] for text in lines] == ["dev1"] * len(lines)
        quiet = setup.cli("apply")
        assert quiet.returncode == 0 and len(puts(dev)) == 2
        assert _events(quiet.stderr, "state.record_damaged") == []
        for result in (plan, repaired, quiet):
            assert PASSWORD not in result.stdout + result.stderr
