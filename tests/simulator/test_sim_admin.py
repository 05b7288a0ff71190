"""The /_emulator admin endpoints, and a fleet run from a background thread."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from syncd.simulator import Fleet, FleetError, run_fleet_in_thread


class TestAdminEndpoints:
    async def test_state(self, fleet: Fleet, client: httpx.AsyncClient) -> None:
        """GET /_emulator/state shows accounts as GET reports them, plus passwords."""
        device = fleet.device(2)
        device.set_live(1, password="pw1")
        state = (await client.get(f"{device.url}/_emulator/state")).json()
        assert state["device"] == 2
        assert state["url"] == device.url
        assert state["accounts"] == device.accounts
        assert state["passwords"] == {"1": "pw1", "2": None}
        assert state["identity"]["deviceName"] == device.identity["deviceName"]

    async def test_drift(self, fleet: Fleet, client: httpx.AsyncClient) -> None:
        """PUT /_emulator/state drifts live fields without touching the journal."""
        device = fleet.device(1)
        response = await client.put(
            f"{device.url}/_emulator/state",
            json={"accounts": [{"account": 2, "registrarAddress": "evil.example"}]},
        )
        assert response.status_code == 200
        assert response.json()["accounts"][1]["registrarAddress"] == "evil.example"
        assert device.accounts[1]["registrarAddress"] == "evil.example"
        assert device.journal == []

    async def test_bad_drift(self, fleet: Fleet, client: httpx.AsyncClient) -> None:
        """A drift with a bad value is HTTP 400 naming the field and changes nothing."""
        device = fleet.device(1)
        response = await client.post(
            f"{device.url}/_emulator/state",
            json={"accounts": [{"account": 1, "enabled": True}, {"account": 2, "answerMode": 42}]},
        )
        assert response.status_code == 400
        assert "answerMode" in response.json()["error"]
        assert device.accounts[0]["enabled"] is False

    async def test_unknown_path_or_method_is_a_json_error(
        self, fleet: Fleet, client: httpx.AsyncClient
    ) -> None:
        """An admin path that does not exist is 404, a wrong method 405, both ``{"error"}``."""
        device = fleet.device(1)
        missing = await client.get(f"{device.url}/_emulator/nothing")
        assert missing.status_code == 404
        assert missing.json() == {"error": "no admin endpoint /_emulator/nothing"}
        wrong = await client.patch(f"{device.url}/_emulator/state", json={})
        assert wrong.status_code == 405
        assert wrong.json() == {"error": "PATCH is not allowed on /_emulator/state"}
        assert device.journal == []

    async def test_reset(self, fleet: Fleet, client: httpx.AsyncClient) -> None:
        """DELETE /_emulator/state restores the factory state."""
        device = fleet.device(1)
        device.set_live(1, enabled=True)
        assert (await client.delete(f"{device.url}/_emulator/state")).status_code == 200
        assert device.accounts[0]["enabled"] is False

    async def test_faults(self, fleet: Fleet, client: httpx.AsyncClient) -> None:
        """POST /_emulator/faults queues a fault, GET lists it, DELETE clears them."""
        device = fleet.device(1)
        url = f"{device.url}/_emulator/faults"
        created = await client.post(url, json={"kind": "status", "status": 502, "count": 3})
        assert created.status_code == 201
        listed = (await client.get(url)).json()
        assert [(f["kind"], f["status"], f["count"]) for f in listed] == [("status", 502, 3)]
        assert (await client.get(f"{device.url}/api/phone/config")).status_code == 502
        assert (await client.get(url)).json()[0]["count"] == 2
        assert (await client.delete(url)).status_code == 200
        assert device.faults == []

    @pytest.mark.parametrize(
        "body", [{"kind": "status", "colour": "red"}, {"count": 1}, {"kind": "delay", "delay": "x"}]
    )
    async def test_bad_fault(
        self, fleet: Fleet, client: httpx.AsyncClient, body: dict[str, object]
    ) -> None:
        """A malformed fault is HTTP 400 and nothing is queued."""
        url = f"{fleet.device(1).url}/_emulator/faults"
        response = await client.post(url, json=body)
        assert response.status_code == 400
        assert response.json()["error"]
        assert fleet.device(1).faults == []

    async def test_journal(self, fleet: Fleet, client: httpx.AsyncClient) -> None:
        """GET /_emulator/journal lists device-API requests only; DELETE clears it."""
        device = fleet.device(1)
        await client.put(f"{device.url}/api/phone/config", json={"accounts": []})
        url = f"{device.url}/_emulator/journal"
        (entry,) = (await client.get(url)).json()
        assert (entry["method"], entry["body_format"], entry["blob"]) == (
            "PUT",
            "json",
            {"accounts": []},
        )
        assert (await client.delete(url)).status_code == 200
        assert (await client.get(url)).json() == []

    async def test_nonces(self, client: httpx.AsyncClient) -> None:
        """DELETE /_emulator/nonces makes a Digest client's next request meet stale=true."""
        async with Fleet(devices=1, auth="digest") as fleet:
            device = fleet.device(1)
            auth = httpx.DigestAuth("admin", "secret")
            assert (await client.get(f"{device.url}/api/phone/config", auth=auth)).is_success
            assert (await client.delete(f"{device.url}/_emulator/nonces")).status_code == 200
            device.clear_journal()
            assert (await client.get(f"{device.url}/api/phone/config", auth=auth)).is_success
            assert [entry.status for entry in device.journal] == [401, 200]

    async def test_admin_needs_no_auth(self, client: httpx.AsyncClient) -> None:
        """Admin endpoints answer without credentials on an authenticated device."""
        async with Fleet(devices=1, auth="basic") as fleet:
            response = await client.get(f"{fleet.device(1).url}/_emulator/state")
            assert response.status_code == 200


class TestFleet:
    def test_run_in_thread(self) -> None:
        """A fleet in a background thread serves a synchronous client and takes method calls."""
        with run_fleet_in_thread(devices=2, firmware="integer") as fleet, httpx.Client() as client:
            device = fleet.device(2)
            device.set_live(1, proxyPort="5062")
            device.inject(kind="status", status=503)
            url = f"{device.url}/api/phone/config"
            assert client.get(url).status_code == 503
            assert client.get(url).json()["result"]["accounts"][0]["proxyPort"] == 5062
            assert len(device.journal) == 2
            port = device.port
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/api/phone/config")

    def test_fixed_ports_are_consecutive(self, free_ports: Callable[[int], int]) -> None:
        """With a non-zero port, device n listens on port + n - 1."""
        first = free_ports(3)
        with run_fleet_in_thread(devices=3, port=first) as fleet:
            assert [device.port for device in fleet.devices] == [first, first + 1, first + 2]
            assert fleet.device(3).url == f"http://127.0.0.1:{first + 2}"

    async def test_port_in_use(self, free_ports: Callable[[int], int]) -> None:
        """A port already taken fails the start with a FleetError naming the port."""
        first = free_ports(2)
        async with Fleet(devices=1, port=first + 1):
            with pytest.raises(FleetError, match=f"port {first + 1} .*already in use"):
                async with Fleet(devices=2, port=first):
                    pass
        async with Fleet(devices=2, port=first) as fleet:
            assert fleet.device(2).port == first + 1
