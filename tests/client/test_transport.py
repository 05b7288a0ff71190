"""The device connections (syncd/transport.py): answers, failures, keep-alive, closing."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gzip
import json
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from aiohttp import BodyPartReader, web
from pydantic import SecretStr

from syncd.client import ClientPool, DeviceClient, TransportError
from syncd.model import AuthMethod, AuthSpec
from syncd.simulator import Fleet
from syncd.transport import (
    Answer,
    ConnectFailed,
    ConnectTimedOut,
    HttpTransport,
    ReadTimedOut,
    RequestFailed,
    Target,
    Timeouts,
)


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


def _transport() -> HttpTransport:
    return HttpTransport(verify=ssl.create_default_context, keepalive_expiry=5.0)


FIVE_SECONDS = Timeouts(connect=5.0, read=5.0)


async def _get(transport: HttpTransport, url: str, timeouts: Timeouts = FIVE_SECONDS) -> Answer:
    return await transport.send("GET", Target.parse(url), headers={}, timeouts=timeouts)


async def test_an_answer_comes_back_whole_and_reads_as_an_httpx_response() -> None:
    """Status, headers and body of the device's answer reach httpx unchanged."""
    async with Fleet(devices=1) as fleet:
        transport = _transport()
        try:
            answer = await _get(transport, fleet.devices[0].url + "/api/phone/config")
        finally:
            await transport.aclose()
    response = answer.response()
    assert (answer.status, answer.reason) == (200, "OK")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["success"] is True


async def test_plain_http_never_builds_the_tls_context() -> None:
    """The TLS context (the system's CA bundle: 20-100 ms) is made at the first HTTPS request only."""

    def no_tls() -> ssl.SSLContext:
        raise AssertionError("a TLS context was built for a plain-HTTP device")

    async with Fleet(devices=1) as fleet:
        transport = HttpTransport(verify=no_tls, keepalive_expiry=5.0)
        try:
            answer = await _get(transport, fleet.devices[0].url + "/api/phone/config")
        finally:
            await transport.aclose()
    assert answer.status == 200


async def test_a_refused_connection_is_a_connect_failure_saying_so() -> None:
    """Nothing listening: ConnectFailed whose text is the reason, not the loop's wording."""
    free_port = _free_port()
    transport = _transport()
    try:
        with pytest.raises(ConnectFailed, match=r"^connection refused$"):
            await _get(transport, f"http://127.0.0.1:{free_port}/api/phone/config")
    finally:
        await transport.aclose()


async def test_a_connection_never_accepted_is_a_connect_timeout() -> None:
    """A device whose accept queue is full drops the SYN: ConnectTimedOut after the connect timeout."""
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
        url = f"http://127.0.0.1:{port}/api/phone/config"
        try:
            with pytest.raises(ConnectTimedOut):
                await _get(transport, url, Timeouts(connect=0.3, read=5.0))
        finally:
            await transport.aclose()


