"""Whether this node drives the rollout, and what a node that does not still does.

Standalone, the one process always drives. In a cluster (SPEC section 11)
the node etcd elected drives: it alone writes the rollout document. Every
other node *follows*: it takes the document as the driver last wrote it,
lets its own devices start as that says, reports their outcomes and its
reverts through the relay (:mod:`syncd.rollout_relay`), and writes nothing
else. A node that takes over starts from the document, as a restarted
process does (a device under way is checked again, a bake starts over).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from syncd.rollout import restarted, reverts_due
from syncd.rollout_relay import Relay, Report, fresh_reports, report_doc
from syncd.rollout_values import Result, Rollout
from syncd.saved_rollout import SavedRollout
from syncd.state import StateStore

__all__ = ["NotDriving", "Role"]


class NotDriving(ValueError):
    """A pause or resume asked of a cluster node that does not drive (answered 400).

    ``leader`` is the elected node's name (None: not known here), ``node`` this one's.
    """

    def __init__(self, leader: str | None = None, node: str | None = None) -> None:
        if leader is None:
            where = "the cluster's leader (its STATUS line in `syncd status` says which)"
        elif leader == node:
            where = (
                "this node again shortly: it leads the cluster, but its desired checkout"
                " is behind another node's"
            )
        else:
            where = f"the cluster's leader, {leader}"
        super().__init__(f"this node does not drive the rollout; run it on {where}")


@dataclass(frozen=True)
class Turn:
    """What :meth:`Role.now` found: whether this node drives, and whether it just took over."""

    driving: bool
    took_over: bool = False
    #: The driver's document has a new revision, wave or state: its devices look again.
    moved: bool = False


class Role:
    """One node's part in the rollout; see the module docstring."""

    def __init__(
        self,
        *,
        state: StateStore,
        drives: Callable[[], bool] = lambda: True,
        owns: Callable[[str], bool] = lambda device: True,
        relay: Relay | None = None,
    ) -> None:
        self._state = state
        self._drives = drives
        self.owns = owns
        self._relay = relay
        #: A cluster node takes the document from etcd when it first drives (not loaded
        #: yet when the conductor is built).
        self.driving = relay is None
        #: Device -> the id of the last report the driver settled.
        self._settled: dict[str, str] = {}
        #: Devices this follower reverted in the rollout it follows (until the driver says so).
        self._reverted_here: set[str] = set()

    def now(self, saved: SavedRollout) -> Turn:
        """Ask again; a follower (or a node taking over) takes the driver's document into
        ``saved``."""
        driving = self._drives()
        moved = False
        if not driving or not self.driving:
            moved = self._adopt(saved, took_over=driving)
        took_over, self.driving = driving and not self.driving, driving
        return Turn(driving, took_over, moved)

    def _adopt(self, saved: SavedRollout, *, took_over: bool) -> bool:
        before = saved.rollout
        doc = SavedRollout.of(self._state.load_rollout())
        rollout = doc.rollout
        if took_over and rollout is not None:
            rollout = restarted(rollout)
        saved.rollout, saved.fingerprints = rollout, doc.fingerprints
        saved.paused, saved.undo = doc.paused, doc.undo
        if rollout is None or before is None or before.revision != rollout.revision:
            self._reverted_here.clear()
            self._settled.clear()
        return rollout is not None and (
            before is None
            or (before.revision, before.wave, before.state)
            != (rollout.revision, rollout.wave, rollout.state)
        )

    # ---------------------------------------------------------- a follower

    def report(
        self, device: str, revision: str, result: Result, undo: Sequence[Any] | None
    ) -> None:
        if self._relay is not None:
            self._relay.report(device, report_doc(revision, result, undo))

    def report_revert(self, device: str, revision: str | None) -> None:
        if self._relay is not None and revision is not None:
            self._reverted_here.add(device)
            self._relay.report(device, report_doc(revision, "reverted"))

    def reverts(self, rollout: Rollout) -> Iterable[str]:
        """The due reverts of this node's devices (only a device's owner changes it)."""
        due = [d for d in reverts_due(rollout) if self.owns(d)]
        return due if self.driving else [d for d in due if d not in self._reverted_here]

    # ---------------------------------------------------------- the driver

    def fresh_reports(self, revision: str | None) -> list[Report]:
        """Reports about ``revision`` not settled yet (each is returned once)."""
        if self._relay is None:
            return []
        fresh = fresh_reports(self._relay.reports(), self._settled, revision)
        for report in fresh:
            self._settled[report.device] = report.id
        return fresh
