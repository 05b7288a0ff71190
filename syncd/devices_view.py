"""What the daemon saw of each device, and which events that is worth.

One :class:`DeviceView` per device remembers its last outcome, last error
sentence, when it was last read and changed, since when it fails, the SIP
registration of each account, and which repeating events were already
logged. Its methods are pure decisions (the caller passes the time and does
the logging and the requests); :class:`~syncd.fleet_view.FleetView` holds them
all and builds the status snapshot of SPEC section 10 from them.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from datetime import UTC, datetime

from syncd.device_status import AccountStatus
from syncd.diff import Change
from syncd.model import DeviceSpec, Mode
from syncd.outcome import Outcome
from syncd.registration_view import AccountRegistration, RegistrationNews, read_registration
from syncd.status import DeviceState, DeviceStatus

__all__ = ["DeviceView", "difference_key"]

#: Topics of repeating events and how often each may be logged again while it lasts
#: (None: once, until the condition goes away or changes).
REPEAT_EVERY: dict[str, float | None] = {
    "unreachable": 3600.0,
    "auth": 3600.0,
    "apply-failed": 3600.0,
    "observe": None,
    "drift-count": None,
    "suspend": None,
    "registration-unreadable": None,
    "held": None,
    "missing-account": None,
}
#: Topics that end when the device answers again.
_ENDS_WHEN_REACHABLE = ("unreachable", "auth")
#: The outcome statuses that mean "in sync now".
_CONVERGED = frozenset({"in_sync", "applied"})
#: What ``syncd status`` calls a device after each outcome status.
_STATE_OF: dict[str, DeviceState] = {
    "in_sync": "in_sync",
    "applied": "in_sync",
    "changes": "drifted",
    "skipped": "suspended",
    "waiting": "waiting",  # set by the rollout engine's gate
}
#: Failure kinds where the device did not answer at all.
_UNREACHABLE_KINDS = frozenset({"transport", "tls"})


def difference_key(changes: Iterable[Change]) -> tuple[tuple[int, str, str, str], ...]:
    """A difference as a value: the same fields with the same values give the same key."""
    return tuple(sorted((c.account, c.field, repr(c.live), repr(c.desired)) for c in changes))


class DeviceView:
    """What the daemon knows of one device; every method is a pure decision or bookkeeping."""

    def __init__(
        self,
        spec: DeviceSpec,
        *,
        revision: str | None = None,
        last_change: datetime | None = None,
    ) -> None:
        self.name = spec.name
        self.url = spec.url
        self.mode = spec.mode
        #: The desired state this node has loaded for the device (a cluster's status asks
        #: whether the device holds it already when its owner lags).
        self.fingerprint = spec.fingerprint
        #: The desired revision last seen in force on the device.
        self.revision = revision
        self.outcome: Outcome | None = None
        self.changing = False
        self.last_sync: float | None = None
        #: When syncd last changed the device (Unix seconds): from the state at start.
        self.last_change: float | None = None if last_change is None else last_change.timestamp()
        self.failing_since: float | None = None
        self.accounts: dict[int, AccountRegistration] = {}
        #: The spec under which the device could not report registration (not asked again).
        self.unsupported_for: DeviceSpec | None = None
        self._expected = tuple(sorted(spec.accounts))
        self._logged: dict[str, tuple[Hashable, float]] = {}
        #: Bumped on every change the status shows.
        self.version = 0

    # ------------------------------------------------------------ the spec

    def update_spec(self, spec: DeviceSpec) -> None:
        """A new desired state: a device that could not report registration is asked again."""
        self.url, self.mode, self._expected = spec.url, spec.mode, tuple(sorted(spec.accounts))
        self.fingerprint = spec.fingerprint
        if spec.mode is not Mode.SUSPEND:
            self._logged.pop("suspend", None)
        if spec.mode is not Mode.OBSERVE:
            self._logged.pop("observe", None)
        self.version += 1

    # ------------------------------------------------------------ repeating events

    def first(self, topic: str, key: Hashable, now: float) -> bool:
        """Whether to log the event ``topic`` about ``key`` now (and remember that it was).

        Yes when it was not logged, was logged about another key, or (topics with
        a repeat interval in :data:`REPEAT_EVERY`) was logged that long ago.
        """
        every = REPEAT_EVERY.get(topic)
        last = self._logged.get(topic)
        if last is not None and last[0] == key and (every is None or now - last[1] < every):
            return False
        self._logged[topic] = (key, now)
        return True

    def logged(self, topic: str) -> bool:
        return topic in self._logged

    def logged_key(self, topic: str) -> Hashable | None:
        """What the event ``topic`` was last logged about, while its condition lasts."""
        last = self._logged.get(topic)
        return None if last is None else last[0]

    def end(self, topic: str) -> None:
        """The condition behind ``topic`` went away: its next occurrence is news."""
        self._logged.pop(topic, None)

    # ------------------------------------------------------------ outcomes

    def changed(self, now: float, *, revision: str | None = None) -> None:
        """syncd changed the device outside a reconcile (a revert): ``revision``, the one
        in force before the reverted PUT, is the device's again (None: as it was)."""
        self.last_change = now
        if revision is not None:
            self.revision = revision
        self.version += 1

    def begin_change(self) -> None:
        """A PUT (or the health check after it) starts: the device shows as ``changing``."""
        self.changing = True
        self.version += 1

    def observe(self, outcome: Outcome, now: float, *, revision: str | None) -> float | None:
        """Take one reconcile's outcome; seconds it had been failing when it just recovered.

        A device that failed in the rollout and now waits because of it (the
        rollout halted, or has its outcome) keeps showing the failure.
        """
        self.changing = False
        if not (
            outcome.status == "waiting"
            and outcome.waiting in _AFTER_FAILURE
            and self.state() == "failed"
        ):
            self.outcome = outcome
        self.mode = outcome.mode
        self.last_sync = now
        self.version += 1
        if outcome.status == "applied" or outcome.unhealthy:  # its PUT was accepted
            self.last_change = now
        if outcome.status == "error":
            kind = outcome.failure.kind if outcome.failure is not None else "internal"
            if kind not in _UNREACHABLE_KINDS and kind != "auth":
                for topic in _ENDS_WHEN_REACHABLE:
                    self.end(topic)
            if self.failing_since is None:
                started = outcome.started
                self.failing_since = now if started is None else min(started, now)
            return None
        if outcome.status != "skipped":
            for topic in (*_ENDS_WHEN_REACHABLE, "missing-account"):
                self.end(topic)
        if outcome.status in ("in_sync", "applied"):
            self.end("difference")
            self.end("held")
            self.end("drift-count")
            self.end("apply-failed")
        if outcome.status == "in_sync":
            self.end("observe")
        if outcome.status not in _CONVERGED:
            return None
        if revision is not None:
            self.revision = revision
        since, self.failing_since = self.failing_since, None
        return None if since is None else max(now - since, 0.0)

    @property
    def failing_kind(self) -> str | None:
        """The kind of the last failure while the device fails, else None."""
        outcome = self.outcome
        if outcome is None or outcome.status != "error":
            return None
        return outcome.failure.kind if outcome.failure is not None else "internal"

    # ------------------------------------------------------------ registration

    def should_monitor(self, spec: DeviceSpec, outcome: Outcome) -> bool:
        """Read registration after ``outcome``? Only if the device answered, and not while
        it is known unable to report registration under this ``spec``."""
        if self.unsupported_for is not None and self.unsupported_for != spec:
            self.unsupported_for = None
        return self.unsupported_for is None and _reachable(outcome)

    def registration_unsupported(self, spec: DeviceSpec) -> None:
        self.unsupported_for = spec
        self._forget_registration()

    def registration_unreadable(self) -> None:
        self._forget_registration()

    def registration_off(self) -> bool:
        """Monitoring is off: forget what was read; whether anything was known."""
        if all(account.registered is None for account in self.accounts.values()):
            return False
        self._forget_registration()
        return True

    def _forget_registration(self) -> None:
        for account in self.accounts.values():
            account.registered = None
            account.down_since = None
        self.version += 1

    def registration_read(
        self,
        statuses: Sequence[AccountStatus],
        *,
        now: float,
        changed: Iterable[int] = (),
        managed: Mapping[int, object] | None = None,
        in_force: bool = False,
        resend_after: float,
        proven_before: Callable[[int], bool] = lambda account: False,
    ) -> RegistrationNews:
        """Take a phone-status read (:func:`~syncd.registration_view.read_registration`):
        what changed by itself, and which passwords to send again."""
        self.end("registration-unreadable")
        news = read_registration(
            self.accounts,
            statuses,
            now=now,
            changed=changed,
            managed=managed,
            in_force=in_force,
            resend_after=resend_after,
            proven_before=proven_before,
        )
        self.version += 1
        return news

    def registration(self) -> tuple[tuple[int, bool | None], ...]:
        """Per account: registered at the last read, None when not known."""
        numbers = sorted(set(self._expected) | set(self.accounts))
        known = self.accounts
        return tuple((n, known[n].registered if n in known else None) for n in numbers)

    # ------------------------------------------------------------ status

    def state(self) -> DeviceState:
        if self.changing:
            return "changing"
        outcome = self.outcome
        if outcome is None:
            return "suspended" if self.mode is Mode.SUSPEND else "unknown"
        if outcome.status == "error":
            return "unreachable" if self.failing_kind in _UNREACHABLE_KINDS else "failed"
        if outcome.failed_in_rollout:  # as read after a restart
            return "failed"
        if self._seen_under_older_spec():
            return "unknown"
        return _STATE_OF.get(outcome.status, "unknown")

    def _seen_under_older_spec(self) -> bool:
        """In sync with a desired state that is no longer the one loaded, and not read
        since: a new revision must not show the whole fleet in sync until it is read."""
        outcome = self.outcome
        return (
            outcome is not None
            and outcome.status in _CONVERGED
            and outcome.fingerprint is not None
            and outcome.fingerprint != self.fingerprint
        )

    def message(self) -> str | None:
        outcome = self.outcome
        if outcome is None:
            return None
        if outcome.failure is not None:
            return outcome.failure.message
        if self._seen_under_older_spec():
            return _NOT_READ_SINCE_CHANGE
        if outcome.status == "waiting":
            return _WAITING_FOR.get(outcome.waiting or "", "waiting")
        if outcome.status == "changes" and outcome.changes:
            fields = ", ".join(f"account {c.account} {c.field}" for c in outcome.changes[:3])
            more = len(outcome.changes) - 3
            return f"differs: {fields}" + (f" and {more} more" if more > 0 else "")
        return None

    def status(self, *, wave: str | None = None, owner: str | None = None) -> DeviceStatus:
        return DeviceStatus(
            device=self.name,
            url=self.url,
            mode=str(self.mode),
            state=self.state(),
            wave=wave,
            revision=self.revision,
            last_sync=_moment(self.last_sync),
            last_change=_moment(self.last_change),
            message=self.message(),
            accounts=self.registration(),
            owner=owner,
        )


#: A device in sync with the desired state before the last load, not read since.
_NOT_READ_SINCE_CHANGE = "its desired state changed; not read since"
#: Why a PUT waits, as ``syncd status`` says it.
_WAITING_FOR = {
    "wave": "waiting for its wave",
    "window": "waiting for a maintenance window",
    "call": "waiting for the call to end",
    "halted": "the rollout halted",
    "paused": "the rollout is paused",
    "active": "its change is under way",
    "done": "failed in this revision's rollout; `syncd rollout resume` tries it again",
    "policy": "_fleet.yaml is invalid: its change waits until the file is fixed",
}
#: A wait that follows the device's own failure in the rollout.
_AFTER_FAILURE = frozenset({"halted", "done"})


def _reachable(outcome: Outcome) -> bool:
    """Whether the reconcile that had ``outcome`` read the device."""
    if outcome.status == "skipped":
        return False
    if outcome.status != "error":
        return True
    kind = outcome.failure.kind if outcome.failure is not None else "internal"
    return kind not in (*_UNREACHABLE_KINDS, "auth", "internal")


def _moment(unix: float | None) -> datetime | None:
    return None if unix is None else datetime.fromtimestamp(unix, UTC)
