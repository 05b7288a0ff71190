"""Device requests over the event loop's own connections, answers read by httptools.

A pass is thousands of short HTTP/1.1 exchanges, each device on its own
connection, four requests at most before it is closed. For that, a general
client's machinery (sessions, middlewares, cookie jars, redirects, stream
readers, tracing) is most of the CPU: aiohttp's client spent ~2.3 ms per
changed device (GET, call status, PUT, GET) where the event loop's own
connection with the answers parsed by httptools (llhttp, as uvloop's authors
keep it, and as the emulator reads its requests) spends ~0.6 ms, and on a
large fleet that CPU is what a pass waits for. What stays is what a device
needs: one connection per device, kept between the requests of one visit
and closed ``keepalive_expiry`` seconds after; TLS by the loop (a context
per TLS setting, made at the first HTTPS request); a connect and a read
timeout. The bytes of a request are the request line, ``Host``, the
caller's headers and ``Content-Length``; the answer is read whole. No
cookies, no redirects, no compression asked (an answer compressed unasked
is decoded by the caller, :mod:`syncd.client`).

A request that got no answer raises :class:`RequestFailed`: a timeout is
:class:`TimedOut` (:class:`ConnectTimedOut` or :class:`ReadTimedOut`), a
connection that could not be made :class:`ConnectFailed` (with the OS or
``ssl`` error as its cause), anything else (the device hung up, or answered
what is not HTTP) :class:`RequestFailed` itself. httpx is imported only
where an answer needs its model (a challenge, a compressed body): a pass over
devices that ask for neither never loads it.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, NamedTuple, cast
from urllib.parse import urlsplit

import httptools

if TYPE_CHECKING:
    import httpx

__all__ = [
    "Answer",
    "ConnectFailed",
    "ConnectTimedOut",
    "HttpTransport",
    "ReadTimedOut",
    "RequestFailed",
    "Target",
    "TimedOut",
    "Timeouts",
]


class RequestFailed(Exception):
    """A request got no answer; the text says why, in a few plain words."""


class ConnectFailed(RequestFailed):
    """The connection, or its TLS handshake, could not be made."""


class TimedOut(RequestFailed):
    """No connection, or no answer, within its timeout."""


class ConnectTimedOut(TimedOut):
    """The connection (TLS handshake included) was not made within the connect timeout."""


class ReadTimedOut(TimedOut):
    """The answer did not come within the read timeout."""


class Target(NamedTuple):
    """Where a request goes, parsed once from a URL: ``http://10.0.0.7:8080/api/x?y=1``."""

    scheme: str
    host: str
    port: int
    #: The ``Host`` header: the host, with the port unless it is the scheme's own.
    authority: str
    #: The request target: path and query.
    path: str

    @classmethod
    def parse(cls, url: str) -> Target:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url}")
        default = 443 if parts.scheme == "https" else 80
        port = parts.port or default
        host = parts.hostname
        if not host.isascii():  # a name in letters of its own: its DNS (punycode) form
            host = host.encode("idna").decode("ascii")
        shown = f"[{host}]" if ":" in host else host
        authority = shown if port == default else f"{shown}:{port}"
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if " " in path:
            raise ValueError(f"a space in a URL's path: {url}")
        return cls(parts.scheme, host, port, authority, path)


class Timeouts(NamedTuple):
    """Seconds to open a connection (TLS handshake included), and to wait for an answer."""

    connect: float | None
    read: float | None


class Answer(NamedTuple):
    """A device's answer, read whole: what :meth:`HttpTransport.send` returns."""

    status: int
    raw_headers: tuple[tuple[bytes, bytes], ...]
    reason: str | None
    content: bytes

    def response(self, request: httpx.Request | None = None) -> httpx.Response:
        """The answer as an httpx response (which decodes a compressed body)."""
        import httpx

        extensions = {"http_version": b"HTTP/1.1", "reason_phrase": (self.reason or "").encode()}
        return httpx.Response(
            self.status,
            headers=self.raw_headers,
            content=self.content,
            request=request,
            extensions=extensions,
        )