async def test_a_request_after_close_opens_no_new_connection() -> None:
    """A request that outlives its pool fails instead of opening connections nobody will close."""
    async with Fleet(devices=1) as fleet:
        transport = _transport()
        await transport.aclose()
        with pytest.raises(RequestFailed, match="closed"):
            await _get(transport, fleet.devices[0].url + "/api/phone/config")
        assert fleet.devices[0].journal == []


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
    """Agent, Basic credentials and query as httpx sent them; a gzip body decoded."""
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
    """The PUT: agent, Basic credentials, one blob-json part that a multipart reader reads."""
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


Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def _raw_device(script: Script) -> AsyncIterator[tuple[str, list[str]]]:
    """A device on loopback that acts out ``script`` on each connection; yields its URL and
    the peer of each connection it accepted."""
    peers: list[str] = []

    async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peers.append(str(writer.get_extra_info("peername")))
        try:
            await script(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(accepted, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", peers
    finally:
        server.close()
        await server.wait_closed()


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(raw)
    await writer.drain()


async def test_the_request_is_its_line_host_the_headers_given_and_the_body_length() -> None:
    """Nothing else rides along: no Accept-Encoding, no cookies, no Connection header."""
    seen: list[bytes] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        seen.append(head + await reader.readexactly(length))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
        await writer.drain()

    async with _raw_device(record) as (url, _):
        transport = _transport()
        try:
            target = Target.parse(url + "/api/phone/config?account=1")
            headers = {"User-Agent": "syncd/test"}
            answer = await transport.send(
                "PUT", target, headers=headers, timeouts=Timeouts(5.0, 5.0), body=b"abc"
            )
        finally:
            await transport.aclose()
    assert answer.content == b"{}"
    assert seen == [
        b"PUT /api/phone/config?account=1 HTTP/1.1\r\n"
        + f"Host: {target.authority}\r\n".encode()
        + b"User-Agent: syncd/test\r\nContent-Length: 3\r\n\r\nabc"
    ]


async def test_a_chunked_answer_and_one_that_ends_with_the_connection_are_read_whole() -> None:
    """Whatever framing the device's web server picks, the answer is the whole body."""
    chunked = (
        b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{"a":\r\n2\r\n1}\r\n0\r\n\r\n'
    )
    until_close = b'HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{"b":2}'
    answers: list[Answer] = []
    for raw in (chunked, until_close):
        async with _raw_device(functools.partial(_answer, raw=raw)) as (url, _):
            transport = _transport()
            try:
                answers.append(await _get(transport, url + "/api/phone/config"))
            finally:
                await transport.aclose()
    assert [a.content for a in answers] == [b'{"a":1}', b'{"b":2}']


async def test_a_device_that_closes_without_an_answer_is_a_read_error() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")

    async with _raw_device(hang_up) as (url, _):
        transport = _transport()
        try:
            with pytest.raises(RequestFailed, match="closed the connection with no answer"):
                await _get(transport, url + "/api/phone/config")
        finally:
            await transport.aclose()


async def test_a_device_that_never_answers_is_a_read_timeout_after_the_read_timeout() -> None:
    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(5)

    async with _raw_device(mute) as (url, _):
        transport = _transport()
        try:
            started = asyncio.get_running_loop().time()
            with pytest.raises(ReadTimedOut):
                await _get(transport, url + "/api/phone/config", Timeouts(5.0, 0.2))
            assert asyncio.get_running_loop().time() - started < 2.0
        finally:
            await transport.aclose()


async def test_each_answer_has_its_own_read_timeout_on_a_kept_connection() -> None:
    """The timeout of an answer that came ends with it: the next request on the same
    connection, answered within its own timeout, is not cut off by the first one's."""
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"

    async def second_slower(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _answer(reader, writer, ok)
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(0.3)  # past the first request's timeout, within the second's
        writer.write(ok)
        await writer.drain()
        await asyncio.sleep(5)

    async with _raw_device(second_slower) as (url, peers):
        transport = _transport()
        try:
            timeouts = Timeouts(5.0, 0.4)
            assert (await _get(transport, url + "/api/phone/config", timeouts)).status == 200
            await asyncio.sleep(0.2)
            assert (await _get(transport, url + "/api/phone/config", timeouts)).status == 200
        finally:
            await transport.aclose()
    assert len(peers) == 1  # the same connection carried both


async def test_a_connection_is_kept_for_the_next_request_unless_the_device_ends_it() -> None:
    """Kept alive: one connection for two requests. ``Connection: close``, or a device that
    hung up while it was idle: the next request opens a new one, and does not fail."""
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"

    async def keep(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(2):
            await _answer(reader, writer, ok)

    async def close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _answer(reader, writer, ok.replace(b"OK\r\n", b"OK\r\nConnection: close\r\n"))

    async def idle_hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _answer(reader, writer, ok)  # then closes, though it said nothing

    connections = []
    for script in (keep, close, idle_hang_up):
        async with _raw_device(script) as (url, peers):
            transport = _transport()
            try:
                for _ in range(2):
                    assert (await _get(transport, url + "/api/phone/config")).status == 200
                    await asyncio.sleep(0.05)
            finally:
                await transport.aclose()
            connections.append(len(peers))
    assert connections == [1, 2, 2]


async def test_an_idle_connection_is_closed_after_the_keepalive_expiry() -> None:
    closed = asyncio.Event()

    async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _answer(reader, writer, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        assert await reader.read() == b""  # the client's end, at its expiry
        closed.set()

    async with _raw_device(once) as (url, _):
        transport = HttpTransport(verify=ssl.create_default_context, keepalive_expiry=0.1)
        try:
            await _get(transport, url + "/api/phone/config")
            await asyncio.wait_for(closed.wait(), 2.0)
        finally:
            await transport.aclose()


async def test_a_header_with_a_line_break_is_refused_before_anything_is_sent() -> None:
    async def never(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise AssertionError("a connection was opened")

    async with _raw_device(never) as (url, peers):
        transport = _transport()
        try:
            with pytest.raises(ValueError, match="line break"):
                await transport.send(
                    "GET",
                    Target.parse(url + "/"),
                    headers={"User-Agent": "syncd\r\nX-Injected: 1"},
                    timeouts=Timeouts(5.0, 5.0),
                )
        finally:
            await transport.aclose()
    assert peers == []


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://10.0.0.7/api/x", Target("http", "10.0.0.7", 80, "10.0.0.7", "/api/x")),
        ("http://10.0.0.7:80", Target("http", "10.0.0.7", 80, "10.0.0.7", "/")),
        (
            "https://door.example:8443/a?b=1",
            Target("https", "door.example", 8443, "door.example:8443", "/a?b=1"),
        ),
        ("https://[fd00::7]/api", Target("https", "fd00::7", 443, "[fd00::7]", "/api")),
        ("https://[fd00::7]:8443/api", Target("https", "fd00::7", 8443, "[fd00::7]:8443", "/api")),
        (
            "http://dveře.example",
            Target("http", "xn--dvee-d5a.example", 80, "xn--dvee-d5a.example", "/"),
        ),
    ],
)
def test_a_url_is_parsed_into_address_host_header_and_request_target(
    url: str, expected: Target
) -> None:
    assert Target.parse(url) == expected


@pytest.mark.parametrize("url", ["ftp://10.0.0.7/", "http:///api", "http://10.0.0.7/a b"])
def test_a_url_that_cannot_be_requested_is_refused(url: str) -> None:
    with pytest.raises(ValueError):
        Target.parse(url)


async def test_an_interim_answer_is_skipped_for_the_answer_that_follows_it() -> None:
    """``100 Continue`` or ``103 Early Hints`` first (a proxy, a web server): the answer is the
    final one, and the next request on the connection gets its own."""
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s"

    async def interim(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for n, first in enumerate(
            (b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n")
        ):
            await reader.readuntil(b"\r\n\r\n")
            body = b'{"n":%d}' % n
            writer.write(first + ok % (len(body), body))
            await writer.drain()

    async with _raw_device(interim) as (url, peers):
        transport = _transport()
        try:
            first = await _get(transport, url + "/a")
            second = await _get(transport, url + "/b")
        finally:
            await transport.aclose()
    assert [(a.status, a.content) for a in (first, second)] == [
        (200, b'{"n":0}'),
        (200, b'{"n":1}'),
    ]
    assert second.raw_headers == ((b"Content-Length", b"7"),)
    assert len(peers) == 1


async def test_an_answer_cut_short_is_a_failure_that_says_so() -> None:
    """Headers and part of the body, then the device hangs up, or resets an answer that
    would end at the connection's end: never taken as a whole answer."""

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _answer(reader, writer, b'HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n{"success":')

    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _answer(reader, writer, b'HTTP/1.0 200 OK\r\n\r\n{"success":')
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # an RST, not a FIN

    for script, reason in (
        (hang_up, "mid-answer: connection closed"),
        (reset, "mid-answer: connection reset"),
    ):
        async with _raw_device(script) as (url, _):
            transport = _transport()
            try:
                with pytest.raises(RequestFailed, match=reason):
                    await _get(transport, url + "/api/phone/config")
            finally:
                await transport.aclose()


async def test_a_compressed_answer_that_cannot_be_decoded_is_a_transport_error_of_that_device() -> (
    None
):
    """One device's broken gzip fails that device with a sentence, not the whole pass."""
    broken = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 9\r\n\r\nnot gzip!"
    device = _raw_device(functools.partial(_answer, raw=broken))
    async with device as (url, _), ClientPool(timeout=5.0) as pool:
        client = DeviceClient(url=url, pool=pool)
        with pytest.raises(TransportError, match="compressed body that cannot be decoded"):
            await client.get_accounts()
