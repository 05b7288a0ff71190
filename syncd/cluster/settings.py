"""Cluster settings (SPEC section 11) and turning them into a started node and store.

The daemon's ``Settings`` gains the fields listed in ``CLUSTER_SETTINGS``
(environment ``SYNCD_`` plus the name in capitals, flag ``--`` plus the name
with dashes). ``cluster_config(settings)`` reads them from any object that
has them as attributes (None when ``cluster_endpoints`` is unset: standalone),
``cluster_access(settings)`` only what reading the cluster's keys needs
(``syncd history``), and ``open_cluster(config)`` connects, joins and starts the shared state.
Every configuration error is a ``ClusterError`` of one sentence naming the
setting.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from syncd import password_key
from syncd.cluster.connection import ClusterError, EtcdAccess, EtcdConnection, parse_endpoints
from syncd.cluster.lease_memory import LEASE_FILE
from syncd.cluster.node import ClusterNode
from syncd.cluster.store import EtcdStateStore

__all__ = [
    "CLUSTER_SETTINGS",
    "ETCD_PASSWORD_CREDENTIAL",
    "PASSWORD_KEY_CREDENTIAL",
    "ClusterConfig",
    "build_cluster",
    "cluster_access",
    "cluster_config",
    "open_cluster",
    "read_password_key",
    "start_cluster",
]

ETCD_PASSWORD_CREDENTIAL = "syncd-etcd-password"
PASSWORD_KEY_CREDENTIAL = password_key.PASSWORD_KEY_CREDENTIAL

#: name -> (type, default, meaning), for syncd/settings.py.
CLUSTER_SETTINGS: dict[str, tuple[str, Any, str]] = {
    "cluster_endpoints": (
        "str | None",
        None,
        "comma-separated http(s)://HOST:PORT of etcd; unset: standalone",
    ),
    "cluster_name": ("str", "syncd", "key prefix in etcd, the same on every node of a cluster"),
    "node_name": ("str | None", None, "this node's name; default the host name"),
    "lease_ttl": ("float", 10.0, "seconds; a silent node's devices move after this (>= 2)"),
    "cluster_ca_file": ("Path | None", None, "CA certificate of etcd (needed for https)"),
    "cluster_cert_file": ("Path | None", None, "client certificate for etcd (mutual TLS)"),
    "cluster_key_file": ("Path | None", None, "client key for etcd (mutual TLS)"),
    "cluster_username": ("str | None", None, "etcd user"),
    "cluster_password_file": (
        "Path | None",
        None,
        f"file holding the etcd user's password; else credential {ETCD_PASSWORD_CREDENTIAL}",
    ),
    "password_key_file": (
        "Path | None",
        None,
        "key of the password records, identical on every node; "
        f"else credential {PASSWORD_KEY_CREDENTIAL}",
    ),
}

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}")


@dataclass(frozen=True)
class ClusterConfig:
    access: EtcdAccess
    cluster_name: str
    node_name: str
    lease_ttl: float
    password_key: bytes = field(repr=False)
    #: This node's state dir (its lock held): where it remembers its leases across restarts.
    state_dir: Path | None = None


def _read_secret(path: Path, setting: str) -> bytes:
    try:
        return path.read_bytes().strip()
    except OSError as exc:
        raise ClusterError(f"{setting}: cannot read {path}: {exc.strerror or exc}") from None


def read_password_key(path: Path | None) -> bytes | None:
    """The password-record key from ``password_key_file`` or the systemd credential, if any."""
    try:
        return password_key.read_password_key(path)
    except password_key.PasswordKeyError as exc:
        raise ClusterError(str(exc)) from None


def _name(value: str, setting: str) -> str:
    if not _NAME.fullmatch(value):
        raise ClusterError(
            f"{setting} {value!r} must be 1-128 letters, digits or ._:@- (no slash or space)"
        )
    return value


def _getter(settings: object) -> Callable[[str], Any]:
    def get(name: str) -> Any:
        return getattr(settings, name, CLUSTER_SETTINGS[name][1])

    return get


def cluster_access(settings: object) -> tuple[EtcdAccess, str] | None:
    """How to reach the cluster ``settings`` name, and its name (None: standalone).

    The etcd settings of :func:`cluster_config` without the node's own (node
    name, lease, password-record key): what reading the cluster's keys needs.
    """
    get = _getter(settings)
    raw = get("cluster_endpoints")
    if raw is None or not str(raw).strip():
        return None
    try:
        endpoints = parse_endpoints(raw)
    except ValueError as exc:
        raise ClusterError(str(exc)) from None
    cluster_name = _name(str(get("cluster_name")), "cluster_name")
    username = get("cluster_username")
    password: SecretStr | None = None
    if username is not None:
        source = get("cluster_password_file") or password_key.credential(ETCD_PASSWORD_CREDENTIAL)
        if source is None:
            raise ClusterError(
                "cluster_username is set but no password: set cluster_password_file "
                f"or the credential {ETCD_PASSWORD_CREDENTIAL}"
            )
        password = SecretStr(_read_secret(Path(source), "cluster_password_file").decode())
    elif get("cluster_password_file") is not None:
        raise ClusterError(
            "cluster_password_file is set but no cluster_username: etcd would not be asked "
            "to check it; set cluster_username too"
        )
    files = {
        name: get(name) for name in ("cluster_ca_file", "cluster_cert_file", "cluster_key_file")
    }
    access = EtcdAccess(
        endpoints,
        ca_file=Path(files["cluster_ca_file"]) if files["cluster_ca_file"] else None,
        cert_file=Path(files["cluster_cert_file"]) if files["cluster_cert_file"] else None,
        key_file=Path(files["cluster_key_file"]) if files["cluster_key_file"] else None,
        username=username,
        password=password,
        key_prefix=f"/{cluster_name}/",
    )
    return access, cluster_name


def cluster_config(settings: object) -> ClusterConfig | None:
    """The cluster configuration in ``settings`` (attributes named as CLUSTER_SETTINGS)."""
    found = cluster_access(settings)
    if found is None:
        return None
    access, cluster_name = found
    get = _getter(settings)
    node_name = _name(str(get("node_name") or socket.gethostname()), "node_name")
    lease_ttl = float(get("lease_ttl"))
    if not 2 <= lease_ttl <= 3600:
        raise ClusterError("lease_ttl must be between 2 and 3600 seconds")
    key = read_password_key(get("password_key_file"))
    if key is None:
        raise ClusterError(
            "cluster mode needs the password-record key: set password_key_file "
            f"or the credential {PASSWORD_KEY_CREDENTIAL}, the same on every node"
        )
    state_dir = getattr(settings, "state_dir", None)
    return ClusterConfig(
        access,
        cluster_name,
        node_name,
        lease_ttl,
        key,
        state_dir=Path(state_dir) if state_dir is not None else None,
    )


def build_cluster(
    config: ClusterConfig, *, on_change: Callable[[], None] | None = None
) -> tuple[ClusterNode, EtcdStateStore]:
    """The node and the shared state store, not started yet (no network; no event loop needed)."""
    connection = EtcdConnection(config.access, timeout=max(1.0, min(5.0, config.lease_ttl / 3)))
    node = ClusterNode(
        connection,
        cluster_name=config.cluster_name,
        node_name=config.node_name,
        lease_ttl=config.lease_ttl,
        on_change=on_change,
        lease_file=config.state_dir / LEASE_FILE if config.state_dir is not None else None,
    )
    store = EtcdStateStore(
        connection,
        cluster_name=config.cluster_name,
        node_name=config.node_name,
        password_key=config.password_key,
    )
    return node, store


async def start_cluster(node: ClusterNode, store: EtcdStateStore) -> None:
    """Join (or keep trying, when etcd does not answer) and start the shared state.

    Raises ClusterError for wrong credentials or CA, or a node name in use.
    """
    try:
        await node.start()
    except ClusterError:
        await node.connection.close()
        raise
    await store.start()


async def open_cluster(
    config: ClusterConfig, *, on_change: Callable[[], None] | None = None
) -> tuple[ClusterNode, EtcdStateStore]:
    """``build_cluster`` then ``start_cluster``; raises ClusterError as the latter."""
    node, store = build_cluster(config, on_change=on_change)
    await start_cluster(node, store)
    return node, store
