"""Desired files whose names a device name cannot carry: refused by name, the fleet goes on."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from tests.e2e.conftest import device_yaml, puts, syncd, write

ACCOUNT = '  - account: 1\n    displayName: {name}\n    sipNumber: "4001"\n'
#: A file name holding the byte 0xff, which is not UTF-8.
NOT_UTF8 = os.fsdecode(b"bad\xffname.yaml")
NOT_UTF8_SAID = "a/bad\\xffname.yaml: the file name is not UTF-8; rename it"


def _tree(tmp_path: Path, url: str, bad_url: str, bad_name: str = NOT_UTF8) -> Path:
    """A good device a/good, and one more valid device file under a name that is refused."""
    root = tmp_path / "desired"
    write(root, "a/good.yaml", device_yaml(url, ACCOUNT.format(name="Good")))
    (root / "a" / bad_name).write_text(device_yaml(bad_url, ACCOUNT.format(name="Bad")))
    return root


def _state(tmp_path: Path) -> str:
    return str(tmp_path / "state")


def _no_crash(stderr: str) -> None:
    assert "unexpected" not in stderr and "Traceback" not in stderr, stderr


class TestOneShotCommands:
    def test_validate_refuses_a_name_that_is_not_utf8(self, tmp_path: Path) -> None:
        """validate exits 1 with one sentence naming the file, its bad byte escaped."""
        root = _tree(tmp_path, "http://127.0.0.1:9", "http://127.0.0.1:10")
        result = syncd("validate", str(root))
        assert result.returncode == 1
        _no_crash(result.stderr)
        assert NOT_UTF8_SAID in result.stdout + result.stderr

    def test_plan_names_the_file_and_plans_the_rest(self, sim, tmp_path: Path) -> None:
        """plan shows the good device's change and the refused file, without a crash."""
        fleet = sim(devices=2)
        root = _tree(tmp_path, fleet.devices[0].url, fleet.devices[1].url)
        result = syncd("plan", "--desired", str(root), "--state-dir", _state(tmp_path))
        _no_crash(result.stderr)
        assert result.returncode == 1
        assert "Good" in result.stdout  # the good device's change is planned
        assert NOT_UTF8_SAID in result.stdout

    def test_apply_converges_the_rest(self, sim, tmp_path: Path) -> None:
        """apply sends the good device its change, the refused file's device nothing."""
        fleet = sim(devices=2)
        root = _tree(tmp_path, fleet.devices[0].url, fleet.devices[1].url)
        result = syncd("apply", "--desired", str(root), "--state-dir", _state(tmp_path))
        _no_crash(result.stderr)
        assert result.returncode == 1  # an invalid file is a failure
        assert fleet.devices[0].accounts[0]["displayName"] == "Good"
        assert puts(fleet.devices[1]) == []
        assert NOT_UTF8_SAID in result.stdout + result.stderr

    def test_a_newline_in_a_file_name_is_refused(self, sim, tmp_path: Path) -> None:
        """A name holding a newline is refused, shown escaped on one line of plan's output."""
        fleet = sim(devices=2)
        root = _tree(tmp_path, fleet.devices[0].url, fleet.devices[1].url, "new\nline.yaml")
        result = syncd("plan", "--desired", str(root), "--state-dir", _state(tmp_path))
        _no_crash(result.stderr)
        said = "a/new\\nline.yaml: the file name holds a control character"
        assert said in result.stdout
        assert not any(line.startswith("line") for line in result.stdout.splitlines())
        validated = syncd("validate", str(root))
        assert validated.returncode == 1 and said in validated.stdout + validated.stderr

    def test_a_folder_not_utf8_is_refused(self, tmp_path: Path) -> None:
        """A folder whose name is not UTF-8 is named once; the files in it are not read."""
        root = tmp_path / "desired"
        write(root, "good.yaml", device_yaml("http://127.0.0.1:9"))
        folder = root / os.fsdecode(b"site\xfe")
        folder.mkdir()
        (folder / "x.yaml").write_text(device_yaml("http://127.0.0.1:10"))
        result = syncd("validate", str(root))
        assert result.returncode == 1
        _no_crash(result.stderr)
        assert "site\\xfe: the folder name is not UTF-8; rename it" in result.stdout + result.stderr


class TestDaemon:
    def test_start_reports_the_file_and_serves_the_rest(self, sim, daemon, tmp_path) -> None:
        """At start the file is desired.invalid (counted), and the good device is applied."""
        fleet = sim(devices=2)
        root = _tree(tmp_path, fleet.devices[0].url, fleet.devices[1].url)
        proc = daemon("--desired", str(root), "--state-dir", _state(tmp_path))
        event = proc.wait_for("desired.invalid", file="a/bad\\xffname.yaml")
        assert "not UTF-8" in event["error"]
        loaded = proc.wait_for("desired.loaded")
        assert (loaded["devices"], loaded["invalid"]) == (1, 1)
        proc.wait_for("apply.succeeded", device="a/good")
        assert proc.stop() == 0

    def test_copied_in_while_running_reloads_go_on(self, sim, daemon, tmp_path) -> None:
        """Such a file copied in is reported; an edit to a good file still reaches its device."""
        fleet = sim(devices=2)
        root = tmp_path / "desired"
        write(root, "a/good.yaml", device_yaml(fleet.devices[0].url, ACCOUNT.format(name="One")))
        args = ("--desired", str(root), "--state-dir", _state(tmp_path))
        proc = daemon(*args, "--resync-interval", "600")
        proc.wait_for("apply.succeeded", device="a/good")
        text = device_yaml(fleet.devices[1].url, ACCOUNT.format(name="Bad"))
        (root / "a" / NOT_UTF8).write_text(text)
        proc.wait_for("desired.invalid", file="a/bad\\xffname.yaml")
        write(root, "a/good.yaml", device_yaml(fleet.devices[0].url, ACCOUNT.format(name="Two")))
        deadline = time.monotonic() + 10
        while fleet.devices[0].accounts[0]["displayName"] != "Two":
            assert time.monotonic() < deadline, f"the edit never reached the device {proc.events}"
            time.sleep(0.05)
        proc.proc.send_signal(signal.SIGHUP)
        proc.wait_for("desired.loaded", reason="SIGHUP")
        assert proc.stop() == 0
        assert "Task exception" not in (proc.proc.stderr.read() if proc.proc.stderr else "")
        assert puts(fleet.devices[1]) == []
