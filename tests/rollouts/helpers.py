"""A small fleet with a PBX, a desired tree with a canary wave, and ways to read the journal."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.e2e.conftest import puts, write

GOOD = "pbx.example.com"
OTHER_GOOD = "pbx2.example.com"
BAD = "pbx.nowhere.invalid"
PBX = (GOOD, OTHER_GOOD)
ENV = {"SIP_PW": "sip-secret-1"}

DEFAULTS = """\
device:
  auth:
    method: none
accounts:
  - account: 1
    enabled: true
    registrationEnabled: true
    domain: {domain}
    password: {{env: SIP_PW}}
"""

FLEET = """\
rollout:
  waves:
    - name: canary
      devices: [dev1]
    - name: rest
  bake: {bake}
  maxFailures: 0
  onFailure: {on_failure}
health:
  timeout: {timeout}
{extra}"""


def tree(
    tmp_path: Path,
    fleet: Any,
    *,
    domain: str = GOOD,
    bake: float = 0.5,
    on_failure: str = "revert",
    timeout: float = 2,
    extra: str = "",
    policy: bool = True,
) -> Path:
    """``desired/`` for every device of ``fleet``: dev1 is the canary."""
    root = tmp_path / "desired"
    set_domain(root, domain)
    for n, device in enumerate(fleet.devices, start=1):
        text = (
            f'device:\n  url: {device.url}\naccounts:\n  - account: 1\n    sipNumber: "40{n:02d}"\n'
        )
        write(root, f"dev{n}.yaml", text)
    if policy:
        write(
            root,
            "_fleet.yaml",
            FLEET.format(bake=bake, on_failure=on_failure, timeout=timeout, extra=extra),
        )
    return root


def set_domain(root: Path, domain: str) -> None:
    write(root, "_defaults.yaml", DEFAULTS.format(domain=domain))


def args(root: Path, tmp_path: Path, *extra: str) -> list[str]:
    return [
        "--desired",
        str(root),
        "--state-dir",
        str(tmp_path / "state"),
        "--resync-interval",
        "2",
        *extra,
    ]


def domain_of(device: Any) -> Any:
    return device.accounts[0]["domain"]


def put_count(device: Any) -> int:
    return len(puts(device))


def when(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)
