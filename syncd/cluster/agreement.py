"""Whether the cluster's nodes run one desired revision, and when to say they do not (pure).

Each node publishes in its registration the desired revision it has loaded
and since when (its wall clock). Two decisions are made of what a node sees:

- ``lags``: this node's revision is older than another live node's: by the Git
  history when both are commits it knows how to order
  (:mod:`syncd.cluster.commit_order`), else another node loaded a different
  revision after this node loaded its own. A lagging
  node does not drive a rollout, and that holds at once: a node that has not
  pulled yet must never roll out what another node has already replaced.
- ``follow``: whether to log ``cluster.revision_differs`` or
  ``cluster.revision_agrees`` now. Nodes reading one checkout, or checkouts kept
  fresh by git-sync or a pull timer, load a new commit milliseconds to a pull
  period apart, so after every push the revisions differ for a while; that is
  no fault. Only a difference that lasts longer than the grace
  (``revision_grace``) is warned of, once per differing state; when the nodes
  agree again after a warning, that is said once.

The times ``follow`` takes are this node's own (monotonic), when it saw each
state, so other hosts' clocks do not enter into the warning.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Literal

__all__ = ["Notice", "Order", "RevisionsSeen", "follow", "lags", "revision_grace"]

#: Of two revisions, ours is ``older`` or ``newer`` than theirs; None: cannot tell
#: (:mod:`syncd.cluster.commit_order` reads it from the Git history).
Order = Literal["older", "newer"] | None

#: The shortest grace, seconds: watching the files (a 0.4 s debounce), reading and
#: validating a large tree on a busy host, and the etcd round trip that publishes
#: the revision take up to a few seconds on a node that is not lagging at all.
GRACE_FLOOR = 5.0

#: Sorted ``(node, revision)`` pairs of the live members while their revisions differ.
State = tuple[tuple[str, str], ...]


def revision_grace(*, resync_interval: float, lease_ttl: float) -> float:
    """How long the nodes' revisions may differ before ``cluster.revision_differs``.

    Two resync intervals: the operator's ``resync_interval`` says how soon the
    fleet is to follow the desired state (drift is corrected within one), so a
    checkout still behind after two of them is later than any device would be,
    and with the default 60 s the 2 min cover the README's pull timer (every
    minute) and git-sync's polling. At least ``lease_ttl``: a node killed just
    before a push stays registered, with its older revision, until its lease
    expires, and that is no lagging checkout. At least ``GRACE_FLOOR``.
    """
    return max(2 * resync_interval, lease_ttl, GRACE_FLOOR)


def lags(
    revisions: Mapping[str, tuple[str, float]],
    *,
    node: str,
    revision: str,
    now: float,
    order: Callable[[str, str], Order] = lambda ours, theirs: None,
) -> bool:
    """Another member's revision is newer than ``revision``, which ``node`` loaded.

    ``order(ours, theirs)`` says so where it can (the Git history); where it
    cannot, a revision loaded later is the newer. ``revisions``: the live
    members' ``node -> (revision, since)``, wall-clock times as they published
    them; ``now`` stands for ``since`` when ``node`` has not published
    ``revision`` yet (it has just loaded it).
    """
    ours = revisions.get(node)
    since = ours[1] if ours is not None and ours[0] == revision else now
    for theirs, loaded in revisions.values():
        if theirs == revision:
            continue
        known = order(revision, theirs)
        if known == "older" or (known is None and loaded > since):
            return True
    return False


@dataclass(frozen=True)
class RevisionsSeen:
    """What this node has seen of the members' revisions, and what it said of them."""

    #: The differing state now; () while the members agree.
    state: State = ()
    #: When ``state`` was first seen.
    state_since: float = 0.0
    #: Since when the members have differed without a break (any states); None: they agree.
    differing_since: float | None = None
    #: The last state warned of since they began to differ; None: no warning yet.
    warned: State | None = None


@dataclass(frozen=True)
class Notice:
    """An event to log: ``differs`` (a warning) or ``agrees``; ``differing_for`` seconds."""

    kind: Literal["differs", "agrees"]
    differing_for: float


def differing_state(revisions: Mapping[str, str]) -> State:
    """The sorted ``(node, revision)`` pairs if the members' revisions differ, else ()."""
    if len(set(revisions.values())) > 1:
        return tuple(sorted(revisions.items()))
    return ()


def follow(
    seen: RevisionsSeen, revisions: Mapping[str, str], *, now: float, grace: float
) -> tuple[RevisionsSeen, Notice | None]:
    """What is seen of ``revisions`` (``node -> revision``) at ``now``, and what to log.

    A differing state is warned of once, when it has itself lasted ``grace``,
    or — the first warning since the members began to differ — when they have
    differed, through any states, for ``grace`` (so a checkout stuck behind
    while commits keep coming is still reported). A state already warned of
    is not warned of again while it lasts. Agreement is said only after a
    warning.
    """
    state = differing_state(revisions)
    if not state:
        if seen.warned is None or seen.differing_since is None:
            return RevisionsSeen(), None
        return RevisionsSeen(), Notice("agrees", now - seen.differing_since)
    began = seen.differing_since if seen.differing_since is not None else now
    if state != seen.state:
        seen = replace(seen, state=state, state_since=now, differing_since=began)
    if state == seen.warned:
        return seen, None
    stayed = now - seen.state_since >= grace
    first = seen.warned is None and now - began >= grace
    if stayed or first:
        return replace(seen, warned=state), Notice("differs", now - began)
    return seen, None
