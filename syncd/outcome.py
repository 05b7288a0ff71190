"""What one reconcile found and did, and the one way outcomes are counted."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from syncd.client import DeviceError
from syncd.diff import Change
from syncd.history import HistoryEntry
from syncd.model import DeviceSpec, Mode

__all__ = ["Failure", "Outcome", "Tally", "devices_text"]

Status = Literal["in_sync", "changes", "applied", "error", "skipped", "waiting"]


@dataclass(frozen=True)
class Failure:
    """Why a reconcile failed: a kind (``transport``, ``rejected``, ``verify`` ...) and a sentence.

    ``error`` is the device's own error where it answered one (its ``code``
    and ``param`` go into ``plan --json``).
    """

    kind: str
    message: str
    error: DeviceError | None = None

    @classmethod
    def from_error(cls, exc: DeviceError) -> Failure:
        return cls(exc.kind, str(exc), exc)


def devices_text(n: int) -> str:
    """``1 device``, ``3 devices``: the head of every summary line."""
    return f"{n} device" if n == 1 else f"{n} devices"


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """What one reconcile found and did."""

    device: str
    url: str
    mode: Mode
    status: Status
    changes: tuple[Change, ...] = ()
    drift: bool = False
    failure: Failure | None = None
    #: With status ``waiting``: what the PUT waits for (``wave``, ``window``, ``call``,
    #: ``halted``, ``paused``, ``done``), and when to look again (seconds; None: resync).
    waiting: str | None = None
    retry_after: float | None = None
    #: An accepted PUT's history entry, not written yet: the health check after it
    #: decides its result (the rollout engine writes it).
    put: HistoryEntry | None = None
    #: With status ``skipped``: another cluster node owns the device (or still holds it),
    #: so this node's view and metrics of it stay as they are; its owner reports it.
    elsewhere: bool = False
    #: The fingerprint of the desired state reconciled (None: not known), so a rollout
    #: takes no outcome of a desired state it does not carry.
    fingerprint: str | None = None
    #: With status ``error``: when (Unix time) the reconcile that failed began, so a
    #: device's failing time counts its timeouts and retries too (None: not known).
    started: float | None = None

    @classmethod
    def of(
        cls,
        spec: DeviceSpec,
        status: Status,
        *,
        changes: tuple[Change, ...] = (),
        drift: bool = False,
        failure: Failure | None = None,
        waiting: str | None = None,
        retry_after: float | None = None,
        put: HistoryEntry | None = None,
        elsewhere: bool = False,
    ) -> Outcome:
        """The outcome of reconciling ``spec``."""
        return cls(
            device=spec.name,
            url=spec.url,
            mode=spec.mode,
            status=status,
            changes=changes,
            drift=drift,
            failure=failure,
            waiting=waiting,
            retry_after=retry_after,
            put=put,
            elsewhere=elsewhere,
            fingerprint=spec.fingerprint,
        )

    @property
    def ok(self) -> bool:
        return self.status != "error"

    @property
    def unhealthy(self) -> bool:
        """Its PUT was accepted and verified, then failed its health check."""
        return self.status == "error" and self.failure is not None and self.failure.kind == "health"

    @property
    def failed_in_rollout(self) -> bool:
        """It waits because it failed in this revision's rollout: a failed device, for
        every count and view (``syncd rollout resume`` tries it again)."""
        return self.status == "waiting" and self.waiting == "done"


@dataclass(frozen=True)
class Tally:
    """Outcomes counted by status; every summary (plan, apply, the daemon's STATUS) reads one.

    ``pending`` counts devices not reconciled yet; ``errors`` includes devices
    whose desired state is unusable (``broken``).
    """

    in_sync: int = 0
    applied: int = 0
    changes: int = 0
    errors: int = 0
    skipped: int = 0
    pending: int = 0
    #: Devices whose PUT waits (wave, window, call, halted or paused rollout).
    waiting: int = 0

    @property
    def devices(self) -> int:
        return (
            self.in_sync
            + self.applied
            + self.changes
            + self.errors
            + self.skipped
            + self.pending
            + self.waiting
        )

    @property
    def converged(self) -> int:
        """In sync now: already, or after a PUT."""
        return self.in_sync + self.applied

    @classmethod
    def of(cls, outcomes: Iterable[Outcome | None], *, broken: int = 0) -> Tally:
        counts = dict.fromkeys(
            ("in_sync", "applied", "changes", "error", "skipped", "pending", "waiting"), 0
        )
        for outcome in outcomes:
            if outcome is None:
                counts["pending"] += 1
            elif outcome.failed_in_rollout:
                counts["error"] += 1
            else:
                counts[outcome.status] += 1
        return cls(
            in_sync=counts["in_sync"],
            applied=counts["applied"],
            changes=counts["changes"],
            errors=counts["error"] + broken,
            skipped=counts["skipped"],
            pending=counts["pending"],
            waiting=counts["waiting"],
        )
