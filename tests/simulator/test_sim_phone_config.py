"""The emulated /api/phone/config and /api/system/info, over real HTTP."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from syncd.simulator import EmulatedDevice, Fleet

FACTORY_ACCOUNT: dict[str, Any] = {
    "enabled": False,
    "displayName": "",
    "sipNumber": "",
    "domain": "",
    "domainPort": "",
    "authId": "",
    "proxyAddress": "",
    "proxyPort": "",
    "registrationEnabled": False,
    "registrarAddress": "",
    "registrarPort": "",
    "answerMode": "1",
}


def multipart(document: object) -> dict[str, Any]:
    """httpx keyword arguments sending ``document`` as the ``blob-json`` multipart part."""
    return {"files": {"blob-json": ("blob.json", json.dumps(document), "application/json")}}


def config_url(device: EmulatedDevice) -> str:
    return f"{device.url}/api/phone/config"


async def put(client: httpx.AsyncClient, device: EmulatedDevice, document: object) -> Any:
    response = await client.put(config_url(device), **multipart(document))
    assert response.status_code == 200
    return response.json()


async def get_accounts(client: httpx.AsyncClient, device: EmulatedDevice) -> Any:
    response = await client.get(config_url(device))
    assert response.status_code == 200
    return response.json()["result"]["accounts"]


class TestGet:
    async def test_factory_state_is_the_manual_example(
        self, fleet: Fleet, client: httpx.AsyncClient
    ) -> None:
        """A fresh string-firmware device answers GET exactly like the manual's example."""
        response = await client.get(config_url(fleet.devices[0]))
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("application/json")
        assert response.json() == {
            "success": True,
            "result": {
                "accounts": [
                    {"account": 1, **FACTORY_ACCOUNT},
                    {"account": 2, **FACTORY_ACCOUNT},
                ]
            },
        }

    async def test_integer_firmware_reports_integers_and_an_extra_field(
        self, client: httpx.AsyncClient
    ) -> None:
        """Integer firmware reports ports as 0, answerMode as 1, and adds accountType."""
        async with Fleet(devices=1, firmware="integer") as fleet:
            accounts = await get_accounts(client, fleet.devices[0])
        expected = {**FACTORY_ACCOUNT, "domainPort": 0, "proxyPort": 0, "registrarPort": 0}
        expected.update(answerMode=1, accountType="general")
        assert accounts == [{"account": 1, **expected}, {"account": 2, **expected}]

    @pytest.mark.parametrize("number", [1, 2])
    async def test_one_account(self, fleet: Fleet, client: httpx.AsyncClient, number: int) -> None:
        """?account=N answers with that account only."""
        response = await client.get(config_url(fleet.devices[0]), params={"account": number})
        assert response.json() == {
            "success": True,
            "result": {"accounts": [{"account": number, **FACTORY_ACCOUNT}]},
        }

    @pytest.mark.parametrize("value", ["0", "3", "x", ""])
    async def test_bad_account_parameter(
        self, fleet: Fleet, client: httpx.AsyncClient, value: str
    ) -> None:
        """?account= other than 1 or 2 is code 12 naming the account parameter."""
        response = await client.get(config_url(fleet.devices[0]), params={"account": value})
        assert response.status_code == 200
        body = response.json()
        assert body["success"] is False
        assert body["error"]["code"] == 12
        assert body["error"]["param"] == "account"
        assert body["error"]["description"]

    async def test_password_is_never_returned(
        self, fleet: Fleet, client: httpx.AsyncClient
    ) -> None:
        """After a password was set, neither GET form mentions it."""
        device = fleet.devices[0]
        await put(client, device, {"accounts": [{"account": 1, "password": "s3cr3t-pw"}]})
        assert device.passwords == {1: "s3cr3t-pw", 2: None}
        for params in ({}, {"account": "1"}):
            response = await client.get(config_url(device), params=params)
            assert "password" not in response.text
            assert "s3cr3t-pw" not in response.text


