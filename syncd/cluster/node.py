"""This host as a member of the cluster: lease, membership, device ownership, leader.

Keys, all under ``/{cluster}/``:

- ``members/{node}``: the node's registration, bound to its lease, so it
  disappears when the node stops or stops renewing;
- ``owners/{device}``: the node changing that device, bound to its lease,
  taken in a transaction before the first PUT;
- ``leader``: the node driving rollouts, bound to its lease.

A member's registration also says which desired revision the node has
loaded, and since when (``publish_revision``), so a node can tell that its
checkout lags behind another's (``revisions``).

Fencing: the node owns nothing as soon as its lease is not sure to live, and
rejoins by itself when etcd answers again (:mod:`syncd.cluster.fenced_lease`).

Restarts. A node stopped while etcd did not answer, or killed, leaves its
lease alive in etcd, and its keys with it. The leases the node granted are
remembered in its state dir (:mod:`syncd.cluster.lease_memory`): a
registration found under one of them is its own, so the node takes it over
and revokes those leases (its old ownership and leader keys go with them)
before it claims anything, and joins at once. A registration under any other
lease is another live node's: the node name is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Collection
from pathlib import Path

from syncd import events
from syncd.cluster.connection import (
    TRANSIENT_ERRORS,
    ClusterError,
    EtcdConnection,
    describe_failure,
    stale_token,
)
from syncd.cluster.fenced_lease import FencedLease
from syncd.cluster.hashing import owner_of
from syncd.cluster.lease_memory import LeaseMemory
from syncd.cluster.membership import (
    DuplicateNodeError,
    Membership,
    member_record,
    register,
    rewrite_record,
)
from syncd.cluster.owner_keys import drop_owner_key, take_owner_key
from syncd.logs import get_logger

__all__ = ["ClusterNode"]

_log = logging.getLogger(__name__)


class ClusterNode:
    """Membership, ownership and leadership of one node; see the module docstring.

    ``on_change`` is called (synchronously, in the event loop) whenever the
    live members, this node's health or the leader change; ``changed`` is an
    ``asyncio.Event`` set at the same moments, for a loop that prefers to wait.
    ``lease_file`` remembers the node's leases across restarts (in its state
    dir, which only one process uses at a time); None: within this process only.
    """

    def __init__(
        self,
        connection: EtcdConnection,
        *,
        cluster_name: str = "syncd",
        node_name: str,
        lease_ttl: float = 10.0,
        on_change: Callable[[], None] | None = None,
        lease_file: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.connection = connection
        self.cluster_name = cluster_name
        self.node_name = node_name
        self.lease_ttl = lease_ttl
        self.on_change = on_change
        self.changed = asyncio.Event()
        self._prefix = f"/{cluster_name}/"
        self._member_key = f"{self._prefix}members/{node_name}"
        self._lease = FencedLease(
            connection,
            node_name=node_name,
            lease_ttl=lease_ttl,
            memory=LeaseMemory(lease_file, cluster=cluster_name, node=node_name),
            clock=clock,
            notify=self._notify,
            lost=self._forget_held,
            join=self._join,
            after_renewal=self._after_renewal,
        )
        self._revision: tuple[str, float] | None = None  # ours, as published
        self._written: bytes | None = None  # our member record as last written
        self._held: dict[str, int] = {}  # device -> create_revision of our owners key
        self._background: set[asyncio.Task[None]] = set()
        self._view = Membership(
            connection,
            prefix=self._prefix,
            notify=self._notify,
            leader_gone=self._leader_gone,
            retry=min(0.5, lease_ttl / 4),
        )

    def __repr__(self) -> str:
        return f"ClusterNode({self.node_name!r}, cluster={self.cluster_name!r})"

    # ------------------------------------------------------------ public state

    @property
    def available(self) -> bool:
        """etcd answered this node's last request."""
        return self._lease.available

    @property
    def healthy(self) -> bool:
        """Joined, and the lease renewed recently enough to be trusted (fencing)."""
        return self._lease.healthy

    @property
    def lease_remaining(self) -> float:
        """Seconds the lease is sure to live in etcd (0 when not healthy).

        Bound a PUT by it (``min(request_timeout, lease_remaining)``), so a
        PUT that starts just before this node is fenced ends before another
        node can take the device over.
        """
        return self._lease.remaining

    @property
    def members(self) -> frozenset[str]:
        """The live nodes as last seen (this one included once joined)."""
        return self._view.members

    @property
    def revisions(self) -> dict[str, tuple[str, float]]:
        """Live members' desired revisions, as ``node -> (revision, since)`` (wall-clock time)."""
        return self._view.revisions

    @property
    def leader(self) -> str | None:
        leader = self._view.leader
        return leader[0] if leader else None

    @property
    def is_leader(self) -> bool:
        """This node holds the leader key under its current lease, and is healthy."""
        return self.healthy and self._view.leader == (self.node_name, self._lease.id)

    @property
    def held(self) -> frozenset[str]:
        """Devices whose ownership key this node holds (release those it no longer owns)."""
        return frozenset(self._held) if self.healthy else frozenset()

    def key_revision(self, device: str) -> int | None:
        """The revision of ``device``'s ownership key as this node took it (None: not held;
        a lease that ended took every key with it)."""
        return self._held.get(device)

    def owner_of(self, device: str) -> str | None:
        """The live node that should change ``device`` (rendezvous hashing over members)."""
        return owner_of(device, self._view.members)

    def owns(self, device: str) -> bool:
        """This node may change ``device`` now: healthy and chosen by hashing."""
        return self.healthy and owner_of(device, self._view.members) == self.node_name

    def owned(self, devices: Collection[str]) -> list[str]:
        """Those of ``devices`` this node owns now."""
        return [device for device in devices if self.owns(device)] if self.healthy else []

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Join the cluster, or keep trying in the background when etcd does not answer.

        Raises ClusterError (one sentence naming the setting) when etcd refuses
        this node's configuration: wrong credentials or CA, or its node name
        already taken by another live node.
        """
        try:
            await self.connection.authenticate()
            await self._join()
        except DuplicateNodeError:
            await self.stop()
            raise
        except TRANSIENT_ERRORS as exc:
            problem = describe_failure(exc, self.connection.access)
            if problem is not None:
                raise ClusterError(problem) from None
            self._lease.set_available(False)
            self._lease.token_due = True
            _log.debug("etcd unavailable at start; joining when it answers")
        self._lease.start(f"cluster node {self.node_name}")

    async def stop(self) -> None:
        """Leave: revoke the lease (members, owners and leader keys go with it)."""
        await self._halt()
        was_healthy = self.healthy
        self._lease.joined = False
        self._held.clear()
        await self._lease.revoke()
        if was_healthy:
            self._notify()

    async def abandon(self) -> None:
        """Stop renewing without revoking: as if the process were killed (for tests)."""
        await self._halt()
        self._lease.joined = False

    async def _halt(self) -> None:
        """End the renewal loop and both watches (the lease is left as it is)."""
        await self._lease.halt()
        await self._view.close()

    async def publish_revision(self, revision: str, since: float) -> None:
        """Say in this node's registration that it has loaded ``revision`` since ``since``.

        Kept across rejoins; what cannot be written now (etcd away, or a rejoin under
        way that registers the record it read before) is written after a renewal.
        """
        if self._revision is not None and self._revision[0] == revision:
            return
        self._revision = (revision, since)
        await self._republish()

    async def _republish(self) -> None:
        """Write this node's registration again when it lags what the node has loaded."""
        if not self.healthy or self._lease.id is None or self._written is None:
            return
        record, lease, written = self._record(), self._lease.id, self._written
        if record == written:
            return
        with contextlib.suppress(*TRANSIENT_ERRORS):
            key = self._member_key
            if await rewrite_record(self.connection, key, record, lease=lease, written=written):
                self._written = record

    def _record(self) -> bytes:
        return member_record(self.node_name, self._lease.id, self._revision)

    # ---------------------------------------------------------------- ownership

    async def acquire(self, device: str) -> bool:
        """Take ``device``'s ownership key for this node's lease; True if it is ours now.

        False when this node does not own the device, is not healthy, another
        node still holds the key (it releases it after its PUT in flight), or
        etcd does not answer.
        """
        if not self.owns(device):
            return False
        if device in self._held:
            return True
        lease = self._lease.id
        assert lease is not None
        key = f"{self._prefix}owners/{device}"
        try:
            taken = await take_owner_key(self.connection, key, node=self.node_name, lease=lease)
        except TRANSIENT_ERRORS as exc:
            self.connection.noticed(exc)
            if not stale_token(exc, self.connection.access):  # a token says nothing of the lease
                self._lease.failed()
            return False
        if taken is None:
            return False
        self._held[device] = taken
        if not self.owns(device):  # fenced or moved while we waited: give it back
            await self.release(device)
            return False
        return True

    async def release(self, device: str) -> None:
        """Delete ``device``'s ownership key if it is still this node's; while etcd does not
        answer it stays held, to be released later (the key lives with this node's lease,
        which outlives an etcd restart: a release forgotten keeps the new owner out)."""
        revision = self._held.get(device)
        if revision is None:
            return
        key = f"{self._prefix}owners/{device}"
        try:
            await drop_owner_key(self.connection, key, node=self.node_name, revision=revision)
        except TRANSIENT_ERRORS as exc:
            self.connection.noticed(exc)
            return
        if self._held.get(device) == revision:
            del self._held[device]

    # ---------------------------------------------------------------- internals

    def _notify(self) -> None:
        self.changed.set()
        if self.on_change is not None:
            try:
                self.on_change()
            except Exception:
                events.cluster_internal_error(get_logger(), what="a membership change's callback")

    def _forget_held(self) -> None:
        """The lease is gone or new: no ownership key is this node's any more."""
        self._held.clear()

    async def _join(self) -> None:
        """Take or keep a lease, register under it, read members and leader."""
        await self._lease.take()
        assert self._lease.id is not None
        record = self._record()
        former = self._lease.memory.leases - {self._lease.id}
        key, lease = self._member_key, self._lease.id
        if not await register(self.connection, key, record, lease=lease, former=former):
            raise DuplicateNodeError(
                f"node_name {self.node_name!r} is already used by another live node of "
                f"cluster {self.cluster_name!r}; give each node its own node_name"
            )
        await self._lease.end_former(former)
        self._written = record
        self._lease.joined = True
        self._lease.set_available(True)
        await self._view.reload(self.connection.timeout)
        await self._campaign()
        self._notify()

    async def _campaign(self) -> None:
        """Take the leader key if nobody holds it (create-if-absent)."""
        if not self.healthy or self._lease.id is None:
            return
        client = await self.connection.open()
        assert client.kv is not None
        kv = client.kv
        key = self._view.leader_key
        await kv.txn(
            [kv.txn_compare_create_revision(key, 0)],
            [kv.txn_op_put(key, self.node_name, lease=self._lease.id)],
            timeout=self.connection.timeout,
        )

    async def _after_renewal(self) -> None:
        """Look at the members and leader again; campaign if nobody leads."""
        await self._view.refresh()
        if self._view.leader is None:
            await self._campaign()
        await self._republish()

    def _leader_gone(self) -> None:
        """Nobody holds the leader key: take it if healthy (in the background)."""
        if self.healthy:
            task = asyncio.get_running_loop().create_task(self._campaign_quietly())
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _campaign_quietly(self) -> None:
        with contextlib.suppress(*TRANSIENT_ERRORS):
            await self._campaign()
