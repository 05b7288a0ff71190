"""GET /api/phone/status and the emulated PBX: when accounts register, and anew after changes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from syncd.simulator import EmulatedDevice, Fleet

DELAY = 0.2
SIP = {
    "enabled": True,
    "sipNumber": "4001",
    "domain": "pbx.example.com",
    "registrationEnabled": True,
    "password": "sip-secret",
}


@pytest.fixture
async def pbx_fleet() -> AsyncIterator[Fleet]:
    """One integer-firmware device with four accounts and a quick PBX."""
    async with Fleet(
        devices=1, accounts=4, firmware="integer", register_delay=DELAY, pbx=["PBX.example.com"]
    ) as fleet:
        yield fleet


async def phone_status(
    client: httpx.AsyncClient, device: EmulatedDevice, account: int | None = None
) -> list[dict[str, Any]]:
    params = {} if account is None else {"account": str(account)}
    response = await client.get(f"{device.url}/api/phone/status", params=params)
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    accounts: list[dict[str, Any]] = body["result"]["accounts"]
    return accounts


async def put(client: httpx.AsyncClient, device: EmulatedDevice, **fields: Any) -> None:
    blob = {"accounts": [{"account": 1, **fields}]}
    response = await client.put(f"{device.url}/api/phone/config", json=blob)
    assert response.json() == {"success": True}


async def wait_registered(
    client: httpx.AsyncClient, device: EmulatedDevice, account: int = 1
) -> dict[str, Any]:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        (status,) = await phone_status(client, device, account)
        if status["registered"]:
            return status
        await asyncio.sleep(0.05)
    raise AssertionError(f"account {account} did not register")


class TestStatusAnswer:
    async def test_factory_device(self, pbx_fleet: Fleet, client: httpx.AsyncClient) -> None:
        """A factory device lists every account unregistered, and the local account without `registered`."""
        accounts = await phone_status(client, pbx_fleet.device(1))
        assert accounts == [
            {
                "account": n,
                "accountType": "general",
                "enabled": False,
                "sipNumber": "",
                "registrationEnabled": False,
                "registered": False,
            }
            for n in (1, 2, 3)
        ] + [
            {
                "account": 4,
                "accountType": "local",
                "enabled": False,
                "sipNumber": "",
                "registrationEnabled": False,
            }
        ]

    async def test_one_account(self, pbx_fleet: Fleet, client: httpx.AsyncClient) -> None:
        """?account=N answers with that account only."""
        (status,) = await phone_status(client, pbx_fleet.device(1), 3)
        assert status["account"] == 3

    @pytest.mark.parametrize("account", ["0", "5", "x"])
    async def test_unknown_account(
        self, pbx_fleet: Fleet, client: httpx.AsyncClient, account: str
    ) -> None:
        """?account= naming no account of the device is code 12."""
        response = await client.get(
            f"{pbx_fleet.device(1).url}/api/phone/status", params={"account": account}
        )
        assert response.json()["error"]["code"] == 12
        assert response.json()["error"]["param"] == "account"

    async def test_two_account_device_has_no_account_3(
        self, fleet: Fleet, client: httpx.AsyncClient
    ) -> None:
        """A two-account device lists two accounts and refuses ?account=3."""
        device = fleet.device(1)
        assert [s["account"] for s in await phone_status(client, device)] == [1, 2]
        response = await client.get(f"{device.url}/api/phone/status?account=3")
        assert response.json()["error"]["code"] == 12

    async def test_wrong_method(self, pbx_fleet: Fleet, client: httpx.AsyncClient) -> None:
        """PUT to /api/phone/status is code 3."""
        response = await client.put(f"{pbx_fleet.device(1).url}/api/phone/status")
        assert response.json()["error"]["code"] == 3

    async def test_needs_monitoring_privilege(self, client: httpx.AsyncClient) -> None:
        """Status needs credentials like GET config; a monitoring-only user may read it."""
        async with Fleet(
            devices=1, auth="basic", monitor_username="viewer", monitor_password="look"
        ) as fleet:
            url = f"{fleet.device(1).url}/api/phone/status"
            assert (await client.get(url)).status_code == 401
            response = await client.get(url, auth=("viewer", "look"))
            assert response.json()["success"] is True


class TestRegistering:
    async def test_registers_after_the_delay(
        self, pbx_fleet: Fleet, client: httpx.AsyncClient
    ) -> None:
        """An eligible account is unregistered at first and registered after the delay, with a Unix-seconds registerTime."""
        device = pbx_fleet.device(1)
        before = time.time()
        await put(client, device, **SIP)
        (status,) = await phone_status(client, device, 1)
        assert status["registered"] is False
        assert "registerTime" not in status
        status = await wait_registered(client, device)
        assert int(before) <= status["registerTime"] <= time.time() + 1
        assert device.registered(1)

    async def test_zero_delay_registers_at_once(self, client: httpx.AsyncClient) -> None:
        """With register_delay 0 the account is registered in the very next status."""
        async with Fleet(devices=1, register_delay=0) as fleet:
            await put(client, fleet.device(1), **SIP)
            (status,) = await phone_status(client, fleet.device(1), 1)
            assert status["registered"] is True

    @pytest.mark.parametrize(
        "change",
        [
            {"enabled": False},
            {"registrationEnabled": False},
            {"domain": "elsewhere.example"},
            {"registrarAddress": "elsewhere.example"},
        ],
    )
    async def test_ineligible_settings_never_register(
        self, pbx_fleet: Fleet, client: httpx.AsyncClient, change: dict[str, Any]
    ) -> None:
        """Disabled, registration off, or a registrar that is not the PBX: never registered."""
        device = pbx_fleet.device(1)
        await put(client, device, **{**SIP, **change})
        await asyncio.sleep(DELAY * 2)
        (status,) = await phone_status(client, device, 1)
        assert status["registered"] is False

    async def test_no_password_never_registers(self, client: httpx.AsyncClient) -> None:
        """An account without a password does not register."""
        async with Fleet(devices=1, register_delay=0) as fleet:
            await put(client, fleet.device(1), **{k: v for k, v in SIP.items() if k != "password"})
            (status,) = await phone_status(client, fleet.device(1), 1)
            assert status["registered"] is False

    async def test_registrar_address_wins_over_domain(self, client: httpx.AsyncClient) -> None:
        """registrarAddress, when set, is the registrar; the PBX name matches case-insensitively."""
        async with Fleet(devices=1, register_delay=0, pbx=["a.example", "b.example"]) as fleet:
            device = fleet.device(1)
            await put(
                client, device, **{**SIP, "domain": "x.example", "registrarAddress": "B.Example"}
            )
            assert device.registered(1)

    async def test_local_account_never_registers(
        self, pbx_fleet: Fleet, client: httpx.AsyncClient
    ) -> None:
        """Account 4 (local) accepts SIP settings but reports no registration."""
        device = pbx_fleet.device(1)
        response = await client.put(
            f"{device.url}/api/phone/config", json={"accounts": [{"account": 4, **SIP}]}
        )
        assert response.json() == {"success": True}
        await asyncio.sleep(DELAY * 2)
        (status,) = await phone_status(client, device, 4)
        assert "registered" not in status
        assert "registerTime" not in status


class TestRegisteringAnew:
    @pytest.mark.parametrize(
        "change",
        [
            {"sipNumber": "4002"},
            {"authId": "auth"},
            {"password": "sip-secret"},
            {"domainPort": 5070},
            {"proxyAddress": "pbx.example.com"},
            {"registrarPort": "5062"},
        ],
    )
    async def test_sip_change_reregisters_with_a_later_time(
        self, client: httpx.AsyncClient, change: dict[str, Any]
    ) -> None:
        """A SIP setting change (even in the same second) unregisters at once, then registers with a strictly greater registerTime."""
        async with Fleet(devices=1, register_delay=0.1) as fleet:
            device = fleet.device(1)
            await put(client, device, **SIP)
            first = (await wait_registered(client, device))["registerTime"]
            await put(client, device, **change)
            (status,) = await phone_status(client, device, 1)
            assert status["registered"] is False
            second = (await wait_registered(client, device))["registerTime"]
            assert second > first

    async def test_unchanged_value_keeps_the_registration(self, client: httpx.AsyncClient) -> None:
        """Writing a SIP field with its current value is no change (a password write always is)."""
        async with Fleet(devices=1, register_delay=0) as fleet:
            device = fleet.device(1)
            await put(client, device, **SIP)
            (before,) = device.status(1)
            await put(client, device, sipNumber="4001", enabled=True)
            assert device.status(1) == [before]

    async def test_display_name_and_answer_mode_keep_it(
        self, pbx_fleet: Fleet, client: httpx.AsyncClient
    ) -> None:
        """Changing only displayName and answerMode keeps the registration and its time."""
        device = pbx_fleet.device(1)
        await put(client, device, **SIP)
        before = await wait_registered(client, device)
        await put(client, device, displayName="Lobby", answerMode=2)
        (after,) = await phone_status(client, device, 1)
        assert after == before

    async def test_rapid_changes_keep_increasing(self, client: httpx.AsyncClient) -> None:
        """Many re-registrations within one second still get strictly increasing times."""
        async with Fleet(devices=1, register_delay=0) as fleet:
            device = fleet.device(1)
            times = []
            for n in range(5):
                await put(client, device, **{**SIP, "sipNumber": f"40{n:02d}"})
                (status,) = await phone_status(client, device, 1)
                times.append(status["registerTime"])
            assert times == sorted(set(times))

    async def test_admin_drift_reregisters(
        self, pbx_fleet: Fleet, client: httpx.AsyncClient
    ) -> None:
        """A SIP change through the admin drift endpoint unregisters the account too."""
        device = pbx_fleet.device(1)
        await put(client, device, **SIP)
        first = (await wait_registered(client, device))["registerTime"]
        response = await client.post(
            f"{device.url}/_emulator/state",
            json={"accounts": [{"account": 1, "registrarAddress": "pbx.example.com"}]},
        )
        assert response.status_code == 200
        assert device.registered(1) is False
        assert (await wait_registered(client, device))["registerTime"] > first

    async def test_drift_to_a_wrong_registrar_stays_unregistered(
        self, pbx_fleet: Fleet, client: httpx.AsyncClient
    ) -> None:
        """set_live to a registrar that is not the PBX unregisters the account for good."""
        device = pbx_fleet.device(1)
        await put(client, device, **SIP)
        await wait_registered(client, device)
        device.set_live(1, domain="evil.example")
        await asyncio.sleep(DELAY * 2)
        assert device.registered(1) is False

    async def test_factory_reset_unregisters(self, client: httpx.AsyncClient) -> None:
        """A factory reset unregisters; configuring again registers with a greater time."""
        async with Fleet(devices=1, register_delay=0) as fleet:
            device = fleet.device(1)
            await put(client, device, **SIP)
            (first,) = device.status(1)
            assert (await client.delete(f"{device.url}/_emulator/state")).status_code == 200
            assert device.registered(1) is False
            await put(client, device, **SIP)
            (second,) = device.status(1)
            assert second["registerTime"] > first["registerTime"]


class TestFailingRegistration:
    async def test_python_api(self, pbx_fleet: Fleet, client: httpx.AsyncClient) -> None:
        """fail_registration unregisters an account; lifting it registers anew with a later time."""
        device = pbx_fleet.device(1)
        await put(client, device, **SIP)
        first = (await wait_registered(client, device))["registerTime"]
        device.fail_registration(1)
        await asyncio.sleep(DELAY * 2)
        assert device.registered(1) is False
        await put(client, device, sipNumber="4009")
        await asyncio.sleep(DELAY * 2)
        assert device.registered(1) is False
        device.fail_registration(1, fail=False)
        assert device.registered(1) is False
        assert (await wait_registered(client, device))["registerTime"] > first

    async def test_failure_on_an_unconfigured_account(self, client: httpx.AsyncClient) -> None:
        """A failing account configured later stays unregistered until the failure is lifted."""
        async with Fleet(devices=1, register_delay=0) as fleet:
            device = fleet.device(1)
            device.fail_registration(1)
            await put(client, device, **SIP)
            assert device.registered(1) is False
            device.fail_registration(1, fail=False)
            assert device.registered(1) is True

    async def test_admin_endpoint(self, pbx_fleet: Fleet, client: httpx.AsyncClient) -> None:
        """POST /_emulator/registration fails and restores an account, answering its status."""
        device = pbx_fleet.device(1)
        await put(client, device, **SIP)
        await wait_registered(client, device)
        url = f"{device.url}/_emulator/registration"
        failed = await client.post(url, json={"account": 1, "fail": True})
        assert failed.status_code == 200
        assert failed.json()["registered"] is False
        restored = await client.post(url, json={"account": 1, "fail": False})
        assert restored.json()["registered"] is False
        await wait_registered(client, device)
        assert [e.path for e in device.journal if e.path.startswith("/_emulator")] == []

    @pytest.mark.parametrize(
        "body", [{"account": 5, "fail": True}, {"account": 1, "fail": "yes"}, {"fail": True}, []]
    )
    async def test_admin_endpoint_refuses_nonsense(
        self, pbx_fleet: Fleet, client: httpx.AsyncClient, body: Any
    ) -> None:
        """A bad registration request is HTTP 400 with an error message."""
        response = await client.post(f"{pbx_fleet.device(1).url}/_emulator/registration", json=body)
        assert response.status_code == 400
        assert response.json()["error"]

    async def test_python_api_refuses_unknown_account(self, fleet: Fleet) -> None:
        """fail_registration on an account the device lacks is a ValueError."""
        with pytest.raises(ValueError, match="no account 3"):
            fleet.device(1).fail_registration(3)

    async def test_state_shows_status(self, pbx_fleet: Fleet, client: httpx.AsyncClient) -> None:
        """GET /_emulator/state includes the phone status and calls."""
        state = (await client.get(f"{pbx_fleet.device(1).url}/_emulator/state")).json()
        assert [s["account"] for s in state["status"]] == [1, 2, 3, 4]
        assert state["calls"] == []
