"""Metrics, health, progress and the pre-commit hook: what an operator builds around syncd."""

from __future__ import annotations

import os
import pty
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from syncd.metrics import Metrics, serve_metrics
from tests.e2e.conftest import SYNCD, device_yaml, write

ACCOUNT = '  - account: 1\n    displayName: Door\n    sipNumber: "4001"\n'
REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _scrape(address: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"http://{address}/metrics", timeout=5).text
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _wait_for(predicate, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


class TestMetrics:
    def test_scrape_after_drift_and_failed_apply(self, sim, daemon, tmp_path):
        """After a drift and a rejected PUT the documented series show sane values."""
        fleet = sim(devices=2)
        root = tmp_path / "desired"
        for n, dev in enumerate(fleet.devices, start=1):
            write(root, f"dev{n}.yaml", device_yaml(dev.url, ACCOUNT))
        fleet.devices[1].inject(
            kind="reject", code=12, param="displayName", method="PUT", count=100
        )
        address = f"127.0.0.1:{_free_port()}"
        proc = daemon(
            "--desired",
            str(root),
            "--state-dir",
            str(tmp_path / "state"),
            "--resync-interval",
            "1",
            "--metrics-address",
            address,
        )
        proc.wait_for("apply.succeeded", device="dev1")
        proc.wait_for("apply.failed", device="dev2")
        fleet.devices[0].set_live(1, displayName="Hacked")
        proc.wait_for("drift.detected", device="dev1")
        proc.wait_for("apply.succeeded", device="dev1")

        samples = _scrape(address)
        assert samples[("syncd_device_in_sync", (("device", "dev1"),))] == 1
        assert samples[("syncd_device_in_sync", (("device", "dev2"),))] == 0
        assert samples[("syncd_drift_events_total", (("device", "dev1"),))] >= 1
        assert samples[("syncd_applies_total", (("result", "succeeded"),))] >= 2
        assert samples[("syncd_applies_total", (("result", "failed"),))] >= 1
        assert samples[("syncd_devices", ())] == 2
        last = samples[("syncd_last_success_timestamp_seconds", (("device", "dev1"),))]
        assert time.time() - 60 < last <= time.time()
        gets = samples[("syncd_request_duration_seconds_count", (("operation", "get"),))]
        puts = samples[("syncd_request_duration_seconds_count", (("operation", "put"),))]
        assert gets >= 3 and puts >= 3
        assert ("syncd_retries_total", ()) in samples
        assert httpx.get(f"http://{address}/healthz", timeout=5).status_code == 200

    def test_load_errors_are_counted(self, sim, daemon, tmp_path):
        """Invalid desired files show in the load-error counter and the invalid-files gauge,
        which counts files (a bad _defaults.yaml is one, however many devices it spoils)."""
        fleet = sim(devices=1)
        root = tmp_path / "desired"
        write(root, "dev1.yaml", device_yaml(fleet.devices[0].url, ACCOUNT))
        write(root, "bad.yaml", "device: [\n")
        write(root, "site/_defaults.yaml", "accounts:\n  - account: 1\n    domainPort: abc\n")
        for n in (1, 2):
            write(root, f"site/door{n}.yaml", device_yaml(f"http://127.0.0.1:{n}", ACCOUNT))
        address = f"127.0.0.1:{_free_port()}"
        proc = daemon(
            "--desired",
            str(root),
            "--state-dir",
            str(tmp_path / "state"),
            "--metrics-address",
            address,
        )
        proc.wait_for("apply.succeeded", device="dev1")
        samples = _scrape(address)
        assert samples[("syncd_desired_load_errors_total", ())] >= 2
        assert samples[("syncd_desired_invalid_files", ())] == 2
        loaded = proc.wait_for("desired.loaded")
        assert (loaded["devices"], loaded["invalid"]) == (1, 3)  # devices: usable, not

    def test_healthz_turns_503_when_the_scheduler_is_stuck(self):
        """/healthz answers 503 once the loop's heartbeat is older than the limit."""
        metrics = Metrics()
        server, _ = serve_metrics(metrics, f"127.0.0.1:{_free_port()}", stale_after=0.5)
        try:
            url = f"http://127.0.0.1:{server.server_port}/healthz"
            metrics.heartbeat = time.monotonic()
            assert httpx.get(url, timeout=5).status_code == 200
            metrics.heartbeat = time.monotonic() - 5
            assert httpx.get(url, timeout=5).status_code == 503
        finally:
            server.shutdown()
            server.server_close()

    def test_a_silent_connection_holds_up_no_probe(self):
        """A client that connects and sends nothing does not stop /healthz from answering."""
        metrics = Metrics()
        server, _ = serve_metrics(metrics, f"127.0.0.1:{_free_port()}", stale_after=60)
        try:
            metrics.heartbeat = time.monotonic()
            with socket.create_connection(("127.0.0.1", server.server_port)):
                url = f"http://127.0.0.1:{server.server_port}/healthz"
                assert httpx.get(url, timeout=3).status_code == 200
        finally:
            server.shutdown()
            server.server_close()


class TestProgress:
    def _plan(self, root: Path, tmp_path: Path, *, tty: bool) -> str:
        args = [
            *SYNCD,
            "plan",
            "--desired",
            str(root),
            "--state-dir",
            str(tmp_path / "s"),
            "--log-level",
            "error",
        ]
        if not tty:
            return subprocess.run(args, capture_output=True, text=True, timeout=60).stderr
        leader, follower = pty.openpty()
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=follower)
        os.close(follower)
        chunks = []
        while True:
            try:
                data = os.read(leader, 4096)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        proc.wait(timeout=60)
        os.close(leader)
        return b"".join(chunks).decode()

    def test_progress_on_a_terminal_only(self, sim, tmp_path):
        """plan over 20 devices counts up on a terminal and prints nothing extra into a pipe."""
        fleet = sim(devices=20)
        root = tmp_path / "desired"
        for n, dev in enumerate(fleet.devices, start=1):
            write(root, f"dev{n:02}.yaml", device_yaml(dev.url, ACCOUNT))
        assert "20/20 devices" in self._plan(root, tmp_path, tty=True)
        assert "devices" not in self._plan(root, tmp_path, tty=False)


