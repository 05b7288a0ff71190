"""A command's one read of the cluster's keys in etcd: no node joins, no watch, no write.

``syncd history`` and ``syncd plan`` on a cluster host read what the nodes
keep in etcd this way, with the etcd user, password file and TLS settings the
daemon uses; a command that needs a running node and finds none on this host
reads who runs and who leads (:func:`read_members`), to name them. Every
failure is a ``ClusterError`` of one sentence naming the setting to check,
never a credential.
"""

from __future__ import annotations

import asyncio

from syncd.cluster.connection import (
    TRANSIENT_ERRORS,
    ClusterError,
    EtcdAccess,
    EtcdConnection,
    describe_failure,
)
from syncd.cluster.settings import cluster_access, cluster_config
from syncd.cluster.snapshot import StateSnapshot, state_prefix
from syncd.cluster.watching import Change, read_prefix

__all__ = ["read_members", "read_once", "read_state_snapshot"]


async def read_once(access: EtcdAccess, prefix: str, *, what: str) -> list[Change]:
    """Every key under ``prefix`` at one revision; ``what`` names it in the error sentence."""
    connection = EtcdConnection(access)
    try:
        await connection.authenticate()
        changes, _ = await read_prefix(connection, prefix)
    except TRANSIENT_ERRORS as exc:
        raise ClusterError(_unreadable(exc, access, what)) from None
    finally:
        await connection.close()
    return changes


def read_members(settings: object, *, timeout: float = 2.0) -> tuple[frozenset[str], str | None]:
    """The live nodes of the cluster ``settings`` name, and its leader (None: none now).

    Raises ClusterError (one sentence naming the setting) when a setting is
    wrong or etcd cannot be read within about ``timeout`` seconds a request.
    """
    found = cluster_access(settings)
    if found is None:
        raise ClusterError("cluster_endpoints is not set")
    access, cluster_name = found
    members_prefix, leader_key = f"/{cluster_name}/members/", f"/{cluster_name}/leader"

    async def read() -> tuple[frozenset[str], str | None]:
        connection = EtcdConnection(access, timeout=timeout)
        try:
            await connection.authenticate()
            members, _ = await read_prefix(connection, members_prefix)
            leader, _ = await read_prefix(connection, leader_key)
        except TRANSIENT_ERRORS as exc:
            raise ClusterError(_unreadable(exc, access, "members")) from None
        finally:
            await connection.close()
        names = frozenset(c.key.removeprefix(members_prefix) for c in members)
        held = [c.value.decode() for c in leader if c.key == leader_key and c.value]
        return names, held[0] if held else None

    return asyncio.run(read())


def read_state_snapshot(settings: object) -> StateSnapshot:
    """The device records of the cluster ``settings`` name, as etcd holds them now.

    Needs what a node needs to judge passwords: the password-record key
    (``password_key_file``). Raises ClusterError (one sentence naming the
    setting) when a setting is missing or wrong, or etcd cannot be read.
    """
    config = cluster_config(settings)
    if config is None:
        raise ClusterError("cluster_endpoints is not set: the device records are in the state dir")
    prefix = state_prefix(config.cluster_name)
    changes = asyncio.run(read_once(config.access, prefix, what="state"))
    return StateSnapshot(
        ((c.key, c.value) for c in changes),
        cluster_name=config.cluster_name,
        password_key=config.password_key,
    )


def _unreadable(exc: BaseException, access: EtcdAccess, what: str) -> str:
    """Why the cluster's ``what`` could not be read, naming the setting to check."""
    problem = describe_failure(exc, access)
    if problem is not None:
        return f"cannot read the cluster's {what}: {problem}"
    endpoints = ",".join(access.endpoints)
    return (
        f"cannot read the cluster's {what}: etcd does not answer at cluster_endpoints {endpoints}"
    )
