"""Basic and Digest authentication of the emulated devices, with httpx, curl and by hand."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from urllib.request import parse_http_list, parse_keqv_list

import httpx
import pytest

from syncd.simulator import EmulatedDevice, Fleet

USER, PASSWORD = "admin", "correct horse"


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def digest_authorization(
    challenge: str, *, method: str, uri: str, password: str = PASSWORD, nc: str = "00000001"
) -> str:
    """An RFC 7616 MD5/qop=auth Authorization header answering ``challenge``."""
    scheme, _, rest = challenge.partition(" ")
    assert scheme == "Digest"
    params = parse_keqv_list(parse_http_list(rest))
    cnonce = "0a4f113b"
    ha1 = md5(f"{USER}:{params['realm']}:{password}")
    ha2 = md5(f"{method}:{uri}")
    response = md5(f"{ha1}:{params['nonce']}:{nc}:{cnonce}:auth:{ha2}")
    return (
        f'Digest username="{USER}", realm="{params["realm"]}", nonce="{params["nonce"]}", '
        f'uri="{uri}", qop=auth, nc={nc}, cnonce="{cnonce}", response="{response}", '
        f'opaque="{params["opaque"]}", algorithm=MD5'
    )


def challenge_params(response: httpx.Response) -> dict[str, str]:
    scheme, _, rest = response.headers["WWW-Authenticate"].partition(" ")
    assert scheme == "Digest"
    return parse_keqv_list(parse_http_list(rest))


def assert_auth_required(response: httpx.Response, *, code: int = 9) -> None:
    assert response.status_code == 401
    assert "WWW-Authenticate" in response.headers
    body = response.json()
    assert body["success"] is False
    assert body["error"]["code"] == code


async def run_curl(*args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        "curl", "-sS", "--max-time", "10", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, stdout.decode()


@pytest.fixture
async def digest_fleet() -> AsyncIterator[Fleet]:
    async with Fleet(
        devices=1,
        auth="digest",
        username=USER,
        password=PASSWORD,
        monitor_username="viewer",
        monitor_password="look",
    ) as fleet:
        yield fleet


@pytest.fixture
async def basic_fleet() -> AsyncIterator[Fleet]:
    async with Fleet(devices=1, auth="basic", username=USER, password=PASSWORD) as fleet:
        yield fleet


def config_url(device: EmulatedDevice) -> str:
    return f"{device.url}/api/phone/config"


class TestBasic:
    async def test_right_credentials(self, basic_fleet: Fleet, client: httpx.AsyncClient) -> None:
        """Basic credentials of the configured user read the accounts."""
        response = await client.get(
            config_url(basic_fleet.devices[0]), auth=httpx.BasicAuth(USER, PASSWORD)
        )
        assert response.status_code == 200
        assert response.json()["success"] is True

    async def test_no_credentials(self, basic_fleet: Fleet, client: httpx.AsyncClient) -> None:
        """Without credentials the answer is 401, code 9, and a Basic challenge."""
        response = await client.get(config_url(basic_fleet.devices[0]))
        assert_auth_required(response)
        assert response.headers["WWW-Authenticate"] == 'Basic realm="HTTP API"'

    async def test_wrong_password(self, basic_fleet: Fleet, client: httpx.AsyncClient) -> None:
        """A wrong Basic password is 401 code 9 and changes nothing."""
        device = basic_fleet.devices[0]
        response = await client.put(
            config_url(device),
            json={"accounts": [{"account": 1, "enabled": True}]},
            auth=httpx.BasicAuth(USER, "wrong"),
        )
        assert_auth_required(response)
        assert device.accounts[0]["enabled"] is False

    async def test_curl_basic(self, basic_fleet: Fleet) -> None:
        """curl --basic -u user:password interoperates."""
        status, out = await run_curl(
            "--basic", "-u", f"{USER}:{PASSWORD}", config_url(basic_fleet.devices[0])
        )
        assert status == 0
        assert json.loads(out)["success"] is True


class TestDigest:
    async def test_httpx_digest_get_and_put(
        self, digest_fleet: Fleet, client: httpx.AsyncClient
    ) -> None:
        """httpx's DigestAuth reads and writes through the challenge."""
        device = digest_fleet.devices[0]
        auth = httpx.DigestAuth(USER, PASSWORD)
        document = {"accounts": [{"account": 1, "displayName": "digest"}]}
        put = await client.put(config_url(device), json=document, auth=auth)
        assert put.json() == {"success": True}
        get = await client.get(config_url(device), params={"account": "1"}, auth=auth)
        assert get.json()["result"]["accounts"][0]["displayName"] == "digest"

    async def test_challenge_shape(self, digest_fleet: Fleet, client: httpx.AsyncClient) -> None:
        """An unauthenticated request is 401 code 9 with an MD5 qop=auth challenge."""
        response = await client.get(config_url(digest_fleet.devices[0]))
        assert_auth_required(response)
        params = challenge_params(response)
        assert params["realm"] == "HTTP API"
        assert params["qop"] == "auth"
        assert params["algorithm"] == "MD5"
        assert params["nonce"]
        assert params["opaque"]
        assert "stale" not in params

    async def test_wrong_password(self, digest_fleet: Fleet, client: httpx.AsyncClient) -> None:
        """Digest with a wrong password is 401 code 9, not stale, and applies nothing."""
        device = digest_fleet.devices[0]
        response = await client.put(
            config_url(device),
            json={"accounts": [{"account": 1, "enabled": True}]},
            auth=httpx.DigestAuth(USER, "wrong"),
        )
        assert_auth_required(response)
        assert "stale" not in challenge_params(response)
        assert device.accounts[0]["enabled"] is False

    async def test_stale_nonce_then_reauthentication(
        self, digest_fleet: Fleet, client: httpx.AsyncClient
    ) -> None:
        """Right credentials on an expired nonce get 401 stale=true; the new nonce works."""
        device = digest_fleet.devices[0]
        url, uri = config_url(device), "/api/phone/config"
        challenge = (await client.get(url)).headers["WWW-Authenticate"]
        header = digest_authorization(challenge, method="GET", uri=uri)
        assert (await client.get(url, headers={"Authorization": header})).status_code == 200

        device.expire_nonces()
        stale = await client.get(url, headers={"Authorization": header})
        assert_auth_required(stale)
        assert challenge_params(stale)["stale"] == "true"

        fresh = digest_authorization(stale.headers["WWW-Authenticate"], method="GET", uri=uri)
        again = await client.get(url, headers={"Authorization": fresh})
        assert again.status_code == 200
        assert again.json()["success"] is True

    async def test_wrong_password_on_expired_nonce_is_not_stale(
        self, digest_fleet: Fleet, client: httpx.AsyncClient
    ) -> None:
        """stale=true is only for right credentials; a wrong password stays a plain 401."""
        device = digest_fleet.devices[0]
        url = config_url(device)
        challenge = (await client.get(url)).headers["WWW-Authenticate"]
        device.expire_nonces()
        header = digest_authorization(
            challenge, method="GET", uri="/api/phone/config", password="nope"
        )
        response = await client.get(url, headers={"Authorization": header})
        assert_auth_required(response)
        assert "stale" not in challenge_params(response)

    async def test_nonce_lifetime(self, client: httpx.AsyncClient) -> None:
        """A nonce older than the configured lifetime is answered stale=true."""
        async with Fleet(devices=1, auth="digest", password=PASSWORD, nonce_lifetime=0.2) as fleet:
            url = config_url(fleet.devices[0])
            challenge = (await client.get(url)).headers["WWW-Authenticate"]
            header = digest_authorization(challenge, method="GET", uri="/api/phone/config")
            assert (await client.get(url, headers={"Authorization": header})).status_code == 200
            await asyncio.sleep(0.3)
            response = await client.get(url, headers={"Authorization": header})
            assert_auth_required(response)
            assert challenge_params(response)["stale"] == "true"

    async def test_httpx_recovers_from_a_stale_nonce(
        self, digest_fleet: Fleet, client: httpx.AsyncClient
    ) -> None:
        """A client reusing an expired nonce sees one 401 in the journal, then success."""
        device = digest_fleet.devices[0]
        auth = httpx.DigestAuth(USER, PASSWORD)
        assert (await client.get(config_url(device), auth=auth)).status_code == 200
        device.expire_nonces()
        device.clear_journal()
        assert (await client.get(config_url(device), auth=auth)).status_code == 200
        assert [entry.status for entry in device.journal] == [401, 200]

    async def test_uri_must_match_the_request(
        self, digest_fleet: Fleet, client: httpx.AsyncClient
    ) -> None:
        """A Digest response computed for another URI is refused."""
        url = config_url(digest_fleet.devices[0])
        challenge = (await client.get(url)).headers["WWW-Authenticate"]
        header = digest_authorization(challenge, method="GET", uri="/api/system/info")
        assert_auth_required(await client.get(url, headers={"Authorization": header}))

    async def test_basic_credentials_to_a_digest_device(
        self, digest_fleet: Fleet, client: httpx.AsyncClient
    ) -> None:
        """Basic credentials sent to a Digest device are 401 code 8 (invalid method)."""
        response = await client.get(
            config_url(digest_fleet.devices[0]), auth=httpx.BasicAuth(USER, PASSWORD)
        )
        assert_auth_required(response, code=8)
        assert response.headers["WWW-Authenticate"].startswith("Digest ")

    async def test_garbled_header(self, digest_fleet: Fleet, client: httpx.AsyncClient) -> None:
        """An unparsable Digest header is 401 code 9, not a server error."""
        response = await client.get(
            config_url(digest_fleet.devices[0]), headers={"Authorization": "Digest garbage"}
        )
        assert_auth_required(response)

    async def test_system_info_needs_no_credentials(
        self, digest_fleet: Fleet, client: httpx.AsyncClient
    ) -> None:
        """/api/system/info answers without authentication."""
        response = await client.get(f"{digest_fleet.devices[0].url}/api/system/info")
        assert response.status_code == 200
        assert response.json()["success"] is True

    async def test_monitor_user_may_read_but_not_write(
        self, digest_fleet: Fleet, client: httpx.AsyncClient
    ) -> None:
        """The monitoring-only user GETs, but its PUT is code 10 and applies nothing."""
        device = digest_fleet.devices[0]
        auth = httpx.DigestAuth("viewer", "look")
        assert (await client.get(config_url(device), auth=auth)).json()["success"] is True
        response = await client.put(
            config_url(device), json={"accounts": [{"account": 1, "enabled": True}]}, auth=auth
        )
        assert response.json()["success"] is False
        assert response.json()["error"]["code"] == 10
        assert device.accounts[0]["enabled"] is False

    async def test_curl_digest(self, digest_fleet: Fleet) -> None:
        """curl --digest reads with ?account=2 and writes a multipart blob."""
        device = digest_fleet.devices[0]
        credentials = ("--digest", "-u", f"{USER}:{PASSWORD}")
        status, out = await run_curl(*credentials, f"{config_url(device)}?account=2")
        assert status == 0
        assert json.loads(out)["result"]["accounts"][0]["account"] == 2
        blob = '{"accounts": [{"account": 2, "sipNumber": "4002"}]}'
        status, out = await run_curl(
            *credentials, "-X", "PUT", "-F", f"blob-json={blob}", config_url(device)
        )
        assert (status, json.loads(out)) == (0, {"success": True})
        assert device.accounts[1]["sipNumber"] == "4002"

    async def test_curl_digest_wrong_password(self, digest_fleet: Fleet) -> None:
        """curl --digest with a wrong password ends on the 401 code 9 envelope."""
        status, out = await run_curl(
            "--digest", "-u", f"{USER}:nope", "-w", "\n%{http_code}",
            config_url(digest_fleet.devices[0]),
        )  # fmt: skip
        body, http_code = out.rsplit("\n", 1)
        assert (status, http_code) == (0, "401")
        assert json.loads(body)["error"]["code"] == 9
