"""The client against newer firmware: status reads, Digest as firmware does it, User-Agent, schemes."""

from __future__ import annotations

import asyncio
import json

import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

import syncd
from syncd.client import (
    AccountStatus,
    AuthError,
    CallSession,
    ClientPool,
    DeviceClient,
    TlsError,
    TransportError,
)
from syncd.model import AuthMethod, AuthSpec, TlsSpec
from syncd.retrying import RetryPolicy, with_retries
from syncd.simulator import Fleet
from tests.client.firmware import Firmware

SECRET = "api-Pa55!"
#: One attempt only: whatever succeeds under it cost no retry attempt.
NO_RETRY = RetryPolicy(attempts=1)


def _auth(method: str, password: str = SECRET) -> AuthSpec:
    return AuthSpec(AuthMethod(method), "admin", SecretStr(password))


def _client(pool: ClientPool, device: Firmware, method: str = "none") -> DeviceClient:
    auth = None if method == "none" else _auth(method)
    return DeviceClient(url=device.url, pool=pool, auth=auth)


class TestPhoneStatus:
    async def test_registration_of_every_account(self):
        """Each account's registration comes back typed; a local account has no registration."""
        async with Firmware(accounts=4) as dev, ClientPool() as pool:
            dev.live[1].update(enabled=True, registrationEnabled=True)
            status = await _client(pool, dev).phone_status()
        assert status[0] == AccountStatus(
            account=1,
            account_type="general",
            enabled=True,
            registration_enabled=True,
            registered=True,
            register_time=1721138562,
        )
        assert status[1].registered is False and status[1].register_time is None
        assert status[3] == AccountStatus(4, "local", False, None, None, None)

    async def test_one_account_is_asked_by_parameter(self):
        """phone_status(3) asks the device for account 3 only."""
        async with Firmware(accounts=4) as dev, ClientPool() as pool:
            await _client(pool, dev).phone_status(3)
        assert dev.seen[-1].query == {"account": "3"}

    async def test_minimal_account_reads_as_unknowns(self):
        """An account reporting only its number has None for everything else."""
        body = {"success": True, "result": {"accounts": [{"account": "2"}]}}
        async with Firmware(phone_status_body=json.dumps(body)) as dev, ClientPool() as pool:
            assert await _client(pool, dev).phone_status() == [AccountStatus(2)]

    @pytest.mark.parametrize(
        ("body", "problem"),
        [
            ("<html>busy</html>", "not JSON"),
            ('{"success": true}', "without a result"),
            ('{"success": true, "result": {}}', "without a list of accounts"),
            ('{"success": true, "result": {"accounts": {}}}', "without a list of accounts"),
            ('{"success": true, "result": {"accounts": [1]}}', "accounts[0] as a number"),
            ('{"success": true, "result": {"accounts": [{}]}}', "accounts[0] without account"),
            (
                '{"success": true, "result": {"accounts": [{"account": 1, "registered": "yes"}]}}',
                "accounts[0].registered as a string, not true or false",
            ),
            (
                '{"success": true, "result": {"accounts": [{"account": true}]}}',
                "accounts[0].account as a boolean, not a whole number",
            ),
            (
                '{"success": true, "result": {"accounts": [{"account": 1, "registerTime": 1.5}]}}',
                "accounts[0].registerTime as a number, not a whole number",
            ),
            (
                '{"success": true, "result": {"accounts": [{"account": 1, "accountType": 3}]}}',
                "accounts[0].accountType as a number, not text",
            ),
        ],
    )
    async def test_malformed_answer_is_one_transport_sentence(self, body, problem):
        """A phone-status answer of the wrong shape is a transport error naming URL and fault."""
        async with Firmware(phone_status_body=body) as dev, ClientPool() as pool:
            with pytest.raises(TransportError) as caught:
                await _client(pool, dev).phone_status()
        err = caught.value
        assert err.kind == "transport"
        assert problem in str(err)
        assert str(err).startswith(dev.url) and "\n" not in str(err)
        if problem != "not JSON":
            assert f"{dev.url}/api/phone/status answered" in str(err)

    async def test_missing_privilege_is_an_auth_error(self):
        """Code 10 (no monitoring privilege) stays an AuthError the caller can act on."""
        body = '{"success": false, "error": {"code": 10}}'
        async with Firmware(phone_status_body=body) as dev, ClientPool() as pool:
            with pytest.raises(AuthError) as caught:
                await _client(pool, dev).phone_status()
        assert caught.value.code == 10


