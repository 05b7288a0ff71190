"""A ClusterNode in its own process, for kill tests.

python -m tests.cluster.node_process ENDPOINT CLUSTER NODE TTL
"""

from __future__ import annotations

import asyncio
import sys

from syncd.cluster.connection import EtcdAccess, EtcdConnection
from syncd.cluster.node import ClusterNode


async def main(endpoint: str, cluster: str, name: str, ttl: float) -> None:
    node = ClusterNode(
        EtcdConnection(EtcdAccess((endpoint,))), cluster_name=cluster, node_name=name, lease_ttl=ttl
    )
    await node.start()
    while not node.healthy:
        await asyncio.sleep(0.01)
    print("joined", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])))
