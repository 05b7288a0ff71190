"""A real etcd on loopback for the cluster tests, one per session, plus node factories."""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import etcd3aio
import pytest
from pydantic import SecretStr

from syncd.cluster.connection import EtcdAccess, EtcdConnection
from syncd.cluster.node import ClusterNode
from tests.e2e.conftest import DaemonProcess
from tests.etcd_server import EtcdServer, find_etcd, missing_reason

_names = itertools.count()


def _binary() -> Path:
    binary = find_etcd()
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail(missing_reason())
        pytest.skip(missing_reason())
    return binary


async def enable_auth(endpoint: str, *, user: str, password: str, prefix: str) -> None:
    """Turn on etcd authentication, as the README sets it up: ``user`` may use ``prefix`` only."""
    admin = EtcdConnection(EtcdAccess((endpoint,)))
    try:
        client = await admin.open()
        auth = client.auth
        assert auth is not None
        await auth.user_add("root", "root-Pass-1")
        await auth.user_grant_role("root", "root")
        await auth.user_add(user, password)
        await auth.role_add(user)
        end = etcd3aio.prefix_range_end(prefix.encode())
        await auth.role_grant_permission(
            user, prefix, end, perm_type=etcd3aio.PermissionType.READWRITE
        )
        await auth.user_grant_role(user, user)
        await auth.auth_enable()
    finally:
        await admin.close()


@pytest.fixture(scope="session")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    """One etcd server shared by the session; tests keep apart by cluster name."""
    server = EtcdServer(_binary(), tmp_path_factory.mktemp("etcd") / "data")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_etcd(tmp_path: Path) -> Iterator[EtcdServer]:
    """An etcd server of this test alone, for tests that stop and start it."""
    server = EtcdServer(_binary(), tmp_path / "etcd")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def cluster_name() -> str:
    return f"test-{os.getpid()}-{next(_names)}"


NodeFactory = Callable[..., Awaitable[ClusterNode]]


@pytest.fixture
async def make_node(etcd: EtcdServer, cluster_name: str) -> AsyncIterator[NodeFactory]:
    """Start ClusterNodes on the shared etcd (lease_ttl 2 s); all are stopped afterwards."""
    nodes: list[ClusterNode] = []

    async def make(
        name: str,
        *,
        server: EtcdServer | None = None,
        lease_ttl: float = 2.0,
        start: bool = True,
        user: tuple[str, str] | None = None,
        lease_file: Path | None = None,
    ) -> ClusterNode:
        """``user``: the etcd user and password to authenticate with; ``lease_file``: where
        the node remembers its leases (its state dir's)."""
        username, password = user if user is not None else (None, None)
        access = EtcdAccess(
            ((server or etcd).endpoint,),
            username=username,
            password=SecretStr(password) if password is not None else None,
        )
        connection = EtcdConnection(access, timeout=1.0)
        node = ClusterNode(
            connection,
            cluster_name=cluster_name,
            node_name=name,
            lease_ttl=lease_ttl,
            lease_file=lease_file,
        )
        nodes.append(node)
        if start:
            await node.start()
        return node

    yield make
    for node in nodes:
        await node.stop()
        await node.connection.close()


@pytest.fixture
def nodes() -> Iterator[list[DaemonProcess]]:
    """Node processes started by the test; any left are killed afterwards."""
    started: list[DaemonProcess] = []
    yield started
    for proc in started:
        proc.discard()
