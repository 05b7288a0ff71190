"""Device requests carried over aiohttp's connection pool.

syncd speaks to devices in httpx's terms (its multipart encoding, Digest
flow and error types), but httpx's own transport, httpcore on anyio, costs
about twice the CPU per request of aiohttp's C-accelerated client (measured
over 1,000 devices, a new connection each: 0.83 against 0.55 CPU-ms per GET).
On a large fleet that CPU is what a pass waits for, so the bytes go through
aiohttp: one ``ClientSession`` per TLS setting, keyed internally by host and
port, so a pass over N devices costs O(N) whatever the number of idle
connections kept. The device client calls :meth:`AiohttpTransport.send`
directly, skipping httpx's client and response model too: they were a third
of a GET's CPU, and 0.15 ms of a changed device's 1.7.
:meth:`AiohttpTransport.handle_async_request` carries an ``httpx`` request
for a caller that has one.

aiohttp's failures come back as httpx's, so callers see one vocabulary:
a timeout is :class:`httpx.TimeoutException`, a failed connection
:class:`httpx.ConnectError` (with the ``ssl`` error as its cause, when there
is one), anything else that left no answer :class:`httpx.ReadError`.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import Callable
from typing import Any, NamedTuple

import aiohttp
import httpx
from yarl import URL

__all__ = ["AiohttpTransport", "Answer"]


def _reason(error: OSError) -> str:
    """``connection refused``, not ``[Errno 111] Connect call failed ('10.0.0.7', 443)``."""
    if isinstance(error.errno, int) and error.errno > 0:
        return os.strerror(error.errno).lower()
    return (error.strerror or str(error) or type(error).__name__).lower()


class Answer(NamedTuple):
    """A device's answer, read whole: what :meth:`AiohttpTransport.send` returns."""

    status: int
    raw_headers: tuple[tuple[bytes, bytes], ...]
    reason: str | None
    content: bytes

    def response(self, request: httpx.Request | None = None) -> httpx.Response:
        """The answer as an httpx response (which decodes a compressed body)."""
        extensions = {"http_version": b"HTTP/1.1", "reason_phrase": (self.reason or "").encode()}
        return httpx.Response(
            self.status,
            headers=self.raw_headers,
            content=self.content,
            request=request,
            extensions=extensions,
        )


class _Connector(aiohttp.TCPConnector):
    """aiohttp's connector; a plain connection to one address is made by the event loop itself.

    aiohttp connects through aiohappyeyeballs (a Python socket object,
    ``sock_connect``, then ``create_connection(sock=...)``) even to a host with
    one address, as a device's IP always has; the loop's own
    ``create_connection(host=ip)`` does it in one call (uvloop: in C), a
    fifth of an in-sync device's CPU on a new connection (0.39 -> 0.32 s per
    1,000 at 50 ms latency). TLS connections keep aiohttp's path, which maps
    certificate errors.
    """

    async def _wrap_create_connection(
        self,
        *args: Any,
        addr_infos: list[Any],
        req: Any,
        timeout: aiohttp.ClientTimeout,
        client_error: type[Exception] = aiohttp.ClientConnectorError,
        **kwargs: Any,
    ) -> tuple[asyncio.Transport, Any]:
        if len(addr_infos) != 1 or kwargs.get("ssl"):
            return await super()._wrap_create_connection(
                *args,
                addr_infos=addr_infos,
                req=req,
                timeout=timeout,
                client_error=client_error,
                **kwargs,
            )
        family, _, _, _, address = addr_infos[0]
        protocol_factory: Any = args[0]
        try:
            async with asyncio.timeout(timeout.sock_connect):
                connected: tuple[asyncio.Transport, Any] = await self._loop.create_connection(
                    protocol_factory, address[0], address[1], family=family, **kwargs
                )
                return connected
        except OSError as exc:
            if exc.errno is None and isinstance(exc, TimeoutError):
                raise
            raise client_error(req.connection_key, exc) from exc


class AiohttpTransport(httpx.AsyncBaseTransport):
    """An httpx transport whose connections are aiohttp's.

    No limit on connections (callers bound how many devices are in flight);
    an idle connection is kept ``keepalive_expiry`` seconds for the next
    resync; no cookies are kept (a device API has none).
    """

    def __init__(self, *, verify: Callable[[], ssl.SSLContext], keepalive_expiry: float) -> None:
        #: The TLS context, made at the first HTTPS request: loading the system's
        #: CA bundle costs 20-100 ms that a plain-HTTP fleet never needs.
        self._verify = verify
        self._context: ssl.SSLContext | None = None
        self._keepalive_expiry = keepalive_expiry
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    def _open(self) -> aiohttp.ClientSession:
        connector = _Connector(
            limit=0,
            keepalive_timeout=self._keepalive_expiry,
        )
        session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
        )
        # aiohttp repeats a GET once, unseen, when the connection drops without an
        # answer; syncd's retry rule (syncd/retrying.py) is the only one, so each
        # attempt is one request, counted and logged. No public switch exists.
        session._retry_connection = False
        return session

    async def send(
        self,
        method: str,
        url: URL,
        *,
        headers: Any,
        timeout: aiohttp.ClientTimeout,
        body: bytes | None = None,
    ) -> Answer:
        """One request and its whole answer; a failure raises httpx's error for it."""
        if self._session is None:
            if self._closed:  # a request that outlived its pool: no new session for it
                raise httpx.ReadError("the connection pool is closed")
            self._session = self._open()
        context = self._tls() if url.scheme == "https" else True
        try:
            async with self._session.request(
                method,
                url,
                headers=headers,
                data=body,
                allow_redirects=False,
                timeout=timeout,
                ssl=context,
            ) as answer:
                content = await answer.read()
                return Answer(answer.status, answer.raw_headers, answer.reason, content)
        except TimeoutError as exc:
            if isinstance(exc, aiohttp.ConnectionTimeoutError):
                raise httpx.ConnectTimeout(str(exc) or "connect timed out") from exc
            raise httpx.ReadTimeout(str(exc) or "read timed out") from exc
        except aiohttp.ClientConnectorCertificateError as exc:
            cause = exc.certificate_error
            raise httpx.ConnectError(str(cause)) from cause
        except aiohttp.ClientConnectorError as exc:
            raise httpx.ConnectError(_reason(exc.os_error)) from exc.os_error
        except aiohttp.ClientError as exc:
            raise httpx.ReadError(str(exc) or type(exc).__name__) from exc

    def _tls(self) -> ssl.SSLContext:
        if self._context is None:
            self._context = self._verify()
        return self._context

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout", {})
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=timeouts.get("connect"), sock_read=timeouts.get("read")
        )
        body = await request.aread()
        answer = await self.send(
            request.method,
            URL(str(request.url), encoded=True),
            headers=request.headers.multi_items(),
            timeout=timeout,
            body=body or None,
        )
        return answer.response(request)

    async def aclose(self) -> None:
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()
