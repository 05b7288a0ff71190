"""The status of the fleet: SPEC section 10's JSON exactly, and text for a 100-column terminal."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta

import pytest

from syncd.status import (
    STATES,
    WORST_FIRST,
    ClusterSummary,
    DeviceStatus,
    FleetStatus,
    format_age,
    format_status,
    status_from_json,
    status_json,
)

from .fleet_samples import COMMIT, NOW, SCRIPT_NAME, sample_fleet

DEVICE_KEYS = [
    "device", "url", "mode", "state", "wave", "revision", "last_sync", "last_change",
    "message", "accounts", "owner",
]  # fmt: skip


class TestJson:
    def test_top_level_shape(self) -> None:
        """The object has exactly the SPEC's keys, in its order, with its value types."""
        data = status_json(sample_fleet())
        assert list(data) == [
            "revision",
            "node",
            "rollout",
            "window",
            "summary",
            "devices",
            "invalid_files",
        ]
        assert data["revision"] == COMMIT and data["node"] == "host-a"
        assert data["rollout"] == {
            "revision": COMMIT,
            "state": "running",
            "wave": "canary",
            "failed": ["site-0/lobby"],
        }
        assert data["window"] == {"open": False, "next_open": "2024-05-01T22:00:00.000Z"}
        assert data["invalid_files"] == [
            {
                "file": "site-b/broken.yaml",
                "line": 3,
                "error": "accounts[0].domain: not a host name",
            }
        ]
        json.dumps(data)

    def test_device_shape(self) -> None:
        """Each device has exactly the SPEC's keys; times are ISO UTC with Z; accounts as objects."""
        data = status_json(sample_fleet())
        lobby = next(d for d in data["devices"] if d["device"] == "site-0/lobby")
        assert list(lobby) == DEVICE_KEYS
        assert lobby == {
            "device": "site-0/lobby",
            "url": "https://127.0.0.1:9443",
            "mode": "enforce",
            "state": "failed",
            "wave": "canary",
            "revision": COMMIT,
            "last_sync": "2024-05-01T11:54:58.000Z",
            "last_change": "2024-05-01T11:55:00.000Z",
            "message": "the device rejected the PUT: code 12, param domain, <b>bad</b> domain",
            "accounts": [{"account": 1, "registered": False}, {"account": 2, "registered": True}],
            "owner": "host-a",
        }
        for device in data["devices"]:
            assert list(device) == DEVICE_KEYS

    def test_summary_has_every_state(self) -> None:
        """The summary has ``devices`` and one count per state, zeros included, adding up."""
        fleet = FleetStatus(
            revision="tree:abcdef012345", node="n", devices=(DeviceStatus("a", "u", "enforce"),)
        )
        summary = status_json(fleet)["summary"]
        assert list(summary) == ["devices", *STATES]
        assert set(STATES) == {
            "in_sync", "changing", "waiting", "failed", "unreachable", "drifted", "suspended", "unknown",
        }  # fmt: skip
        assert summary == {"devices": 1, **dict.fromkeys(STATES, 0), "unknown": 1}
        full = status_json(sample_fleet())["summary"]
        assert full["devices"] == 20 == sum(full[s] for s in STATES)

    def test_devices_worst_first_then_by_name(self) -> None:
        """Devices are ordered failed, unreachable, drifted, changing, waiting, unknown, suspended, in_sync, then by name."""
        devices = status_json(sample_fleet())["devices"]
        keys = [(WORST_FIRST.index(d["state"]), d["device"]) for d in devices]
        assert keys == sorted(keys)
        assert devices[0]["device"] == "site-0/lobby"
        assert WORST_FIRST == (
            "failed", "unreachable", "drifted", "changing", "waiting", "unknown", "suspended", "in_sync",
        )  # fmt: skip

    def test_defaults_without_rollout(self) -> None:
        """No rollout and no windows: state none, window open, no next opening."""
        data = status_json(FleetStatus(revision="tree:abcdef012345", node="n"))
        assert data["rollout"] == {"revision": None, "state": "none", "wave": None, "failed": []}
        assert data["window"] == {"open": True, "next_open": None}
        assert data["devices"] == [] and data["invalid_files"] == []

    def test_round_trip(self) -> None:
        """Parsing the JSON back gives the same JSON."""
        data = status_json(sample_fleet())
        assert status_json(status_from_json(json.loads(json.dumps(data)))) == data

    def test_a_cluster_node_adds_its_members_and_leader(self) -> None:
        """On a cluster node the object ends with ``cluster`` (live members and the
        leader), the text says them under the revision, and the JSON reads back."""
        fleet = replace(sample_fleet(), cluster=ClusterSummary(("n1", "n2", "n3"), "n2"))
        data = status_json(fleet)
        assert list(data)[-1] == "cluster"
        assert data["cluster"] == {"members": ["n1", "n2", "n3"], "leader": "n2"}
        assert status_json(status_from_json(json.loads(json.dumps(data)))) == data
        lines = format_status(fleet, NOW).splitlines()
        assert lines[1] == "cluster   n1, n2, n3 (leader n2)"
        alone = replace(fleet, cluster=ClusterSummary(("n1",), None))
        assert "cluster   n1 (no leader)" in format_status(alone, NOW)
        assert "cluster" not in status_json(sample_fleet())


