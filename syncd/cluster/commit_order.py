"""Which of two nodes' desired revisions is the newer, by the Git history of this checkout.

Each node publishes the revision it loaded and when. Ordered by that time
alone, a node started late on an older checkout (a host that was down while
a commit was pushed, then restarted before it pulled) was the newest: the
up-to-date nodes were called lagging, and once the late node led the cluster
it rolled the older commit out again. When both revisions are commits, the
history this node's checkout holds says which is newer:

- theirs is an ancestor of ours: ours is newer;
- ours is an ancestor of theirs, or theirs is a commit this checkout does not
  have (pushed after its last fetch): ours is older;
- anything else (``tree:`` revisions, histories that diverged, a repository
  that cannot be read): unknown, and the time each was loaded decides.

The history is read with dulwich, not by running ``git``: the daemon may run
as a user that does not own the checkout (``git`` refuses it as of "dubious
ownership"), or on a host without ``git``. It is imported when two live nodes'
revisions first differ, and each pair's answer is kept.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from syncd.cluster.agreement import Order

__all__ = ["CommitOrder"]

_COMMIT = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")


class CommitOrder:
    """``order(ours, theirs)`` in the history of the checkout ``desired_dir`` lies in."""

    def __init__(self, desired_dir: Path) -> None:
        self._dir = desired_dir
        self._known: dict[tuple[str, str], Order] = {}

    def __call__(self, ours: str, theirs: str) -> Order:
        key = (ours, theirs)
        if key not in self._known:
            self._known[key] = self._order(ours, theirs)
        return self._known[key]

    def _order(self, ours: str, theirs: str) -> Order:
        if ours == theirs or not (_COMMIT.fullmatch(ours) and _COMMIT.fullmatch(theirs)):
            return None
        try:
            from dulwich.errors import NotGitRepository
            from dulwich.graph import can_fast_forward
            from dulwich.objects import ObjectID
            from dulwich.repo import Repo
        except ImportError:
            return None
        ours_id, theirs_id = ObjectID(ours.encode()), ObjectID(theirs.encode())
        try:
            with Repo.discover(os.path.realpath(self._dir)) as repo:
                store = repo.object_store
                if ours_id not in store:
                    return None  # our own HEAD unreadable here: nothing to go by
                if theirs_id not in store:
                    return "older"  # they have a commit our checkout has not fetched
                if can_fast_forward(repo, theirs_id, ours_id):
                    return "newer"
                if can_fast_forward(repo, ours_id, theirs_id):
                    return "older"
        except (NotGitRepository, OSError, KeyError, ValueError, AssertionError):
            return None
        return None