class TestPut:
    async def test_multipart_put_applies(self, fleet: Fleet, client: httpx.AsyncClient) -> None:
        """A blob-json multipart part is applied and reported by the next GET."""
        device = fleet.devices[0]
        body = await put(
            client,
            device,
            {
                "accounts": [
                    {
                        "account": 1,
                        "enabled": True,
                        "displayName": "Lobby door",
                        "sipNumber": "4001",
                        "domain": "pbx.example.com",
                        "domainPort": 5060,
                        "registrationEnabled": True,
                        "answerMode": 2,
                    }
                ]
            },
        )
        assert body == {"success": True}
        first, second = await get_accounts(client, device)
        assert first == {
            **FACTORY_ACCOUNT,
            "account": 1,
            "enabled": True,
            "displayName": "Lobby door",
            "sipNumber": "4001",
            "domain": "pbx.example.com",
            "domainPort": "5060",
            "registrationEnabled": True,
            "answerMode": "2",
        }
        assert second == {"account": 2, **FACTORY_ACCOUNT}

    async def test_multipart_part_without_filename(
        self, fleet: Fleet, client: httpx.AsyncClient
    ) -> None:
        """A plain form field named blob-json (no filename) is accepted too."""
        device = fleet.devices[0]
        document = {"accounts": [{"account": 2, "sipNumber": "77"}]}
        response = await client.put(
            config_url(device), files={"blob-json": (None, json.dumps(document))}
        )
        assert response.json() == {"success": True}
        assert device.accounts[1]["sipNumber"] == "77"

    async def test_raw_json_put_applies(self, fleet: Fleet, client: httpx.AsyncClient) -> None:
        """The same blob as a raw application/json body is applied."""
        device = fleet.devices[0]
        response = await client.put(
            config_url(device), json={"accounts": [{"account": 2, "proxyAddress": "p.example"}]}
        )
        assert response.json() == {"success": True}
        assert device.accounts[1]["proxyAddress"] == "p.example"

    async def test_media_type_read_whatever_its_case_and_parameters(
        self, fleet: Fleet, client: httpx.AsyncClient
    ) -> None:
        """A raw JSON body sent as ``Application/JSON; charset=utf-8`` is applied too."""
        device = fleet.devices[0]
        body = json.dumps({"accounts": [{"account": 2, "proxyAddress": "q.example"}]})
        headers = {"Content-Type": "Application/JSON; charset=utf-8"}
        response = await client.put(config_url(device), content=body, headers=headers)
        assert response.json() == {"success": True}
        assert device.accounts[1]["proxyAddress"] == "q.example"

    @pytest.mark.parametrize(
        ("sent", "string_fw", "integer_fw"),
        [(5060, "5060", 5060), ("5061", "5061", 5061), ("", "", 0), (0, "", 0), ("0", "", 0)],
    )
    async def test_ports_accept_both_typings(
        self, client: httpx.AsyncClient, sent: object, string_fw: object, integer_fw: object
    ) -> None:
        """A port sent as int, decimal string or "" reads back in each firmware's own typing."""
        for firmware, expected in (("string", string_fw), ("integer", integer_fw)):
            async with Fleet(devices=1, firmware=firmware) as fleet:  # type: ignore[arg-type]
                device = fleet.devices[0]
                await put(client, device, {"accounts": [{"account": 1, "registrarPort": sent}]})
                (first, _) = await get_accounts(client, device)
                assert first["registrarPort"] == expected

    async def test_answer_mode_as_string_on_integer_firmware(
        self, client: httpx.AsyncClient
    ) -> None:
        """Integer firmware takes answerMode "3" and reports 3."""
        async with Fleet(devices=1, firmware="integer") as fleet:
            device = fleet.devices[0]
            await put(client, device, {"accounts": [{"account": 2, "answerMode": "3"}]})
            assert (await get_accounts(client, device))[1]["answerMode"] == 3

    async def test_empty_account_list_is_accepted(
        self, fleet: Fleet, client: httpx.AsyncClient
    ) -> None:
        """{"accounts": []} is a successful no-op."""
        device = fleet.devices[0]
        before = device.accounts
        assert await put(client, device, {"accounts": []}) == {"success": True}
        assert device.accounts == before


