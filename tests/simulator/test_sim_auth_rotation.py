"""Digest as firmware does it: nonces good for K requests only, and Basic-plus-Digest challenges."""

from __future__ import annotations

import base64
import json
from urllib.request import parse_http_list, parse_keqv_list

import httpx
import pytest

from syncd.simulator import Fleet
from tests.simulator.test_sim_auth import PASSWORD, USER, digest_authorization

CONFIG = "/api/phone/config"


def nonce_of(challenge: str) -> str:
    scheme, _, rest = challenge.partition(" ")
    assert scheme == "Digest"
    return parse_keqv_list(parse_http_list(rest))["nonce"]


class TestNonceUses:
    async def test_nonce_is_stale_after_k_requests(self, client: httpx.AsyncClient) -> None:
        """A nonce serves K requests; the next one with it gets 401 stale=true and a new nonce."""
        async with Fleet(
            devices=1, auth="digest", username=USER, password=PASSWORD, nonce_uses=2
        ) as fleet:
            url = fleet.device(1).url + CONFIG
            challenge = (await client.get(url)).headers["WWW-Authenticate"]
            header = digest_authorization(challenge, method="GET", uri=CONFIG)
            for _ in range(2):
                response = await client.get(url, headers={"Authorization": header})
                assert response.json()["success"] is True
            stale = await client.get(url, headers={"Authorization": header})
            assert stale.status_code == 401
            assert stale.json()["error"]["code"] == 9
            fresh = stale.headers["WWW-Authenticate"]
            assert "stale=true" in fresh
            assert nonce_of(fresh) != nonce_of(challenge)
            header = digest_authorization(fresh, method="GET", uri=CONFIG)
            assert (await client.get(url, headers={"Authorization": header})).status_code == 200

    async def test_wrong_password_on_a_used_up_nonce_is_not_stale(
        self, client: httpx.AsyncClient
    ) -> None:
        """A used-up nonce with a wrong password is a plain 401, not stale=true."""
        async with Fleet(
            devices=1, auth="digest", username=USER, password=PASSWORD, nonce_uses=1
        ) as fleet:
            url = fleet.device(1).url + CONFIG
            challenge = (await client.get(url)).headers["WWW-Authenticate"]
            good = digest_authorization(challenge, method="GET", uri=CONFIG)
            assert (await client.get(url, headers={"Authorization": good})).status_code == 200
            bad = digest_authorization(challenge, method="GET", uri=CONFIG, password="nope")
            response = await client.get(url, headers={"Authorization": bad})
            assert response.status_code == 401
            assert "stale" not in response.headers["WWW-Authenticate"]

    @pytest.mark.parametrize("uses", [1, 3])
    async def test_httpx_digest_auth_rides_the_rotation(self, uses: int) -> None:
        """httpx DigestAuth gets every answer right: each used-up nonce costs one stale 401 and a retry."""
        async with Fleet(
            devices=1, auth="digest", username=USER, password=PASSWORD, nonce_uses=uses
        ) as fleet:
            device = fleet.device(1)
            async with httpx.AsyncClient(auth=httpx.DigestAuth(USER, PASSWORD), timeout=5) as http:
                for n in range(6):
                    response = await http.put(
                        device.url + CONFIG,
                        json={"accounts": [{"account": 1, "displayName": f"n{n}"}]},
                    )
                    assert response.json() == {"success": True}
                    assert (await http.get(device.url + CONFIG)).status_code == 200
            statuses = [entry.status for entry in device.journal]
            # one initial challenge, then 12 requests on nonces good for `uses` each
            assert statuses.count(200) == 12
            assert statuses.count(401) == 1 + (12 - 1) // uses
            assert device.accounts[0]["displayName"] == "n5"

    async def test_unlimited_by_default(self) -> None:
        """Without nonce_uses a nonce serves every request while fresh: one 401 in all."""
        async with Fleet(devices=1, auth="digest", username=USER, password=PASSWORD) as fleet:
            device = fleet.device(1)
            async with httpx.AsyncClient(auth=httpx.DigestAuth(USER, PASSWORD), timeout=5) as http:
                for _ in range(5):
                    assert (await http.get(device.url + CONFIG)).status_code == 200
            assert [entry.status for entry in device.journal].count(401) == 1

    def test_negative_uses_refused(self) -> None:
        """nonce_uses below 0 is a ValueError."""
        with pytest.raises(ValueError, match="nonce_uses"):
            Fleet(auth="digest", nonce_uses=-1)


