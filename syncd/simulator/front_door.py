"""The protocol on every device port: plain device-API reads answered here, the rest by aiohttp.

A resync is thousands of ``GET /api/phone/config`` (and ``/api/phone/status``)
on new connections, and a rollout adds a ``PUT`` and the ``GET`` that
verifies it. Through aiohttp's web stack each cost the emulator about 0.3 ms
of CPU, a multipart ``PUT`` about 0.7 ms, and the emulator shares the
benchmark machine with the syncd it stands in for. So a connection starts
with :class:`FrontDoor`: requests are parsed by httptools (the parser
uvloop's authors keep), and a ``GET`` or ``PUT`` to one of the device API's
paths, with no body or a ``Content-Length`` one of at most
:data:`MAX_REQUEST_BYTES`, on a device with no fault queued, is answered here
through the same body reader, endpoint functions, authorisation, latency and
journal as the aiohttp handlers use. Anything else (another method, a chunked
body, a fault to act out, an admin path, a parse error) hands the connection,
from the first byte of that request, to the aiohttp application, which keeps
it.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections import deque
from collections.abc import Callable
from email.utils import formatdate
from http import HTTPStatus
from typing import Final, NamedTuple, cast
from urllib.parse import parse_qsl

import httptools

from syncd.simulator.device import EmulatedDevice
from syncd.simulator.device_api import DEVICE_ENDPOINTS, Answer, Call, answer
from syncd.simulator.journal import JournalEntry
from syncd.simulator.request_body import MAX_REQUEST_BYTES, NO_BODY, ReceivedBody, read_body

__all__ = ["FrontDoor"]

_READS: Final = DEVICE_ENDPOINTS
_KEPT_HEADERS: Final = frozenset({b"authorization", b"user-agent", b"content-type"})
_BODY_HEADERS: Final = frozenset({b"transfer-encoding", b"expect", b"upgrade"})
_METHODS: Final = frozenset({b"GET", b"PUT"})


class _Request(NamedTuple):
    """A request the front door answers, as read."""

    method: str
    target: tuple[str, str]  # the path and the raw query
    headers: dict[bytes, bytes]
    body: ReceivedBody
    keep_alive: bool
    received_at: float


class FrontDoor(asyncio.Protocol):
    """One connection to ``device``; ``hand_over()`` gives the aiohttp protocol that takes over."""

    def __init__(
        self,
        device: EmulatedDevice,
        hand_over: Callable[[], asyncio.Protocol],
        connections: set[FrontDoor],
    ) -> None:
        self._device = device
        self._hand_over = hand_over
        self._connections = connections
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._peer = ""
        self._pending = bytearray()  # the bytes of the request being read
        self._reading = False  # between a request's first byte and its last
        self._completed_in_chunk = False
        self._pipelined = False
        self._url = b""
        self._target: tuple[str, str] | None = None  # the path and raw query of a plain request
        self._headers: dict[bytes, bytes] = {}
        self._body = bytearray()
        self._plain = True  # the request being read can be answered here
        self._answers: deque[asyncio.TimerHandle | asyncio.Handle] = deque()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._connections.add(self)
        peer = transport.get_extra_info("peername")
        self._peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else ""

    def connection_lost(self, exc: Exception | None) -> None:
        self._connections.discard(self)
        for handle in self._answers:
            handle.cancel()
        self._answers.clear()
        self._transport = None

    def data_received(self, data: bytes) -> None:
        self._pending += data
        self._completed_in_chunk = False
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._plain = False
        except httptools.HttpParserError:
            self._plain = False  # aiohttp answers the bad request as it always has
        if not self._plain:
            self._give_away()
        elif not self._reading:
            self._pending.clear()

    def close(self) -> None:
        """Close the connection (the fleet is stopping)."""
        if self._transport is not None:
            self._transport.close()

    # httptools callbacks

    def on_message_begin(self) -> None:
        self._reading = True
        self._pipelined = self._completed_in_chunk or bool(self._answers)
        self._url = b""
        self._target = None
        self._headers = {}
        self._body = bytearray()
        self._plain = True

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name in _KEPT_HEADERS:
            self._headers[name] = value
        elif name in _BODY_HEADERS:
            self._plain = False
        elif name == b"content-length":
            length = value.strip()
            if not (length.isdigit() and int(length) <= MAX_REQUEST_BYTES):
                self._plain = False  # never back to True: a header before may have ruled it out

    def on_body(self, body: bytes) -> None:
        if self._plain:
            self._body += body

    def on_headers_complete(self) -> None:
        if not self._plain or self._parser.get_method() not in _METHODS or self._device.has_faults:
            self._plain = False
            return
        try:
            parts = httptools.parse_url(self._url)
        except httptools.HttpParserInvalidURLError:
            self._plain = False
            return
        self._plain = parts.path.decode("latin-1") in _READS
        if self._plain:
            self._target = (parts.path.decode("latin-1"), (parts.query or b"").decode("latin-1"))

    def on_message_complete(self) -> None:
        self._reading = False
        self._completed_in_chunk = True
        if not self._plain or self._target is None:
            return
        received_at = time.time()
        headers = self._headers
        content_type = headers.get(b"content-type", b"").decode("latin-1")
        request = _Request(
            method=self._parser.get_method().decode("latin-1"),
            target=self._target,
            headers=headers,
            body=read_body(content_type, bytes(self._body)) if self._body else NO_BODY,
            keep_alive=self._parser.should_keep_alive(),
            received_at=received_at,
        )
        loop = asyncio.get_running_loop()
        if self._device.latency > 0:
            handle: asyncio.TimerHandle | asyncio.Handle = loop.call_later(
                self._device.latency, self._answer, request
            )
        else:
            handle = loop.call_soon(self._answer, request)
        self._answers.append(handle)

    # answering

    def _answer(self, request: _Request) -> None:
        self._answers.popleft()  # answers go out in the order their requests came
        transport = self._transport
        if transport is None:
            return
        path, raw_query = request.target
        headers, body = request.headers, request.body
        endpoint = _READS[path]
        query = dict(reversed(parse_qsl(raw_query, keep_blank_values=True)))
        authorization = headers.get(b"authorization")
        call = Call(
            device=self._device,
            method=request.method,
            uri=path + (f"?{raw_query}" if raw_query else ""),
            query=query,
            authorization=None if authorization is None else authorization.decode("latin-1"),
            body=body,
        )
        given = answer(endpoint, call)
        self._device.record(
            JournalEntry(
                time=request.received_at,
                method=request.method,
                path=path,
                query=query,
                content_type=headers.get(b"content-type", b"").decode("latin-1"),
                body_format=body.format,
                blob_text=body.text,
                blob=body.document,
                status=given.status,
                code=given.code,
                fault=None,
                user_agent=headers.get(b"user-agent", b"").decode("latin-1"),
                peer=self._peer,
                started=request.received_at,
                finished=time.time(),
            )
        )
        transport.write(_http(given, keep_alive=request.keep_alive))
        if not request.keep_alive:
            transport.close()

    def _give_away(self) -> None:
        """Hand the connection, from this request's first byte, to the aiohttp protocol."""
        transport = self._transport
        if transport is None:
            return
        if self._pipelined or self._answers:
            transport.close()  # a request sent before the last was answered: not worth the care
            return
        data, self._pending = bytes(self._pending), bytearray()
        self._connections.discard(self)
        protocol = self._hand_over()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        protocol.data_received(data)


def _http(given: Answer, *, keep_alive: bool) -> bytes:
    body = json.dumps(given.document).encode() if given.text is None else given.text.encode()
    head = [
        f"HTTP/1.1 {given.status} {HTTPStatus(given.status).phrase}",
        f"Content-Type: {given.content_type}; charset=utf-8",
        f"Content-Length: {len(body)}",
        f"Date: {_date_of(int(time.time()))}",
        *(f"{name}: {value}" for name, value in given.headers),
    ]
    if not keep_alive:
        head.append("Connection: close")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


@functools.lru_cache(maxsize=2)
def _date_of(second: int) -> str:
    """The ``Date`` header's value (RFC 9110's IMF-fixdate), made once a second."""
    return formatdate(second, usegmt=True)
