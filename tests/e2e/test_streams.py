"""SPEC section 5's streams: results on stdout, log events (and errors) on stderr, all JSON there."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import SYNCD, device_yaml, syncd, write

ACCOUNT_1 = "  - account: 1\n    displayName: Door\n"


def json_lines(text: str) -> list[dict]:
    """Every line of ``text`` as JSON (fails on the first line that is not)."""
    return [json.loads(line) for line in text.splitlines()]


class TestStderrIsJson:
    def test_apply_results_on_stdout_and_only_json_on_stderr(self, sim, tmp_path):
        """apply with a good, a rejecting, a retried and a broken device: stderr is all JSON."""
        fleet = sim(devices=3)
        good, rejecting, flaky = fleet.devices
        rejecting.inject(kind="reject", code=12, param="displayName", method="PUT", count=5)
        flaky.inject(kind="status", status=503, count=1)
        root = tmp_path / "desired"
        for name, dev in (("good", good), ("rejecting", rejecting), ("flaky", flaky)):
            write(root, f"{name}.yaml", device_yaml(dev.url, ACCOUNT_1))
        write(root, "broken.yaml", device_yaml("http://127.0.0.1:9", "  - account: 9\n"))
        result = syncd("apply", "--desired", str(root), "--state-dir", str(tmp_path / "s"))
        assert result.returncode == 1
        events = json_lines(result.stderr)
        names = {e["event"] for e in events}
        assert {"desired.invalid", "apply.succeeded", "apply.failed"} <= names
        assert all({"timestamp", "level", "event"} <= set(e) for e in events)
        out = result.stdout.splitlines()
        assert any(line.startswith("rejecting: ") and "code 12" in line for line in out)
        assert any(line.startswith("broken: ") for line in out)
        assert out[-1].startswith("4 devices: 2 changed")

    def test_one_device_is_counted_in_the_singular(self, sim, tmp_path):
        """plan's and apply's summary lines of a one-device fleet say "1 device"."""
        root, state = tmp_path / "desired", str(tmp_path / "s")
        write(root, "door.yaml", device_yaml(sim(devices=1).devices[0].url, ACCOUNT_1))
        plan = syncd("plan", "--desired", str(root), "--state-dir", state)
        assert plan.stdout.splitlines()[-1].startswith("1 device: 0 in sync, 1 with changes")
        apply = syncd("apply", "--desired", str(root), "--state-dir", state)
        assert apply.stdout.splitlines()[-1].startswith("1 device: 1 changed")

    def test_errors_and_usage_errors_are_json_lines(self, tmp_path):
        """A command's error sentence and a usage error are JSON lines on a non-terminal stderr."""
        missing = syncd("apply", "--desired", str(tmp_path / "nope"))
        (error,) = json_lines(missing.stderr)
        assert error["event"] == "command.failed" and "nope" in error["error"]
        usage = syncd("apply", "--no-such-flag")
        assert usage.returncode == 2
        (error,) = json_lines(usage.stderr)
        assert error["event"] == "command.usage" and "--no-such-flag" in error["error"]
        # plan's 2 means "changes pending" (SPEC 5): its bad command line is 1.
        for bad in (("--no-such-flag",), ("--concurrency", "abc")):
            usage = syncd("plan", *bad)
            assert usage.returncode == 1, bad
            (error,) = json_lines(usage.stderr)
            assert error["event"] == "command.usage" and bad[0] in error["error"]
        bad_setting = syncd("plan", "--desired", str(tmp_path), "--concurrency", "0")
        assert bad_setting.returncode == 1
        (error,) = json_lines(bad_setting.stderr)
        assert "concurrency" in error["error"]

    def test_export_errors_are_json_lines(self, tmp_path):
        """export's per-device failures are JSON on stderr; its report is on stdout."""
        listing = tmp_path / "list.txt"
        listing.write_text("a http://127.0.0.1:9\n")
        result = syncd(
            "export",
            "--from-list",
            str(listing),
            "--output",
            str(tmp_path / "out"),
            "--auth",
            "none",
            "--request-timeout",
            "1",
        )
        assert result.returncode == 1
        events = json_lines(result.stderr)
        assert any(e["event"] == "command.failed" and e["error"].startswith("a: ") for e in events)
        assert "0 of 1 device(s) exported" in result.stdout

    def test_a_result_reader_gone_ends_quietly(self, sim, tmp_path):
        """plan with its stdout closed (| head -1) exits 1 and stderr holds only its log events."""
        root = tmp_path / "desired"
        write(root, "door.yaml", device_yaml(sim(devices=1).devices[0].url, ACCOUNT_1))
        plan = [*SYNCD, "plan", "--desired", str(root), "--state-dir", str(tmp_path / "s")]
        with subprocess.Popen(plan, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
            assert proc.stdout is not None and proc.stderr is not None
            proc.stdout.close()
            stderr = proc.stderr.read().decode()
        assert proc.returncode == 1
        assert "command.failed" not in {e["event"] for e in json_lines(stderr)}


class TestValidateReport:
    def test_problems_go_to_stdout_so_a_report_file_holds_them(self, tmp_path):
        """syncd validate desired > report.txt keeps every problem and the verdict; stderr is empty."""
        root = tmp_path / "desired"
        write(
            root,
            "a.yaml",
            device_yaml("https://192.0.2.10", "  - account: 1\n    sipNumber: 4001\n"),
        )
        write(root, "b.yaml", "device:\n  url: ftp://192.0.2.11\n")
        report = tmp_path / "report.txt"
        with report.open("w") as out:
            result = subprocess.run(
                [*SYNCD, "validate", str(root)],
                stdout=out,
                stderr=subprocess.PIPE,
                text=True,
                timeout=60,
                check=False,
            )
        assert result.returncode == 1 and result.stderr == ""
        lines = report.read_text().splitlines()
        assert any(line.startswith("a.yaml:7: accounts[0].sipNumber") for line in lines)
        assert any(line.startswith("b.yaml:2: device.url") for line in lines)
        assert lines[-1] == f"2 problem(s) in {root}"


class TestDaemonOnlyFlags:
    @pytest.mark.parametrize("command", ["validate", "plan", "apply", "export"])
    @pytest.mark.parametrize(
        ("flag", "value"), [("--metrics-address", "127.0.0.1:9108"), ("--resync-interval", "5")]
    )
    def test_one_shot_commands_refuse_daemon_settings(self, command, flag, value, tmp_path):
        """A daemon-only flag on a one-shot command is a usage error (exit 2; plan 1, its 2 is
        "changes pending") naming the flag."""
        extra = ["--url", "http://127.0.0.1:9"] if command == "export" else []
        result = syncd(command, "--desired", str(tmp_path), *extra, flag, value)
        assert result.returncode == (1 if command == "plan" else 2)
        (error,) = json_lines(result.stderr)
        assert error["event"] == "command.usage"
        assert f"syncd {command} does not take {flag}" in error["error"]

    def test_help_lists_the_daemons_settings_only_where_they_are_taken(self):
        """``--help`` of a one-shot command does not offer a flag it refuses; ``run``'s does."""
        for command in ("validate", "plan", "apply", "export"):
            shown = syncd(command, "--help").stdout
            assert "--resync-interval" not in shown and "--metrics-address" not in shown
            assert "--state-dir" in shown
        run = syncd("run", "--help").stdout
        assert "--resync-interval" in run and "--metrics-address" in run
        assert "$RUNTIME_DIRECTORY/syncd.sock" in run

    def test_console_usage_error_names_the_flag(self, tmp_path):
        """With console logs the usage error is argparse's usage text naming the flag."""
        result = syncd(
            "validate", str(tmp_path), "--metrics-address", ":9108", "--log-format", "console"
        )
        assert result.returncode == 2
        assert "syncd validate does not take --metrics-address" in result.stderr
        assert result.stderr.startswith("usage: ")


def test_daemon_starting_logs_version_and_settings(daemon, tmp_path: Path) -> None:
    """daemon.starting carries the version and the effective settings."""
    from syncd import __version__

    (tmp_path / "desired").mkdir()
    proc = daemon(
        "--desired",
        str(tmp_path / "desired"),
        "--state-dir",
        str(tmp_path / "s"),
        "--concurrency",
        "7",
    )
    started = proc.wait_for("daemon.starting")
    assert started["version"] == __version__
    assert started["settings"]["concurrency"] == 7
    assert started["settings"]["state_dir"] == str(tmp_path / "s")
    assert proc.stop() == 0
