"""The note a cluster node leaves in its local state dir: which node, of which cluster.

A cluster node (SPEC section 11) keeps its rollout, device records and
history in etcd; its own state dir holds only its lock and its leases. A
command run there without the cluster settings (a root shell, while the
settings are only in the unit's drop-in) would otherwise read that nearly
empty dir as a standalone state dir, and say "no changes recorded" or
"rollout paused" while the cluster goes on. So the node writes
``STATE_DIR/cluster-node`` when it starts — its node name and cluster name
(the key prefix), never an endpoint, a user or a credential — and the
commands that would act on the state dir read it first (:func:`read_node_marker`).
A standalone ``syncd run`` or ``syncd apply`` there refuses too (a second
writer beside the cluster): deleting the file makes the dir standalone again.

Importing this module does not import :mod:`syncd.cluster` (gRPC).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MARKER_FILE", "NodeMarker", "mark_node", "read_node_marker"]

_log = logging.getLogger(__name__)

MARKER_FILE = "cluster-node"


@dataclass(frozen=True)
class NodeMarker:
    """What the marker says: the node that uses the state dir, and its cluster's name."""

    node: str
    cluster: str

    def refusal(self, state_dir: Path, *, changes_devices: bool = False) -> str:
        """The sentence of a command run on this node's state dir without the cluster settings
        (``changes_devices``: ``run`` or ``apply``, which may use the dir standalone instead)."""
        standalone = (
            f", or delete {state_dir / MARKER_FILE} to use this state dir standalone"
            if changes_devices
            else ""
        )
        return (
            f"the state dir {state_dir} belongs to node {self.node} of cluster {self.cluster} "
            f"(etcd key prefix /{self.cluster}/), whose rollout, device records and history are "
            "in etcd: run the command with the node's cluster settings (the service's --config "
            f"file, or its SYNCD_CLUSTER_* variables){standalone}"
        )


def mark_node(state_dir: Path, *, node: str, cluster: str) -> None:
    """Write the marker (replaced whole); a failure is logged at debug, the node goes on."""
    from syncd.state.files import replace_file

    record = {"node": node, "cluster": cluster}
    try:
        replace_file(state_dir / MARKER_FILE, json.dumps(record, sort_keys=True) + "\n")
    except OSError as exc:
        _log.debug("cannot write %s: %s", state_dir / MARKER_FILE, exc.strerror or exc)


def read_node_marker(state_dir: Path) -> NodeMarker | None:
    """The marker in ``state_dir``; None when there is none or it cannot be read.

    A marker that is there but not whole still means a cluster node used the
    dir: it reads as an unknown node of an unknown cluster, not as none.
    """
    path = state_dir / MARKER_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:  # none, or not ours to read (the daemon's dir, mode 0700)
        return None
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        data = {}
    node, cluster = data.get("node"), data.get("cluster")
    return NodeMarker(
        node if isinstance(node, str) and node else "(unknown)",
        cluster if isinstance(cluster, str) and cluster else "(unknown)",
    )
