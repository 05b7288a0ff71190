"""The rollout as the state store keeps it: plain JSON, so a restarted process goes on.

The saved document holds the rollout (:mod:`syncd.rollout`), the desired
fingerprint it carries to each device, the pause, and what to give back to a
failed device on a revert. The pause lives beside the rollout, not in it: it
survives restarts and new revisions. A damaged document reads as an empty one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from syncd.rollout import progress, resume, retry_failed
from syncd.rollout_values import DeviceStatus, Rollout, RolloutState

__all__ = ["SavedRollout", "journal_entry", "rollout_from_doc", "rollout_to_doc"]


def rollout_to_doc(rollout: Rollout) -> dict[str, Any]:
    """Plain JSON values, for the state store."""
    return {
        "revision": rollout.revision,
        "waves": [{"name": n, "devices": list(ds)} for n, ds in rollout.waves],
        "status": {d: str(s) for d, s in rollout.status.items()},
        "wave": rollout.wave,
        "state": str(rollout.state),
        "failures": rollout.failures,
        "maxFailures": rollout.max_failures,
        "bake": rollout.bake,
        "revert": rollout.revert,
        "bakeStarted": rollout.bake_started,
    }


def rollout_from_doc(doc: Mapping[str, Any]) -> Rollout:
    """The rollout :func:`rollout_to_doc` wrote; ValueError when ``doc`` is not one."""
    try:
        waves = tuple((str(w["name"]), tuple(map(str, w["devices"]))) for w in doc["waves"])
        status = {str(d): DeviceStatus(s) for d, s in doc["status"].items()}
        rollout = Rollout(
            revision=str(doc["revision"]),
            waves=waves,
            status=status,
            wave=int(doc["wave"]),
            state=RolloutState(doc["state"]),
            failures=int(doc["failures"]),
            max_failures=None if doc["maxFailures"] is None else int(doc["maxFailures"]),
            bake=float(doc["bake"]),
            revert=bool(doc["revert"]),
            bake_started=None if doc["bakeStarted"] is None else float(doc["bakeStarted"]),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"not a saved rollout: {exc!r}") from None
    if set(rollout.devices) != set(status) or not 0 <= rollout.wave < max(len(waves), 1):
        raise ValueError("not a saved rollout: its waves and statuses disagree")
    return rollout


_STATUSES = frozenset(str(s) for s in DeviceStatus)


def journal_entry(device: str, status: DeviceStatus) -> dict[str, str]:
    """What the state store journals when one device's status is all that changed."""
    return {"device": device, "status": str(status)}


def _journalled(doc: Mapping[str, Any]) -> Mapping[str, Any]:
    """``doc["rollout"]`` with the statuses journalled after it (others' devices ignored)."""
    rollout = doc["rollout"]
    journal = doc.get("journal")
    if not journal:
        return rollout  # type: ignore[no-any-return]
    status = dict(rollout["status"])
    for entry in journal:
        if (
            isinstance(entry, Mapping)
            and entry.get("device") in status
            and entry.get("status") in _STATUSES
        ):
            status[entry["device"]] = entry.get("status")
    return {**rollout, "status": status}


@dataclass
class SavedRollout:
    """The saved document: the rollout, what it was started for, the pause, the undo values."""

    rollout: Rollout | None = None
    #: Device -> the desired fingerprint the rollout carries to it.
    fingerprints: dict[str, str] = field(default_factory=dict)
    paused: bool = False
    #: Device -> the rollout PUT's changes (``live`` is the value before it), passwords left out.
    undo: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    #: Why the saved document could not be read (None: it could, or there was none).
    damaged: str | None = field(default=None, compare=False)
    #: The wave under way began while paused: its ``rollout.wave`` is said at the resume
    #: (by whichever process resumes), when its devices may start.
    held_wave: bool = False

    def to_doc(self) -> dict[str, Any]:
        return {
            "rollout": rollout_to_doc(self.rollout) if self.rollout is not None else None,
            "fingerprints": self.fingerprints,
            "paused": self.paused,
            "undo": self.undo,
            **({"held_wave": True} if self.held_wave else {}),
        }

    @classmethod
    def of(cls, doc: Mapping[str, Any] | None) -> SavedRollout:
        """The saved document, or an empty one when there is none or it is damaged
        (then :attr:`damaged` says why; a readable pause is kept)."""
        if not doc:
            return cls()
        try:
            rollout = rollout_from_doc(_journalled(doc)) if doc.get("rollout") else None
            fingerprints = {str(k): str(v) for k, v in dict(doc.get("fingerprints") or {}).items()}
            undo = {str(k): list(v) for k, v in dict(doc.get("undo") or {}).items()}
            held = doc.get("held_wave") is True
            return cls(rollout, fingerprints, bool(doc.get("paused")), undo, held_wave=held)
        except (ValueError, TypeError, AttributeError) as exc:
            paused = bool(doc.get("paused")) if isinstance(doc, Mapping) else False
            return cls(paused=paused, damaged=str(exc))

    @property
    def revision(self) -> str | None:
        return self.rollout.revision if self.rollout is not None else None

    @property
    def halted(self) -> bool:
        return self.rollout is not None and self.rollout.state is RolloutState.HALTED

    @property
    def state(self) -> str:
        """``none``, ``running``, ``paused``, ``halted`` or ``completed``."""
        if self.paused:  # also after a completed one: the next rollout waits for a resume
            return "paused"
        if self.rollout is None:
            return "none"
        return str(self.rollout.state)

    def pause(self) -> bool:
        """No new device starts; False when it was already paused."""
        if self.paused:
            return False
        self.paused = True
        return True

    def take_held_wave(self) -> tuple[str, list[str]] | None:
        """The wave that began while paused and its devices, to be said now (once)."""
        held, self.held_wave = self.held_wave, False
        rollout = self.rollout
        if not held or rollout is None or rollout.state is not RolloutState.RUNNING:
            return None
        name, devices = rollout.waves[rollout.wave]
        return name, list(devices)

    def resume(self) -> bool:
        """Unpause; a halted rollout runs again, a completed one tries its failed devices
        again; False when there was none of these to do."""
        rollout = self.rollout
        retry = rollout is not None and rollout.state is RolloutState.COMPLETED and rollout.failed
        if not (self.paused or self.halted or retry):
            return False
        self.paused = False
        if rollout is not None:
            self.rollout = retry_failed(resume(rollout))
        return True

    @property
    def wave(self) -> str | None:
        """The wave under way, or where it halted or paused (None: none, or completed)."""
        rollout = self.rollout
        if rollout is None or rollout.state is RolloutState.COMPLETED:
            return None
        return rollout.current_wave

    def summary(self) -> dict[str, Any]:
        """The rollout for ``syncd status``: state, wave, failed devices, progress per wave."""
        rollout = self.rollout
        return {
            "revision": self.revision,
            "state": self.state,
            "wave": self.wave,
            "failed": list(rollout.failed) if rollout is not None else [],
            "waves": [
                {
                    "name": w.name,
                    "devices": w.devices,
                    "done": w.done,
                    "failed": w.failed,
                    "state": w.state,
                }
                for w in (progress(rollout) if rollout is not None else ())
            ],
        }
