"""Async client for the 2N HTTP API functions syncd uses.

One :class:`ClientPool` per process owns the HTTP connections (one pool per
distinct TLS setting, since certificate checks are a property of a
connection); a :class:`DeviceClient` per device holds its address and
credentials. Every failure surfaces as a :class:`DeviceError`
(:mod:`syncd.device_errors`) whose class says what to do about it. No
message, repr or attribute carries a secret.

Every request says who sends it (``User-Agent: syncd/VERSION``, plus the
cluster node), so a device's own log shows who changed it.
"""

from __future__ import annotations

import base64
import functools
import json
import ssl
from collections.abc import Mapping, Sequence
from importlib import metadata
from typing import Any
from urllib.parse import urlencode

import aiohttp
import httpx
from yarl import URL

from syncd import __version__
from syncd.device_errors import (
    AUTH_CODES,
    REJECT_CODES,
    ApiError,
    AuthError,
    DeviceError,
    RejectedError,
    TlsError,
    TransportError,
    unwrap,
)
from syncd.device_status import (
    AccountStatus,
    CallSession,
    StatusFormatError,
    read_call_status,
    read_phone_status,
)
from syncd.http_auth import httpx_auth, method_mismatch
from syncd.model import AuthMethod, AuthSpec, TlsSpec
from syncd.tls import NOT_TLS_REASONS, speaks_tls, tls_context
from syncd.transport import AiohttpTransport, Answer

__all__ = [
    "AUTH_CODES",
    "REJECT_CODES",
    "AccountStatus",
    "ApiError",
    "AuthError",
    "CallSession",
    "ClientPool",
    "DeviceClient",
    "DeviceError",
    "RejectedError",
    "TlsError",
    "TransportError",
    "user_agent",
]

CONFIG_PATH = "/api/phone/config"
INFO_PATH = "/api/system/info"
PHONE_STATUS_PATH = "/api/phone/status"
CALL_STATUS_PATH = "/api/call/status"

#: Seconds an idle connection is kept: long enough for the next request of the
#: same visit (they follow each other at once: a GET, then the PUT or the
#: registration read), short of the next resync. A real device drops an idle
#: connection long before a resync interval; kept longer, 10,000 devices'
#: connections cost ~50 MiB (daemon: 253 against 202 MiB), and the pool closes
#: the expired ones in one batch per period: batches of thousands stalled
#: both ends (a 10,000-device pass at 50 ms: 6.3-6.9 s with 1 s, 5.7-6.0 s).
VISIT_KEEPALIVE = 0.25


def user_agent(node: str | None = None) -> str:
    """``syncd/VERSION``, plus `` (NODE)`` for a cluster node."""
    try:
        version = metadata.version("syncd")
    except metadata.PackageNotFoundError:  # running from a source tree
        version = __version__
    return f"syncd/{version}" + (f" ({node})" if node else "")


def _raise_open_files_limit() -> None:
    """Raise the soft open-files limit to the hard one.

    systemd starts services with a soft limit of 1,024: fewer than the kept
    connections of a large fleet.
    """
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, OSError, ValueError):
        pass


