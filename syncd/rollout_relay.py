"""How the devices' outcomes reach the node that drives a cluster's rollout.

In a cluster one node, elected through etcd, drives the rollout: it alone
writes the rollout document (waves, bake, halt); every other node reads it
and lets its own devices start as it says (SPEC section 11). A device's
outcome, though, is known to the node that owns it, so each follower
*reports* it: one small document per device, the latest only, carrying the
revision it is about, the result, what a revert would give back, and an id.
The driver settles each report it has not seen yet in the rollout; a report
about another revision is not read. Reports of a device's revert go the same
way (only the owner changes a device, a revert too).

Standalone, the one process drives and settles its outcomes itself: no relay.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, cast, get_args

__all__ = ["Relay", "Report", "fresh_reports", "report_doc"]

#: What a follower reports: an outcome, as the rollout takes it, or a revert done.
Said = Literal["healthy", "in_sync", "failed", "unreachable", "reverted"]
_SAID = frozenset(get_args(Said))


class Relay(Protocol):
    """Where followers leave their devices' reports and the driver reads them (etcd)."""

    def report(self, device: str, doc: Mapping[str, Any]) -> None: ...

    def reports(self) -> Mapping[str, Mapping[str, Any]]:
        """The latest report of each device, by device."""
        ...


@dataclass(frozen=True)
class Report:
    device: str
    said: Said
    #: The rollout PUT's changes to give back on a revert (None: nothing to revert).
    undo: list[dict[str, Any]] | None
    id: str


def report_doc(
    revision: str, said: Said, undo: Sequence[Mapping[str, Any]] | None = None
) -> dict[str, Any]:
    """One report, with a new id (the same outcome reported twice is settled twice: harmless)."""
    doc: dict[str, Any] = {"revision": revision, "said": said, "id": secrets.token_hex(8)}
    if undo is not None:
        doc["undo"] = [dict(change) for change in undo]
    return doc


def fresh_reports(
    reports: Mapping[str, Mapping[str, Any]], seen: Mapping[str, str], revision: str | None
) -> list[Report]:
    """The reports about ``revision`` whose id differs from the one ``seen`` for their device.

    A damaged report is skipped, as if it were not there.
    """
    fresh = []
    for device in sorted(reports):
        doc = reports[device]
        ident, said, undo = doc.get("id"), doc.get("said"), doc.get("undo")
        if revision is None or doc.get("revision") != revision:
            continue
        if not isinstance(ident, str) or seen.get(device) == ident or said not in _SAID:
            continue
        if undo is not None and not (
            isinstance(undo, list) and all(isinstance(c, dict) for c in undo)
        ):
            continue
        fresh.append(Report(device, cast(Said, said), undo, ident))
    return fresh
