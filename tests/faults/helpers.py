"""Helpers shared by the fault-tolerance tests: desired trees, log events, waiting, state dirs."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.e2e.conftest import device_yaml, write

ACCOUNT = '  - account: 1\n    displayName: "{name}"\n    sipNumber: "{number}"\n'

#: Events that mean something went wrong for a device.
ERROR_EVENTS = (
    "apply.retrying",
    "request.retrying",
    "apply.failed",
    "device.unreachable",
    "auth.failed",
)


def account(name: str, number: str = "4001", **extra: str) -> str:
    """The YAML of account 1 with ``displayName``, ``sipNumber`` and extra ``key: value`` lines."""
    text = ACCOUNT.format(name=name, number=number)
    for key, value in extra.items():
        text += f"    {key}: {value}\n"
    return text


def tree(root: Path, fleet: Any, name: str = "Door", **extra: str) -> Path:
    """One file ``devN.yaml`` per emulated device, account 1 named ``{name} N``."""
    for n, dev in enumerate(fleet.devices, start=1):
        write(root, f"dev{n}.yaml", device_yaml(dev.url, account(f"{name} {n}", **extra)))
    return root


def run_args(root: Path, state: Path, *extra: str, resync: float = 1.0) -> list[str]:
    """Arguments of ``syncd run`` for a desired tree and state dir."""
    return [*pass_args(root, state), "--resync-interval", str(resync), *extra]


def pass_args(root: Path, state: Path, *extra: str) -> list[str]:
    """Arguments of ``syncd apply``/``plan`` (which refuse the daemon's --resync-interval)."""
    return ["--desired", str(root), "--state-dir", str(state), *extra]


def events(text: str) -> list[dict[str, Any]]:
    """The JSON log events among the lines of ``text`` (a one-shot command's stderr)."""
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


def named(evs: Iterable[dict[str, Any]], name: str, **match: Any) -> list[dict[str, Any]]:
    """The events called ``name`` whose fields include ``match``."""
    return [
        e for e in evs if e.get("event") == name and all(e.get(k) == v for k, v in match.items())
    ]


def wait_until(
    predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition"
) -> float:
    """Poll ``predicate`` until true; fail after ``timeout`` seconds. Returns the time taken."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what} not met within {timeout}s")
        time.sleep(0.05)
    return time.monotonic() - started


def stamp(event: dict[str, Any]) -> float:
    """An event's timestamp as POSIX seconds."""
    return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()


def converged(dev: Any, name: str, number: str = "4001") -> bool:
    """Whether account 1 of ``dev`` shows ``displayName`` ``name`` and ``sipNumber`` ``number``."""
    live = dev.accounts[0]
    return live["displayName"] == name and live["sipNumber"] == number


def check_state_dir(state: Path) -> str:
    """Assert the state dir is readable after any crash; return the key.

    The key is 64 hex digits; the device records, the history and the rollout
    journal have whole lines but perhaps the last, each record naming its
    device; the control socket may be left; anything else is a hidden
    temporary file of an interrupted write.
    """
    key = (state / "key").read_text()
    assert re.fullmatch(r"[0-9a-f]{64}\n", key), f"damaged key file: {key!r}"
    for path in state.rglob("*"):
        rel = path.relative_to(state).as_posix()
        if path.is_dir():
            raise AssertionError(f"unexpected directory {rel}")
        elif rel in ("key", "lock", "rollout.json") or rel.startswith("history.jsonl"):
            continue
        elif rel == "syncd.sock":
            assert path.is_socket(), rel  # left by a killed daemon; the next one replaces it
        elif rel in ("history.jsonl", "rollout.journal", "devices.jsonl"):
            # A torn last line is allowed (readers skip it); every other line is an entry.
            lines = path.read_text().splitlines()
            assert all(isinstance(json.loads(line), dict) for line in lines[:-1]), rel
            if rel == "devices.jsonl":
                for line in lines[:-1]:
                    record = json.loads(line)
                    assert isinstance(record.get("device"), str), rel
                    assert isinstance(record.get("passwords", {}), dict), rel
        elif path.name.startswith("."):
            assert path.name.startswith((".tmp-", ".probe-")), f"unexpected file {rel}"
        else:
            raise AssertionError(f"unexpected file {rel}")
    return key