class TestText:
    def test_fits_100_columns(self) -> None:
        """Every line of the text fits 100 columns, even with long names and messages."""
        fleet = sample_fleet()
        long = DeviceStatus(
            "a-really-long-site-name/and-an-even-longer-building/door-north-east",
            "http://x", "enforce", "failed", wave="a-long-wave-name-indeed",
            message="x " * 200,
        )  # fmt: skip
        fleet = FleetStatus(
            fleet.revision,
            fleet.node,
            fleet.rollout,
            fleet.window,
            (*fleet.devices, long),
            fleet.invalid_files,
        )
        text = format_status(fleet, NOW)
        assert all(len(line) <= 100 for line in text.splitlines()), max(text.splitlines(), key=len)

    def test_header_and_rows(self) -> None:
        """The header names revision, rollout, window and counts; rows go worst first with age and message."""
        text = format_status(sample_fleet(), NOW)
        lines = text.splitlines()
        assert lines[0].startswith(f"revision  {COMMIT}")
        assert lines[1] == "rollout   running 0123456789ab, wave canary, failed: site-0/lobby"
        assert lines[2] == "window    closed, opens 2024-05-01T22:00:00.000Z"
        assert lines[3].startswith("devices   20 devices: 1 failed, 2 unreachable")
        assert lines[4] == "          2 suspended, 8 in_sync"
        assert lines[5].startswith("invalid   site-b/broken.yaml:3: accounts[0].domain")
        table = lines[lines.index("") + 1 :]
        # The sample is a cluster's (owners set): each row names the node that owns it.
        assert table[0].split() == [
            "DEVICE",
            "STATE",
            "WAVE",
            "REVISION",
            "AGE",
            "OWNER",
            "MESSAGE",
        ]
        first = table[1].split()
        assert first[:6] == ["site-0/lobby", "failed", "canary", "0123456789ab", "5m", "host-a"]
        assert "the device rejected" in table[1]
        assert len(table) == 21
        states = [row.split()[1] for row in table[1:]]
        assert states == sorted(states, key=WORST_FIRST.index)

    def test_no_owner_column_without_a_cluster(self) -> None:
        """Standalone (no device has an owner) the table has no OWNER column."""
        fleet = sample_fleet()
        alone = replace(fleet, devices=tuple(replace(d, owner=None) for d in fleet.devices))
        lines = format_status(alone, NOW).splitlines()
        table = lines[lines.index("") + 1 :]
        assert table[0].split() == ["DEVICE", "STATE", "WAVE", "REVISION", "AGE", "MESSAGE"]

    def test_same_text_from_json(self) -> None:
        """What the CLI fetched as JSON prints the same as the fleet itself."""
        fleet = sample_fleet()
        assert format_status(status_json(fleet), NOW) == format_status(fleet, NOW)

    def test_markup_and_escapes_printed_as_text(self) -> None:
        """A name with markup prints as is; terminal escapes and newlines do not pass."""
        fleet = FleetStatus(
            "r", "n", devices=(DeviceStatus("evil\x1b]0;x\x07", "u", "enforce", message="a\nb\rc"),)
        )
        text = format_status(fleet, NOW)
        assert "\x1b" not in text and "\x07" not in text and "a b c" in text
        assert SCRIPT_NAME in format_status(sample_fleet(), NOW)

    def test_never_read_and_tree_revision(self) -> None:
        """A device never read shows ``-`` for age and revision; a tree revision shows whole."""
        fleet = FleetStatus("tree:abcdef012345", "n", devices=(
            DeviceStatus("a", "u", "enforce"),
            DeviceStatus("b", "u", "enforce", "in_sync", revision="tree:abcdef012345", last_sync=NOW),
        ))  # fmt: skip
        rows = format_status(fleet, NOW).splitlines()[-2:]
        assert rows[0].split() == ["a", "unknown", "-", "-", "-"]
        assert rows[1].split() == ["b", "in_sync", "-", "tree:abcdef012345", "0s"]

    def test_no_devices(self) -> None:
        """An empty fleet says so."""
        assert format_status(FleetStatus("r", "n"), NOW).endswith("\nno devices\n")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "-"), (0, "0s"), (12.7, "12s"), (59, "59s"), (60, "1m"), (300, "5m"), (3599, "59m"),
     (3600, "1h"), (3 * 3600 + 5, "3h"), (86399, "23h"), (86400, "1d"), (2 * 86400 + 7, "2d"), (-5, "0s")],
)  # fmt: skip
def test_age(seconds: float | None, text: str) -> None:
    """Ages read 12s / 5m / 3h / 2d."""
    assert format_age(seconds) == text


def test_text_when_device_synced_in_the_future() -> None:
    """A clock step backwards shows an age of 0s, not a negative one."""
    fleet = FleetStatus(
        "r",
        "n",
        devices=(
            DeviceStatus("a", "u", "enforce", "in_sync", last_sync=NOW + timedelta(seconds=30)),
        ),
    )
    assert format_status(fleet, NOW).splitlines()[-1].split()[4] == "0s"
