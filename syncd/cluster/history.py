"""The change history of cluster mode: ``HistoryLog``'s two methods over the shared store.

Every node appends to the same bounded history in etcd (``EtcdStateStore``),
so a device that moves to another node keeps its history, and ``syncd
history`` on any node shows the whole fleet's.
"""

from __future__ import annotations

from datetime import datetime

from syncd.cluster.store import EtcdStateStore
from syncd.history import HistoryEntry, HistoryRead, collect_entries

__all__ = ["EtcdHistory"]


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
        return found


def _not_whole(number: int) -> str:
    return f"etcd history entry {number}: skipped, not a whole entry"