def _reason(error: OSError) -> str:
    """``connection refused``, not ``[Errno 111] Connect call failed ('10.0.0.7', 443)``."""
    if isinstance(error.errno, int) and error.errno > 0:
        return os.strerror(error.errno).lower()
    return (error.strerror or str(error) or type(error).__name__).lower()


_LENGTH_HEADERS = frozenset({b"content-length", b"transfer-encoding"})


class _Connection(asyncio.Protocol):
    """One connection to a device: a request written, its answer parsed as it arrives."""

    def __init__(self, lost: Callable[[_Connection], None]) -> None:
        self._lost = lost
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._answer: asyncio.Future[Answer] | None = None
        self._reason = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._until_eof = False  # the answer has neither a length nor chunks: it ends at EOF
        self._begun = False  # the answer's status line and headers are read
        self._ended = False  # closed, by either end, or closing
        self._keep_alive = False  # the last answer was whole and allows another request
        self._timer: asyncio.TimerHandle | None = None  # the read timeout of the answer awaited

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self._fail(RequestFailed(f"the answer is not HTTP/1.1: {exc or type(exc).__name__}"))
            self.close()

    def eof_received(self) -> bool:
        self._ended = True
        return False  # close our end too

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended = True
        self._transport = None
        self._lost(self)
        if self._until_eof and exc is None:  # the end of an answer that ends at EOF
            self.on_message_complete()
        else:
            reason = _reason(exc) if isinstance(exc, OSError) else "connection closed"
            when = "mid-answer" if self._begun else "with no answer"
            self._fail(RequestFailed(f"the device closed the connection {when}: {reason}"))
        # The parser holds this protocol's methods, and this protocol the parser: a cycle
        # only the garbage collector would free, and nearly all it found in a pass
        # (212,000 objects at 10,000 devices). Nothing is parsed after the end.
        del self._parser

    # httptools callbacks

    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        lengths = {name.lower() for name, _ in self._headers} & _LENGTH_HEADERS
        status = self._parser.get_status_code()
        self._until_eof = not lengths and status >= 200 and status not in (204, 304)
        self._begun = True

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._until_eof = self._begun = False
        status = self._parser.get_status_code()
        if 100 <= status < 200 and status != 101:  # interim (100 Continue, 103): the answer follows
            self._reason, self._headers, self._body = b"", [], []
            return
        answer = Answer(
            status,
            tuple(self._headers),
            self._reason.decode("latin-1") or None,
            b"".join(self._body),
        )
        self._keep_alive = self._parser.should_keep_alive()
        pending, self._answer = self._answer, None
        self._stop_timer()
        if pending is not None and not pending.done():
            pending.set_result(answer)
        else:  # an answer nobody asked for: the connection cannot be trusted
            self.close()

    # the transport's side

    def exchange(self, data: bytes, timeout: float | None) -> asyncio.Future[Answer]:
        """Write one request; the future is its answer, or :class:`ReadTimedOut` after
        ``timeout`` seconds (None: no limit), which closes the connection.

        The timeout is a timer on this connection rather than ``asyncio.timeout``
        around the wait: that costs a task cancellation's bookkeeping per request.
        """
        assert self._transport is not None and self._answer is None
        self._keep_alive = self._begun = False  # until this answer is whole
        self._reason, self._headers, self._body = b"", [], []
        loop = asyncio.get_running_loop()
        self._answer = loop.create_future()
        if timeout is not None:
            self._timer = loop.call_later(timeout, self._timed_out)
        self._transport.write(data)
        return self._answer

    def _timed_out(self) -> None:
        self._timer = None
        self._fail(ReadTimedOut("read timed out"))
        self.close()

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    @property
    def reusable(self) -> bool:
        """Whether another request may be written: the last answer was whole and allowed
        keep-alive, and neither end has closed the connection since."""
        return self._keep_alive and not self._ended

    def close(self) -> None:
        self._ended = True
        self._stop_timer()
        if self._transport is not None:
            self._transport.close()

    def _fail(self, error: Exception) -> None:
        pending, self._answer = self._answer, None
        self._stop_timer()
        if pending is not None and not pending.done():
            pending.set_exception(error)


