"""The members of the cluster: their registrations, and the live members and leader as seen.

A node registers under ``members/{node}``, bound to its lease, with a small
JSON record: the node, its lease, and the desired revision it has loaded
since when (:func:`member_record`). :class:`Membership` mirrors the
``members/`` prefix and the ``leader`` key from etcd
(:class:`~syncd.cluster.watching.PrefixMirror`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Collection
from typing import Any

from syncd.cluster.connection import ClusterError, EtcdConnection
from syncd.cluster.watching import Change, PrefixMirror

__all__ = ["DuplicateNodeError", "Membership", "member_record", "register", "rewrite_record"]


class DuplicateNodeError(ClusterError):
    """Another live node already uses this node name."""


def member_record(node: str, lease: int | None, revision: tuple[str, float] | None) -> bytes:
    """A node's registration: its name and lease, and its desired revision and since when."""
    data: dict[str, Any] = {"node": node, "lease": lease}
    if revision is not None:
        data |= {"revision": revision[0], "since": revision[1]}
    return json.dumps(data, sort_keys=True).encode()


async def register(
    connection: EtcdConnection,
    key: str,
    record: bytes,
    *,
    lease: int,
    former: Collection[int] = (),
) -> bool:
    """Write a node's registration under ``lease``; False when another node's lease holds ``key``.

    Under the same lease (a rejoin) an older record is replaced. Under one of
    ``former``, leases this node granted before (:mod:`syncd.cluster.lease_memory`),
    the registration is this node's own, left by an earlier run: it is taken
    over, in a transaction that holds only while the key is as it was read.
    Under any other lease, another live node uses the same node name.
    """
    client = await connection.open()
    assert client.kv is not None
    kv = client.kv
    for _ in range(3):  # the key changed between the read and the takeover: look again
        response: Any = await kv.txn(
            [kv.txn_compare_create_revision(key, 0)],
            [kv.txn_op_put(key, record, lease=lease)],
            [kv.txn_op_get(key)],
            timeout=connection.timeout,
        )
        if response.succeeded:
            return True
        kvs = response.responses[0].response_range.kvs
        if not kvs:
            continue
        held = int(kvs[0].lease)
        if held == lease:
            if bytes(kvs[0].value) != record:  # our lease, an older record
                await kv.put(key, record, lease=lease, timeout=connection.timeout)
            return True
        if held not in former:
            return False
        taken: Any = await kv.txn(
            [
                kv.txn_compare_create_revision(key, int(kvs[0].create_revision)),
                kv.txn_compare_version(key, int(kvs[0].version)),
            ],
            [kv.txn_op_put(key, record, lease=lease)],
            [],
            timeout=connection.timeout,
        )
        if taken.succeeded:
            return True
    return False


async def rewrite_record(
    connection: EtcdConnection, key: str, record: bytes, *, lease: int, written: bytes
) -> bool:
    """Replace the registration ``written`` by ``record``; False when it was not ``written``."""
    client = await connection.open()
    assert client.kv is not None
    kv = client.kv
    response: Any = await kv.txn(
        [kv.txn_compare_value(key, written)],
        [kv.txn_op_put(key, record, lease=lease)],
        [],
        timeout=connection.timeout,
    )
    return bool(response.succeeded)


def _revision_of(value: bytes | None) -> tuple[str, float] | None:
    """The revision a registration names, with since when (0: not said), or None."""
    try:
        record = json.loads(value) if value is not None else None
    except ValueError:
        return None
    if isinstance(record, dict) and isinstance(record.get("revision"), str):
        since = record.get("since")
        return record["revision"], float(since) if isinstance(since, int | float) else 0.0
    return None


class Membership:
    """Live members and leader, kept current by two etcd watches.

    ``notify`` is called whenever the members, a member's revision or the
    leader change; ``leader_gone`` when the leader key is found empty.
    """

    def __init__(
        self,
        connection: EtcdConnection,
        *,
        prefix: str,
        notify: Callable[[], None],
        leader_gone: Callable[[], None],
        retry: float,
    ) -> None:
        self._members_prefix = f"{prefix}members/"
        self.leader_key = f"{prefix}leader"
        self._notify = notify
        self._leader_gone = leader_gone
        self.members: frozenset[str] = frozenset()
        self._revisions: dict[str, tuple[str, float]] = {}  # node -> (revision, since)
        #: The leader's node name and lease, as the leader key holds them.
        self.leader: tuple[str, int] | None = None
        self._mirrors = (
            PrefixMirror(
                connection,
                self._members_prefix,
                on_snapshot=self._members_snapshot,
                on_change=self._member_changed,
                retry=retry,
            ),
            PrefixMirror(
                connection,
                self.leader_key,
                on_snapshot=self._leader_snapshot,
                on_change=self._leader_changed,
                retry=retry,
            ),
        )

    @property
    def revisions(self) -> dict[str, tuple[str, float]]:
        """Live members' desired revisions, as ``node -> (revision, since)``."""
        return {n: r for n, r in self._revisions.items() if n in self.members}

    async def reload(self, timeout: float) -> None:
        """Read both prefixes again (after a rejoin), waiting at most ``timeout`` for them."""
        for mirror in self._mirrors:
            await mirror.reload()
        async with asyncio.timeout(timeout):
            for mirror in self._mirrors:
                await mirror.loaded.wait()

    async def refresh(self) -> None:
        """Read both prefixes again now: a watch can miss an event, and they are a few keys."""
        for mirror in self._mirrors:
            await mirror.refresh()

    async def close(self) -> None:
        for mirror in self._mirrors:
            await mirror.close()

    def _member_name(self, key: str) -> str:
        return key.removeprefix(self._members_prefix)

    def _set_members(self, members: frozenset[str]) -> None:
        if members != self.members:
            self.members = members
            self._notify()

    def _members_snapshot(self, changes: list[Change]) -> None:
        self._revisions = {}
        for change in changes:
            self._note_revision(self._member_name(change.key), change.value)
        self._set_members(frozenset(self._member_name(c.key) for c in changes))

    def _member_changed(self, change: Change) -> None:
        name = self._member_name(change.key)
        self._note_revision(name, change.value)
        if change.value is None:
            self._set_members(self.members - {name})
        else:
            self._set_members(self.members | {name})

    def _note_revision(self, name: str, value: bytes | None) -> None:
        """Remember the revision a member's record names (another revision: notify)."""
        found = _revision_of(value)
        before = self._revisions.pop(name, None)
        if found is not None:
            self._revisions[name] = found
        if before != found and value is not None and name in self.members:
            self._notify()

    def _leader_snapshot(self, changes: list[Change]) -> None:
        found = [c for c in changes if c.key == self.leader_key]
        self._leader_changed(found[0] if found else Change(self.leader_key, None))

    def _leader_changed(self, change: Change) -> None:
        if change.key != self.leader_key:
            return
        leader = None if change.value is None else (change.value.decode(), change.lease)
        if leader != self.leader:
            self.leader = leader
            self._notify()
        if leader is None:
            self._leader_gone()
