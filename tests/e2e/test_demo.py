"""The README's demo command: emulated intercoms plus the daemon on the example desired/."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_demo_converges_the_example_and_stops_on_ctrl_c():
    """python -m syncd.demo applies desired/ to both emulated devices and exits 0 on Ctrl-C,
    even started with SIGINT ignored (a background job, a CI runner), leaving no state dir."""
    if not (_free(8080) and _free(8081)):
        pytest.skip("ports 8080-8081 (what desired/ targets) are busy")
    proc = subprocess.Popen(
        [sys.executable, "-m", "syncd.demo"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    applied: set[str] = set()
    intro: list[str] = []
    state_dirs: list[Path] = []
    deadline = time.monotonic() + 30
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("{"):
                event = json.loads(line)
                if event["event"] == "apply.succeeded":
                    applied.add(event["device"])
                elif event["event"] == "daemon.starting":
                    state_dirs.append(Path(event["state_dir"]))
            else:
                intro.append(line)
            if applied == {"site-a/lobby", "site-a/garage"} or time.monotonic() > deadline:
                break
        assert applied == {"site-a/lobby", "site-a/garage"}
        assert any("curl -X PUT" in line for line in intro)
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)  # the demo kills a daemon that did not stop in 15 s
        assert code == 0, proc.stdout.read()[-3000:]
        (state_dir,) = state_dirs
        assert not state_dir.exists(), "the demo left its state dir behind"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_rollout_demo_halts_reverts_and_then_rolls_the_fix_through():
    """python -m syncd.demo --rollout --auto: canary fails on a bad PBX, is reverted, the fix reaches all."""
    result = subprocess.run(
        [sys.executable, "-m", "syncd.demo", "--rollout", "--auto", "--port", "0"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "health.failed      site-a/door-1" in out
    assert "rollout.halted     wave canary, failed: site-a/door-1" in out
    assert "apply.reverted     site-a/door-1  domain back to pbx.example.com" in out
    assert "every intercom is on the new PBX" in out
    assert "demo-sip-secret" not in out
