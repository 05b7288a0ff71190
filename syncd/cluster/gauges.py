"""The cluster's Prometheus gauges: members, devices owned, leadership (cluster mode only)."""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import Gauge

    from syncd.cluster.node import ClusterNode
    from syncd.metrics import Metrics

__all__ = ["ClusterGauges"]


class ClusterGauges:
    """syncd_cluster_members, syncd_owned_devices, syncd_cluster_leader (cluster mode only)."""

    def __init__(self, metrics: Metrics) -> None:
        from prometheus_client import Gauge

        r = metrics.registry
        self.members: Gauge = Gauge(
            "syncd_cluster_members", "Live nodes of the cluster as this node sees them", registry=r
        )
        self.owned: Gauge = Gauge(
            "syncd_owned_devices", "Devices this node owns (changes) now", registry=r
        )
        self.leader: Gauge = Gauge(
            "syncd_cluster_leader", "1 if this node drives rollouts, else 0", registry=r
        )

    def update(self, cluster: ClusterNode, owned: Collection[str], available: bool) -> None:
        self.members.set(len(cluster.members) if available else 0)
        self.owned.set(len(owned))
        self.leader.set(1 if cluster.is_leader else 0)
