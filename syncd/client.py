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
import secrets
import ssl
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

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
from syncd.http_auth import digest_auth, has_credentials, method_mismatch, missing_credentials
from syncd.model import AuthMethod, AuthSpec, TlsSpec
from syncd.tls import NOT_TLS_REASONS, speaks_tls, tls_context
from syncd.transport import (
    Answer,
    ConnectFailed,
    HttpTransport,
    RequestFailed,
    Target,
    TimedOut,
    Timeouts,
)

if TYPE_CHECKING:
    import httpx

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
    """``syncd/VERSION``, plus `` (NODE)`` for a cluster node.

    The version is the package's own ``__version__``, which the installed
    metadata is built from (``pyproject.toml``): reading the metadata back
    cost every connection pool a scan of ``sys.path`` and an e-mail parser.
    """
    return f"syncd/{__version__}" + (f" ({node})" if node else "")


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

    One set of connections per distinct TLS setting (:mod:`syncd.transport`), since
    certificate checks are a property of a connection. Connections are not
    capped here (callers bound how many devices are in flight); an idle one is
    kept for ``keepalive_expiry`` seconds, :data:`VISIT_KEEPALIVE` by default:
    the requests of one visit to a device share a connection; the next resync
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
        self.timeouts = Timeouts(connect=self.connect_timeout, read=timeout)
        self._keepalive_expiry = keepalive_expiry
        self._transports: dict[tuple[bool, str | None], HttpTransport] = {}

    def transport_for(self, tls: TlsSpec) -> HttpTransport:
        """The connections for devices with this TLS setting."""
        key = (tls.verify, tls.ca_file)
        transport = self._transports.get(key)
        if transport is None:
            transport = self._transports[key] = HttpTransport(
                verify=functools.partial(_tls_context, tls),
                keepalive_expiry=self._keepalive_expiry,
            )
        return transport

    async def aclose(self) -> None:
        transports, self._transports = list(self._transports.values()), {}
        for transport in transports:
            await transport.aclose()

    async def __aenter__(self) -> ClientPool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _tls_context(tls: TlsSpec) -> ssl.SSLContext:
    try:
        return tls_context(tls)
    except (OSError, ssl.SSLError) as exc:
        raise TlsError(f"cannot load caFile {tls.ca_file}: {exc.strerror or exc}") from None


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
        #: Each parsed once, when first asked: a URL is re-parsed on every request
        #: otherwise, and a one-shot pass asks one or two of the four.
        self._urls: dict[str, Target] = {}
        self._origin: Target | None = None
        self._tls = tls or TlsSpec()
        self._pool = pool
        auth = auth or AuthSpec(method=AuthMethod.NONE)
        self._method = auth.method
        #: A file without ``auth:`` (Digest by default) offers nothing when challenged.
        self._no_credentials = auth.method is not AuthMethod.NONE and not has_credentials(auth)
        self._headers = _headers(auth, pool.user_agent)
        #: Digest's challenge and nonce count, kept by httpx's flow between requests.
        self._digest = digest_auth(auth)
        #: Whether the device took these credentials (or none are sent); see credentials_taken.
        self._taken = auth.method is AuthMethod.NONE or not has_credentials(auth)

    def __repr__(self) -> str:
        return f"DeviceClient(url={self.url!r})"

    @property
    def credentials_taken(self) -> bool:
        """Whether the device answered a request that carried these credentials (or none
        are sent): until then its requests go one at a time, so that credentials it
        refuses are tried no more often than one read needs."""
        return self._taken

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
        await self._call("PUT", CONFIG_PATH, form=_blob_json(blob))

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
        form: tuple[str, bytes] | None = None,
    ) -> Any:
        try:
            answer = await self._exchange(method, path, params, form)
        except TimedOut:
            raise TransportError(f"{self._where(path)} did not answer in time") from None
        except ConnectFailed as exc:
            raise _connect_error(self.url, exc) from None
        except RequestFailed as exc:
            origin = self._target(path)
            if origin.scheme == "http" and await speaks_tls(
                origin.host, origin.port, self._pool.timeout
            ):
                raise TlsError(
                    f"{self.url}: the device expects HTTPS on this port; use https://"
                ) from None
            reason = str(exc) or type(exc).__name__
            raise TransportError(f"{self._where(path)} connection failed: {reason}") from None
        status, content = answer.status, answer.content
        if status != 401:
            self._taken = True
        if status == 401 or _compressed(answer):
            import httpx  # loaded for these answers only

            try:
                response = answer.response()  # headers read, content decoded as httpx does
            except httpx.DecodingError:
                raise TransportError(
                    f"{self._where(path)} answered a compressed body that cannot be decoded"
                ) from None
            content = response.content
            # Not a refusal of credentials, which were never tried: no status, so the
            # retry rule does not repeat a request that cannot succeed.
            if status == 401 and self._no_credentials:
                raise AuthError(f"{self.url}: {missing_credentials(response.headers)}", code=9)
            if status == 401 and (mismatch := method_mismatch(self._method, response.headers)):
                raise AuthError(f"{self.url}: {mismatch}", code=8)
        return unwrap(self._where(path), status, content)

    def _target(self, key: str) -> Target:
        """Where ``key`` (a path and query) goes; the device URL is parsed once."""
        if self._origin is None:
            self._origin = Target.parse(self.url)
        origin = self._origin
        return Target(
            origin.scheme, origin.host, origin.port, origin.authority, origin.path.rstrip("/") + key
        )

    def _where(self, path: str) -> str:
        """The device, in sentences about a request to ``path``: its URL, with the path
        unless it is the config (or identity) every reconcile reads."""
        return self.url if path in (CONFIG_PATH, INFO_PATH) else f"{self.url}{path}"

    async def _exchange(
        self,
        method: str,
        path: str,
        params: dict[str, str] | None,
        form: tuple[str, bytes] | None,
    ) -> Answer:
        """The request and its final answer, straight to the connection pool.

        A Digest device's challenge is answered by httpx's own flow
        (:class:`~syncd.http_digest.FirmwareDigestAuth`), driven here: a device
        that has not challenged yet is asked without credentials, as httpx
        does; one that has gets them up front, with its nonce count.
        """
        key = f"{path}?{urlencode(params)}" if params else path
        url = self._urls.get(key)
        if url is None:
            url = self._urls[key] = self._target(key)
        headers: Mapping[str, str] = self._headers
        body = None
        if form is not None:
            content_type, body = form
            headers = {**headers, "Content-Type": content_type}
        digest = self._digest
        flow = request = None
        if digest is not None and digest.challenged:
            import httpx  # loaded with the Digest flow already

            request = httpx.Request(method, self.url + key)
            flow = digest.auth_flow(request)
            headers = _with_authorization(headers, next(flow))
        answer = await self._send(method, url, headers, body)
        while answer.status == 401 and digest is not None:
            if flow is None:  # the request just sent, as the flow's first
                import httpx

                request = httpx.Request(method, self.url + key)
                flow = digest.auth_flow(request)
                next(flow)
            try:
                retry = flow.send(answer.response(request))
            except StopIteration:
                break
            answer = await self._send(method, url, _with_authorization(headers, retry), body)
        return answer

    async def _send(
        self, method: str, target: Target, headers: Mapping[str, str], body: bytes | None
    ) -> Answer:
        transport = self._pool.transport_for(self._tls)
        return await transport.send(
            method, target, headers=headers, timeouts=self._pool.timeouts, body=body
        )