class TestPutRejections:
    async def expect_error(
        self,
        client: httpx.AsyncClient,
        device: EmulatedDevice,
        *,
        code: int,
        param: str,
        **request: Any,
    ) -> None:
        before, passwords = device.accounts, device.passwords
        response = await client.put(config_url(device), **request)
        assert response.status_code == 200
        body = response.json()
        assert body["success"] is False
        assert (body["error"]["code"], body["error"]["param"]) == (code, param)
        assert isinstance(body["error"]["description"], str)
        assert body["error"]["description"]
        assert device.accounts == before
        assert device.passwords == passwords

    async def test_account_only_is_missing_parameter(
        self, fleet: Fleet, client: httpx.AsyncClient
    ) -> None:
        """An account object holding only "account" is code 11 and changes nothing."""
        await self.expect_error(
            client,
            fleet.devices[0],
            code=11,
            param="account",
            **multipart({"accounts": [{"account": 1}]}),
        )

    async def test_object_without_account(self, fleet: Fleet, client: httpx.AsyncClient) -> None:
        """An account object without "account" is code 11 naming account."""
        await self.expect_error(
            client,
            fleet.devices[0],
            code=11,
            param="account",
            **multipart({"accounts": [{"displayName": "x"}]}),
        )

    @pytest.mark.parametrize("number", [0, 3, "1", True, 1.0, None])
    async def test_bad_account_number(
        self, fleet: Fleet, client: httpx.AsyncClient, number: object
    ) -> None:
        """An account number other than the integers 1 and 2 is code 12 naming account."""
        await self.expect_error(
            client,
            fleet.devices[0],
            code=12,
            param="account",
            **multipart({"accounts": [{"account": number, "enabled": True}]}),
        )

    async def test_invalid_second_account_changes_neither(
        self, fleet: Fleet, client: httpx.AsyncClient
    ) -> None:
        """A bad port in the second account rejects the whole blob, first account included."""
        document = {
            "accounts": [
                {"account": 1, "displayName": "changed", "password": "new"},
                {"account": 2, "domainPort": 70000},
            ]
        }
        await self.expect_error(
            client, fleet.devices[0], code=12, param="domainPort", **multipart(document)
        )

    async def test_unknown_field(self, fleet: Fleet, client: httpx.AsyncClient) -> None:
        """An unknown field is code 12 whose param is the field's name."""
        await self.expect_error(
            client,
            fleet.devices[0],
            code=12,
            param="displayNmae",
            **multipart({"accounts": [{"account": 1, "displayNmae": "x"}]}),
        )

    async def test_account_type_is_read_only_on_integer_firmware(
        self, client: httpx.AsyncClient
    ) -> None:
        """Writing the integer firmware's extra accountType field is code 12."""
        async with Fleet(devices=1, firmware="integer") as fleet:
            await self.expect_error(
                client,
                fleet.devices[0],
                code=12,
                param="accountType",
                **multipart({"accounts": [{"account": 1, "accountType": "sip"}]}),
            )

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("enabled", "true"),
            ("enabled", 1),
            ("registrationEnabled", "yes"),
            ("domainPort", 65536),
            ("domainPort", -1),
            ("proxyPort", "50a"),
            ("registrarPort", 5060.5),
            ("registrarPort", True),
            ("answerMode", 10),
            ("answerMode", ""),
            ("answerMode", "x"),
            ("displayName", 4001),
            ("sipNumber", None),
            ("domain", "a" * 256),
            ("authId", "line\nbreak"),
            ("password", "tab\there"),
            ("password", 1234),
        ],
    )
    async def test_bad_values(
        self, fleet: Fleet, client: httpx.AsyncClient, field: str, value: object
    ) -> None:
        """A value of the wrong type or range is code 12 naming its field."""
        await self.expect_error(
            client,
            fleet.devices[0],
            code=12,
            param=field,
            **multipart({"accounts": [{"account": 2, field: value}]}),
        )

    async def test_text_at_the_length_limit_is_accepted(
        self, fleet: Fleet, client: httpx.AsyncClient
    ) -> None:
        """A 255-character text value is accepted (the limit is inclusive)."""
        device = fleet.devices[0]
        await put(client, device, {"accounts": [{"account": 1, "displayName": "é" * 255}]})
        assert device.accounts[0]["displayName"] == "é" * 255

    async def test_missing_blob(self, fleet: Fleet, client: httpx.AsyncClient) -> None:
        """A PUT without a blob-json parameter is code 11 naming blob-json."""
        await self.expect_error(
            client,
            fleet.devices[0],
            code=11,
            param="blob-json",
            files={"other": (None, "{}")},
        )

    async def test_unsupported_content_type(self, fleet: Fleet, client: httpx.AsyncClient) -> None:
        """A body that is neither multipart nor JSON is code 14 "Unsupported Content-Type" (SPEC 1)."""
        await self.expect_error(
            client,
            fleet.devices[0],
            code=14,
            param="",
            content='{"accounts": []}',
            headers={"Content-Type": "text/plain"},
        )

    async def test_empty_put(self, fleet: Fleet, client: httpx.AsyncClient) -> None:
        """A PUT with no body at all is code 11 naming blob-json."""
        await self.expect_error(client, fleet.devices[0], code=11, param="blob-json")

    @pytest.mark.parametrize(
        "text",
        ["{not json", "[]", '{"accounts": {}}', '{"accounts": [1]}', '{"accounts": [], "x": 1}'],
    )
    async def test_malformed_blob(self, fleet: Fleet, client: httpx.AsyncClient, text: str) -> None:
        """A blob that is not JSON or not {"accounts": [objects]} is code 12 naming blob-json."""
        await self.expect_error(
            client,
            fleet.devices[0],
            code=12,
            param="blob-json",
            files={"blob-json": ("blob.json", text, "application/json")},
        )

    async def test_blob_over_64_kib(self, fleet: Fleet, client: httpx.AsyncClient) -> None:
        """A blob over 64 KiB is code 13, as multipart or raw JSON."""
        document = {"accounts": [{"account": 1, "displayName": "x" * (64 * 1024)}]}
        device = fleet.devices[0]
        await self.expect_error(client, device, code=13, param="blob-json", **multipart(document))
        await self.expect_error(client, device, code=13, param="blob-json", json=document)

    async def test_duplicate_account(self, fleet: Fleet, client: httpx.AsyncClient) -> None:
        """The same account twice in one blob is code 12 naming account."""
        document = {"accounts": [{"account": 1, "sipNumber": "1"}, {"account": 1, "domain": "d"}]}
        await self.expect_error(
            client, fleet.devices[0], code=12, param="account", **multipart(document)
        )


