"""Which devices this host may change: all of them, or its share of a cluster (SPEC section 11).

The daemon asks one ``Sharing`` and does not care which it is:

- ``Standalone`` (``cluster_endpoints`` unset): owns every device, is the
  leader, keeps state in the state dir. ``syncd.cluster`` (and gRPC) is never
  imported, so standalone behaves and starts exactly as without a cluster.
- ``Clustered`` (:mod:`syncd.cluster.sharing`): a ``ClusterNode`` and the
  ``EtcdStateStore``; this node changes only the devices it owns, takes a
  device's ownership key before reading it, and shares every device's status
  with the other nodes.

``open_sharing(settings, workers=..., metrics=...)`` builds one (no network);
``await sharing.start()`` joins; ``await sharing.stop()`` leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Protocol

from syncd.local_state import open_state
from syncd.model import DeviceSpec
from syncd.node_marker import read_node_marker
from syncd.outcome import Outcome
from syncd.rollout_relay import Relay
from syncd.state import StateError, StateStore

if TYPE_CHECKING:  # gRPC is imported only in cluster mode
    from syncd.cluster.sharing import Clustered
    from syncd.metrics import Metrics
    from syncd.settings import Settings

__all__ = ["Sharing", "SharingError", "Standalone", "Work", "Workers", "open_sharing"]


class SharingError(Exception):
    """The node cannot start: one sentence naming the setting (or the state dir)."""


class Worker(Protocol):
    """What sharing needs of a device's worker: to wake it."""

    def kick(self) -> None: ...


#: The daemon's workers by device name, as they are now.
Workers = Callable[[], Mapping[str, Worker]]
#: One reconcile of one device (the daemon's ``Reconciler.reconcile(spec, apply=True)``).
Work = Callable[[], Awaitable[Outcome]]


class Sharing(Protocol):
    """Who may change which device; see the module docstring."""

    #: This node's name (the User-Agent names it), None standalone.
    node: str | None
    #: Where applied fingerprints, revisions, password records and the rollout live.
    state: StateStore
    #: Set whenever members, health or leader change (for the rollout driver; it clears it).
    changed: asyncio.Event

    @property
    def relay(self) -> Relay | None:
        """Where followers report their devices' outcomes to the rollout's driver (or none)."""
        ...

    @property
    def is_leader(self) -> bool:
        """This node drives rollouts (standalone: always)."""
        ...

    @property
    def leader(self) -> str | None:
        """The name of the node etcd elected (None standalone, or none elected now)."""
        ...

    @property
    def members(self) -> frozenset[str]:
        """The cluster's live nodes (none standalone)."""
        ...

    @property
    def available(self) -> bool:
        """This node may change devices now (cluster: joined and its lease trusted)."""
        ...

    def owns(self, device: str) -> bool: ...

    def owner_of(self, device: str) -> str | None:
        """The node that changes ``device`` (None standalone, or no live node known)."""
        ...

    def lagging_revision(self, node: str) -> str | None:
        """The revision ``node`` has loaded when another node loaded a different one after
        it (None standalone, or when it does not lag)."""
        ...

    def void_read(self, device: str) -> str | None:
        """After a turn's read: None when it stands, else why not (this node's lease ended
        since, so another node may have changed the device; it is kicked to be read again)."""
        ...

    async def may_put(self, device: str) -> str | None:
        """Right before a turn's PUT: None to go, else why not now (the worker is kicked
        again). A PUT goes only under the ownership its turn read the device under."""
        ...

    async def release(self, device: str) -> None: ...

    def put_window(self) -> AbstractAsyncContextManager[None]:
        """Run a PUT inside: TimeoutError when the lease could end first (standalone: never)."""
        ...

    async def turn(self, spec: DeviceSpec, work: Work) -> Outcome:
        """Run ``work`` if this node owns the device, else a ``skipped`` outcome ``elsewhere``."""
        ...

    def describe(self) -> str:
        """The STATUS line's prefix ("" standalone)."""
        ...

    def publish_revision(self, revision: str) -> None:
        """The desired revision this node has loaded (cluster: told to the others)."""
        ...

    def may_drive(self, revision: str) -> bool:
        """This node may drive a rollout of ``revision``: leader, and its checkout not behind."""
        ...

    def publish_status(self, devices: Iterable[Mapping[str, Any]]) -> None:
        """Tell the others the status JSON of the devices this node owns (standalone: nothing)."""
        ...

    def shared_statuses(self) -> Mapping[str, Mapping[str, Any]]:
        """The status JSON each device's owner published, by device (standalone: none)."""
        ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class Standalone:
    """One host, the whole fleet: owns every device, always the leader."""

    node: str | None = None
    history: None = None
    relay: None = None

    def __init__(self, state: StateStore) -> None:
        self.state = state
        self.changed = asyncio.Event()

    def __repr__(self) -> str:
        return "Standalone()"

    @property
    def is_leader(self) -> bool:
        return True

    @property
    def leader(self) -> str | None:
        return None

    @property
    def members(self) -> frozenset[str]:
        return frozenset()

    @property
    def available(self) -> bool:
        return True

    def owns(self, device: str) -> bool:
        return True

    def owner_of(self, device: str) -> str | None:
        return None

    def lagging_revision(self, node: str) -> str | None:
        return None

    def void_read(self, device: str) -> str | None:
        return None

    async def may_put(self, device: str) -> str | None:
        return None

    async def release(self, device: str) -> None:
        return None

    def put_window(self) -> AbstractAsyncContextManager[None]:
        return contextlib.nullcontext()

    async def turn(self, spec: DeviceSpec, work: Work) -> Outcome:
        return await work()

    def describe(self) -> str:
        return ""

    def publish_revision(self, revision: str) -> None:
        return None

    def may_drive(self, revision: str) -> bool:
        return True

    def publish_status(self, devices: Iterable[Mapping[str, Any]]) -> None:
        return None

    def shared_statuses(self) -> Mapping[str, Mapping[str, Any]]:
        return {}

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


def open_sharing(
    settings: Settings, *, workers: Workers, metrics: Metrics | None = None
) -> Standalone | Clustered:
    """Standalone, or this node of the cluster ``settings`` configure (not started yet).

    Raises SharingError naming the setting (or the state dir) that is wrong.
    """
    if not settings.cluster_endpoints:
        marker = read_node_marker(settings.state_dir)
        if marker is not None:  # a cluster node's: standalone, this would be a second writer
            raise SharingError(marker.refusal(settings.state_dir, changes_devices=True))
        try:
            return Standalone(open_state(settings))
        except StateError as exc:
            raise SharingError(str(exc)) from None
    from syncd.cluster import ClusterError, cluster_config
    from syncd.cluster.sharing import Clustered

    try:
        config = cluster_config(settings)
    except ClusterError as exc:
        raise SharingError(str(exc)) from None
    assert config is not None
    try:
        return Clustered(
            config,
            workers=workers,
            resync_interval=settings.resync_interval,
            metrics=metrics,
            desired_dir=settings.desired_dir,
        )
    except ClusterError as exc:
        raise SharingError(str(exc)) from None
