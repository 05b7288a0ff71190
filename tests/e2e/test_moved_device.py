"""A desired file moved or renamed (git mv) is the same intercom: the daemon sends no password."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from tests.e2e.conftest import device_yaml, puts, write


def record_of(state: Path, device: str) -> dict | None:
    """The device's record in the state dir as it stands (its last line), if any."""
    found = None
    path = state / "devices.jsonl"
    for line in path.read_text().splitlines() if path.exists() else ():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line being written
        if record.get("device") == device:
            found = record
    return found


def test_daemon_sends_no_password_after_git_mv(sim, daemon, tmp_path):
    """The daemon applies a password once; after the file moves, the new name sends none."""
    fleet = sim(devices=1)
    dev = fleet.devices[0]
    root = tmp_path / "desired"
    accounts = "  - account: 1\n    displayName: Door\n    password: {env: SIP1}\n"
    write(root, "site-a/lobby.yaml", device_yaml(dev.url, accounts))
    state = tmp_path / "state"
    args = ["--desired", str(root), "--state-dir", str(state), "--resync-interval", "1"]
    proc = daemon(*args, env={"SIP1": "s3cret-one"})
    proc.wait_for("apply.succeeded", device="site-a/lobby")
    assert len(puts(dev)) == 1 and dev.passwords[1] == "s3cret-one"

    (root / "site-b").mkdir()
    os.rename(root / "site-a" / "lobby.yaml", root / "site-b" / "lobby.yaml")  # git mv
    deadline = time.monotonic() + 15
    while "1" not in (record_of(state, "site-b/lobby") or {}).get("passwords", {}):
        assert time.monotonic() < deadline, "the record did not move to the new name"
        time.sleep(0.1)
    assert "s3cret" not in (state / "devices.jsonl").read_text()
    time.sleep(2.5)  # two more resyncs of the new name
    assert len(puts(dev)) == 1, [p.blob for p in puts(dev)]
    assert not [e for e in proc.events if e.get("event") == "apply.succeeded"][1:]
    assert proc.stop() == 0
