"""Why a command refuses on a cluster host where it would act on state the cluster ignores.

In a cluster (SPEC section 11) the rollout, the device records and the
history are in etcd, and only a running node acts on them: the driver pauses
the rollout, a node marks a device's passwords due. The local state dir of a
node holds none of it. So a command never falls back to that dir there:

- with the cluster settings and no node answering on this host's socket,
  ``rollout pause|resume``, ``passwords resend`` and ``status`` refuse, naming
  the node to run them on as etcd says (:func:`no_node_here`);
- without them, on a state dir a cluster node uses (its marker,
  :mod:`syncd.node_marker`), every command that would read or change that dir
  refuses and says which settings to give (:func:`check_not_node_dir`).

Each is one sentence, exit status 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from syncd.commands import CommandError
from syncd.listing import in_words
from syncd.node_marker import read_node_marker

if TYPE_CHECKING:
    from syncd.settings import Settings

__all__ = ["check_not_node_dir", "no_node_here"]


def check_not_node_dir(settings: Settings, *, changes_devices: bool = False) -> None:
    """A CommandError when no cluster settings are given and a cluster node uses the state dir
    (``changes_devices``: ``apply``, which could use the dir standalone instead)."""
    if settings.cluster_endpoints:
        return
    marker = read_node_marker(settings.state_dir)
    if marker is not None:
        raise CommandError(marker.refusal(settings.state_dir, changes_devices=changes_devices))


def no_node_here(
    settings: Settings, socket: Path, *, command: str, device: str | None = None
) -> CommandError:
    """The refusal of ``command`` run with the cluster settings where no node answers on
    ``socket``: where to run it instead, read from etcd (``device``: whose owner to name)."""
    from syncd.cluster import ClusterError
    from syncd.cluster.hashing import owner_of
    from syncd.cluster.reading import read_members

    cluster = settings.cluster_name
    here = f"no node of cluster {cluster} runs on this host (no syncd daemon answers on {socket})"
    try:
        members, leader = read_members(settings)
    except ClusterError as exc:
        return CommandError(f"{here}; run `{command}` on a host whose node runs ({exc})")
    if not members:
        return CommandError(
            f"{here}, nor anywhere else (no node is registered in etcd): start a node "
            f"(`syncd run`) and run `{command}` on its host"
        )
    if device is not None:
        owner = owner_of(device, members)
        why = f"and the passwords of {device} are sent by the node that owns it"
        return CommandError(f"{here}, {why}: run `{command}` on the host of node {owner}")
    if command.startswith("syncd rollout"):
        why = "and only the node that drives the rollout changes it"
        if leader is None:
            target = f"the host of the cluster's leader once one is elected ({_nodes(members)})"
        else:
            target = f"the host of node {leader}, the leader"
        return CommandError(f"{here}, {why}: run `{command}` on {target}")
    return CommandError(
        f"{here}: run `{command}` on the host of a node that runs ({_nodes(members)}); "
        "each shows the whole fleet"
    )


def _nodes(members: frozenset[str]) -> str:
    names = sorted(members)
    shown = in_words(names, limit=5)
    return f"node{'s' if len(names) > 1 else ''} {shown}"