class ClientPool:
    """The process's HTTP connections, shared by every device client.

    One ``httpx.AsyncClient`` per distinct TLS setting, each carried by
    aiohttp's pool (:mod:`syncd.transport`). Connections are not capped here
    (callers bound how many devices are in flight); an idle one is kept for
    ``keepalive_expiry`` seconds, :data:`VISIT_KEEPALIVE` by default: the
    requests of one visit to a device share a connection; the next resync
    opens a new one, as a real device has dropped the old one by then. Every
    request carries :func:`user_agent` for ``node``.
    """

    def __init__(
        self,
        *,
        timeout: float = 10.0,
        keepalive_expiry: float = VISIT_KEEPALIVE,
        node: str | None = None,
        connect_timeout: float | None = None,
    ) -> None:
        _raise_open_files_limit()
        self.timeout = timeout
        #: A host that is off or unrouted never completes the handshake: give
        #: up on it after this (never later than ``timeout``).
        self.connect_timeout = min(timeout, connect_timeout or timeout)
        self.user_agent = user_agent(node)
        self._timeout = httpx.Timeout(timeout, connect=self.connect_timeout)
        #: The same timeouts for a request sent through the transport directly.
        self.direct_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self.connect_timeout, sock_read=timeout
        )
        self._keepalive_expiry = keepalive_expiry
        self._clients: dict[tuple[bool, str | None], httpx.AsyncClient] = {}
        self._transports: dict[tuple[bool, str | None], AiohttpTransport] = {}

    def transport_for(self, tls: TlsSpec) -> AiohttpTransport:
        """The connections under :meth:`client_for`'s client, for a request without httpx."""
        transport = self._transports.get((tls.verify, tls.ca_file))
        if transport is None:
            self.client_for(tls)
            transport = self._transports[(tls.verify, tls.ca_file)]
        return transport

    def client_for(self, tls: TlsSpec) -> httpx.AsyncClient:
        key = (tls.verify, tls.ca_file)
        client = self._clients.get(key)
        if client is None:
            transport = AiohttpTransport(
                verify=functools.partial(_tls_context, tls),
                keepalive_expiry=self._keepalive_expiry,
            )
            client = httpx.AsyncClient(
                transport=transport,
                timeout=self._timeout,
                trust_env=False,
                headers={"User-Agent": self.user_agent},
            )
            client._cookies = _NoCookies()  # no public switch; see _NoCookies
            self._clients[key] = client
            self._transports[key] = transport
        return client

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        self._transports = {}
        for client in clients:
            await client.aclose()

    async def __aenter__(self) -> ClientPool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _tls_context(tls: TlsSpec) -> ssl.SSLContext:
    try:
        return tls_context(tls)
    except (OSError, ssl.SSLError) as exc:
        raise TlsError(f"cannot load caFile {tls.ca_file}: {exc.strerror or exc}") from None


class _NoCookies(httpx.Cookies):
    """A jar that keeps nothing: the device API sets no cookie, and syncd sends none.

    httpx reads every answer for cookies through urllib's cookie machinery,
    about a tenth of the daemon's CPU per request.
    """

    def extract_cookies(self, response: httpx.Response) -> None:
        pass


