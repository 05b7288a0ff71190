"""httpx over aiohttp (syncd/transport.py): answers, failures in httpx's terms, and closing."""

from __future__ import annotations

import contextlib
import gzip
import json
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from aiohttp import BodyPartReader, web
from pydantic import SecretStr

from syncd.client import ClientPool, DeviceClient
from syncd.model import AuthMethod, AuthSpec
from syncd.simulator import Fleet
from syncd.transport import AiohttpTransport


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


Handler = Callable[[web.Request], Awaitable[web.Response]]


@contextlib.asynccontextmanager
async def _device(config: Handler, method: str = "GET") -> AsyncIterator[str]:
    """A device on loopback whose ``{method} /api/phone/config`` is ``config``; yields its URL."""
    app = web.Application()
    app.router.add_route(method, "/api/phone/config", config)
    runner = web.AppRunner(app)
    await runner.setup()
    port = _free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def _transport() -> AiohttpTransport:
    return AiohttpTransport(verify=ssl.create_default_context, keepalive_expiry=5.0)


async def test_an_answer_comes_back_as_an_httpx_response() -> None:
    """Status, headers and body of the device's answer reach httpx unchanged."""
    async with Fleet(devices=1) as fleet:
        transport = _transport()
        try:
            request = httpx.Request("GET", fleet.devices[0].url + "/api/phone/config")
            response = await transport.handle_async_request(request)
            await response.aread()
        finally:
            await transport.aclose()
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["success"] is True


async def test_plain_http_never_builds_the_tls_context() -> None:
    """The TLS context (the system's CA bundle: 20-100 ms) is made at the first HTTPS request only."""

    def no_tls() -> ssl.SSLContext:
        raise AssertionError("a TLS context was built for a plain-HTTP device")

    async with Fleet(devices=1) as fleet:
        transport = AiohttpTransport(verify=no_tls, keepalive_expiry=5.0)
        try:
            request = httpx.Request("GET", fleet.devices[0].url + "/api/phone/config")
            response = await transport.handle_async_request(request)
        finally:
            await transport.aclose()
    assert response.status_code == 200


async def test_a_refused_connection_is_an_httpx_connect_error_saying_so() -> None:
    """Nothing listening: httpx.ConnectError whose text is the reason, not aiohttp's wording."""
    free_port = _free_port()
    transport = _transport()
    try:
        with pytest.raises(httpx.ConnectError, match=r"^connection refused$"):
            await transport.handle_async_request(
                httpx.Request("GET", f"http://127.0.0.1:{free_port}/api/phone/config")
            )
    finally:
        await transport.aclose()


async def test_a_connection_never_accepted_is_an_httpx_connect_timeout() -> None:
    """A device whose accept queue is full drops the SYN: ConnectTimeout after the connect timeout."""
    with contextlib.ExitStack() as stack:
        listener = stack.enter_context(socket.socket())
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(4):  # fill the accept queue; nothing ever accepts
            filler = stack.enter_context(socket.socket())
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
        transport = _transport()
        request = httpx.Request(
            "GET",
            f"http://127.0.0.1:{port}/api/phone/config",
            extensions={"timeout": {"connect": 0.3, "read": 5.0}},
        )
        try:
            with pytest.raises(httpx.ConnectTimeout):
                await transport.handle_async_request(request)
        finally:
            await transport.aclose()


async def test_a_request_after_close_opens_no_new_session() -> None:
    """A request that outlives its pool fails instead of opening connections nobody will close."""
    async with Fleet(devices=1) as fleet:
        transport = _transport()
        await transport.aclose()
        with pytest.raises(httpx.ReadError, match="closed"):
            await transport.handle_async_request(
                httpx.Request("GET", fleet.devices[0].url + "/api/phone/config")
            )


async def test_a_cookie_a_device_sets_is_never_sent_back() -> None:
    """Answers are not read for cookies: a Set-Cookie is not returned on the next request."""
    seen: list[str | None] = []

    async def config(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Cookie"))
        response = web.json_response({"success": True, "result": {"accounts": []}})
        response.set_cookie("session", "s3cr3t")
        return response

    async with _device(config) as url, ClientPool(timeout=5.0) as pool:
        client = DeviceClient(url=url, pool=pool)
        assert await client.get_accounts() == []
        assert await client.get_accounts() == []
    assert seen == [None, None]


async def test_a_get_without_digest_sends_what_httpx_would_and_reads_any_body() -> None:
    """Straight to aiohttp: agent, Basic credentials and query as httpx sent them; gzip decoded."""
    seen: list[tuple[str | None, str | None, str]] = []

    async def config(request: web.Request) -> web.Response:
        seen.append(
            (
                request.headers.get("User-Agent"),
                request.headers.get("Authorization"),
                request.query_string,
            )
        )
        body = json.dumps({"success": True, "result": {"accounts": [{"account": 1}]}}).encode()
        # Compressed though nobody asked: a device may.
        return web.Response(
            body=gzip.compress(body),
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        )

    auth = AuthSpec(AuthMethod.BASIC, "admin", SecretStr("pässword"))
    async with _device(config) as url, ClientPool(timeout=5.0, node="node-a") as pool:
        client = DeviceClient(url=url + "/", pool=pool, auth=auth)
        assert await client.get_accounts() == [{"account": 1}]
        assert await client.get_accounts(account=1) == [{"account": 1}]
    expected = httpx.BasicAuth("admin", "pässword")._auth_header
    assert seen == [
        (pool.user_agent, expected, ""),
        (pool.user_agent, expected, "account=1"),
    ]
    assert pool.user_agent.endswith("(node-a)")


async def test_a_put_without_digest_sends_what_httpx_would() -> None:
    """The PUT goes straight to aiohttp too: agent, Basic credentials, one blob-json part."""
    seen: list[tuple[str | None, str | None, str, str | None, str | None, bytes]] = []

    async def config(request: web.Request) -> web.Response:
        reader = await request.multipart()
        part = await reader.next()
        assert isinstance(part, BodyPartReader)
        seen.append(
            (
                request.headers.get("User-Agent"),
                request.headers.get("Authorization"),
                request.content_type,
                part.name,
                part.headers.get("Content-Type"),
                await part.read(),
            )
        )
        assert await reader.next() is None
        return web.json_response({"success": True})

    auth = AuthSpec(AuthMethod.BASIC, "admin", SecretStr("pässword"))
    async with _device(config, "PUT") as url, ClientPool(timeout=5.0) as pool:
        client = DeviceClient(url=url, pool=pool, auth=auth)
        await client.put_accounts([{"account": 1, "displayName": "Döor"}])
    blob = json.dumps({"accounts": [{"account": 1, "displayName": "Döor"}]}, separators=(",", ":"))
    assert seen == [
        (
            pool.user_agent,
            httpx.BasicAuth("admin", "pässword")._auth_header,
            "multipart/form-data",
            "blob-json",
            "application/json",
            blob.encode(),
        )
    ]