def _blob_json(blob: bytes) -> tuple[str, bytes]:
    """The ``Content-Type`` and body of a ``multipart/form-data`` request whose one part,
    ``blob-json``, is the JSON ``blob``: the form the 2N API takes a config in."""
    boundary = secrets.token_hex(16).encode()
    while boundary in blob:  # a 32-digit boundary in a config: never, but then another
        boundary = secrets.token_hex(16).encode()
    body = b"".join(
        (
            b"--%s\r\n" % boundary,
            b'Content-Disposition: form-data; name="blob-json"; filename="blob-json.json"\r\n',
            b"Content-Type: application/json\r\n\r\n",
            blob,
            b"\r\n--%s--\r\n" % boundary,
        )
    )
    return f"multipart/form-data; boundary={boundary.decode()}", body


def _with_authorization(headers: Mapping[str, str], request: httpx.Request) -> Mapping[str, str]:
    """``headers``, with the ``Authorization`` httpx's Digest flow put on ``request``."""
    authorization = request.headers.get("Authorization")
    return {**headers, "Authorization": authorization} if authorization else headers


def _headers(auth: AuthSpec, agent: str) -> dict[str, str]:
    headers = {"User-Agent": agent}
    if auth.method is AuthMethod.BASIC:
        password = auth.password.get_secret_value() if auth.password else ""
        token = base64.b64encode(f"{auth.username or ''}:{password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"  # RFC 7617, UTF-8 as httpx sends it
    return headers


def _compressed(answer: Answer) -> bool:
    """Whether a body is encoded (a device may compress unasked): httpx decodes it."""
    return any(name.lower() == b"content-encoding" for name, _ in answer.raw_headers)


def _connect_error(url: str, exc: ConnectFailed) -> TransportError:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return TlsError(f"{url} certificate verification failed: {cause.verify_message}")
        if isinstance(cause, ssl.SSLError) and cause.reason in NOT_TLS_REASONS:
            return TlsError(f"{url}: the device answered plain HTTP on an HTTPS URL; use http://")
        cause = cause.__cause__ or cause.__context__
    return TransportError(f"{url} could not be reached: {exc or 'connection failed'}")
