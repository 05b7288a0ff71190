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

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from syncd.rollout import restarted, reverts_due
from syncd.rollout_relay import Relay, Report, fresh_reports, report_doc
from syncd.rollout_values import DeviceStatus, Result, Rollout
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
    #: Devices the driver tries again (``syncd rollout resume`` of a completed rollout
    #: with failures): a rejection of their desired state no longer holds them back.
    retried: frozenset[str] = frozenset()


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
        #: What a revert gives back to this follower's failed devices, as it last reported it.
        self._undo_here: dict[str, list[dict[str, Any]]] = {}

    def now(self, saved: SavedRollout) -> Turn:
        """Ask again; a follower (or a node taking over) takes the driver's document into
        ``saved``."""
        driving = self._drives()
        moved, retried = False, frozenset[str]()
        if not driving or not self.driving:
            before = saved.rollout
            moved = self._adopt(saved, took_over=driving)
            retried = _retried(before, saved.rollout)
        took_over, self.driving = driving and not self.driving, driving
        return Turn(driving, took_over, moved, retried)

    def _adopt(self, saved: SavedRollout, *, took_over: bool) -> bool:
        before, carried = saved.rollout, saved.fingerprints
        doc = SavedRollout.of(self._state.load_rollout())
        rollout = doc.rollout
        if took_over and rollout is not None:
            rollout = restarted(rollout)
        saved.rollout, saved.fingerprints = rollout, doc.fingerprints
        saved.paused, saved.undo, saved.held_wave = doc.paused, doc.undo, doc.held_wave
        if rollout is None or before is None or before.revision != rollout.revision:
            self._reverted_here.clear()
            self._undo_here.clear()
            self._settled.clear()
        else:
            self._forget(rollout, carried, doc.fingerprints)
        return rollout is not None and (
            before is None
            or (before.revision, before.wave, before.state)
            != (rollout.revision, rollout.wave, rollout.state)
        )

    def _forget(
        self, rollout: Rollout, carried: Mapping[str, str], carries: Mapping[str, str]
    ) -> None:
        """What no longer holds in the same revision: a revert the driver has settled (or
        a device it tries again) needs no guard; a device the rollout now carries another
        desired state to (a new rollout) has nothing of the last one's to give back."""
        self._reverted_here = {
            d for d in self._reverted_here if rollout.status.get(d) is DeviceStatus.FAILED
        }
        for device in [d for d in self._undo_here if carried.get(d) != carries.get(d)]:
            del self._undo_here[device]

    # ---------------------------------------------------------- a follower

    def report(
        self, device: str, revision: str, result: Result, undo: Sequence[Any] | None
    ) -> None:
        """``device``'s outcome, for the driver: the latest report replaces the one before.

        So a failure keeps saying what a revert gives back: a later look at the device
        (still unhealthy, no PUT of its own, so no changes) carries the undo reported
        before, lest the driver, reading only that one, settle the failure with nothing
        to revert. A device reverted here reports nothing until the driver has settled
        that: the revert's report is not replaced (the device is final there anyway).
        """
        if self._relay is None or device in self._reverted_here:
            return
        if result == "failed" and undo:
            self._undo_here[device] = [dict(change) for change in undo]
        elif result == "failed":
            undo = self._undo_here.get(device, undo)
        self._relay.report(device, report_doc(revision, result, undo))

    def report_revert(self, device: str, revision: str | None) -> None:
        if self._relay is not None and revision is not None:
            self._reverted_here.add(device)
            self._undo_here.pop(device, None)
            self._relay.report(device, report_doc(revision, "reverted"))

    def reverts(self, rollout: Rollout) -> Iterable[str]:
        """The due reverts of this node's devices (only a device's owner changes it)."""
        due = [d for d in reverts_due(rollout) if self.owns(d)]
        return due if self.driving else [d for d in due if d not in self._reverted_here]

    def undo_here(self, device: str) -> list[dict[str, Any]]:
        """What this follower last reported a revert of ``device`` gives back (none: [])."""
        return self._undo_here.get(device, [])

    # ---------------------------------------------------------- the driver

    def fresh_reports(self, revision: str | None) -> list[Report]:
        """Reports about ``revision`` not settled yet (each is returned once)."""
        if self._relay is None:
            return []
        fresh = fresh_reports(self._relay.reports(), self._settled, revision)
        for report in fresh:
            self._settled[report.device] = report.id
        return fresh


def _retried(before: Rollout | None, after: Rollout | None) -> frozenset[str]:
    """Devices failed in ``before`` and pending again in ``after``, the same revision's."""
    if before is None or after is None or before.revision != after.revision:
        return frozenset()
    return frozenset(
        d
        for d, status in after.status.items()
        if status is DeviceStatus.PENDING and before.status.get(d) is DeviceStatus.FAILED
    )