class TestOtherCalls:
    async def test_system_info_identifies_each_device(
        self, fleet: Fleet, client: httpx.AsyncClient
    ) -> None:
        """GET /api/system/info gives the identity fields, distinct per device."""
        infos = []
        for device in fleet.devices:
            response = await client.get(f"{device.url}/api/system/info")
            body = response.json()
            assert body["success"] is True
            infos.append(body["result"])
        keys = {"variant", "serialNumber", "macAddr", "hwVersion", "swVersion", "buildType"}
        for info in infos:
            assert keys | {"deviceName"} == set(info)
            assert info["variant"] == "2N IP Verso"
            assert info["buildType"] == "release"
        for key in ("serialNumber", "macAddr", "deviceName"):
            assert infos[0][key] != infos[1][key]

    @pytest.mark.parametrize("path", ["/api/phone/nope", "/api", "/api/phone/config/"])
    async def test_unknown_api_path(
        self, fleet: Fleet, client: httpx.AsyncClient, path: str
    ) -> None:
        """An unknown path under /api is code 2."""
        response = await client.get(f"{fleet.devices[0].url}{path}")
        assert response.json()["error"]["code"] == 2

    @pytest.mark.parametrize(
        ("method", "path"),
        [
            ("POST", "/api/phone/config"),
            ("DELETE", "/api/phone/config"),
            ("PUT", "/api/system/info"),
        ],
    )
    async def test_wrong_method(
        self, fleet: Fleet, client: httpx.AsyncClient, method: str, path: str
    ) -> None:
        """A method the function does not support is code 3."""
        response = await client.request(method, f"{fleet.devices[0].url}{path}")
        assert response.status_code == 200
        assert response.json()["success"] is False
        assert response.json()["error"]["code"] == 3

    async def test_devices_are_independent(self, fleet: Fleet, client: httpx.AsyncClient) -> None:
        """A PUT to one device leaves the other device's state alone."""
        first, second = fleet.devices
        assert first.port != second.port
        await put(client, first, {"accounts": [{"account": 1, "enabled": True}]})
        assert (await get_accounts(client, first))[0]["enabled"] is True
        assert (await get_accounts(client, second))[0]["enabled"] is False

    async def test_keep_alive(self, fleet: Fleet, client: httpx.AsyncClient) -> None:
        """Responses keep the connection open for the next request."""
        response = await client.get(config_url(fleet.devices[0]))
        assert response.headers.get("Connection", "keep-alive").lower() == "keep-alive"
        assert response.http_version == "HTTP/1.1"
