"""A cluster node's share of the fleet (SPEC section 11): the ``Sharing`` of cluster mode.

A device that this node does not own is not reconciled at all (no GET
either: its owner reads it); ``turn`` returns a ``skipped`` outcome marked
``elsewhere`` for it at once (the daemon leaves its view and metrics of the
device alone). Before reading a device it owns, the node takes the device's
ownership key (``acquire``): the previous owner releases it only after its PUT
in flight and its state writes are in etcd, so what this node reads and plans
comes after them. After the read (``void_read``) and right before the PUT
(``may_put``) the key must be the very one the turn took. A node whose lease
ended meanwhile (a host paused between its GET and its PUT) may have lost the
device to another node and got it back, so what it read may be stale: nothing
is said, kept or PUT from it, and the device is read again. The PUT runs
inside ``put_window``, which cancels it when the lease could end (only a node
that stopped renewing gets there). A device that moved away
is released after the run in flight ends. A membership change kicks the
workers of the devices this node gained, so they are reconciled at once. Each
node publishes the status JSON of the devices it owns in etcd
(``publish_status``) and reads the others' (``shared_statuses``), so ``syncd
status`` on any node shows the whole fleet.

``syncd.sharing.open_sharing`` imports this module only when
``cluster_endpoints`` is set: it brings in gRPC.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from syncd import events
from syncd.cluster import (
    ClusterConfig,
    ClusterError,
    ClusterNode,
    EtcdStateStore,
    build_cluster,
    start_cluster,
)
from syncd.cluster.agreement import Order, RevisionsSeen, follow, lags, revision_grace
from syncd.cluster.commit_order import CommitOrder
from syncd.cluster.connection import TRANSIENT_ERRORS
from syncd.cluster.gauges import ClusterGauges
from syncd.cluster.history import EtcdHistory
from syncd.logs import get_logger
from syncd.model import DeviceSpec
from syncd.node_marker import mark_node
from syncd.outcome import Outcome
from syncd.sharing import SharingError, Work, Workers
from syncd.state import StateStore

if TYPE_CHECKING:
    from syncd.metrics import Metrics

__all__ = ["Clustered"]

_log = logging.getLogger(__name__)

#: Seconds a node may load the shared state at start-up, etcd answering, before
#: ``cluster.unavailable`` says so (at least lease_ttl).
LOAD_GRACE = 10.0


class Clustered:
    """This node's share of a cluster on etcd; see the module docstring."""

    def __init__(
        self,
        config: ClusterConfig,
        *,
        workers: Workers,
        resync_interval: float,
        metrics: Metrics | None = None,
        desired_dir: Path | None = None,
    ) -> None:
        self.config = config
        self.node: str | None = config.node_name
        self.changed = asyncio.Event()
        self._workers = workers
        self._cluster: ClusterNode
        self._store: EtcdStateStore
        self._cluster, self._store = build_cluster(config, on_change=self._wake_up)
        self.state: StateStore = self._store
        self.relay: EtcdStateStore = self._store
        #: ``syncd.history.HistoryLog``'s append/read, shared by every node.
        self.history: EtcdHistory = EtcdHistory(self._store)
        self.log = get_logger(node=config.node_name)  # a SIGHUP's log_level reaches it
        self._retry = min(1.0, config.lease_ttl / 4)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._busy: set[str] = set()
        #: device -> its ownership key's revision when its turn began (during the turn).
        self._turn_keys: dict[str, int | None] = {}
        #: device -> why its last turn was skipped, as logged (once while it stays so).
        self._skipped: dict[str, str] = {}
        self._owned: frozenset[str] = frozenset()
        self._owners: dict[str, str | None] = {}
        self._owners_among: frozenset[str] = frozenset()
        self._seen: tuple[str, frozenset[str], str | None] | None = None
        self._started = time.monotonic()
        #: Whether etcd ever answered this node (a first outage names the likely setting).
        self._joined_once = False
        #: The members' revisions as seen, and what was logged of them (``agreement.follow``).
        self._revisions_seen = RevisionsSeen()
        #: Which of two revisions is newer, by this checkout's Git history (else by time).
        self._order: Callable[[str, str], Order] = (
            CommitOrder(desired_dir) if desired_dir is not None else lambda ours, theirs: None
        )
        self._revision_grace = revision_grace(
            resync_interval=resync_interval, lease_ttl=config.lease_ttl
        )
        self._background: set[asyncio.Task[None]] = set()
        self._gauges = ClusterGauges(metrics) if metrics is not None else None
        if metrics is not None:
            metrics.health_problem = self.health_problem

    def __repr__(self) -> str:
        return f"Clustered({self.node!r})"

    # ---------------------------------------------------------------- asking

    @property
    def is_leader(self) -> bool:
        return self._cluster.is_leader

    @property
    def leader(self) -> str | None:
        return self._cluster.leader if self.available else None

    @property
    def available(self) -> bool:
        return self._cluster.healthy and self._store.loaded

    @property
    def members(self) -> frozenset[str]:
        return self._cluster.members

    def owns(self, device: str) -> bool:
        return self._store.loaded and self._cluster.healthy and self.owner_of(device) == self.node

    def owner_of(self, device: str) -> str | None:
        """As ``ClusterNode.owner_of``, remembered until the members change (asked often)."""
        members = self._cluster.members
        if members != self._owners_among:
            self._owners_among, self._owners = members, {}
        if device not in self._owners:
            self._owners[device] = self._cluster.owner_of(device)
        return self._owners[device]

    def health_problem(self) -> str | None:
        """Why ``/healthz`` answers 503, or None (called from the metrics thread)."""
        if not self._cluster.healthy:
            endpoints = ",".join(self.config.access.endpoints)
            never = "" if self._joined_once else " since this node started"
            hint = (
                " (an https:// etcd asked over http://, or a wrong host or port?)"
                if not self._joined_once and not self.config.access.tls
                else ""
            )
            return (
                f"cluster unavailable: etcd does not answer at cluster_endpoints "
                f"{endpoints}{never}{hint}; this node changes nothing"
            )
        if not self._store.loaded:
            return "cluster state not loaded from etcd yet; this node changes nothing"
        return None

    def describe(self) -> str:
        if not self.available:
            return "cluster unavailable (etcd does not answer), changing nothing; "
        leader = " (leader)" if self.is_leader else ""
        members = len(self._cluster.members)
        return f"node {self.node}{leader} of {members}, owns {len(self._owned)}; "

    @contextlib.asynccontextmanager
    async def put_window(self) -> AsyncIterator[None]:
        """Cancel the PUT inside (TimeoutError) shortly before the lease could expire.

        The deadline moves on with every renewal, so a healthy node's PUT runs
        its full request timeout; one that stops renewing cuts its PUT before
        another node can take the device.
        """
        loop = asyncio.get_running_loop()
        margin = self.config.lease_ttl / 10
        deadline = loop.time() + self._cluster.lease_remaining - margin
        async with asyncio.timeout_at(deadline) as window:

            async def follow_renewals() -> None:
                while True:
                    await asyncio.sleep(self._retry / 2)
                    remaining = self._cluster.lease_remaining
                    if remaining > 0:
                        window.reschedule(loop.time() + remaining - margin)

            follower = asyncio.create_task(follow_renewals())
            try:
                yield
            finally:
                follower.cancel()

    # ---------------------------------------------------------------- changing

    async def acquire(self, device: str) -> bool:
        if not self.owns(device):
            return False
        taken_over = device not in self._cluster.held
        if await self._cluster.acquire(device):
            if taken_over:  # the last owner's record, as it left it
                await self._store.refresh_device(device)
            return True
        if self.owns(device):  # the previous owner still holds it: ask again soon
            asyncio.get_running_loop().call_later(self._retry, self._kick, device)
        return False

    def void_read(self, device: str) -> str | None:
        started = self._turn_keys.get(device)
        if started is None:
            return None
        if self._cluster.healthy and self._cluster.key_revision(device) == started:
            return None
        # This node's lease ended, or is no longer sure to live, since the turn took the
        # device (a paused host, say; on waking its own clock says so before etcd does):
        # another node may have changed the device meanwhile, so the read may be stale.
        asyncio.get_running_loop().call_soon(self._kick, device)
        return (
            "this node's cluster lease ended or could not be renewed since the device was "
            "read; reading it again"
        )

    async def may_put(self, device: str) -> str | None:
        void = self.void_read(device)
        if void is not None:
            return void
        if not await self.acquire(device):
            return "another cluster node still holds the device"
        return None

    async def release(self, device: str) -> None:
        if device not in self._busy:
            await self._cluster.release(device)

    async def turn(self, spec: DeviceSpec, work: Work) -> Outcome:
        name = spec.name
        if not self.owns(name):
            self._skipped.pop(name, None)
            await self.release(name)
            return Outcome.of(spec, "skipped", elsewhere=True)
        if not await self.acquire(name):  # the previous owner's PUT is still in flight
            self._skip(name, "another cluster node still holds the device")
            return Outcome.of(spec, "skipped", elsewhere=True)
        self._skipped.pop(name, None)
        self._busy.add(name)
        self._turn_keys[name] = self._cluster.key_revision(name)
        try:
            return await work()
        finally:
            self._turn_keys.pop(name, None)
            self._busy.discard(name)
            if not self.owns(name):  # it moved during the run: give it up now the PUT is done
                await self._give_up(name)

    def _skip(self, device: str, reason: str) -> None:
        """Log ``reconcile.skipped`` once while the device stays skipped for ``reason``."""
        if self._skipped.get(device) != reason:
            self._skipped[device] = reason
            events.reconcile_skipped(self.log.bind(device=device), reason=reason)

    # ---------------------------------------------------------------- revisions

    def publish_revision(self, revision: str) -> None:
        self._spawn(self._cluster.publish_revision(revision, time.time()))

    def lagging(self, revision: str) -> bool:
        """Another node loaded a different revision after ours: at once, no grace."""
        now = time.time()
        return lags(
            self._cluster.revisions,
            node=self.config.node_name,
            revision=revision,
            now=now,
            order=self._order,
        )

    def lagging_revision(self, node: str) -> str | None:
        """The revision ``node`` has loaded, when another node loaded a different one
        after it (it lags: a checkout not pulled yet); None when it does not."""
        found = self._cluster.revisions.get(node)
        if found is None:
            return None
        now = time.time()
        return (
            found[0]
            if lags(
                self._cluster.revisions, node=node, revision=found[0], now=now, order=self._order
            )
            else None
        )

    def may_drive(self, revision: str) -> bool:
        return self.is_leader and self.available and not self.lagging(revision)

    # ---------------------------------------------------------------- status

    def publish_status(self, devices: Iterable[Mapping[str, Any]]) -> None:
        """Save the status of each device this node owns now (the store writes only changes)."""
        for doc in devices:
            name = doc.get("device")
            if isinstance(name, str) and doc.get("owner") == self.node and self.owns(name):
                self._store.save_status(name, doc)

    def shared_statuses(self) -> Mapping[str, Mapping[str, Any]]:
        return self._store.statuses()

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        self._started = time.monotonic()
        if self.config.state_dir is not None:
            # Commands run on this state dir without the cluster settings refuse, naming us.
            mark_node(
                self.config.state_dir, node=self.config.node_name, cluster=self.config.cluster_name
            )
        try:
            await start_cluster(self._cluster, self._store)
        except ClusterError as exc:
            raise SharingError(str(exc)) from None
        self._task = asyncio.create_task(self._follow(), name="cluster sharing")

    async def stop(self) -> None:
        """Write what is pending, then leave (the lease and every key under it go)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for background in list(self._background):
            background.cancel()
        await self._store.close()
        await self._cluster.stop()
        await self._cluster.connection.close()

    # ---------------------------------------------------------------- internals

    async def _give_up(self, device: str) -> None:
        """Release the device once this node's state writes are in etcd, for the next owner."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.config.lease_ttl / 2):
                await self._store.flush()
        await self._cluster.release(device)

    def _wake_up(self) -> None:
        self._wake.set()

    def _kick(self, device: str) -> None:
        worker = self._workers().get(device)
        if worker is not None:
            worker.kick()

    def _spawn(self, work: Awaitable[None]) -> None:
        async def run() -> None:
            with contextlib.suppress(*TRANSIENT_ERRORS):
                await work

        task = asyncio.get_running_loop().create_task(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _follow(self) -> None:
        """Act on every change at once, and look again each second (devices come and go)."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._wake.wait()
            self._wake.clear()
            try:
                self._rebalance()
            except Exception:  # a bug here must not stop the node from following
                self.log.exception("cluster.rebalance_failed")

    def _rebalance(self) -> None:
        workers = self._workers()
        owned = frozenset(n for n in workers if self.owns(n))
        for name in owned - self._owned:
            workers[name].kick()
        self._owned = owned
        for name in self._cluster.held - owned - self._busy:
            self._spawn(self._give_up(name))
        self._report(owned)
        if self._gauges is not None:
            self._gauges.update(self._cluster, owned, self.available)

    def _condition(self) -> str:
        """``joined``; ``loading`` the shared state at start-up; else ``unavailable``."""
        if self.available:
            return "joined"
        grace = max(LOAD_GRACE, self.config.lease_ttl)
        if self._cluster.healthy and time.monotonic() - self._started < grace:
            return "loading"  # the store loads once: only ever at start-up
        return "unavailable"

    def _report(self, owned: Collection[str]) -> None:
        """Log what changed: availability, members and leader, revisions that differ.

        Loading the shared state at start-up is no outage: ``cluster.joined``
        follows, and ``cluster.unavailable`` only if it takes too long.
        """
        seen = (self._condition(), self._cluster.members, self._cluster.leader)
        before, self._seen = self._seen, seen
        if seen != before:
            self.changed.set()
            members = sorted(self._cluster.members)
            node = self.config.node_name
            was = before[0] if before is not None else None
            if seen[0] == "loading":
                _log.debug("cluster state loading from etcd")
            elif seen[0] == "unavailable":
                if was != "unavailable":
                    error = self.health_problem() or "etcd does not answer"
                    events.cluster_unavailable(self.log, node=node, error=error)
            elif was != "joined":
                self._joined_once = True
                events.cluster_joined(
                    self.log, node=node, members=members, leader=seen[2], owned=len(owned)
                )
            else:
                events.cluster_members(
                    self.log, node=node, members=members, leader=seen[2], owned=len(owned)
                )
        self._report_revisions()

    def _report_revisions(self) -> None:
        """Log a difference of revisions that outlasted the grace (checked each second), its end."""
        revisions = {n: r for n, (r, _) in self._cluster.revisions.items()}
        before = self._revisions_seen
        self._revisions_seen, notice = follow(
            before, revisions, now=time.monotonic(), grace=self._revision_grace
        )
        if self._revisions_seen.state != before.state:
            self.changed.set()
        if notice is None:
            return
        node = self.config.node_name
        ours = revisions.get(node)
        lasted = round(notice.differing_for, 1)
        if notice.kind == "agrees":
            events.cluster_revision_agrees(self.log, node=node, revision=ours, differing_for=lasted)
        else:
            lagging = ours is not None and self.lagging(ours)
            events.cluster_revision_differs(
                self.log,
                node=node,
                revision=ours,
                revisions=revisions,
                lagging=lagging,
                differing_for=lasted,
            )
