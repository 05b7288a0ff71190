"""The whole fleet in one node's status: its devices from its view, the others' from their owners' records."""

from __future__ import annotations

from pathlib import Path

from syncd.daemon import Daemon
from syncd.devices_view import DeviceView
from syncd.fleet_view import FleetView
from syncd.model import DeviceSpec
from syncd.outcome import Outcome
from syncd.settings import load_settings
from syncd.status import status_json


def spec(name: str) -> DeviceSpec:
    return DeviceSpec(name=name, file=f"{name}.yaml", url=f"http://127.0.0.1:1/{name}")


def record(name: str, state: str, owner: str) -> dict[str, object]:
    """A device's status JSON as its owner publishes it."""
    return {
        "device": name,
        "url": f"http://127.0.0.1:1/{name}",
        "mode": "enforce",
        "state": state,
        "wave": None,
        "revision": "0123456789abcdef",
        "last_sync": "2025-01-02T03:04:05.000Z",
        "last_change": None,
        "message": "transport went wrong" if state == "unreachable" else None,
        "accounts": [{"account": 1, "registered": True}],
        "owner": owner,
    }


def by_name(data: dict[str, object]) -> dict[str, dict[str, object]]:
    devices = data["devices"]
    assert isinstance(devices, list)
    return {d["device"]: d for d in devices}


class TestFleetView:
    def test_others_devices_from_their_records_or_unknown(self) -> None:
        """Own devices come from the view; another node's from its record (owner as the cluster says), unknown without one; a new record shows at once."""
        owners = {"mine": "n1", "theirs": "n2", "silent": "n3"}
        shared: dict[str, dict[str, object]] = {"theirs": record("theirs", "unreachable", "n2")}
        fleet = FleetView(node="n1", owner_of=owners.get, shared=lambda: shared)
        for name in owners:
            fleet.devices[name] = DeviceView(spec(name))
            fleet.devices[name].observe(Outcome.of(spec(name), "in_sync"), 1.0, revision="r")
        data = fleet.snapshot()
        devices = by_name(data)
        assert devices["mine"]["state"] == "in_sync" and devices["mine"]["owner"] == "n1"
        assert devices["theirs"] == record("theirs", "unreachable", "n2")
        assert devices["silent"]["state"] == "unknown" and devices["silent"]["owner"] == "n3"
        assert devices["silent"]["last_sync"] is None
        assert data["summary"] == {**data["summary"], "devices": 3, "unknown": 1, "in_sync": 1}
        assert data == status_json(fleet.fleet_status())
        assert [d["device"] for d in data["devices"]] == ["theirs", "silent", "mine"]

        shared["silent"] = record("silent", "in_sync", "n2")  # an old owner's record
        shared["theirs"] = {"device": "theirs", "state": "no such state"}  # damaged
        devices = by_name(fleet.snapshot())
        assert devices["silent"]["state"] == "in_sync" and devices["silent"]["owner"] == "n3"
        assert devices["theirs"]["state"] == "unknown"

    def test_a_device_of_a_lagging_owner_waits_for_it(self) -> None:
        """A device in sync under its owner's revision, while that owner lags behind another
        node's (its checkout not pulled), is waiting and says so, unless it holds this node's
        desired state already (the newer commit changed nothing of it); in step, in_sync."""
        lag: dict[str, str] = {"n3": "0123456789abcdef"}
        applied = {"d": "the fingerprint of the older desired state"}
        fleet = FleetView(
            node="n1",
            owner_of=lambda name: "n3",
            shared=lambda: {"d": record("d", "in_sync", "n3")},
            lagging_revision=lag.get,
            applied=applied.get,
        )
        fleet.devices["d"] = DeviceView(spec("d"))
        device = by_name(fleet.snapshot())["d"]
        assert device["state"] == "waiting"
        assert device["message"] == (
            "its owner n3 is on revision 0123456789ab, behind another node's: "
            "the newer revision reaches this device when n3 loads it"
        )
        assert fleet.snapshot()["summary"]["waiting"] == 1
        applied["d"] = spec("d").fingerprint  # the newer revision changed nothing of d's
        assert by_name(fleet.snapshot())["d"]["state"] == "in_sync"
        applied.clear()
        lag.clear()  # n3 pulled
        device = by_name(fleet.snapshot())["d"]
        assert (device["state"], device["message"]) == ("in_sync", None)

    def test_standalone_ignores_records(self) -> None:
        """Without an owner (standalone), every device comes from the view whatever is shared."""
        fleet = FleetView(node="h", shared=lambda: {"d": record("d", "failed", "x")})
        fleet.devices["d"] = DeviceView(spec("d"))
        assert by_name(fleet.snapshot())["d"]["state"] == "unknown"
        assert by_name(fleet.snapshot())["d"]["owner"] is None


class TestDaemonObserve:
    def test_elsewhere_outcome_changes_neither_view_nor_metrics(self, tmp_path: Path) -> None:
        """A device another node owns keeps its state and in-sync series; a suspend-mode skip still shows suspended."""
        daemon = Daemon(load_settings(None, state_dir=tmp_path / "state", desired_dir=tmp_path))
        door = spec("door")
        daemon.view.devices["door"] = DeviceView(door)

        def in_sync() -> float | None:
            return daemon.metrics.registry.get_sample_value(
                "syncd_device_in_sync", {"device": "door"}
            )

        daemon.observe(Outcome.of(door, "in_sync"))
        daemon.observe(Outcome.of(door, "skipped", elsewhere=True))
        assert daemon.view.devices["door"].state() == "in_sync"
        assert in_sync() == 1.0
        daemon.observe(Outcome.of(door, "skipped"))
        assert daemon.view.devices["door"].state() == "suspended"
        assert in_sync() is None
