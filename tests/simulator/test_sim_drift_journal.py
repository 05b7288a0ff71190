"""Drift (changing a device behind the client's back) and the request journal."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from syncd.simulator import Fleet


def config_url(fleet: Fleet) -> str:
    return f"{fleet.device(1).url}/api/phone/config"


class TestDrift:
    async def test_set_live_shows_in_get(self, fleet: Fleet, client: httpx.AsyncClient) -> None:
        """set_live changes what the next GET reports, in the firmware's typing."""
        fleet.device(1).set_live(2, displayName="drifted", domainPort=5080, enabled=True)
        accounts = (await client.get(config_url(fleet))).json()["result"]["accounts"]
        assert accounts[1]["displayName"] == "drifted"
        assert accounts[1]["domainPort"] == "5080"
        assert accounts[1]["enabled"] is True
        assert accounts[0]["displayName"] == ""

    async def test_set_live_bypasses_journal_and_faults(
        self, fleet: Fleet, client: httpx.AsyncClient
    ) -> None:
        """Drift is neither journaled nor stopped by a pending fault."""
        device = fleet.device(1)
        device.inject(kind="reject", code=14)
        device.set_live(1, sipNumber="999", password="changed")
        assert device.journal == []
        assert device.accounts[0]["sipNumber"] == "999"
        assert device.passwords[1] == "changed"
        assert len(device.faults) == 1

    def test_set_live_rejects_bad_values_entirely(self, fleet: Fleet) -> None:
        """A bad drift value raises ValueError naming the field and changes nothing."""
        device = fleet.device(1)
        with pytest.raises(ValueError, match="registrarPort"):
            device.set_live(1, displayName="ok", registrarPort="nope")
        assert device.accounts[0]["displayName"] == ""

    def test_factory_reset(self, fleet: Fleet) -> None:
        """factory_reset restores the shipped state and forgets passwords."""
        device = fleet.device(1)
        pristine = device.accounts
        device.set_live(1, enabled=True, password="x")
        device.factory_reset()
        assert device.accounts == pristine
        assert device.passwords == {1: None, 2: None}


class TestJournal:
    async def test_records_get_and_put_forms(self, fleet: Fleet, client: httpx.AsyncClient) -> None:
        """The journal records method, path, query, body format and the blob as received."""
        device = fleet.device(1)
        blob = {"accounts": [{"account": 1, "password": "p4ss", "enabled": True}]}
        before = time.time()
        await client.get(config_url(fleet), params={"account": "2"})
        await client.put(
            config_url(fleet),
            files={"blob-json": ("blob.json", json.dumps(blob), "application/json")},
        )
        await client.put(config_url(fleet), json={"accounts": [{"account": 2, "domain": "d"}]})
        get, multipart_put, json_put = device.journal
        assert before <= get.time <= multipart_put.time <= json_put.time <= time.time()
        assert (get.method, get.path, get.query) == ("GET", "/api/phone/config", {"account": "2"})
        assert (get.body_format, get.blob, get.status, get.code) == ("none", None, 200, None)
        assert multipart_put.multipart
        assert multipart_put.content_type.startswith("multipart/form-data; boundary=")
        assert multipart_put.blob == blob
        assert json_put.body_format == "json"
        assert not json_put.multipart
        assert json_put.content_type == "application/json"
        assert json_put.blob == {"accounts": [{"account": 2, "domain": "d"}]}

    async def test_records_rejections(self, fleet: Fleet, client: httpx.AsyncClient) -> None:
        """A refused request is journaled with its error code and the text it carried."""
        device = fleet.device(1)
        await client.put(config_url(fleet), files={"blob-json": (None, "{broken")})
        (entry,) = device.journal
        assert (entry.status, entry.code, entry.blob, entry.blob_text) == (
            200,
            12,
            None,
            "{broken",
        )

    async def test_clear(self, fleet: Fleet, client: httpx.AsyncClient) -> None:
        """clear_journal forgets earlier requests; later ones are still recorded."""
        device = fleet.device(1)
        await client.get(config_url(fleet))
        device.clear_journal()
        assert device.journal == []
        await client.get(f"{device.url}/api/system/info")
        assert [entry.path for entry in device.journal] == ["/api/system/info"]

    async def test_limit(self, client: httpx.AsyncClient) -> None:
        """Past journal_limit the oldest entries are dropped."""
        async with Fleet(devices=1, journal_limit=3) as fleet:
            for number in range(5):
                await client.get(config_url(fleet), params={"n": str(number)})
            assert [e.query["n"] for e in fleet.device(1).journal] == ["2", "3", "4"]

    async def test_journals_are_per_device(self, fleet: Fleet, client: httpx.AsyncClient) -> None:
        """A request to one device appears in that device's journal only."""
        await client.get(f"{fleet.device(2).url}/api/phone/config")
        assert fleet.device(1).journal == []
        assert len(fleet.device(2).journal) == 1
