"""What a reconcile needs besides the config is read alongside it: `syncd apply` as a
process against emulated devices that answer each request 0.2 s late.

A rollout's device needs its calls read before the PUT (SPEC 9) and, with a
managed password, its serial number: read after the config, each is one more
round trip in a row. These tests read the order of requests off the devices'
own journals.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from syncd.simulator import EmulatedDevice, Fleet
from tests.e2e.conftest import device_yaml, syncd, write

LATENCY = 0.2
CONFIG, CALLS, INFO = "/api/phone/config", "/api/call/status", "/api/system/info"
ENV = {"SIP_PW": "early-reads-sip-secret", "API_PW": "early-reads-api-secret"}


def _tree(root: Path, fleet: Fleet, *, password: bool = False, auth: str = "") -> None:
    for device in fleet.devices:
        account = f'  - account: 1\n    sipNumber: "{4100 + device.number}"\n'
        if password:
            account += "    password: {env: SIP_PW}\n"
        text = device_yaml(device.url, account)
        if auth:
            text = text.replace("  auth:\n    method: none\n", auth)
        write(root, f"dev{device.number}.yaml", text)


def _apply(root: Path, state: Path) -> Any:
    result = syncd("apply", "--desired", str(root), "--state-dir", str(state), env=ENV)
    assert result.returncode == 0, result.stderr
    return result


def _first(device: EmulatedDevice, method: str, path: str) -> Any:
    """The device's first request of ``method`` to ``path``."""
    return next(e for e in device.journal if (e.method, e.path) == (method, path))


def _overlap(a: Any, b: Any) -> bool:
    """The device handled the two requests at the same time (each arrived before the other ended)."""
    return bool(a.started < b.finished and b.started < a.finished)


class TestEarlyReads:
    def test_a_rollouts_calls_are_read_with_its_config_and_before_its_put(
        self, sim: Callable[..., Fleet], tmp_path: Path
    ) -> None:
        """A device whose desired state changed: its calls are read alongside its config, both
        answered before the PUT starts, then the verifying GET; in sync, only the config is read."""
        fleet = sim(devices=2, latency=LATENCY)
        root = tmp_path / "desired"
        _tree(root, fleet)
        _apply(root, tmp_path / "state")
        for device in fleet.devices:
            get, calls, put = (
                _first(device, *r) for r in (("GET", CONFIG), ("GET", CALLS), ("PUT", CONFIG))
            )
            assert _overlap(get, calls), [(e.method, e.path) for e in device.journal]
            assert put.started >= max(get.finished, calls.finished)
            assert [(e.method, e.path) for e in device.journal][-1] == ("GET", CONFIG)
            assert len(device.journal) == 4
        seen = [len(d.journal) for d in fleet.devices]
        result = _apply(root, tmp_path / "state")
        assert "0 changed, 2 already in sync" in result.stdout
        for device, since in zip(fleet.devices, seen, strict=True):
            assert [(e.method, e.path) for e in device.journal[since:]] == [("GET", CONFIG)]

    def test_a_password_devices_serial_is_read_with_its_config(
        self, sim: Callable[..., Fleet], tmp_path: Path
    ) -> None:
        """A managed password's record is bound to the serial number: read alongside the config,
        so a first PUT with a password is three round trips in a row, not five."""
        fleet = sim(devices=1, latency=LATENCY)
        root = tmp_path / "desired"
        _tree(root, fleet, password=True)
        result = _apply(root, tmp_path / "state")
        (device,) = fleet.devices
        get, info, calls = (_first(device, "GET", p) for p in (CONFIG, INFO, CALLS))
        assert _overlap(get, info) and _overlap(get, calls)
        assert _first(device, "PUT", CONFIG).blob["accounts"][0]["password"] == ENV["SIP_PW"]
        assert ENV["SIP_PW"] not in result.stderr + result.stdout
        assert device.accounts[0]["sipNumber"] == "4101"

    def test_credentials_not_yet_taken_are_tried_one_request_at_a_time(
        self, sim: Callable[..., Fleet], tmp_path: Path
    ) -> None:
        """Before a device has taken syncd's credentials, nothing goes alongside the config:
        a Digest device is challenged once, not twice, and a refused password is not
        tried twice as often."""
        fleet = sim(devices=1, latency=LATENCY, auth="digest", username="u", password=ENV["API_PW"])
        root = tmp_path / "desired"
        auth = "  auth:\n    method: digest\n    username: u\n    password: {env: API_PW}\n"
        _tree(root, fleet, auth=auth)
        result = _apply(root, tmp_path / "state")
        assert ENV["API_PW"] not in result.stderr + result.stdout
        (device,) = fleet.devices
        journal = device.journal
        assert [(e.method, e.path, e.status) for e in journal[:2]] == [
            ("GET", CONFIG, 401),
            ("GET", CONFIG, 200),
        ]
        calls = _first(device, "GET", CALLS)
        assert calls.started >= journal[1].finished
        assert [e.status for e in journal].count(401) == 1

    def test_an_early_read_that_fails_is_read_again_but_a_refusal_is_not(
        self, sim: Callable[..., Fleet], tmp_path: Path
    ) -> None:
        """An early call read answered 503 is read again (the PUT follows, nothing is logged
        about the first); a device that cannot report calls is asked once, logged once
        (calls.unknown), and its PUT goes ahead."""
        fleet = sim(devices=2, latency=0.05)
        flaky, mute = fleet.devices
        flaky.inject(kind="status", status=503, path=CALLS, count=1)
        mute.inject(kind="reject", code=1, path=CALLS, count=None)
        root = tmp_path / "desired"
        _tree(root, fleet)
        result = syncd(
            "apply",
            "--desired",
            str(root),
            "--state-dir",
            str(tmp_path / "state"),
            "--log-level",
            "debug",
            env=ENV,
        )
        assert result.returncode == 0, result.stderr
        events = [json.loads(line) for line in result.stderr.splitlines() if line[:1] == "{"]
        calls = {d.number: [e.status for e in d.journal if e.path == CALLS] for d in fleet.devices}
        assert calls == {1: [503, 200], 2: [200]}  # (a refusal is an HTTP 200 with code 1)
        assert [len([e for e in d.journal if e.method == "PUT"]) for d in fleet.devices] == [1, 1]
        assert not [e for e in events if e.get("device") == "dev1" and "retrying" in e["event"]]
        (unknown,) = [e for e in events if e["event"] == "calls.unknown"]
        assert unknown["device"] == "dev2"
