"""Cluster mode (SPEC section 11): several ``syncd run`` nodes sharing a fleet through etcd.

Import this package only when ``cluster_endpoints`` is set: it brings in gRPC.

- ``cluster_config(settings)`` -> ``ClusterConfig | None`` (None: standalone);
- ``open_cluster(config, on_change=...)`` -> ``(ClusterNode, EtcdStateStore)``, or in two
  steps: ``build_cluster`` (no network) then ``await start_cluster(node, store)``;
- ``ClusterNode``: ``owns(device)``, ``acquire(device)``, ``release(device)``,
  ``held``, ``members``, ``owner_of(device)``, ``leader``, ``is_leader``,
  ``healthy``, ``available``, ``changed``, ``stop()``;
- ``EtcdStateStore``: the state interface, plus ``loaded``, ``flush()``, ``close()``.
"""

from __future__ import annotations

from syncd.cluster.connection import ClusterError, EtcdAccess, EtcdConnection
from syncd.cluster.hashing import owner_of
from syncd.cluster.node import ClusterNode
from syncd.cluster.settings import (
    CLUSTER_SETTINGS,
    ClusterConfig,
    build_cluster,
    cluster_config,
    open_cluster,
    read_password_key,
    start_cluster,
)
from syncd.cluster.store import EtcdStateStore

__all__ = [
    "CLUSTER_SETTINGS",
    "ClusterConfig",
    "ClusterError",
    "ClusterNode",
    "EtcdAccess",
    "EtcdConnection",
    "EtcdStateStore",
    "build_cluster",
    "cluster_config",
    "open_cluster",
    "owner_of",
    "read_password_key",
    "start_cluster",
]
