"""The async 2N client against emulated intercoms over real loopback HTTP(S)."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from syncd.client import (
    AuthError,
    ClientPool,
    DeviceClient,
    DeviceError,
    RejectedError,
    TlsError,
    TransportError,
)
from syncd.model import AuthMethod, AuthSpec, TlsSpec
from syncd.simulator import Fleet

SECRET = "pa55-Word!"


def _client(pool: ClientPool, fleet: Fleet, **kw: object) -> DeviceClient:
    return DeviceClient(url=fleet.devices[0].url, pool=pool, **kw)  # type: ignore[arg-type]


def _auth(method: str, password: str = SECRET) -> AuthSpec:
    return AuthSpec(AuthMethod(method), "admin", SecretStr(password))


class TestReading:
    @pytest.mark.parametrize("firmware", ["string", "integer"])
    async def test_get_accounts_all_and_one(self, firmware):
        """All accounts, or one, come back as the device reports them, in its typing."""
        async with Fleet(devices=1, firmware=firmware) as fleet, ClientPool() as pool:
            client = _client(pool, fleet)
            accounts = await client.get_accounts()
            assert [a["account"] for a in accounts] == [1, 2]
            port = accounts[0]["domainPort"]
            assert port == ("" if firmware == "string" else 0)
            assert all("password" not in a for a in accounts)
            (second,) = await client.get_accounts(2)
            assert second["account"] == 2

    async def test_system_info(self):
        """System info gives the device's identity."""
        async with Fleet(devices=1) as fleet, ClientPool() as pool:
            info = await _client(pool, fleet).system_info()
            assert {"variant", "serialNumber", "macAddr", "swVersion"} <= info.keys()


class TestWriting:
    async def test_put_is_one_multipart_blob_json_part(self):
        """A write travels as a multipart part named blob-json and is applied."""
        async with Fleet(devices=1) as fleet, ClientPool() as pool:
            dev = fleet.devices[0]
            await _client(pool, fleet).put_accounts(
                [{"account": 1, "displayName": "Door", "password": SECRET}]
            )
            (entry,) = dev.journal
            assert entry.method == "PUT" and entry.multipart
            assert entry.blob == {
                "accounts": [{"account": 1, "displayName": "Door", "password": SECRET}]
            }
            assert dev.accounts[0]["displayName"] == "Door"
            assert dev.passwords[1] == SECRET

    async def test_rejection_keeps_code_param_description(self):
        """An invalid value is a RejectedError carrying the device's code and param."""
        async with Fleet(devices=1) as fleet, ClientPool() as pool:
            with pytest.raises(RejectedError) as caught:
                await _client(pool, fleet).put_accounts([{"account": 1, "domainPort": "x"}])
            err = caught.value
            assert (err.code, err.param, err.kind) == (12, "domainPort", "rejected")
            assert "code 12" in str(err) and "domainPort" in str(err)

    async def test_account_without_fields_is_code_11(self):
        """An account object holding only `account` is refused with code 11."""
        async with Fleet(devices=1) as fleet, ClientPool() as pool:
            with pytest.raises(RejectedError) as caught:
                await _client(pool, fleet).put_accounts([{"account": 1}])
            assert caught.value.code == 11


