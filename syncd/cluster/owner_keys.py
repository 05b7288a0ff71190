"""A device's ownership key, ``owners/{device}``: the node changing it, bound to that node's lease.

The key is created only when absent, so a node that still holds it (its PUT
in flight) keeps it until it lets go; it is deleted only while it is the same
key of the same node (by its create revision), so a late release never
deletes a successor's key. Transient etcd errors reach the caller.
"""

from __future__ import annotations

from typing import Any

from syncd.cluster.connection import EtcdConnection

__all__ = ["drop_owner_key", "take_owner_key"]


async def take_owner_key(
    connection: EtcdConnection, key: str, *, node: str, lease: int
) -> int | None:
    """Create ``key`` for ``node`` under ``lease`` if absent; its create revision if it is ours."""
    client = await connection.open()
    assert client.kv is not None
    kv = client.kv
    response: Any = await kv.txn(
        [kv.txn_compare_create_revision(key, 0)],
        [kv.txn_op_put(key, node, lease=lease), kv.txn_op_get(key)],
        [kv.txn_op_get(key)],
        timeout=connection.timeout,
    )
    ranges = [r.response_range for r in response.responses if r.HasField("response_range")]
    kvs = ranges[-1].kvs if ranges else []
    if not kvs or int(kvs[0].lease) != lease or kvs[0].value.decode() != node:
        return None
    return int(kvs[0].create_revision)


async def drop_owner_key(connection: EtcdConnection, key: str, *, node: str, revision: int) -> None:
    """Delete ``key`` if it is still the one ``node`` created at ``revision``."""
    client = await connection.open()
    assert client.kv is not None
    kv = client.kv
    await kv.txn(
        [kv.txn_compare_create_revision(key, revision), kv.txn_compare_value(key, node)],
        [kv.txn_op_delete(key)],
        timeout=connection.timeout,
    )
