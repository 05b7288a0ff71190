"""One gRPC connection to etcd, shared by the node (membership) and the state store.

The client is etcd3aio (asyncio over gRPC, TLS and mutual TLS, token auth).
Endpoints are ``http(s)://HOST:PORT``; host names are resolved to IPv4
addresses when the connection opens, so one channel balances over every
member, and TLS still verifies the certificate against the host name given.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import etcd3aio
import grpc
from pydantic import SecretStr

from syncd.cluster_endpoints import parse_endpoints

__all__ = [
    "TRANSIENT_ERRORS",
    "ClusterError",
    "EtcdAccess",
    "EtcdConnection",
    "describe_failure",
    "parse_endpoints",
    "stale_token",
]


class ClusterError(Exception):
    """Cluster mode cannot start; the message is one sentence naming the setting."""


# What an unreachable or restarting etcd raises through etcd3aio and grpc.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    etcd3aio.EtcdError,
    grpc.aio.AioRpcError,
    TimeoutError,
    OSError,
)


@dataclass(frozen=True)
class EtcdAccess:
    """How to reach etcd: endpoints, TLS files, user and password (never in the repr)."""

    endpoints: tuple[str, ...]
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    username: str | None = None
    password: SecretStr | None = field(default=None, repr=False)
    #: The keys the cluster uses (``/CLUSTER_NAME/``), named when etcd denies the user them.
    key_prefix: str | None = None

    @property
    def tls(self) -> bool:
        return self.endpoints[0].startswith("https://")


def _resolve(endpoints: Sequence[str]) -> tuple[list[str], str | None]:
    """IPv4 ``addr:port`` targets, and the host name TLS must verify (the first one named)."""
    targets: list[str] = []
    server_name: str | None = None
    for endpoint in endpoints:
        parts = urlsplit(endpoint)
        host, port = parts.hostname or "", parts.port
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            server_name = server_name or host
            try:
                infos = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_STREAM)
            except OSError:
                continue  # unresolvable now: the other members may answer
            targets.extend(f"{info[4][0]}:{port}" for info in infos[:1])
            continue
        if address.version != 4:
            raise ClusterError(
                f"cluster_endpoints: {endpoint} is IPv6; give an IPv4 address or a host name"
            )
        targets.append(f"{address}:{port}")
    return targets, server_name


def _read(path: Path | None, setting: str) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ClusterError(f"{setting}: cannot read {path}: {exc.strerror or exc}") from None


_REFUSED = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)

#: What etcd answers a request whose token it does not take (any more): it restarted
#: (simple tokens live in its memory), the token's TTL ran out, the users or roles
#: changed since it was issued, or no token was sent. A new token is the cure.
_STALE_TOKEN = ("invalid auth token", "revision of auth store is old", "user name is empty")


def _rpc_error(exc: BaseException) -> grpc.aio.AioRpcError | None:
    """The gRPC error behind ``exc`` (etcd3aio raises its own errors from it), if any."""
    cause = exc if isinstance(exc, grpc.aio.AioRpcError) else exc.__cause__
    return cause if isinstance(cause, grpc.aio.AioRpcError) else None


def stale_token(exc: BaseException, access: EtcdAccess) -> bool:
    """etcd refused a request for its token, not for the user: authenticate again.

    Only with a user configured; without one, etcd asking for a user is a refusal.
    """
    rpc = _rpc_error(exc)
    details = (rpc.details() or "") if rpc is not None else str(exc)
    return access.username is not None and any(text in details for text in _STALE_TOKEN)


def describe_failure(exc: BaseException, access: EtcdAccess) -> str | None:
    """The setting to blame when etcd refused us for our configuration, else None (transient).

    A stale token is transient: the node authenticates again (``stale_token``).
    A user that authenticated but whose role lacks the cluster's keys is told
    apart from a wrong user name or password: the cure is a grant in etcd, not
    another password.
    """
    if stale_token(exc, access):
        return None
    rpc = _rpc_error(exc)
    code = rpc.code() if rpc is not None else None
    details = (rpc.details() or "") if rpc is not None else ""
    denied = isinstance(exc, etcd3aio.EtcdPermissionDeniedError) or (
        code is grpc.StatusCode.PERMISSION_DENIED
    )
    refused = denied or isinstance(exc, etcd3aio.EtcdUnauthenticatedError)
    if isinstance(exc, grpc.aio.AioRpcError):
        # etcd answers a wrong password with INVALID_ARGUMENT "authentication failed",
        # and a request without a token, when it requires one, "user name is empty".
        refused = code in _REFUSED or any(
            text in details for text in ("auth", "user name is empty")
        )
    if refused and access.username is None:
        return "etcd requires a user: set cluster_username and cluster_password_file"
    if denied:
        return _denied(access.username, access.key_prefix)
    if refused:
        return (
            f"etcd refused user {access.username!r}: "
            "check cluster_username and cluster_password_file"
        )
    text = str(exc).lower() + " " + str(getattr(exc, "__cause__", "") or "").lower()
    if access.tls and any(word in text for word in ("ssl", "handshake", "certificate", "tls")):
        return "TLS to etcd failed: check cluster_ca_file (and cluster_cert_file/cluster_key_file)"
    return None


def _denied(username: str | None, prefix: str | None) -> str:
    """etcd took the user's password, but its roles do not grant the cluster's keys."""
    keys = f"the keys under {prefix}" if prefix else "the cluster's keys"
    grant = prefix or "/CLUSTER_NAME/"
    return (
        f"etcd user {username!r} may not use {keys} (permission denied; its password "
        f"was accepted): grant its role readwrite on the key prefix {grant} "
        f"(etcdctl role grant-permission --prefix=true ROLE readwrite {grant})"
    )


#: gRPC backs off up to 120 s between reconnects; after an outage a node must
#: rejoin within about a second of etcd answering, so cap the backoff.
_RECONNECT_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
)


def _reconnect_quickly(client: etcd3aio.Etcd3Client) -> None:
    """Add the reconnect options to the client's channel (etcd3aio has no parameter for them)."""
    manager = getattr(client, "_manager", None)
    options = getattr(manager, "grpc_options", None)
    if isinstance(options, list):
        options.extend(_RECONNECT_OPTIONS)


