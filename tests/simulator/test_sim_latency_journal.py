"""Latency of every device-API answer, and the journal's User-Agent and request windows."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from syncd.simulator import Fleet, JournalEntry

CONFIG = "/api/phone/config"
LATENCY = 0.3


def overlap(a: JournalEntry, b: JournalEntry) -> bool:
    return a.started < b.finished and b.started < a.finished


class TestLatency:
    async def test_every_device_answer_is_delayed(self, client: httpx.AsyncClient) -> None:
        """With latency, each device-API answer takes at least that long; admin endpoints do not wait."""
        async with Fleet(devices=1, latency=LATENCY) as fleet:
            device = fleet.device(1)
            for path in (
                CONFIG,
                "/api/phone/status",
                "/api/call/status",
                "/api/system/info",
                "/api/nope",
            ):
                started = time.monotonic()
                await client.get(device.url + path)
                assert time.monotonic() - started >= LATENCY, path
            admin_times = []
            for _ in range(3):
                started = time.monotonic()
                await client.get(f"{device.url}/_emulator/state")
                admin_times.append(time.monotonic() - started)
            assert min(admin_times) < LATENCY

    async def test_latency_is_per_device_and_adjustable(self, client: httpx.AsyncClient) -> None:
        """A device's latency attribute may be changed while it runs, for that device only."""
        async with Fleet(devices=2) as fleet:
            fleet.device(2).latency = LATENCY
            started = time.monotonic()
            await client.get(fleet.device(2).url + CONFIG)
            assert time.monotonic() - started >= LATENCY
            times = []
            for _ in range(3):
                started = time.monotonic()
                await client.get(fleet.device(1).url + CONFIG)
                times.append(time.monotonic() - started)
            assert min(times) < LATENCY

    async def test_admin_latency_sets_one_device_or_the_process(
        self, client: httpx.AsyncClient
    ) -> None:
        """PUT /_emulator/latency sets one device's delay, or with scope process every
        device's; GET reads it; a nonsense body is a 400 that changes nothing."""
        async with Fleet(devices=3) as fleet:
            one, two, three = fleet.devices
            answer = await client.put(f"{two.url}/_emulator/latency", json={"seconds": LATENCY})
            assert answer.json() == {"seconds": LATENCY, "devices": 1}
            assert [d.latency for d in fleet.devices] == [0.0, LATENCY, 0.0]
            started = time.monotonic()
            await client.get(two.url + CONFIG)
            assert time.monotonic() - started >= LATENCY
            body = {"seconds": 0.1, "scope": "process"}
            answer = await client.put(f"{one.url}/_emulator/latency", json=body)
            assert answer.json() == {"seconds": 0.1, "devices": 3}
            assert [d.latency for d in fleet.devices] == [0.1] * 3
            got = await client.get(f"{three.url}/_emulator/latency")
            assert got.json() == {"seconds": 0.1}
            for bad in (
                {"seconds": -1},
                {"seconds": True},
                {"seconds": "1"},
                {},
                [1],
                {"seconds": 1, "scope": "fleet"},
                {"seconds": 1, "extra": 1},
            ):
                answer = await client.put(f"{one.url}/_emulator/latency", json=bad)
                assert answer.status_code == 400 and "seconds" in answer.json()["error"], bad
            assert [d.latency for d in fleet.devices] == [0.1] * 3

    async def test_latency_makes_a_short_timeout_fail(self) -> None:
        """A client timeout below the latency times out."""
        async with (
            Fleet(devices=1, latency=LATENCY) as fleet,
            httpx.AsyncClient(timeout=0.05) as http,
        ):
            try:
                await http.get(fleet.device(1).url + CONFIG)
            except httpx.ReadTimeout:
                return
        raise AssertionError("the request did not time out")

    def test_negative_latency_refused(self) -> None:
        """A negative latency or register delay is a ValueError."""
        with pytest.raises(ValueError, match="latency"):
            Fleet(latency=-1)
        with pytest.raises(ValueError, match="register_delay"):
            Fleet(register_delay=-0.5)


class TestJournalFields:
    async def test_user_agent(self, fleet: Fleet) -> None:
        """Each entry records the request's User-Agent ("" when none was sent)."""
        device = fleet.device(1)
        async with httpx.AsyncClient(headers={"User-Agent": "syncd/1.2.3 (node-a)"}) as http:
            await http.get(device.url + CONFIG)
        async with httpx.AsyncClient(headers={"User-Agent": ""}) as http:
            await http.get(device.url + "/api/phone/status")
        first, second = device.journal
        assert first.user_agent == "syncd/1.2.3 (node-a)"
        assert second.user_agent == ""
        listed = (await http_get_journal(device.url))[0]
        assert listed["user_agent"] == "syncd/1.2.3 (node-a)"
        assert {"started", "finished"} <= listed.keys()

    async def test_window_spans_the_answer(self, client: httpx.AsyncClient) -> None:
        """started is when the request arrived, finished after the latency, both wall-clock seconds."""
        async with Fleet(devices=1, latency=LATENCY) as fleet:
            before = time.time()
            await client.get(fleet.device(1).url + CONFIG)
            after = time.time()
            (entry,) = fleet.device(1).journal
        assert before <= entry.started == entry.time <= entry.finished <= after
        assert entry.finished - entry.started >= LATENCY

    async def test_windows_tell_concurrent_puts_from_serial_ones(self) -> None:
        """Two clients' PUTs sent at once have overlapping windows; sent one after the other they do not."""
        async with Fleet(devices=1, latency=LATENCY) as fleet:
            url = fleet.device(1).url + CONFIG
            blob = {"accounts": [{"account": 1, "displayName": "x"}]}
            async with (
                httpx.AsyncClient(headers={"User-Agent": "a"}) as a,
                httpx.AsyncClient(headers={"User-Agent": "b"}) as b,
            ):
                await asyncio.gather(a.put(url, json=blob), b.put(url, json=blob))
                concurrent = fleet.device(1).journal
                fleet.device(1).clear_journal()
                await a.put(url, json=blob)
                await b.put(url, json=blob)
                serial = fleet.device(1).journal
        assert {e.user_agent for e in concurrent} == {"a", "b"}
        assert overlap(*concurrent)
        assert not overlap(*serial)


async def http_get_journal(url: str) -> list[dict[str, object]]:
    async with httpx.AsyncClient() as http:
        entries: list[dict[str, object]] = (await http.get(f"{url}/_emulator/journal")).json()
    return entries