class HttpTransport:
    """The connections of every device with one TLS setting.

    No limit on connections (callers bound how many devices are in flight). A
    connection left idle is closed after ``keepalive_expiry`` seconds: the
    requests of one visit share it; a resync, later, opens a new one.
    """

    def __init__(self, *, verify: Callable[[], ssl.SSLContext], keepalive_expiry: float) -> None:
        #: The TLS context, made at the first HTTPS request: loading the system's
        #: CA bundle costs 20-100 ms that a plain-HTTP fleet never needs.
        self._verify = verify
        self._context: ssl.SSLContext | None = None
        self._keepalive_expiry = keepalive_expiry
        self._idle: dict[tuple[str, str, int], tuple[_Connection, asyncio.TimerHandle]] = {}
        self._open: set[_Connection] = set()
        self._closed = False

    async def send(
        self,
        method: str,
        target: Target,
        *,
        headers: Mapping[str, str],
        timeouts: Timeouts,
        body: bytes | None = None,
    ) -> Answer:
        """One request and its whole answer; no answer raises :class:`RequestFailed`."""
        if self._closed:  # a request that outlived its pool: no new connection for it
            raise RequestFailed("the connection pool is closed")
        data = _request(method, target, headers, body)
        key = (target.scheme, target.host, target.port)
        connection = self._take(key) or await self._connect(target, timeouts.connect)
        try:
            answer = await connection.exchange(data, timeouts.read)
        except BaseException:  # the timeout, the device's hang-up, or this task cancelled
            connection.close()
            raise
        if connection.reusable and not self._closed:
            self._keep(key, connection)
        else:
            connection.close()
        return answer

    def _take(self, key: tuple[str, str, int]) -> _Connection | None:
        kept = self._idle.pop(key, None)
        if kept is None:
            return None
        connection, expiry = kept
        expiry.cancel()
        if connection.reusable:
            return connection
        connection.close()
        return None

    def _keep(self, key: tuple[str, str, int], connection: _Connection) -> None:
        loop = asyncio.get_running_loop()
        expiry = loop.call_later(self._keepalive_expiry, self._expire, key, connection)
        previous = self._idle.get(key)
        self._idle[key] = (connection, expiry)
        if previous is not None:  # two visits to one address at once: keep the last
            previous[1].cancel()
            previous[0].close()

    def _expire(self, key: tuple[str, str, int], connection: _Connection) -> None:
        kept = self._idle.get(key)
        if kept is not None and kept[0] is connection:
            del self._idle[key]
        connection.close()

    async def _connect(self, target: Target, timeout: float | None) -> _Connection:
        loop = asyncio.get_running_loop()
        context = self._tls() if target.scheme == "https" else None
        try:
            async with asyncio.timeout(timeout):
                _, connection = await loop.create_connection(
                    lambda: _Connection(self._open.discard), target.host, target.port, ssl=context
                )
        except TimeoutError:
            raise ConnectTimedOut("connect timed out") from None
        except ssl.SSLError as exc:  # before OSError, which it is: its errno is not the reason
            raise ConnectFailed(getattr(exc, "verify_message", None) or str(exc)) from exc
        except OSError as exc:
            raise ConnectFailed(_reason(exc)) from exc
        self._open.add(connection)
        return connection

    def _tls(self) -> ssl.SSLContext:
        if self._context is None:
            self._context = self._verify()
        return self._context

    async def aclose(self) -> None:
        """Close every connection, idle or in use; later requests fail."""
        self._closed = True
        for connection, expiry in self._idle.values():
            expiry.cancel()
            connection.close()
        self._idle.clear()
        for connection in list(self._open):
            connection.close()
        await asyncio.sleep(0)  # let the loop run the transports' closing


def _request(
    method: str,
    target: Target,
    headers: Mapping[str, str],
    body: bytes | None,
) -> bytes:
    """The bytes of a request: its line, ``Host``, the headers given, ``Content-Length``."""
    lines = [f"{method} {target.path} HTTP/1.1", f"Host: {target.authority}"]
    lines.extend(f"{name}: {value}" for name, value in headers.items())
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    if any("\r" in line or "\n" in line for line in lines):
        raise ValueError("a request header holds a line break")
    data = ("\r\n".join(lines) + "\r\n\r\n").encode()
    return data + body if body else data