class TestCallStatus:
    async def test_idle_and_busy(self):
        """No sessions when idle; an active call comes back typed."""
        async with Firmware() as dev, ClientPool() as pool:
            client = _client(pool, dev)
            assert await client.call_status() == []
            dev.sessions.append({"session": 4, "direction": "incoming", "state": "connected"})
            assert await client.call_status() == [CallSession(4, "incoming", "connected")]

    @pytest.mark.parametrize(
        ("body", "problem"),
        [
            ("sessions", "not JSON"),
            ('{"success": true, "result": {"accounts": []}}', "without a list of sessions"),
            ('{"success": true, "result": {"sessions": null}}', "without a list of sessions"),
            (
                '{"success": true, "result": {"sessions": [{"session": 1, "direction": "incoming"}]}}',
                "sessions[0] without state",
            ),
            (
                '{"success": true, "result": {"sessions": '
                '[{"session": 1, "direction": "incoming", "state": 2}]}}',
                "sessions[0].state as a number, not text",
            ),
            (
                '{"success": true, "result": {"sessions": '
                '[{"session": "x", "direction": "incoming", "state": "ringing"}]}}',
                "sessions[0].session as a string, not a whole number",
            ),
        ],
    )
    async def test_malformed_answer_is_one_transport_sentence(self, body, problem):
        """A call-status answer of the wrong shape is a transport error naming URL and fault."""
        async with Firmware(call_status_body=body) as dev, ClientPool() as pool:
            with pytest.raises(TransportError) as caught:
                await _client(pool, dev).call_status()
        assert caught.value.kind == "transport" and problem in str(caught.value)
        assert str(caught.value).startswith(dev.url)


class TestDigestAsFirmwareDoesIt:
    @pytest.mark.parametrize("uses", [1, 3])
    async def test_rotating_nonces_are_invisible(self, uses):
        """With nonces used up every K-th request, reads and password writes all succeed at once."""
        async with (
            Firmware(auth="digest", password=SECRET, nonce_uses=uses) as dev,
            ClientPool() as pool,
        ):
            client = _client(pool, dev, "digest")
            with capture_logs() as logs:
                for n in range(6):
                    await with_retries(
                        client.get_accounts, device="d", request="GET", policy=NO_RETRY
                    )
                    body = [{"account": 1, "displayName": f"Door {n}", "password": "sip"}]
                    await with_retries(
                        lambda b=body: client.put_accounts(b),
                        device="d",
                        request="PUT",
                        policy=NO_RETRY,
                    )
        assert dev.stale_answers >= 12 // uses - 1
        assert dev.live[1]["displayName"] == "Door 5" and len(dev.puts) == 6
        assert [e for e in logs if e["log_level"] != "debug"] == []

    async def test_stale_answer_to_the_answer_is_answered_again(self):
        """A fresh nonce that is itself stale by the time it is used is answered once more."""
        async with (
            Firmware(auth="digest", password=SECRET, nonce_uses=1, stale_streak=3) as dev,
            ClientPool() as pool,
        ):
            client = _client(pool, dev, "digest")
            for _ in range(3):
                assert len(await client.get_accounts()) == 4
        assert dev.stale_answers >= 6

    async def test_concurrent_requests_share_rotating_nonces(self):
        """Requests in flight together on one device's nonce all get through on their first attempt."""
        async with (
            Firmware(auth="digest", password=SECRET, nonce_uses=1) as dev,
            ClientPool() as pool,
        ):
            client = _client(pool, dev, "digest")
            await client.get_accounts()
            results = await asyncio.gather(*(client.get_accounts() for _ in range(8)))
        assert all(len(r) == 4 for r in results)
        assert dev.stale_answers >= 8

    async def test_wrong_password_with_rotating_nonces_ends(self):
        """A wrong password is still an AuthError (code 9) after a bounded number of requests."""
        async with (
            Firmware(auth="digest", password="other", nonce_uses=1) as dev,
            ClientPool() as pool,
        ):
            with pytest.raises(AuthError) as caught:
                await _client(pool, dev, "digest").get_accounts()
        assert caught.value.code == 9 and len(dev.seen) <= 5
        assert SECRET not in str(caught.value) + repr(caught.value)

    @pytest.mark.parametrize("method", ["digest", "basic"])
    async def test_dual_challenge_uses_the_desired_method(self, method):
        """With Basic and Digest offered, every authorised request uses the method the file names."""
        async with (
            Firmware(auth="digest", password=SECRET, dual_challenge=True, nonce_uses=2) as dev,
            ClientPool() as pool,
        ):
            client = _client(pool, dev, method)
            for _ in range(3):
                await client.get_accounts()
            await client.put_accounts([{"account": 2, "sipNumber": "42"}])
        assert dev.live[2]["sipNumber"] == "42"
        assert {s.scheme for s in dev.seen if s.status == 200} == {method}

    @pytest.mark.parametrize(
        ("device", "method", "message"),
        [
            (
                "basic",
                "digest",
                "device asked for Basic authentication but the desired state names digest",
            ),
            (
                "digest",
                "basic",
                "device asked for Digest authentication but the desired state names basic",
            ),
            (
                "digest",
                "none",
                "device asked for Digest authentication but the desired state names none",
            ),
        ],
    )
    async def test_method_mismatch_is_one_auth_error(self, device, method, message):
        """A device offering only the other method is one AuthError naming the mismatch, not retried."""
        async with Firmware(auth=device, password=SECRET) as dev, ClientPool() as pool:
            client = _client(pool, dev, method)
            with capture_logs() as logs, pytest.raises(AuthError) as caught:
                await with_retries(
                    client.get_accounts, device="d", request="GET", policy=RetryPolicy()
                )
        err = caught.value
        assert err.kind == "auth" and err.code == 8
        assert str(err) == f"{dev.url}: the {message}"
        assert logs == [] and len(dev.seen) == 1 and dev.puts == []


