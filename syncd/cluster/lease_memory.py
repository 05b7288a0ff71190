"""The etcd leases a node granted and has not seen end, remembered in its state dir.

A node that stops while etcd does not answer cannot revoke its lease, and
one killed cannot either: etcd keeps the lease (a restarted etcd restores it
with its whole TTL), and with it the node's registration, ownership keys and
maybe the leader key. Started again, the node must tell that registration,
its own, from another live node using its name. The state dir is its
identity (one ``syncd run`` per state dir holds its lock), so the node keeps
there, in ``cluster-lease`` (mode 0600), the leases it granted:

- a lease is written down as soon as etcd grants it, before anything is
  registered under it;
- it is forgotten only once etcd said it ended (revoked by the node, or not
  known to etcd any more).

A registration found under one of these leases is the node's own, left by an
earlier run (or an earlier lease of this run); under any other lease it is
another live node's. The file names the cluster and node it is for: after a
change of either it is ignored. It holds no secret.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path

from syncd.state.files import replace_file

__all__ = ["LEASE_FILE", "LeaseMemory"]

_log = logging.getLogger(__name__)

LEASE_FILE = "cluster-lease"


class LeaseMemory:
    """The leases of one node, kept in ``path`` (None: in memory only)."""

    def __init__(self, path: Path | None, *, cluster: str, node: str) -> None:
        self.path = path
        self._cluster = cluster
        self._node = node
        self._leases: set[int] = set(self._read())

    def __repr__(self) -> str:
        return f"LeaseMemory({str(self.path) if self.path else None!r})"

    @property
    def leases(self) -> frozenset[int]:
        """Every lease granted and not known to have ended."""
        return frozenset(self._leases)

    def remember(self, lease: int) -> None:
        """``lease`` was just granted: write it down before anything is bound to it."""
        if lease not in self._leases:
            self._leases.add(lease)
            self._write()

    def forget(self, leases: Iterable[int]) -> None:
        """These leases ended (revoked, or unknown to etcd): nothing of this node lives on them."""
        gone = self._leases.intersection(leases)
        if gone:
            self._leases -= gone
            self._write()

    def _read(self) -> list[int]:
        if self.path is None:
            return []
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            _log.debug("%s unreadable, ignored: %s", self.path, type(exc).__name__)
            return []
        if not isinstance(data, dict) or (data.get("cluster"), data.get("node")) != (
            self._cluster,
            self._node,
        ):
            return []
        leases = data.get("leases")
        if not isinstance(leases, list):
            return []
        return [lease for lease in leases if isinstance(lease, int) and lease > 0]

    def _write(self) -> None:
        """Replace the file at once (write then rename); without leases, remove it.

        A failure is logged at debug only: the node works on, and after a restart
        waits for its old lease to end instead of taking its registration back.
        """
        if self.path is None:
            return
        try:
            if not self._leases:
                self.path.unlink(missing_ok=True)
                return
            record = {"cluster": self._cluster, "node": self._node, "leases": sorted(self._leases)}
            replace_file(self.path, json.dumps(record, sort_keys=True) + "\n")
        except OSError as exc:
            _log.debug("cannot write %s: %s", self.path, exc.strerror or type(exc).__name__)
