"""Fault injection: each kind, counts, method filters, and what does not consume faults."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from syncd.simulator import Fault, Fleet


def config_url(fleet: Fleet, number: int = 1) -> str:
    return f"{fleet.device(number).url}/api/phone/config"


BLOB = {"accounts": [{"account": 1, "domainPort": 5070}]}


class TestKinds:
    async def test_status(self, fleet: Fleet, client: httpx.AsyncClient) -> None:
        """A status fault answers the next N requests with that status and a non-JSON body."""
        fleet.device(1).inject(kind="status", status=503, count=2)
        for _ in range(2):
            response = await client.get(config_url(fleet))
            assert response.status_code == 503
            assert response.text == "503 Service Unavailable"
            with pytest.raises(json.JSONDecodeError):
                response.json()
        assert (await client.get(config_url(fleet))).status_code == 200

    async def test_status_with_json_body(self, fleet: Fleet, client: httpx.AsyncClient) -> None:
        """A status fault with a JSON body sends it as application/json."""
        fleet.device(1).inject(kind="status", status=500, body='{"oops": true}')
        response = await client.get(config_url(fleet))
        assert response.status_code == 500
        assert response.headers["Content-Type"].startswith("application/json")
        assert response.json() == {"oops": True}

    async def test_delay(self, fleet: Fleet, client: httpx.AsyncClient) -> None:
        """A delay fault answers normally, but only after the delay."""
        fleet.device(1).inject(kind="delay", delay=0.4)
        started = time.monotonic()
        response = await client.get(config_url(fleet))
        assert time.monotonic() - started >= 0.4
        assert response.json()["success"] is True
        started = time.monotonic()
        await client.get(config_url(fleet))
        assert time.monotonic() - started < 0.4

    async def test_delay_times_a_client_out(self, fleet: Fleet) -> None:
        """A delay longer than the client's timeout makes the client time out."""
        fleet.device(1).inject(kind="delay", delay=0.5)
        async with httpx.AsyncClient(timeout=0.1) as client:
            with pytest.raises(httpx.ReadTimeout):
                await client.get(config_url(fleet))

    async def test_drop(self, fleet: Fleet, client: httpx.AsyncClient) -> None:
        """A drop fault closes the connection unanswered; the next request is served."""
        device = fleet.device(1)
        device.inject(kind="drop")
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            await client.get(config_url(fleet))
        assert (await client.get(config_url(fleet))).status_code == 200
        assert [(e.fault, e.status) for e in device.journal] == [("drop", None), (None, 200)]

    async def test_drop_applies_nothing(self, fleet: Fleet, client: httpx.AsyncClient) -> None:
        """A dropped PUT changes no state."""
        device = fleet.device(1)
        device.inject(kind="drop", method="PUT")
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            await client.put(config_url(fleet), json=BLOB)
        assert device.accounts[0]["domainPort"] == ""

    async def test_malformed(self, fleet: Fleet, client: httpx.AsyncClient) -> None:
        """A malformed fault is HTTP 200 whose body is not JSON."""
        fleet.device(1).inject(kind="malformed")
        response = await client.get(config_url(fleet))
        assert response.status_code == 200
        with pytest.raises(json.JSONDecodeError):
            response.json()

    async def test_reject(self, fleet: Fleet, client: httpx.AsyncClient) -> None:
        """A reject fault answers success:false with the chosen code and param, applying nothing."""
        device = fleet.device(1)
        device.inject(kind="reject", code=12, param="domainPort", method="PUT")
        response = await client.put(config_url(fleet), json=BLOB)
        assert response.status_code == 200
        error = response.json()["error"]
        assert (error["code"], error["param"]) == (12, "domainPort")
        assert device.accounts[0]["domainPort"] == ""
        assert (await client.put(config_url(fleet), json=BLOB)).json() == {"success": True}
        assert device.accounts[0]["domainPort"] == "5070"


class TestScheduling:
    async def test_method_filter(self, fleet: Fleet, client: httpx.AsyncClient) -> None:
        """A PUT-only fault lets GETs through and waits for the next PUT."""
        device = fleet.device(1)
        device.inject(kind="status", status=500, method="put")
        assert (await client.get(config_url(fleet))).status_code == 200
        assert [fault.method for fault in device.faults] == ["PUT"]
        assert (await client.put(config_url(fleet), json=BLOB)).status_code == 500
        assert device.faults == []

    async def test_faults_queue_in_order(self, fleet: Fleet, client: httpx.AsyncClient) -> None:
        """Faults are consumed in the order injected, and count down."""
        device = fleet.device(1)
        device.inject(kind="status", status=500, count=2)
        device.inject(kind="status", status=502)
        assert [fault.count for fault in device.faults] == [2, 1]
        statuses = [(await client.get(config_url(fleet))).status_code for _ in range(4)]
        assert statuses == [500, 500, 502, 200]

    async def test_clear_faults(self, fleet: Fleet, client: httpx.AsyncClient) -> None:
        """clear_faults cancels pending faults."""
        device = fleet.device(1)
        device.inject(kind="status", status=500, count=5)
        device.clear_faults()
        assert (await client.get(config_url(fleet))).status_code == 200

    async def test_faults_are_per_device(self, fleet: Fleet, client: httpx.AsyncClient) -> None:
        """A fault on one device does not affect another."""
        fleet.device(1).inject(kind="status", status=500)
        assert (await client.get(config_url(fleet, 2))).status_code == 200
        assert (await client.get(config_url(fleet, 1))).status_code == 500

    async def test_admin_requests_do_not_consume(
        self, fleet: Fleet, client: httpx.AsyncClient
    ) -> None:
        """Admin endpoint requests neither consume faults nor are answered by them."""
        device = fleet.device(1)
        device.inject(kind="status", status=500)
        assert (await client.get(f"{device.url}/_emulator/state")).status_code == 200
        assert (await client.get(f"{device.url}/_emulator/journal")).status_code == 200
        assert (await client.get(config_url(fleet))).status_code == 500

    async def test_faults_come_before_authentication(self, client: httpx.AsyncClient) -> None:
        """An unauthenticated request to a failing Digest device gets the fault, not a 401."""
        async with Fleet(devices=1, auth="digest") as fleet:
            fleet.device(1).inject(kind="status", status=503)
            assert (await client.get(config_url(fleet))).status_code == 503
            assert (await client.get(config_url(fleet))).status_code == 401

    @pytest.mark.parametrize(
        "spec",
        [
            {"kind": "explode"},
            {"kind": "status", "count": 0},
            {"kind": "status", "status": 99},
            {"kind": "delay", "delay": -1},
            {"kind": "reject", "code": "12"},
        ],
    )
    def test_invalid_fault(self, spec: dict[str, object]) -> None:
        """An impossible fault is refused when injected, with the offending key named."""
        with pytest.raises(ValueError, match="fault"):
            Fault.from_json(spec)