class TestUserAgent:
    async def test_every_request_names_syncd_and_its_version(self):
        """Reads, writes, status reads and the requests of the Digest handshake all carry the User-Agent."""
        async with (
            Firmware(auth="digest", password=SECRET, nonce_uses=1) as dev,
            ClientPool() as pool,
        ):
            client = _client(pool, dev, "digest")
            await client.get_accounts()
            await client.put_accounts([{"account": 1, "enabled": True}])
            await client.phone_status()
            await client.call_status()
        assert len(dev.seen) >= 8
        assert {s.user_agent for s in dev.seen} == {f"syncd/{syncd.__version__}"}

    async def test_cluster_node_is_appended(self):
        """A pool made for a cluster node adds the node in parentheses."""
        async with Firmware() as dev, ClientPool(node="node-a") as pool:
            await _client(pool, dev).call_status()
        assert dev.seen[0].user_agent == f"syncd/{syncd.__version__} (node-a)"


class TestWrongScheme:
    async def test_https_url_on_plain_http_port(self):
        """https:// to a plain-HTTP device says so in one sentence, not an OpenSSL code."""
        async with Fleet(devices=1) as fleet, ClientPool() as pool:
            url = fleet.devices[0].url.replace("http://", "https://")
            client = DeviceClient(url=url, pool=pool, tls=TlsSpec(verify=False))
            with pytest.raises(TlsError) as caught:
                await client.get_accounts()
        assert str(caught.value) == (
            f"{url}: the device answered plain HTTP on an HTTPS URL; use http://"
        )

    async def test_http_url_on_https_port(self):
        """http:// to an HTTPS-only device says so in one sentence and is not retried."""
        async with Fleet(devices=1, tls=True) as fleet, ClientPool() as pool:
            url = fleet.devices[0].url.replace("https://", "http://")
            client = DeviceClient(url=url, pool=pool)
            with capture_logs() as logs, pytest.raises(TlsError) as caught:
                await with_retries(
                    client.get_accounts, device="d", request="GET", policy=RetryPolicy()
                )
        assert str(caught.value) == f"{url}: the device expects HTTPS on this port; use https://"
        assert logs == []

    async def test_plain_http_device_that_hangs_up_is_still_a_transport_error(self):
        """A plain-HTTP device dropping the connection is not mistaken for an HTTPS port."""
        async with Fleet(devices=1) as fleet, ClientPool() as pool:
            fleet.devices[0].inject(kind="drop")
            with pytest.raises(TransportError) as caught:
                await DeviceClient(url=fleet.devices[0].url, pool=pool).get_accounts()
        assert not isinstance(caught.value, TlsError)
