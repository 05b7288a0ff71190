"""``python -m syncd.demo --rollout``: a safe rollout an operator can replay in two minutes.

Six emulated intercoms with a PBX, a desired tree with a ``_fleet.yaml``
(a canary, then half of the rest, then the rest; halt and revert on the first
failure), and ``syncd run``. The demo walks through three steps, waiting for
Enter between them (or not, with ``--auto``): the first rollout, a commit
that points the fleet at a PBX host that does not exist (the canary fails
its health check, the rollout halts and reverts it, the rest is untouched),
and the fix rolling through every wave.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, TextIO

__all__ = ["run_rollout_demo"]

GOOD = "pbx.example.com"
TYPO = "pbx.exmaple.com"
FIX = "pbx-b.example.com"
DEVICES = 6
#: The daemon's events the demo narrates (the rest goes to daemon.log).
_SHOWN = (
    "rollout.started",
    "rollout.wave",
    "apply.succeeded",
    "health.passed",
    "health.failed",
    "rollout.halted",
    "apply.reverted",
    "rollout.completed",
)

_DEFAULTS = """\
# Every intercom registers to the site's PBX with a password from the environment.
device:
  auth:
    method: none
accounts:
  - account: 1
    enabled: true
    registrationEnabled: true
    domain: {domain}
    password: {{env: DEMO_SIP_PASSWORD}}
"""

_DEVICE = """\
device:
  url: {url}
accounts:
  - account: 1
    sipNumber: "{number}"
"""

_FLEET = """\
# How a change reaches the fleet: a canary, then half of the rest, then the rest.
rollout:
  waves:
    - name: canary
      devices: ["site-a/door-1"]
    - name: early
      percent: 50
    - name: rest
  bake: 2              # seconds a wave must stay healthy before the next starts
  maxFailures: 0       # the first failed device halts the rollout
  onFailure: revert    # and gets its previous settings back
health:
  timeout: 4           # seconds for a changed account to register again
"""


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _describe(event: dict[str, Any]) -> str:
    name = event.get("event", "")
    device = event.get("device")
    detail = ""
    if name == "rollout.started":
        detail = ", ".join(f"{w['name']} ({w['devices']})" for w in event.get("waves", []))
    elif name == "rollout.wave":
        detail = f"{event.get('wave')}: {', '.join(event.get('devices', []))}"
    elif name in ("health.passed",):
        detail = f"registered again after {event.get('waited')} s"
    elif name == "health.failed":
        detail = f"account {event.get('account')} not registered after {event.get('waited')} s"
    elif name == "rollout.halted":
        detail = f"wave {event.get('wave')}, failed: {', '.join(event.get('failed', []))}"
    elif name == "apply.reverted":
        detail = ", ".join(f"{f['field']} back to {f['desired']}" for f in event.get("fields", []))
    elif name == "rollout.completed":
        detail = f"{event.get('devices')} devices, failed: {event.get('failed') or 'none'}"
    elif name == "apply.succeeded":
        detail = ", ".join(f"{f['field']}={f['desired']}" for f in event.get("fields", []))
    who = f"{device}  " if device else ""
    return f"    {name:<18} {who}{detail}"


class _Daemon:
    """``syncd run`` with its events read in a thread, narrated and kept for waiting."""

    def __init__(self, desired: Path, state: Path, log: TextIO, out: TextIO) -> None:
        env = {**os.environ, "DEMO_SIP_PASSWORD": "demo-sip-secret"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "syncd", "run", "--desired", str(desired),
             "--state-dir", str(state), "--resync-interval", "5", "--log-format", "json"],
            stdout=subprocess.PIPE, stderr=log, text=True, env=env,
        )  # fmt: skip
        self._events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._log = log
        self._out = out
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._log.write(line)
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") in _SHOWN:
                print(_describe(event), file=self._out, flush=True)
            self._events.put(event)

    def wait_for(self, name: str, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                event = self._events.get(timeout=min(left, 0.5))
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            if event.get("event") == name:
                return event
        raise RuntimeError(f"the daemon did not log {name} in time (see the daemon log)")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=20)


def _step(text: str, *, auto: bool, out: TextIO) -> None:
    print(f"\n== {text}", file=out, flush=True)
    if not auto:
        input("   press Enter to go on ")


def _domains(fleet: Any, out: TextIO) -> None:
    for n, device in enumerate(fleet.devices, start=1):
        registered = "registered" if device.registered(1) else "NOT registered"
        print(f"    site-a/door-{n}: domain {device.accounts[0]['domain']}, {registered}", file=out)


def run_rollout_demo(*, port: int, auto: bool, out: TextIO = sys.stdout) -> int:
    """The demo; 0 when every step happened as described."""
    from syncd.simulator import run_fleet_in_thread

    with tempfile.TemporaryDirectory(prefix="syncd-rollout-demo-") as tmp:
        root = Path(tmp) / "desired"
        pbx = (GOOD, FIX)
        with run_fleet_in_thread(devices=DEVICES, port=port, pbx=pbx, register_delay=0.5) as fleet:
            _write(root / "site-a" / "_defaults.yaml", _DEFAULTS.format(domain=GOOD))
            _write(root / "_fleet.yaml", _FLEET)
            for n, device in enumerate(fleet.devices, start=1):
                text = _DEVICE.format(url=device.url, number=f"40{n:02d}")
                _write(root / "site-a" / f"door-{n}.yaml", text)
            print(f"syncd rollout demo: {DEVICES} intercoms, desired state in {root}", file=out)
            print(
                f"  PBX hosts that exist: {', '.join(pbx)}; daemon log: {tmp}/daemon.log", file=out
            )
            print(f"  policy ({root}/_fleet.yaml):", file=out)
            print("".join(f"    {line}\n" for line in _FLEET.splitlines()), file=out, end="")
            with open(Path(tmp) / "daemon.log", "w") as log:
                daemon = _Daemon(root, Path(tmp) / "state", log, out)
                try:
                    return _scenario(daemon, root, fleet, auto=auto, out=out)
                finally:
                    daemon.stop()


def _scenario(daemon: _Daemon, root: Path, fleet: Any, *, auto: bool, out: TextIO) -> int:
    print("\n== 1. First rollout: every intercom is new to syncd", file=out, flush=True)
    daemon.wait_for("rollout.completed")
    _domains(fleet, out)
    _step(f"2. Commit a typo: site-a/_defaults.yaml domain {GOOD} -> {TYPO}", auto=auto, out=out)
    _write(root / "site-a" / "_defaults.yaml", _DEFAULTS.format(domain=TYPO))
    daemon.wait_for("rollout.halted")
    daemon.wait_for("apply.reverted")
    time.sleep(1.0)  # the canary registers again with its old settings
    print(
        "   The canary failed, the rollout halted and reverted it; nothing else changed:", file=out
    )
    _domains(fleet, out)
    typo = [d for d in fleet.devices if d.accounts[0]["domain"] != GOOD]
    _step(f"3. Commit the fix: domain -> {FIX}", auto=auto, out=out)
    _write(root / "site-a" / "_defaults.yaml", _DEFAULTS.format(domain=FIX))
    done = daemon.wait_for("rollout.completed")
    _domains(fleet, out)
    fixed = all(d.accounts[0]["domain"] == FIX and d.registered(1) for d in fleet.devices)
    ok = not typo and not done.get("failed") and fixed
    print(
        "\n== done: " + ("every intercom is on the new PBX" if ok else "something differed"),
        file=out,
    )
    return 0 if ok else 1