class EtcdConnection:
    """A lazily opened etcd3aio client with optional TLS and token authentication."""

    def __init__(self, access: EtcdAccess, *, timeout: float = 3.0) -> None:
        if (access.cert_file is None) != (access.key_file is None):
            raise ClusterError("cluster_cert_file and cluster_key_file must be given together")
        if access.tls and access.ca_file is None:
            raise ClusterError(
                "https cluster_endpoints need cluster_ca_file (the CA of etcd's certificate)"
            )
        if (access.username is None) != (access.password is None):
            raise ClusterError("cluster_username and cluster_password_file must be given together")
        self.access = access
        self.timeout = timeout
        self._ca = _read(access.ca_file, "cluster_ca_file") if access.tls else None
        self._cert = _read(access.cert_file, "cluster_cert_file") if access.tls else None
        self._key = _read(access.key_file, "cluster_key_file") if access.tls else None
        self._client: etcd3aio.Etcd3Client | None = None
        self._targets: list[str] = []
        #: Set when etcd refused a request for a stale token; ``authenticate`` clears it.
        self.token_refused = asyncio.Event()

    def __repr__(self) -> str:
        return f"EtcdConnection({list(self.access.endpoints)!r})"

    def _build(self) -> etcd3aio.Etcd3Client:
        if self._client is None:
            targets, server_name = _resolve(self.access.endpoints)
            if not targets:
                raise ConnectionError("no etcd endpoint resolves")
            client = etcd3aio.Etcd3Client(
                targets,
                rpc_max_attempts=1,
                watch_reconnect_backoff_seconds=0.1,
                watch_max_reconnect_backoff_seconds=1.0,
                tls_server_name=server_name if self.access.tls else None,
                ca_cert=self._ca,
                cert_chain=self._cert,
                cert_key=self._key,
            )
            _reconnect_quickly(client)
            self._client = client
            self._targets = targets
        return self._client

    async def open(self) -> etcd3aio.Etcd3Client:
        """The client, its channel opened on first use (no network round trip)."""
        client = self._build()
        if client.kv is None:
            await client.connect()
        return client

    def noticed(self, exc: BaseException) -> None:
        """A request failed with ``exc``: when etcd refused its token, say a new one is due."""
        if stale_token(exc, self.access):
            self.token_refused.set()

    async def authenticate(self) -> None:
        """Get a fresh token when a user is configured (raises etcd3aio errors)."""
        if self.access.username is None or self.access.password is None:
            return
        client = await self.open()
        assert client.auth is not None
        # etcd 3.4 refuses Authenticate itself when it carries a token it no longer knows
        # (after a restart), so the new one is asked for without the old.
        client.set_token(None)
        response = await client.auth.authenticate(
            self.access.username, self.access.password.get_secret_value(), timeout=self.timeout
        )
        client.set_token(response.token)
        self.token_refused.clear()

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()
