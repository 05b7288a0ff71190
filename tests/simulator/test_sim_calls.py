"""GET /api/call/status and the admin controls that start and end calls."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from syncd.simulator import Fleet


async def sessions(client: httpx.AsyncClient, url: str) -> list[dict[str, Any]]:
    body = (await client.get(f"{url}/api/call/status")).json()
    assert body["success"] is True
    result: list[dict[str, Any]] = body["result"]["sessions"]
    return result


class TestCallStatus:
    async def test_idle(self, fleet: Fleet, client: httpx.AsyncClient) -> None:
        """An idle device answers an empty sessions list."""
        response = await client.get(f"{fleet.device(1).url}/api/call/status")
        assert response.json() == {"success": True, "result": {"sessions": []}}

    async def test_python_api(self, fleet: Fleet, client: httpx.AsyncClient) -> None:
        """start_call adds numbered sessions, end_calls removes them all; other devices stay idle."""
        device = fleet.device(1)
        first = device.start_call()
        second = device.start_call(direction="outgoing", state="ringing")
        assert first == {"session": 1, "direction": "incoming", "state": "connected"}
        assert await sessions(client, device.url) == [first, second]
        assert await sessions(client, fleet.device(2).url) == []
        assert device.end_calls() == 2
        assert await sessions(client, device.url) == []
        assert device.start_call()["session"] == 3

    async def test_admin_endpoints(self, fleet: Fleet, client: httpx.AsyncClient) -> None:
        """POST /_emulator/call starts a call (body optional), DELETE ends all; neither is journaled."""
        device = fleet.device(1)
        url = f"{device.url}/_emulator/call"
        started = await client.post(url)
        assert started.status_code == 201
        assert started.json() == {"session": 1, "direction": "incoming", "state": "connected"}
        other = await client.post(url, json={"direction": "outgoing", "state": "connecting"})
        assert other.json()["direction"] == "outgoing"
        assert (await client.get(url)).json() == [started.json(), other.json()]
        assert len(await sessions(client, device.url)) == 2
        assert (await client.delete(url)).status_code == 200
        assert await sessions(client, device.url) == []
        assert {entry.path for entry in device.journal} == {"/api/call/status"}

    @pytest.mark.parametrize(
        "body", [{"direction": "sideways"}, {"state": "on hold"}, {"session": 9}, [1]]
    )
    async def test_admin_refuses_nonsense(
        self, fleet: Fleet, client: httpx.AsyncClient, body: Any
    ) -> None:
        """An unknown direction, state or key is HTTP 400 and starts no call."""
        response = await client.post(f"{fleet.device(1).url}/_emulator/call", json=body)
        assert response.status_code == 400
        assert response.json()["error"]
        assert fleet.device(1).calls == []

    async def test_wrong_method(self, fleet: Fleet, client: httpx.AsyncClient) -> None:
        """PUT to /api/call/status is code 3."""
        response = await client.put(f"{fleet.device(1).url}/api/call/status")
        assert response.json()["error"]["code"] == 3

    async def test_needs_credentials(self, client: httpx.AsyncClient) -> None:
        """Call status needs the same credentials as GET config; monitoring is enough."""
        async with Fleet(
            devices=1, auth="digest", monitor_username="viewer", monitor_password="look"
        ) as fleet:
            url = f"{fleet.device(1).url}/api/call/status"
            assert (await client.get(url)).status_code == 401
            response = await client.get(url, auth=httpx.DigestAuth("viewer", "look"))
            assert response.json() == {"success": True, "result": {"sessions": []}}

    async def test_faults_apply(self, fleet: Fleet, client: httpx.AsyncClient) -> None:
        """Call status consumes faults and is journaled like the other device-API paths."""
        device = fleet.device(1)
        device.inject(kind="reject", code=1)
        response = await client.get(f"{device.url}/api/call/status")
        assert response.json()["error"]["code"] == 1
        (entry,) = device.journal
        assert (entry.path, entry.code, entry.fault) == ("/api/call/status", 1, "reject")
