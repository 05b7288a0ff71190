"""Faults limited to one path, faults that last until cleared, and connections that hang."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest

from syncd.simulator import Fault, Fleet, run_fleet_in_thread

STATUS = "/api/phone/status"
CONFIG = "/api/phone/config"


class TestPathFilter:
    async def test_only_phone_status_fails(self, fleet: Fleet, client: httpx.AsyncClient) -> None:
        """A fault for /api/phone/status leaves config alone and is consumed by status only."""
        device = fleet.device(1)
        device.inject(kind="reject", code=10, path=STATUS)
        assert (await client.get(device.url + CONFIG)).json()["success"] is True
        assert (await client.get(device.url + "/api/call/status")).json()["success"] is True
        assert len(device.faults) == 1
        body = (await client.get(device.url + STATUS)).json()
        assert body["error"]["code"] == 10
        assert device.faults == []
        assert (await client.get(device.url + STATUS)).json()["success"] is True

    async def test_path_and_method_together(self, fleet: Fleet, client: httpx.AsyncClient) -> None:
        """Path and method filters combine: only a PUT to config matches."""
        device = fleet.device(1)
        device.inject(kind="status", status=500, path=CONFIG, method="PUT")
        assert (await client.get(device.url + CONFIG)).status_code == 200
        put = await client.put(
            device.url + CONFIG, json={"accounts": [{"account": 1, "enabled": True}]}
        )
        assert put.status_code == 500

    async def test_admin_endpoint_takes_path(self, fleet: Fleet, client: httpx.AsyncClient) -> None:
        """POST /_emulator/faults accepts path and null count, and lists them back."""
        device = fleet.device(1)
        created = await client.post(
            f"{device.url}/_emulator/faults",
            json={"kind": "reject", "code": 1, "path": STATUS, "count": None},
        )
        assert created.status_code == 201
        assert created.json()["path"] == STATUS
        assert created.json()["count"] is None
        for _ in range(3):
            assert (await client.get(device.url + STATUS)).json()["error"]["code"] == 1
        assert (await client.get(f"{device.url}/_emulator/faults")).json()[0]["count"] is None

    @pytest.mark.parametrize("path", ["api/phone/status", 5, ""])
    def test_bad_path(self, path: object) -> None:
        """A path that does not start with / is refused."""
        with pytest.raises(ValueError, match="fault path"):
            Fault.from_json({"kind": "drop", "path": path})

    @pytest.mark.parametrize("method", ["PTU", "", 5])
    def test_bad_method(self, method: object) -> None:
        """A method no client sends (a typo would never fire) is refused; any case is taken."""
        with pytest.raises(ValueError, match="fault method must be one of GET, "):
            Fault.from_json({"kind": "drop", "method": method})
        assert Fault.from_json({"kind": "drop", "method": "put"}).method == "PUT"


class TestUntilCleared:
    async def test_unlimited_count(self, fleet: Fleet, client: httpx.AsyncClient) -> None:
        """count=None fails every matching request until the faults are cleared."""
        device = fleet.device(1)
        device.inject(kind="status", status=503, count=None)
        for _ in range(5):
            assert (await client.get(device.url + CONFIG)).status_code == 503
        assert [fault.count for fault in device.faults] == [None]
        device.clear_faults()
        assert (await client.get(device.url + CONFIG)).status_code == 200

    async def test_unlimited_fault_blocks_later_ones(
        self, fleet: Fleet, client: httpx.AsyncClient
    ) -> None:
        """Faults stay first-matching-first: one queued behind an unlimited fault never fires."""
        device = fleet.device(1)
        device.inject(kind="status", status=503, count=None, path=STATUS)
        device.inject(kind="status", status=500)
        assert (await client.get(device.url + STATUS)).status_code == 503
        assert (await client.get(device.url + CONFIG)).status_code == 500


class TestHang:
    async def test_hangs_until_cleared(self, fleet: Fleet) -> None:
        """A hang fault holds the request unanswered until clear_faults, then closes it unanswered."""
        device = fleet.device(1)
        device.inject(kind="hang", count=None)
        async with httpx.AsyncClient(timeout=10) as http:
            pending = asyncio.create_task(http.get(device.url + CONFIG))
            await asyncio.sleep(0.3)
            assert not pending.done()
            device.clear_faults()
            with pytest.raises(httpx.TransportError):
                await asyncio.wait_for(pending, 5)
            assert (await http.get(device.url + CONFIG)).status_code == 200
        hung, served = device.journal
        assert (hung.fault, hung.status, served.status) == ("hang", None, 200)

    async def test_client_times_out(self, fleet: Fleet) -> None:
        """A client with a timeout gives up on a hanging device, whose other paths may still work."""
        device = fleet.device(1)
        device.inject(kind="hang", count=None, path=STATUS)
        async with httpx.AsyncClient(timeout=0.2) as http:
            with pytest.raises(httpx.ReadTimeout):
                await http.get(device.url + STATUS)
            assert (await http.get(device.url + CONFIG)).status_code == 200

    def test_fleet_stops_promptly_with_a_hanging_request(self) -> None:
        """Closing a fleet releases hanging requests, so it stops without waiting for them."""
        with run_fleet_in_thread(devices=1) as fleet:
            device = fleet.device(1)
            device.inject(kind="hang", count=None)
            client = httpx.Client(timeout=10)
            result: list[BaseException] = []

            def call() -> None:
                try:
                    client.get(device.url + CONFIG)
                except httpx.TransportError as exc:
                    result.append(exc)

            thread = threading.Thread(target=call)
            thread.start()
            time.sleep(0.3)
            stopping = time.monotonic()
        elapsed = time.monotonic() - stopping
        thread.join(5)
        client.close()
        assert result and isinstance(result[0], httpx.TransportError)
        assert elapsed < 0.9, f"closing took {elapsed:.2f} s"
