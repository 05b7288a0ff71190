"""A health-checked PUT whose check has not ended, as the device's record keeps it (pure).

It is written right before such a PUT goes out and dropped when the check
ends (passed: nothing more to keep; failed: the record's ``unhealthy`` mark
takes over), so a process stopped or killed while the PUT or its check is under
way loses nothing of it. After a restart, a device found equal to
``fingerprint`` is checked again, and then:

- ``before``, the fingerprint in force before the PUT, is restored when the
  check fails (the new state was never healthy);
- ``changes`` (``live``: the value read before the PUT) are what a revert
  gives back; a password's value is never kept;
- ``trigger`` and ``time`` make the PUT's history entry, unless ``logged``
  (written already, when a SIGTERM cut the check short).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from syncd.diff import Change

__all__ = ["PendingPut"]

_SCALARS = (str, int, float, bool, type(None))


def _plain(value: Any) -> Any:
    """A value as JSON can hold it (anything unusual as its ``str``)."""
    return value if isinstance(value, _SCALARS) else str(value)


@dataclass(frozen=True)
class PendingPut:
    fingerprint: str
    before: str | None
    changes: tuple[Change, ...]
    trigger: Literal["change", "drift"]
    time: datetime
    logged: bool = False

    @classmethod
    def of(
        cls,
        fingerprint: str,
        before: str | None,
        changes: Iterable[Change],
        *,
        drift: bool,
        time: datetime,
    ) -> PendingPut:
        """The PUT about to go out; a password's value is left out of its changes."""
        kept = tuple(
            Change(c.account, c.field, None, None)
            if c.field == "password"
            else Change(c.account, c.field, _plain(c.live), _plain(c.desired))
            for c in changes
        )
        return cls(fingerprint, before, kept, "drift" if drift else "change", time)

    def written(self) -> PendingPut:
        """The same, its history entry written already."""
        return dataclasses.replace(self, logged=True)

    def to_doc(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "before": self.before,
            "changes": [c.as_dict() for c in self.changes],
            "trigger": self.trigger,
            "time": self.time.isoformat(),
            "logged": self.logged,
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any] | None) -> PendingPut | None:
        """What :meth:`to_doc` wrote; None when there is none or it is damaged."""
        if not isinstance(doc, Mapping):
            return None
        try:
            changes = tuple(
                Change(int(c["account"]), str(c["field"]), c["live"], c["desired"])
                for c in doc["changes"]
            )
            time = datetime.fromisoformat(str(doc["time"]))
            trigger = doc["trigger"]
            before = doc["before"]
            if trigger not in ("change", "drift") or time.tzinfo is None:
                return None
            return cls(
                fingerprint=str(doc["fingerprint"]),
                before=None if before is None else str(before),
                changes=changes,
                trigger=trigger,
                time=time,
                logged=bool(doc.get("logged")),
            )
        except (KeyError, TypeError, ValueError):
            return None
