"""One connection, many kinds of request: the front door's answers and aiohttp's hand-over.

Plain reads and PUTs are answered by :mod:`syncd.simulator.front_door`; anything
else hands the connection to the aiohttp application. Over a raw socket, so that
every request below travels on the same connection.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from email.utils import parsedate_to_datetime

import pytest

from syncd.simulator import EmulatedDevice, Fleet

BLOB = json.dumps({"accounts": [{"account": 1, "sipNumber": "4242"}]})


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, dict[str, str], bytes]:
    """Send one request, read one answer by its Content-Length: status, headers, body."""
    writer.write(request)
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(status_line.split()[1]), headers, body


def _get(path: str, *extra: str) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: device", *extra, "", ""]
    return "\r\n".join(lines).encode()


def _part(blob: str) -> bytes:
    return (
        '--xyzzy\r\nContent-Disposition: form-data; name="blob-json"\r\n\r\n'
        f"{blob}\r\n--xyzzy--\r\n"
    ).encode()


def _put(blob: str) -> bytes:
    part = _part(blob)
    head = (
        "PUT /api/phone/config HTTP/1.1\r\nHost: device\r\n"
        "Content-Type: multipart/form-data; boundary=xyzzy\r\n"
        f"Content-Length: {len(part)}\r\n\r\n"
    ).encode()
    return head + part


def _chunked_put(blob: str) -> bytes:
    part = _part(blob)
    head = (
        b"PUT /api/phone/config HTTP/1.1\r\nHost: device\r\n"
        b"Content-Type: multipart/form-data; boundary=xyzzy\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    return head + b"%x\r\n%s\r\n0\r\n\r\n" % (len(part), part)


Connection = tuple[EmulatedDevice, asyncio.StreamReader, asyncio.StreamWriter]


@pytest.fixture
async def device_connection(fleet: Fleet) -> AsyncIterator[Connection]:
    device = fleet.device(1)
    reader, writer = await asyncio.open_connection("127.0.0.1", device.port)
    yield device, reader, writer
    writer.close()


class TestOneConnection:
    async def test_reads_then_a_put_then_reads_on_one_connection(
        self, device_connection: Connection
    ) -> None:
        """A GET, a PUT and a GET after it share one connection and one peer."""
        device, reader, writer = device_connection
        status, headers, body = await _exchange(reader, writer, _get("/api/phone/config?account=1"))
        assert status == 200
        assert json.loads(body)["result"]["accounts"][0]["account"] == 1
        # Dated as aiohttp's answers are (an HTTP/1.1 origin server with a clock sends Date).
        assert parsedate_to_datetime(headers["date"]).timestamp() == pytest.approx(
            time.time(), abs=5
        )
        status, _, body = await _exchange(reader, writer, _put(BLOB))
        assert (status, json.loads(body)) == (200, {"success": True})
        status, _, body = await _exchange(reader, writer, _get("/api/phone/config?account=1"))
        assert json.loads(body)["result"]["accounts"][0]["sipNumber"] == "4242"
        journal = device.journal
        assert [(e.method, e.query) for e in journal] == [
            ("GET", {"account": "1"}),
            ("PUT", {}),
            ("GET", {"account": "1"}),
        ]
        assert len({e.peer for e in journal}) == 1
        assert journal[1].body_format == "multipart"

    async def test_a_put_in_pieces_is_read_whole(self, device_connection: Connection) -> None:
        """A PUT whose head and body arrive in separate packets is applied once, whole."""
        device, reader, writer = device_connection
        request = _put(BLOB)
        for cut in (40, len(request) - 10):
            writer.write(request[:cut])
            await writer.drain()
            await asyncio.sleep(0.05)
            request = request[cut:]
        status, _, body = await _exchange(reader, writer, request)
        assert (status, json.loads(body)) == (200, {"success": True})
        assert device.journal[-1].blob == json.loads(BLOB)
        assert device.read(1)[0]["sipNumber"] == "4242"

    async def test_a_chunked_put_goes_to_aiohttp_and_is_applied(
        self, device_connection: Connection
    ) -> None:
        """A body without Content-Length is handed over and applied as before; reads go on."""
        _, reader, writer = device_connection
        await _exchange(reader, writer, _get("/api/phone/config"))
        status, headers, body = await _exchange(reader, writer, _chunked_put(BLOB))
        assert (status, json.loads(body)) == (200, {"success": True})
        assert headers["server"].startswith("Python")  # aiohttp's answer
        status, _, body = await _exchange(reader, writer, _get("/api/phone/config?account=1"))
        assert json.loads(body)["result"]["accounts"][0]["sipNumber"] == "4242"

    async def test_a_body_over_a_mebibyte_is_code_13(self, device_connection: Connection) -> None:
        """A PUT longer than the emulator reads is refused as too big, whichever server saw it."""
        device, reader, writer = device_connection
        status, _, body = await _exchange(reader, writer, _put("x" * (1024 * 1024 + 1)))
        assert status == 200
        assert json.loads(body)["error"]["code"] == 13
        assert device.read(1)[0]["sipNumber"] != "4242"

    async def test_a_read_refused_by_the_device(self, device_connection: Connection) -> None:
        """A bad parameter gets the device's envelope on the front door's path too."""
        device, reader, writer = device_connection
        status, headers, body = await _exchange(reader, writer, _get("/api/phone/config?account=9"))
        assert status == 200
        assert headers["content-type"].startswith("application/json")
        assert json.loads(body)["error"]["code"] == 12
        assert device.journal[-1].code == 12

    async def test_a_fault_is_acted_out_though_the_request_is_a_plain_read(
        self, device_connection: Connection
    ) -> None:
        """With a fault queued the read goes to aiohttp, which acts it out, then reads are plain again."""
        device, reader, writer = device_connection
        device.inject(kind="status", status=503)
        status, _, _ = await _exchange(reader, writer, _get("/api/phone/status"))
        assert status == 503
        status, _, body = await _exchange(reader, writer, _get("/api/phone/status"))
        assert status == 200 and json.loads(body)["success"] is True
        assert [e.fault for e in device.journal] == ["status", None]

    async def test_connection_close_is_honoured(self, device_connection: Connection) -> None:
        """A read asking to close gets its answer, then the connection ends."""
        _, reader, writer = device_connection
        status, headers, _ = await _exchange(
            reader, writer, _get("/api/system/info", "Connection: close")
        )
        assert status == 200
        assert headers["connection"].lower() == "close"
        assert await asyncio.wait_for(reader.read(), 5) == b""

    async def test_garbage_gets_aiohttps_bad_request(self, device_connection: Connection) -> None:
        """A request httptools cannot parse is handed over and answered 400 as before."""
        _, reader, writer = device_connection
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n"), 5)
        assert head.split()[1] == b"400"

    async def test_admin_paths_are_served_after_reads(self, device_connection: Connection) -> None:
        """The admin API (not a device read) still answers on a connection that began with reads."""
        device, reader, writer = device_connection
        await _exchange(reader, writer, _get("/api/phone/config"))
        status, _, body = await _exchange(reader, writer, _get("/_emulator/journal"))
        assert status == 200
        assert [entry["path"] for entry in json.loads(body)] == ["/api/phone/config"]
        assert len(device.journal) == 1


async def test_a_basic_device_challenges_and_accepts_on_the_front_door() -> None:
    """Authorisation runs on the plain path: 401 with the device's challenge, then the answer."""
    async with Fleet(devices=1, auth="basic") as fleet:
        device = fleet.device(1)
        reader, writer = await asyncio.open_connection("127.0.0.1", device.port)
        try:
            status, headers, _ = await _exchange(reader, writer, _get("/api/phone/config"))
            assert status == 401
            assert headers["www-authenticate"].startswith("Basic")
            status, _, body = await _exchange(
                reader, writer, _get("/api/phone/config", "Authorization: Basic YWRtaW46c2VjcmV0")
            )
            assert status == 200 and json.loads(body)["success"] is True
        finally:
            writer.close()