class TestDualChallenge:
    @pytest.mark.parametrize("method", ["digest", "basic"])
    async def test_two_challenges_basic_first(self, client: httpx.AsyncClient, method: str) -> None:
        """Every 401 carries two WWW-Authenticate headers, Basic then Digest, whatever the primary method."""
        async with Fleet(
            devices=1,
            auth=method,
            username=USER,
            password=PASSWORD,
            dual_challenge=True,  # type: ignore[arg-type]
        ) as fleet:
            response = await client.get(fleet.device(1).url + CONFIG)
        assert response.status_code == 401
        basic, digest = response.headers.get_list("WWW-Authenticate")
        assert basic == 'Basic realm="HTTP API"'
        assert digest.startswith('Digest realm="HTTP API"')
        assert json.loads(response.text)["error"]["code"] == 9

    async def test_either_method_is_accepted(self) -> None:
        """With two challenges, httpx DigestAuth and BasicAuth both get in, and PUT works by both."""
        async with Fleet(
            devices=1, auth="digest", username=USER, password=PASSWORD, dual_challenge=True
        ) as fleet:
            url = fleet.device(1).url + CONFIG
            for auth in (httpx.DigestAuth(USER, PASSWORD), httpx.BasicAuth(USER, PASSWORD)):
                async with httpx.AsyncClient(auth=auth, timeout=5) as http:
                    assert (await http.get(url)).json()["success"] is True
                    put = await http.put(url, json={"accounts": [{"account": 2, "enabled": True}]})
                    assert put.json() == {"success": True}

    async def test_wrong_credentials_by_either_method(self, client: httpx.AsyncClient) -> None:
        """Wrong Basic or Digest credentials are still 401 with both challenges."""
        async with Fleet(
            devices=1, auth="digest", username=USER, password=PASSWORD, dual_challenge=True
        ) as fleet:
            url = fleet.device(1).url + CONFIG
            for auth in (httpx.DigestAuth(USER, "nope"), httpx.BasicAuth(USER, "nope")):
                response = await client.get(url, auth=auth)
                assert response.status_code == 401
                assert len(response.headers.get_list("WWW-Authenticate")) == 2

    async def test_without_dual_challenge_basic_is_refused(self, client: httpx.AsyncClient) -> None:
        """A plain Digest device still refuses Basic credentials with code 8 and one challenge."""
        async with Fleet(devices=1, auth="digest", username=USER, password=PASSWORD) as fleet:
            token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
            response = await client.get(
                fleet.device(1).url + CONFIG, headers={"Authorization": f"Basic {token}"}
            )
        assert response.json()["error"]["code"] == 8
        assert len(response.headers.get_list("WWW-Authenticate")) == 1

    async def test_stale_with_dual_challenge(self, client: httpx.AsyncClient) -> None:
        """A stale Digest nonce under dual challenge marks only the Digest challenge stale, and httpx recovers."""
        async with Fleet(
            devices=1, auth="digest", username=USER, password=PASSWORD,
            dual_challenge=True, nonce_uses=1,
        ) as fleet:  # fmt: skip
            url = fleet.device(1).url + CONFIG
            challenge = (await client.get(url)).headers.get_list("WWW-Authenticate")[1]
            header = digest_authorization(challenge, method="GET", uri=CONFIG)
            assert (await client.get(url, headers={"Authorization": header})).status_code == 200
            stale = await client.get(url, headers={"Authorization": header})
            basic, digest = stale.headers.get_list("WWW-Authenticate")
            assert "stale" not in basic
            assert "stale=true" in digest
            async with httpx.AsyncClient(auth=httpx.DigestAuth(USER, PASSWORD), timeout=5) as http:
                for _ in range(3):
                    assert (await http.get(url)).status_code == 200

    def test_needs_authentication(self) -> None:
        """dual_challenge without auth is a ValueError."""
        with pytest.raises(ValueError, match="dual_challenge"):
            Fleet(dual_challenge=True)
