"""The README's demo: emulated intercoms plus ``syncd run`` on the example ``desired/``.

Run ``python -m syncd.demo`` from the repository root. It serves two emulated
intercoms on 127.0.0.1:8080 and :8081 (what ``desired/`` targets), runs the
daemon against them, and tells you how to make drift happen.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["main"]

#: Seconds the daemon has to stop after Ctrl-C (it needs well under one).
_STOP_GRACE = 15.0

_INTRO = """\
syncd demo: two emulated intercoms and the syncd daemon.

  device 1  http://127.0.0.1:{p1}   desired/site-a/lobby.yaml
  device 2  http://127.0.0.1:{p2}   desired/site-a/garage.yaml

Try, in another terminal:
  - change a device behind syncd's back (drift), and watch syncd put it back:
      curl -X PUT -F 'blob-json={{"accounts":[{{"account":1,"displayName":"Hacked"}}]}}' \\
           http://127.0.0.1:{p1}/api/phone/config
  - read what the device holds now:
      curl -s http://127.0.0.1:{p1}/api/phone/config
  - edit desired/site-a/lobby.yaml (e.g. displayName) and save: applied within a second.
  - break it (e.g. domainPort: abc): syncd logs desired.invalid and keeps the last valid state.

Ctrl-C stops both. Daemon log follows.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m syncd.demo", description=__doc__)
    parser.add_argument("--desired", type=Path, default=Path("desired"))
    parser.add_argument("--port", type=int, default=8080, help="first emulated device's port")
    parser.add_argument("--resync-interval", type=float, default=10.0)
    parser.add_argument(
        "--rollout",
        action="store_true",
        help="the safe-rollout scenario: canary, a bad PBX halted and reverted, then the fix",
    )
    parser.add_argument("--auto", action="store_true", help="with --rollout: do not wait for Enter")
    args = parser.parse_args(argv)
    # Ctrl-C stops the demo even when it was started with SIGINT ignored (a shell's
    # background job, a CI runner): Python then leaves it ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if args.rollout:
        from syncd.rollout_demo import run_rollout_demo

        return run_rollout_demo(port=args.port, auto=args.auto)
    if not args.desired.is_dir():
        print(f"demo: {args.desired} not found; run this from the repository root", file=sys.stderr)
        return 1
    try:
        from syncd.simulator import FleetError, run_fleet_in_thread
    except ImportError:
        print("demo: the emulator is not installed: pip install -e '.[simulator]'", file=sys.stderr)
        return 1
    try:
        with (
            run_fleet_in_thread(devices=2, port=args.port),
            # A fresh state dir, removed at the end: the emulated devices start from
            # factory state each time, so last run's "already applied" records would
            # read as drift.
            tempfile.TemporaryDirectory(prefix="syncd-demo-state-") as state,
        ):
            print(_INTRO.format(p1=args.port, p2=args.port + 1), flush=True)
            daemon = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "syncd",
                    "run",
                    "--state-dir",
                    state,
                    "--desired",
                    str(args.desired),
                    "--resync-interval",
                    str(args.resync_interval),
                ]
            )
            try:
                return daemon.wait()
            except KeyboardInterrupt:
                daemon.send_signal(signal.SIGTERM)
                return daemon.wait(timeout=_STOP_GRACE)
            finally:
                _never_left_behind(daemon)
    except FleetError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1


def _never_left_behind(daemon: subprocess.Popen[bytes]) -> None:
    """The daemon ends with the demo: one that did not stop when asked is killed, and said."""
    if daemon.poll() is not None:
        return
    print(f"demo: the daemon did not stop within {_STOP_GRACE:.0f} s; killing it", file=sys.stderr)
    daemon.send_signal(signal.SIGUSR1)  # its stacks first, to stderr: where it was stuck
    with contextlib.suppress(subprocess.TimeoutExpired):
        daemon.wait(timeout=1)
    daemon.kill()
    daemon.wait()


if __name__ == "__main__":
    raise SystemExit(main())
