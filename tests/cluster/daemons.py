"""Helpers for the cluster tests that run ``syncd run`` nodes as subprocesses.

One emulated fleet and one etcd are shared by a test module; each test has
its own cluster name (its own keys in etcd) and its own desired values, so
a test starts with every device differing and PUTs to make.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from syncd.cluster.connection import EtcdAccess, EtcdConnection
from syncd.cluster.watching import read_prefix
from syncd.simulator import EmulatedDevice
from tests.e2e.conftest import DaemonProcess, write

PASSWORD_KEY = "0123456789abcdef0123456789abcdef\n"
SIP_PASSWORD = "sip-secret-4711"
LEASE_TTL = 2.0
RESYNC = 1.0


def device_file(url: str, label: str) -> str:
    """One device with account 1 named ``label`` and a managed password."""
    return (
        f"device:\n  url: {url}\n  auth:\n    method: none\n"
        "accounts:\n"
        f'  - account: 1\n    displayName: {label}\n    sipNumber: "4001"\n'
        "    password: {env: CLUSTER_SIP_PASSWORD}\n"
    )


def desired_tree(root: Path, devices: Iterable[EmulatedDevice], label: str) -> list[str]:
    """Write one file per device (``dev01`` ...); the device names."""
    names = []
    for number, device in enumerate(devices, start=1):
        name = f"dev{number:02d}"
        write(root, f"{name}.yaml", device_file(device.url, f"{label} {number}"))
        names.append(name)
    return names


def node_args(
    *,
    endpoint: str,
    cluster: str,
    node: str,
    desired: Path,
    tmp_path: Path,
    extra: Iterable[str] = (),
) -> list[str]:
    key = tmp_path / "password-key"
    if not key.exists():
        key.write_text(PASSWORD_KEY)
    return [
        "--desired",
        str(desired),
        "--state-dir",
        str(tmp_path / f"state-{node}"),
        "--resync-interval",
        str(RESYNC),
        "--cluster-endpoints",
        endpoint,
        "--cluster-name",
        cluster,
        "--node-name",
        node,
        "--lease-ttl",
        str(LEASE_TTL),
        "--password-key-file",
        str(key),
        "--log-format",
        "json",
        *extra,
    ]


def start_node(args: list[str], env: dict[str, str] | None = None) -> DaemonProcess:
    return DaemonProcess(args, env={"CLUSTER_SIP_PASSWORD": SIP_PASSWORD, **(env or {})})


def node_of(user_agent: str) -> str:
    """``syncd/1.0 (n1)`` -> ``n1``."""
    return user_agent.rpartition("(")[2].rstrip(")") if "(" in user_agent else ""


def label_of(device: EmulatedDevice) -> str:
    return str(device.accounts[0]["displayName"])


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds until ``predicate`` held (polled every 20 ms); AssertionError naming ``what``."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.02)
    return time.monotonic() - started


def all_labelled(devices: list[EmulatedDevice], label: str) -> Callable[[], bool]:
    expected = [f"{label} {n}" for n in range(1, len(devices) + 1)]
    return lambda: [label_of(d) for d in devices] == expected


def drift(devices: Iterable[EmulatedDevice]) -> None:
    for device in devices:
        device.set_live(1, displayName="Hacked")


def requests_by_node(device: EmulatedDevice, method: str | None = None) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for entry in device.journal:
        if method is None or entry.method == method:
            counts[node_of(entry.user_agent)] += 1
    return dict(counts)


def overlapping_puts(devices: Iterable[EmulatedDevice]) -> list[str]:
    """Devices on which two nodes' PUT windows [started, finished] overlapped."""
    found = []
    for device in devices:
        puts = sorted((e for e in device.journal if e.method == "PUT"), key=lambda e: e.started)
        for i, first in enumerate(puts):
            for later in puts[i + 1 :]:
                if later.started >= first.finished:
                    break
                if node_of(later.user_agent) != node_of(first.user_agent):
                    found.append(f"{device.number}: {first.user_agent} / {later.user_agent}")
    return found


def etcd_keys(endpoint: str, prefix: str) -> dict[str, str]:
    """Keys under ``prefix`` and their values, read from etcd now."""

    async def read() -> dict[str, str]:
        connection = EtcdConnection(EtcdAccess((endpoint,)), timeout=2.0)
        try:
            changes, _ = await read_prefix(connection, prefix)
        finally:
            await connection.close()
        return {c.key.removeprefix(prefix): (c.value or b"").decode() for c in changes}

    return asyncio.run(read())


def events_named(proc: DaemonProcess, name: str) -> list[dict[str, Any]]:
    return [e for e in proc.events if e.get("event") == name]


def one_error(result: subprocess.CompletedProcess[str]) -> str:
    """The one error sentence of a failed command (exit 1, one JSON line, nothing on stdout)."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    error = json.loads(lines[0])["error"]
    assert isinstance(error, str)
    return error
