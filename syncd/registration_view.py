"""Each account's SIP registration as the daemon follows it, read after read (pure).

:func:`read_registration` takes one ``/api/phone/status`` read into the
accounts' :class:`AccountRegistration` and says what it means: accounts that
lost or got back their registration by themselves, and the passwords to send
again when an account that had registered with syncd's password stays
unregistered for a whole resync (a factory reset in place). The caller (the
device's :class:`~syncd.devices_view.DeviceView`) passes the time and does the
logging and the requests.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass

from syncd.device_status import AccountStatus

__all__ = ["AccountRegistration", "RegistrationNews", "read_registration"]

#: At most one automatic password resend per account in this many seconds.
RESEND_EVERY = 3600.0


@dataclass
class AccountRegistration:
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


def read_registration(
    accounts: MutableMapping[int, AccountRegistration],
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
    lost: list[int] = []
    restored: list[int] = []
    resend: list[int] = []
    proven: list[int] = []
    for status in statuses:
        number = status.account
        account = accounts.setdefault(number, AccountRegistration())
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
    return RegistrationNews(tuple(lost), tuple(restored), tuple(resend), tuple(proven))


def _registration(status: AccountStatus) -> bool | None:
    """Registered or not; None for an account that does not register (local, or disabled,
    or with registration switched off): it is not "unregistered", there is nothing to alert on."""
    if status.enabled is False or status.registration_enabled is False:
        return None
    return status.registered


def _should_register(status: AccountStatus) -> bool:
    """Whether the account is meant to register: enabled, with registration enabled."""
    return status.enabled is not False and status.registration_enabled is True
