"""The change history of cluster mode: ``HistoryLog``'s two methods over the shared store.

Every node appends to the same bounded history in etcd (``EtcdStateStore``),
so a device that moves to another node keeps its history, and ``syncd
history`` on any node shows the whole fleet's: ``read_cluster_history(settings)``
reads it from etcd once (no node joins, no watch), with the etcd user, password
file and TLS settings the daemon uses.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Any

from syncd.cluster.connection import ClusterError, EtcdAccess
from syncd.cluster.reading import read_once
from syncd.cluster.settings import cluster_access
from syncd.cluster.store import EtcdStateStore, history_prefix
from syncd.history import HistoryEntry, HistoryRead, collect_entries, oldest_first

__all__ = ["EtcdHistory", "read_cluster_history"]


class EtcdHistory:
    """``append`` and ``read`` as :class:`syncd.history.HistoryLog` has them, kept in etcd."""

    def __init__(self, store: EtcdStateStore) -> None:
        self.store = store

    def __repr__(self) -> str:
        return f"EtcdHistory({self.store!r})"

    def append(self, entry: HistoryEntry) -> None:
        self.store.append_history(entry.as_dict())

    def read(self, *, device: str | None = None, since: datetime | None = None) -> HistoryRead:
        """Entries of every node, oldest first, filtered; unreadable ones skipped with a warning."""
        found = HistoryRead([], [])
        rows = enumerate(self.store.history(), start=1)
        collect_entries(rows, _not_whole, device=device, since=since, into=found)
        return oldest_first(found)


def _not_whole(number: int) -> str:
    return f"etcd history entry {number}: skipped, not a whole entry"


def read_cluster_history(
    settings: object, *, since: datetime | None = None, keep: Callable[[Any], bool] | None = None
) -> HistoryRead:
    """The history of the cluster ``settings`` name as etcd holds it now, oldest first.

    Entries older than ``since`` are left out; an entry that is not whole is
    skipped with a warning. Raises ClusterError (one sentence naming the
    setting, never a credential) when etcd cannot be reached or refuses us, or
    when ``cluster_endpoints`` is unset.
    """
    found = cluster_access(settings)
    if found is None:
        raise ClusterError("cluster_endpoints is not set: the history is in the state dir")
    access, cluster_name = found
    return asyncio.run(_read(access, cluster_name, since, keep))


async def _read(
    access: EtcdAccess,
    cluster_name: str,
    since: datetime | None,
    keep: Callable[[Any], bool] | None,
) -> HistoryRead:
    changes = await read_once(access, history_prefix(cluster_name), what="history")
    # Keys sort by the time written, then node, as the daemons' own mirror does.
    docs = sorted((c.key, c.value) for c in changes if c.value is not None)
    rows = ((number, value) for number, (_, value) in enumerate(docs, start=1))
    read = HistoryRead([], [])
    collect_entries(rows, _not_whole, device=None, since=since, keep=keep, into=read)
    return oldest_first(read)
