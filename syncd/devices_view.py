"""What the daemon saw of each device, and which events that is worth.

One :class:`DeviceView` per device remembers its last outcome, last error
sentence, when it was last read and changed, since when it fails, the SIP
registration of each account, and which repeating events were already
logged. Its methods are pure decisions (the caller passes the time and does
the logging and the requests); :class:`~syncd.fleet_view.FleetView` holds them
all and builds the status snapshot of SPEC section 10 from them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from syncd.device_status import AccountStatus
from syncd.diff import Change
from syncd.model import DeviceSpec, Mode
from syncd.outcome import Outcome
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
#: At most one automatic password resend per account in this many seconds.
RESEND_EVERY = 3600.0
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


@dataclass
class _Account:
    """One account's registration as the monitor followed it."""

    registered: bool | None = None
    #: Unix time of the first read that found it unregistered (None: registered or unknown).
    down_since: float | None = None
    #: The desired account it was seen registered under, with the password syncd applied
    #: in force (None: never): a resend needs the same desired account in force now.
    proven_for: object = None
    #: ``registration.lost`` was logged and ``registration.restored`` not yet.
    lost: bool = False
    resent_at: float | None = None

    def up(self, *, proof: object) -> bool:
        """It reads registered (``proof``: the desired account in force with syncd's password,
        or None); whether that ends a loss."""
        self.down_since = None
        if proof is not None:
            self.proven_for = proof
        restored, self.lost = self.lost, False
        return restored

    def down(self, before: bool | None, now: float) -> bool:
        """It reads unregistered; whether that is a loss (registered at the read ``before``)."""
        if self.down_since is None:
            self.down_since = now
        if before is True and not self.lost:
            self.lost = True
            return True
        return False

    def resend_due(
        self, now: float, *, after: float, desired: object, proven_before: Callable[[], bool]
    ) -> bool:
        """Send its password again now? Once ``desired`` proved it (registered) and it stayed
        down ``after`` seconds, at most every :data:`RESEND_EVERY`; yes counts as sent.
        ``proven_before``: whether the state says ``desired`` proved it before this daemon
        started (asked only while this daemon has not seen it registered)."""
        due = self.resent_at is None or now - self.resent_at >= RESEND_EVERY
        down_long = self.down_since is not None and now - self.down_since >= after
        if not (due and down_long):
            return False
        seen = self.proven_for  # this daemon saw it registered; before that, the state says
        if not (seen == desired if seen is not None else proven_before()):
            return False
        self.resent_at = self.down_since = now
        return True


@dataclass(frozen=True)
class RegistrationNews:
    """What one phone-status read means: accounts lost, restored, whose password to resend,
    and which were seen registered under a desired account they were not proven under yet
    (for the state to keep)."""

    lost: tuple[int, ...] = ()
    restored: tuple[int, ...] = ()
    resend: tuple[int, ...] = ()
    proven: tuple[int, ...] = ()


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
        #: The desired revision last seen in force on the device.
        self.revision = revision
        self.outcome: Outcome | None = None
        self.changing = False
        self.last_sync: float | None = None
        #: When syncd last changed the device (Unix seconds): from the state at start.
        self.last_change: float | None = None if last_change is None else last_change.timestamp()
        self.failing_since: float | None = None
        self.accounts: dict[int, _Account] = {}
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

    def changed(self, now: float) -> None:
        """syncd changed the device outside a reconcile (a revert)."""
        self.last_change = now
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
        """Take a phone-status read; what changed by itself, and which passwords to send again.

        ``changed``: accounts syncd's own PUT just changed (their registration
        restarts, that is no news); ``managed``: the desired accounts whose
        password syncd manages, by number; ``in_force``: the device is in sync in
        enforce mode, so the passwords syncd applied are the ones on it. A managed
        account that was registered with syncd's password under the same desired
        account, should register (enabled, with registration) and stays
        unregistered for ``resend_after`` seconds gets its password sent again, at
        most once an hour. Under new desired settings (a commit's PUT) an account
        that does not register is a bad setting, not a factory reset: no resend.
        ``proven_before(account)``: whether the state says the account was registered
        under the desired account in force before this daemon started.
        """
        changed, managed = set(changed), managed or {}
        self.end("registration-unreadable")
        lost: list[int] = []
        restored: list[int] = []
        resend: list[int] = []
        proven: list[int] = []
        for status in statuses:
            number = status.account
            account = self.accounts.setdefault(number, _Account())
            registered = _registration(status)
            before, account.registered = account.registered, registered
            if registered is None:
                account.down_since = None
            elif registered:
                proof = managed.get(number) if in_force else None
                if proof is not None and proof != account.proven_for:
                    proven.append(number)
                if account.up(proof=proof):
                    restored.append(number)
            elif number in changed:
                account.down_since = now  # syncd's PUT restarted its registration
            else:
                if account.down(before, now):
                    lost.append(number)
                ours = in_force and number in managed and _should_register(status)
                desired = managed.get(number)
                if ours and account.resend_due(
                    now,
                    after=resend_after,
                    desired=desired,
                    proven_before=functools.partial(proven_before, number),
                ):
                    resend.append(number)
        self.version += 1
        return RegistrationNews(tuple(lost), tuple(restored), tuple(resend), tuple(proven))

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
        return _STATE_OF.get(outcome.status, "unknown")

    def message(self) -> str | None:
        outcome = self.outcome
        if outcome is None:
            return None
        if outcome.failure is not None:
            return outcome.failure.message
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


def _registration(status: AccountStatus) -> bool | None:
    """Registered or not; None for an account that does not register (local, or disabled,
    or with registration switched off): it is not "unregistered", there is nothing to alert on."""
    if status.enabled is False or status.registration_enabled is False:
        return None
    return status.registered


def _should_register(status: AccountStatus) -> bool:
    """Whether the account is meant to register: enabled, with registration enabled."""
    return status.enabled is not False and status.registration_enabled is True


def _moment(unix: float | None) -> datetime | None:
    return None if unix is None else datetime.fromtimestamp(unix, UTC)
