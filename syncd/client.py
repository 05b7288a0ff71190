"""Async client for the 2N HTTP API functions syncd uses, and its error types.

One :class:`ClientPool` per process owns the HTTP connections (one pool per
distinct TLS setting, since certificate checks are a property of a
connection); a :class:`DeviceClient` per device holds its address and
credentials. Every failure surfaces as a :class:`DeviceError` whose class says
what to do about it: retry (:class:`TransportError`), wait for the desired
state to change (:class:`RejectedError`), or wait for the credentials to change
(:class:`AuthError`). No message, repr or attribute carries a secret.

Every request says who sends it (``User-Agent: syncd/VERSION``, plus the
cluster node), so a device's own log shows who changed it.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Mapping, Sequence
from importlib import metadata
from typing import Any

import httpx

from syncd import __version__
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
from syncd.transport import AiohttpTransport

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
#: same visit (a GET, then the PUT or the registration read that follows it),
#: short of the next resync. A real device drops an idle connection long before
#: a resync interval; kept longer, 10,000 devices' connections cost ~50 MiB and
#: their upkeep more CPU than the handshakes they would save (daemon at 10,000
#: devices: 253 against 213 MiB with 2 s, 194 MiB with 0.5 s).
VISIT_KEEPALIVE = 1.0

#: Codes meaning "these credentials may not do this": back off until they change.
AUTH_CODES = frozenset({8, 9, 10})
#: Codes meaning "this request is wrong": do not repeat it unchanged.
REJECT_CODES = frozenset({11, 12, 13})

_CODE_NAMES = {
    1: "function not supported",
    2: "invalid path",
    3: "invalid method",
    4: "function disabled",
    5: "function licensed",
    7: "HTTPS required",
    8: "invalid authentication method",
    9: "authorisation required",
    10: "insufficient privileges",
    11: "missing mandatory parameter",
    12: "invalid parameter value",
    13: "parameter data too big",
    14: "unspecified processing error",
    15: "no data available",
}


class DeviceError(Exception):
    """Something went wrong talking to one device; ``str()`` is one clear sentence."""

    kind = "device"

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        param: str | None = None,
        description: str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.param = param
        self.description = description
        self.status = status

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, code={self.code!r}, param={self.param!r})"


class TransportError(DeviceError):
    """No usable answer: refused, reset, timed out, HTTP 5xx, or a body that is not JSON."""

    kind = "transport"


class TlsError(TransportError):
    """The device's certificate failed verification; retrying will not help."""

    kind = "tls"


class ApiError(DeviceError):
    """The device answered ``success: false``."""

    kind = "api"


class RejectedError(ApiError):
    """The device refused the request itself (codes 11, 12, 13, and others)."""

    kind = "rejected"


class AuthError(ApiError):
    """The credentials were refused or lack a privilege (codes 8, 9, 10)."""

    kind = "auth"


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
        self._keepalive_expiry = keepalive_expiry
        self._clients: dict[tuple[bool, str | None], httpx.AsyncClient] = {}

    def client_for(self, tls: TlsSpec) -> httpx.AsyncClient:
        key = (tls.verify, tls.ca_file)
        client = self._clients.get(key)
        if client is None:
            try:
                ctx = tls_context(tls)
            except (OSError, ssl.SSLError) as exc:
                raise TlsError(f"cannot load caFile {tls.ca_file}: {exc.strerror or exc}") from None
            transport = AiohttpTransport(verify=ctx, keepalive_expiry=self._keepalive_expiry)
            client = httpx.AsyncClient(
                transport=transport,
                timeout=self._timeout,
                trust_env=False,
                headers={"User-Agent": self.user_agent},
            )
            client._cookies = _NoCookies()  # no public switch; see _NoCookies
            self._clients[key] = client
        return client

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()

    async def __aenter__(self) -> ClientPool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


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
        # Each parsed once, when first asked: httpx re-parses a string URL on
        # every request, and a one-shot pass asks one or two of the four.
        self._urls: dict[str, httpx.URL] = {}
        self._tls = tls or TlsSpec()
        self._pool = pool
        self._method = (auth or AuthSpec(method=AuthMethod.NONE)).method
        self._auth = httpx_auth(auth or AuthSpec(method=AuthMethod.NONE))

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

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        client = self._pool.client_for(self._tls)
        auth = self._auth if self._auth is not None else httpx.USE_CLIENT_DEFAULT
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = httpx.URL(self.url + path)
        try:
            response = await client.request(method, url, auth=auth, **kwargs)
        except httpx.TimeoutException:
            raise TransportError(f"{self.url} did not answer in time") from None
        except httpx.ConnectError as exc:
            raise _connect_error(self.url, exc) from None
        except httpx.TransportError as exc:
            if url.scheme == "http" and await speaks_tls(url, self._pool.timeout):
                raise TlsError(
                    f"{self.url}: the device expects HTTPS on this port; use https://"
                ) from None
            reason = str(exc) or type(exc).__name__
            raise TransportError(f"{self.url} connection failed: {reason}") from None
        if response.status_code == 401 and (mismatch := method_mismatch(self._method, response)):
            # Not a refusal of the credentials, which were never tried: no status,
            # so the retry rule does not repeat a request that cannot succeed.
            raise AuthError(f"{self.url}: {mismatch}", code=8)
        where = self.url if path in (CONFIG_PATH, INFO_PATH) else f"{self.url}{path}"
        return _unwrap(where, response)


def _connect_error(url: str, exc: httpx.ConnectError) -> TransportError:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return TlsError(f"{url} certificate verification failed: {cause.verify_message}")
        if isinstance(cause, ssl.SSLError) and cause.reason in NOT_TLS_REASONS:
            return TlsError(f"{url}: the device answered plain HTTP on an HTTPS URL; use http://")
        cause = cause.__cause__ or cause.__context__
    return TransportError(f"{url} could not be reached: {exc or 'connection failed'}")


def _unwrap(url: str, response: httpx.Response) -> Any:
    status = response.status_code
    if status >= 500:
        raise TransportError(f"{url} answered HTTP {status}", status=status)
    try:
        body = response.json()
    except ValueError:
        if status == 401:
            raise AuthError(
                f"{url} refused the credentials (HTTP 401)", code=9, status=status
            ) from None
        raise TransportError(
            f"{url} answered HTTP {status} with a body that is not JSON", status=status
        ) from None
    if not isinstance(body, dict) or "success" not in body:
        raise TransportError(f"{url} answered JSON without a success flag", status=status)
    if body["success"] is True:
        if status != 200:
            raise TransportError(f"{url} answered HTTP {status}", status=status)
        return body.get("result")
    raw_error = body.get("error")
    error: dict[str, Any] = raw_error if isinstance(raw_error, dict) else {}
    code = error.get("code") if isinstance(error.get("code"), int) else None
    param = error.get("param") if isinstance(error.get("param"), str) else None
    description = error.get("description") if isinstance(error.get("description"), str) else None
    what = description or _CODE_NAMES.get(code or 0) or "request refused"
    message = f"{url} refused the request: {what} (code {code}"
    message += f", param {param})" if param else ")"
    cls = AuthError if (code in AUTH_CODES or status == 401) else RejectedError
    raise cls(message, code=code, param=param, description=description, status=status)
