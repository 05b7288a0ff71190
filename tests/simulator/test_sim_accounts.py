"""Devices with four accounts (newer firmware) and the accounts a PUT may name."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from syncd.simulator import Fleet


async def config(client: httpx.AsyncClient, url: str, **params: str) -> dict[str, Any]:
    body: dict[str, Any] = (await client.get(f"{url}/api/phone/config", params=params)).json()
    return body


async def put(client: httpx.AsyncClient, url: str, *accounts: dict[str, Any]) -> dict[str, Any]:
    response = await client.put(f"{url}/api/phone/config", json={"accounts": list(accounts)})
    body: dict[str, Any] = response.json()
    return body


class TestFourAccounts:
    async def test_integer_firmware_reports_types(self, client: httpx.AsyncClient) -> None:
        """Integer firmware with four accounts reports accounts 1-3 general and 4 local."""
        async with Fleet(devices=1, accounts=4, firmware="integer") as fleet:
            body = await config(client, fleet.device(1).url)
        accounts = body["result"]["accounts"]
        assert [(a["account"], a["accountType"]) for a in accounts] == [
            (1, "general"),
            (2, "general"),
            (3, "general"),
            (4, "local"),
        ]

    async def test_string_firmware_has_no_account_type(self, client: httpx.AsyncClient) -> None:
        """String firmware with four accounts lists four accounts and no accountType."""
        async with Fleet(devices=1, accounts=4) as fleet:
            body = await config(client, fleet.device(1).url)
            (fourth,) = (await config(client, fleet.device(1).url, account="4"))["result"][
                "accounts"
            ]
        assert [a["account"] for a in body["result"]["accounts"]] == [1, 2, 3, 4]
        assert all("accountType" not in a for a in body["result"]["accounts"])
        assert fourth["account"] == 4

    async def test_put_to_accounts_three_and_four(self, client: httpx.AsyncClient) -> None:
        """A four-account device takes PUTs to accounts 3 and 4."""
        async with Fleet(devices=1, accounts=4) as fleet:
            device = fleet.device(1)
            body = await put(
                client,
                device.url,
                {"account": 3, "displayName": "Three"},
                {"account": 4, "sipNumber": "44", "password": "pw"},
            )
            assert body == {"success": True}
            assert device.accounts[2]["displayName"] == "Three"
            assert device.accounts[3]["sipNumber"] == "44"
            assert device.passwords == {1: None, 2: None, 3: None, 4: "pw"}

    @pytest.mark.parametrize("firmware", ["string", "integer"])
    async def test_account_type_cannot_be_written(
        self, client: httpx.AsyncClient, firmware: str
    ) -> None:
        """A PUT setting accountType is code 12 naming accountType, and applies nothing."""
        async with Fleet(devices=1, accounts=4, firmware=firmware) as fleet:  # type: ignore[arg-type]
            device = fleet.device(1)
            body = await put(
                client,
                device.url,
                {"account": 3, "displayName": "x"},
                {"account": 4, "accountType": "general"},
            )
            assert body["error"]["code"] == 12
            assert body["error"]["param"] == "accountType"
            assert device.accounts[2]["displayName"] == ""


class TestAccountsADeviceLacks:
    @pytest.mark.parametrize("number", [3, 4, 5, 0])
    async def test_two_account_device(
        self, fleet: Fleet, client: httpx.AsyncClient, number: int
    ) -> None:
        """A PUT naming an account a two-account device lacks is code 12 param account, nothing applied."""
        device = fleet.device(1)
        body = await put(
            client,
            device.url,
            {"account": 1, "displayName": "x"},
            {"account": number, "enabled": True},
        )
        assert body["error"]["code"] == 12
        assert body["error"]["param"] == "account"
        assert device.accounts[0]["displayName"] == ""

    async def test_four_account_device_lacks_five(self, client: httpx.AsyncClient) -> None:
        """Account 5 is refused by a four-account device too, also with ?account=5."""
        async with Fleet(devices=1, accounts=4) as fleet:
            url = fleet.device(1).url
            body = await put(client, url, {"account": 5, "enabled": True})
            assert (body["error"]["code"], body["error"]["param"]) == (12, "account")
            body = await config(client, url, account="5")
            assert (body["error"]["code"], body["error"]["param"]) == (12, "account")

    async def test_get_account_three_on_two_account_device(
        self, fleet: Fleet, client: httpx.AsyncClient
    ) -> None:
        """GET ?account=3 on a two-account device is code 12."""
        body = await config(client, fleet.device(1).url, account="3")
        assert body["error"]["code"] == 12

    async def test_drift_and_set_live_follow_the_same_rule(
        self, fleet: Fleet, client: httpx.AsyncClient
    ) -> None:
        """The admin drift endpoint and set_live refuse account 3 on a two-account device."""
        device = fleet.device(1)
        response = await client.post(
            f"{device.url}/_emulator/state", json={"accounts": [{"account": 3, "enabled": True}]}
        )
        assert response.status_code == 400
        with pytest.raises(ValueError, match="account"):
            device.set_live(3, enabled=True)

    def test_bad_account_count(self) -> None:
        """A fleet of three-account devices is refused."""
        with pytest.raises(ValueError, match="2 or 4"):
            Fleet(accounts=3)
