"""The etcd lease a node's keys are bound to: granted, renewed one reply at a time, revoked.

Transient etcd errors reach the caller; the node decides what a failed
renewal means (see fencing in :mod:`syncd.cluster.node`).
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import grpc

from syncd.cluster.connection import EtcdConnection

__all__ = ["grant_lease", "renew_lease", "revoke_lease"]


async def grant_lease(connection: EtcdConnection, ttl: float) -> tuple[int, float]:
    """A new lease of at least ``ttl`` seconds: its id and the TTL etcd granted."""
    client = await connection.open()
    assert client.lease is not None
    grant: Any = await client.lease.grant(math.ceil(ttl), timeout=connection.timeout)
    return int(grant.ID), float(grant.TTL)


async def renew_lease(connection: EtcdConnection, lease: int, *, wait: float) -> float:
    """One renewal, waiting at most ``wait`` seconds: the TTL granted (0 or less: it is gone)."""
    client = await connection.open()
    assert client.lease is not None
    stream = client.lease.keep_alive(lease)
    try:
        async with asyncio.timeout(wait):
            async for reply in stream:
                return float(reply.TTL)
    finally:
        stream.cancel()
    return 0.0


async def revoke_lease(connection: EtcdConnection, lease: int) -> None:
    """End ``lease``: every key bound to it goes with it (a lease etcd does not know has ended)."""
    client = await connection.open()
    assert client.lease is not None
    try:
        await client.lease.revoke(lease, timeout=connection.timeout)
    except grpc.aio.AioRpcError as exc:
        if exc.code() != grpc.StatusCode.NOT_FOUND:
            raise