class TestAuth:
    @pytest.mark.parametrize("method", ["basic", "digest"])
    async def test_right_and_wrong_password(self, method):
        """Right credentials read and write; a wrong password is an AuthError with code 9."""
        async with Fleet(devices=1, auth=method, password=SECRET) as fleet, ClientPool() as pool:
            good = _client(pool, fleet, auth=_auth(method))
            await good.put_accounts([{"account": 1, "sipNumber": "1"}])
            assert (await good.get_accounts(1))[0]["sipNumber"] == "1"
            bad = _client(pool, fleet, auth=_auth(method, "wrong-one"))
            with pytest.raises(AuthError) as caught:
                await bad.get_accounts()
            assert caught.value.code == 9 and caught.value.kind == "auth"
            assert "wrong-one" not in str(caught.value) + repr(caught.value)

    async def test_no_credentials_against_auth_device(self):
        """Asking without credentials where they are required is an AuthError."""
        async with Fleet(devices=1, auth="digest") as fleet, ClientPool() as pool:
            with pytest.raises(AuthError):
                await _client(pool, fleet).get_accounts()

    @pytest.mark.parametrize(("device", "scheme"), [("digest", "Digest"), ("basic", "Basic")])
    async def test_a_file_without_auth_says_the_device_wants_credentials(self, device, scheme):
        """No ``auth:`` (Digest, no credentials) against a device that asks for some: one
        request, no empty-name answer, and a sentence that says what to write."""
        async with Fleet(devices=1, auth=device, password=SECRET) as fleet, ClientPool() as pool:
            with pytest.raises(AuthError) as caught:
                await _client(pool, fleet, auth=AuthSpec()).get_accounts()
            assert str(caught.value) == (
                f"{fleet.devices[0].url}: the device asks for {scheme} authentication and the"
                " desired state gives none: write device.auth with its method, username and"
                " password"
            )
            assert caught.value.kind == "auth" and caught.value.status is None
            assert len(fleet.devices[0].journal) == 1

    async def test_stale_digest_nonce_is_retried_once_transparently(self):
        """After the device expires its nonces, the next request still succeeds."""
        async with Fleet(devices=1, auth="digest", password=SECRET) as fleet, ClientPool() as pool:
            client = _client(pool, fleet, auth=_auth("digest"))
            await client.get_accounts()
            fleet.devices[0].expire_nonces()
            await client.get_accounts()
            statuses = [e.status for e in fleet.devices[0].journal]
            assert statuses.count(200) == 2

    async def test_monitor_only_user_cannot_put(self):
        """A user lacking the management privilege gets code 10 on PUT, as an AuthError."""
        async with (
            Fleet(devices=1, auth="digest", monitor_username="mon", monitor_password="m") as fleet,
            ClientPool() as pool,
        ):
            client = _client(pool, fleet, auth=AuthSpec(AuthMethod.DIGEST, "mon", SecretStr("m")))
            await client.get_accounts()
            with pytest.raises(AuthError) as caught:
                await client.put_accounts([{"account": 1, "sipNumber": "2"}])
            assert caught.value.code == 10


class TestTls:
    async def test_ca_file_trusts_the_device(self, tmp_path: Path):
        """With the device's certificate as caFile, HTTPS verifies and works."""
        async with Fleet(devices=1, tls=True, cert_dir=tmp_path) as fleet, ClientPool() as pool:
            tls = TlsSpec(verify=True, ca_file=str(fleet.cert_path))
            assert fleet.devices[0].url.startswith("https://")
            assert len(await _client(pool, fleet, tls=tls).get_accounts()) == 2

    async def test_unknown_certificate_fails_verification(self, tmp_path: Path):
        """Without the caFile, the self-signed certificate is a TlsError naming the reason."""
        async with Fleet(devices=1, tls=True) as fleet, ClientPool() as pool:
            with pytest.raises(TlsError) as caught:
                await _client(pool, fleet).get_accounts()
            assert "certificate verification failed" in str(caught.value)

    async def test_verify_off_accepts_any_certificate(self):
        """verify: false talks to a device whose certificate nobody vouches for."""
        async with Fleet(devices=1, tls=True) as fleet, ClientPool() as pool:
            client = _client(pool, fleet, tls=TlsSpec(verify=False))
            assert len(await client.get_accounts()) == 2

    async def test_unreadable_ca_file_is_a_tls_error(self, tmp_path: Path):
        """A caFile that does not exist is reported as such."""
        async with Fleet(devices=1, tls=True) as fleet, ClientPool() as pool:
            tls = TlsSpec(verify=True, ca_file=str(tmp_path / "missing.pem"))
            with pytest.raises(TlsError, match="cannot load caFile"):
                await _client(pool, fleet, tls=tls).get_accounts()

    @pytest.mark.parametrize(
        ("make", "reason"),
        [
            (lambda d: d / "missing.pem", "does not exist"),
            (lambda d: d, "is a directory"),
            (lambda d: _written(d / "sip.pw", "s3cret-not-a-cert\n"), "holds no PEM certificate"),
            (
                lambda d: _written(d / "cut.pem", "-----BEGIN CERTIFICATE-----\nMIIB\n"),
                "holds a damaged PEM certificate",
            ),
        ],
    )
    async def test_a_ca_file_that_cannot_serve_is_one_plain_sentence(
        self, tmp_path: Path, make: Any, reason: str
    ):
        """A caFile missing, a directory, or without a certificate: "cannot load caFile PATH: it ...", no OpenSSL jargon, never its content."""
        path = make(tmp_path)
        async with Fleet(devices=1, tls=True) as fleet, ClientPool() as pool:
            tls = TlsSpec(verify=True, ca_file=str(path))
            with pytest.raises(TlsError) as caught:
                await _client(pool, fleet, tls=tls).get_accounts()
        assert str(caught.value) == f"cannot load caFile {path}: it {reason}"
        assert "s3cret" not in repr(caught.value)