class DeviceClient:
    """The 2N HTTP API of one device: SIP accounts, their registration, calls, identity."""

    def __init__(
        self,
        *,
        url: str,
        pool: ClientPool,
        auth: AuthSpec | None = None,
        tls: TlsSpec | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        # Each parsed once, when first asked: a URL is re-parsed on every request
        # otherwise, and a one-shot pass asks one or two of the four.
        self._urls: dict[str, httpx.URL] = {}
        self._direct_urls: dict[str, URL] = {}
        self._tls = tls or TlsSpec()
        self._pool = pool
        auth = auth or AuthSpec(method=AuthMethod.NONE)
        self._method = auth.method
        self._auth = httpx_auth(auth)
        #: A GET with these headers goes straight to the transport; ``None`` for
        #: Digest, whose challenge and nonce count httpx's flow keeps.
        self._direct_headers = _direct_headers(auth, pool.user_agent)

    def __repr__(self) -> str:
        return f"DeviceClient(url={self.url!r})"

    async def get_accounts(self, account: int | None = None) -> list[dict[str, Any]]:
        """``GET /api/phone/config``: the live SIP accounts, without passwords."""
        params = {"account": str(account)} if account is not None else None
        result = await self._call("GET", CONFIG_PATH, params=params)
        accounts = result.get("accounts") if isinstance(result, dict) else None
        if not isinstance(accounts, list) or not all(isinstance(a, dict) for a in accounts):
            raise TransportError(f"{self.url} answered without a list of accounts")
        return accounts

    async def put_accounts(self, accounts: Sequence[Mapping[str, Any]]) -> None:
        """``PUT /api/phone/config`` with ``blob-json`` as a multipart part."""
        blob = json.dumps({"accounts": list(accounts)}, separators=(",", ":")).encode()
        files = {"blob-json": ("blob-json.json", blob, "application/json")}
        await self._call("PUT", CONFIG_PATH, files=files)

    async def system_info(self) -> dict[str, Any]:
        """``GET /api/system/info``: the device's identity."""
        result = await self._call("GET", INFO_PATH)
        if not isinstance(result, dict):
            raise TransportError(f"{self.url} answered system info without a result")
        return result

    async def phone_status(self, account: int | None = None) -> list[AccountStatus]:
        """``GET /api/phone/status``: whether each SIP account is registered."""
        params = {"account": str(account)} if account is not None else None
        result = await self._call("GET", PHONE_STATUS_PATH, params=params)
        try:
            return read_phone_status(result)
        except StatusFormatError as exc:
            raise TransportError(f"{self.url}{PHONE_STATUS_PATH} answered {exc}") from None

    async def call_status(self) -> list[CallSession]:
        """``GET /api/call/status``: the active calls, none when the device is idle."""
        result = await self._call("GET", CALL_STATUS_PATH)
        try:
            return read_call_status(result)
        except StatusFormatError as exc:
            raise TransportError(f"{self.url}{CALL_STATUS_PATH} answered {exc}") from None

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        files: Mapping[str, Any] | None = None,
    ) -> Any:
        try:
            response: httpx.Response | None
            if (headers := self._direct_headers) is not None:
                answer = await self._direct(method, path, params, headers, files)
                status, content, response = answer.status, answer.content, None
                if status == 401 or _compressed(answer):
                    response = answer.response()  # headers read, content decoded as httpx does
                    content = response.content
            else:
                response = await self._request(method, path, params=params, files=files)
                status, content = response.status_code, response.content
        except httpx.TimeoutException:
            raise TransportError(f"{self._where(path)} did not answer in time") from None
        except httpx.ConnectError as exc:
            raise _connect_error(self.url, exc) from None
        except httpx.TransportError as exc:
            url = httpx.URL(self.url)
            if url.scheme == "http" and await speaks_tls(url, self._pool.timeout):
                raise TlsError(
                    f"{self.url}: the device expects HTTPS on this port; use https://"
                ) from None
            reason = str(exc) or type(exc).__name__
            raise TransportError(f"{self._where(path)} connection failed: {reason}") from None
        if (
            status == 401
            and response is not None
            and (mismatch := method_mismatch(self._method, response.headers))
        ):
            # Not a refusal of the credentials, which were never tried: no status,
            # so the retry rule does not repeat a request that cannot succeed.
            raise AuthError(f"{self.url}: {mismatch}", code=8)
        return unwrap(self._where(path), status, content)

    def _where(self, path: str) -> str:
        """The device, in sentences about a request to ``path``: its URL, with the path
        unless it is the config (or identity) every reconcile reads."""
        return self.url if path in (CONFIG_PATH, INFO_PATH) else f"{self.url}{path}"

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Through httpx: its authentication flow, its multipart body."""
        client = self._pool.client_for(self._tls)
        auth = self._auth if self._auth is not None else httpx.USE_CLIENT_DEFAULT
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = httpx.URL(self.url + path)
        return await client.request(method, url, auth=auth, **kwargs)

    async def _direct(
        self,
        method: str,
        path: str,
        params: dict[str, str] | None,
        headers: dict[str, str],
        files: Mapping[str, Any] | None = None,
    ) -> Answer:
        """Straight to the connection pool: no Digest challenge to answer.

        A multipart body is still encoded by httpx (its request model, no more).
        """
        key = f"{path}?{urlencode(params)}" if params else path
        url = self._direct_urls.get(key)
        if url is None:
            url = self._direct_urls[key] = URL(self.url + key)
        body = None
        if files is not None:
            encoded = httpx.Request(method, self.url, files=files)
            headers = {**headers, "Content-Type": encoded.headers["Content-Type"]}
            body = encoded.read()
        transport = self._pool.transport_for(self._tls)
        return await transport.send(
            method, url, headers=headers, timeout=self._pool.direct_timeout, body=body
        )


def _direct_headers(auth: AuthSpec, agent: str) -> dict[str, str] | None:
    if auth.method is AuthMethod.DIGEST:
        return None
    headers = {"User-Agent": agent}
    if auth.method is AuthMethod.BASIC:
        password = auth.password.get_secret_value() if auth.password else ""
        token = base64.b64encode(f"{auth.username or ''}:{password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"  # RFC 7617, UTF-8 as httpx sends it
    return headers


def _compressed(answer: Answer) -> bool:
    """Whether a body is encoded (a device may compress unasked): httpx decodes it."""
    return any(name.lower() == b"content-encoding" for name, _ in answer.raw_headers)


def _connect_error(url: str, exc: httpx.ConnectError) -> TransportError:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return TlsError(f"{url} certificate verification failed: {cause.verify_message}")
        if isinstance(cause, ssl.SSLError) and cause.reason in NOT_TLS_REASONS:
            return TlsError(f"{url}: the device answered plain HTTP on an HTTPS URL; use http://")
        cause = cause.__cause__ or cause.__context__
    return TransportError(f"{url} could not be reached: {exc or 'connection failed'}")