class TestPreCommit:
    def test_manifest_runs_syncd_validate(self, tmp_path):
        """The pre-commit hook's entry and args, run as pre-commit would, validate the tree."""
        (hook,) = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())
        assert hook["entry"].split()[:2] == ["syncd", "validate"]
        assert hook["pass_filenames"] is False
        write(tmp_path / "desired", "a.yaml", device_yaml("https://192.0.2.1", ACCOUNT))
        entry = hook["entry"].split()
        command = [sys.executable, "-m", "syncd", *entry[1:], *hook["args"]]
        ok = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert ok.returncode == 0, ok.stderr
        write(tmp_path / "desired", "b.yaml", "device:\n  url: ftp://x\n")
        bad = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert bad.returncode == 1 and "b.yaml:2: device.url" in bad.stdout


def test_commands_without_a_daemon_refuse_a_state_dir_that_is_not_there(tmp_path):
    """From a shell with no settings, `rollout pause`, `history` and `passwords resend` neither
    create ./.syncd-state nor report success on it: exit 1 naming it and what to pass."""
    desired = tmp_path / "desired"
    write(desired, "dev1.yaml", device_yaml("http://127.0.0.1:9", ACCOUNT))
    commands = [
        ("rollout", "pause"),
        ("history",),
        ("passwords", "resend", "dev1", "--desired", str(desired)),
    ]
    for command in commands:
        result = subprocess.run(
            [*SYNCD, *command], capture_output=True, text=True, cwd=tmp_path, timeout=30
        )
        assert result.returncode == 1, (command, result.stdout, result.stderr)
        assert "there is no state directory .syncd-state" in result.stderr, command
        assert "--config" in result.stderr, command
    assert not (tmp_path / ".syncd-state").exists()
