"""Sample fleets for the status, control and page tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from syncd.status import (
    DeviceStatus,
    FleetStatus,
    InvalidFile,
    RolloutSummary,
    WindowStatus,
)

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
COMMIT = "0123456789abcdef0123456789abcdef01234567"
SCRIPT_NAME = "<script>alert(1)</script>"


def sample_fleet(count: int = 20) -> FleetStatus:
    """A fleet of ``count`` devices in every state, one named like markup, one failing."""
    cycle = ["in_sync", "in_sync", "in_sync", "waiting", "changing", "unreachable", "drifted",
             "suspended", "unknown", "in_sync"]  # fmt: skip
    devices = [
        DeviceStatus(
            device=f"site-{n % 3}/door-{n:02d}",
            url=f"http://127.0.0.1:{8080 + n}",
            mode="observe" if cycle[n % len(cycle)] == "drifted" else "enforce",
            state=cycle[n % len(cycle)],  # type: ignore[arg-type]
            wave="canary" if n < 3 else "rest",
            revision=COMMIT if n % 4 else None,
            last_sync=NOW - timedelta(seconds=7 * n + 3),
            last_change=NOW - timedelta(hours=n) if n % 2 else None,
            message=None if n % 5 else f"waiting for window, device {n}",
            accounts=((1, True), (2, None)) if n % 2 else ((1, False),),
            owner="host-a",
        )
        for n in range(count - 2)
    ]
    devices.append(
        DeviceStatus(
            device="site-0/lobby",
            url="https://127.0.0.1:9443",
            mode="enforce",
            state="failed",
            wave="canary",
            revision=COMMIT,
            last_sync=NOW - timedelta(minutes=5, seconds=2),
            last_change=NOW - timedelta(minutes=5),
            message="the device rejected the PUT: code 12, param domain, <b>bad</b> domain",
            accounts=((1, False), (2, True)),
            owner="host-a",
        )
    )
    devices.append(
        DeviceStatus(
            device=SCRIPT_NAME,
            url="http://127.0.0.1:8999",
            mode="enforce",
            state="in_sync",
            revision="tree:abcdef012345",
            last_sync=NOW - timedelta(days=2, hours=1),
            accounts=((1, True),),
        )
    )
    return FleetStatus(
        revision=COMMIT,
        node="host-a",
        rollout=RolloutSummary(
            revision=COMMIT, state="running", wave="canary", failed=("site-0/lobby",)
        ),
        window=WindowStatus(open=False, next_open=NOW + timedelta(hours=10)),
        devices=tuple(devices),
        invalid_files=(
            InvalidFile("site-b/broken.yaml", 3, "accounts[0].domain: not a host name"),
        ),
    )