def _written(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


class TestFaults:
    @pytest.mark.parametrize("status", [500, 503])
    async def test_5xx_is_a_transport_error(self, status):
        """HTTP 5xx is a TransportError keeping the status."""
        async with Fleet(devices=1) as fleet, ClientPool() as pool:
            fleet.devices[0].inject(kind="status", status=status)
            with pytest.raises(TransportError) as caught:
                await _client(pool, fleet).get_accounts()
            assert caught.value.status == status and f"HTTP {status}" in str(caught.value)

    async def test_dropped_connection_is_a_transport_error(self):
        """A connection closed without an answer is a TransportError."""
        async with Fleet(devices=1) as fleet, ClientPool() as pool:
            fleet.devices[0].inject(kind="drop")
            with pytest.raises(TransportError):
                await _client(pool, fleet).get_accounts()

    async def test_malformed_body_is_a_transport_error(self):
        """HTTP 200 with a body that is not JSON is a TransportError saying so."""
        async with Fleet(devices=1) as fleet, ClientPool() as pool:
            fleet.devices[0].inject(kind="malformed")
            with pytest.raises(TransportError, match="not JSON"):
                await _client(pool, fleet).get_accounts()

    async def test_timeout_is_a_transport_error(self):
        """An answer slower than the timeout is a TransportError, promptly."""
        async with Fleet(devices=1) as fleet, ClientPool(timeout=0.3) as pool:
            fleet.devices[0].inject(kind="delay", delay=3.0)
            started = asyncio.get_running_loop().time()
            with pytest.raises(TransportError, match="did not answer in time"):
                await _client(pool, fleet).get_accounts()
            assert asyncio.get_running_loop().time() - started < 2.5

    async def test_rejection_fault_with_chosen_code(self):
        """An injected success:false with code 14 is a DeviceError with that code."""
        async with Fleet(devices=1) as fleet, ClientPool() as pool:
            fleet.devices[0].inject(kind="reject", code=14, param="x")
            with pytest.raises(DeviceError) as caught:
                await _client(pool, fleet).get_accounts()
            assert caught.value.code == 14

    async def test_refused_connection_is_a_transport_error(self):
        """Nobody listening is a TransportError naming the URL."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        async with ClientPool() as pool:
            client = DeviceClient(url=f"http://127.0.0.1:{port}", pool=pool)
            with pytest.raises(TransportError, match=f"127.0.0.1:{port}"):
                await client.get_accounts()


class TestPooling:
    async def test_connections_are_reused_across_requests(self):
        """Two passes over a device use one keep-alive connection, not one each."""
        async with Fleet(devices=1) as fleet, ClientPool() as pool:
            client = _client(pool, fleet)
            for _ in range(3):
                await client.get_accounts()
            journal = fleet.devices[0].journal
            assert [e.status for e in journal] == [200, 200, 200]
            assert len({e.peer for e in journal}) == 1, "one connection carried all three"

    def test_repr_holds_no_secret(self):
        """The client's repr names the URL only."""
        pool = ClientPool()
        client = DeviceClient(url="https://192.0.2.1", pool=pool, auth=_auth("basic"))
        assert SECRET not in repr(client)
