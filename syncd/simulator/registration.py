"""The emulated PBX: when each SIP account of a device is registered, and since when.

A real intercom registers an account some time after its SIP settings make
that possible, and registers anew whenever they change. syncd's health check
tells the new registration from the old one by its ``registerTime``, so every
registration here gets a Unix-seconds time strictly greater than the
account's previous one.

Nothing runs in the background: an account remembers when it became eligible
(``since``) and is registered once ``register_delay`` has passed since then,
worked out when someone looks. Ten thousand devices cost no timers. Not
thread-safe by itself: the owning device guards it with its lock.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass

from syncd.simulator.fields import Account, account_type

__all__ = ["Registrations", "is_eligible"]


def is_eligible(
    account: Account, *, number: int, password: str | None, pbx: Collection[str]
) -> bool:
    """Whether the PBX accepts a registration of ``account`` with these settings.

    It must be a ``general`` account, enabled, with registration enabled, a
    password set, and its registrar (``registrarAddress``, else ``domain``)
    one of the ``pbx`` host names (lower case; compared case-insensitively).
    """
    registrar = str(account["registrarAddress"] or account["domain"]).lower()
    return (
        account_type(number) == "general"
        and account["enabled"] is True
        and account["registrationEnabled"] is True
        and bool(password)
        and registrar in pbx
    )


@dataclass(slots=True)
class _Line:
    """One account's registration: eligible ``since`` (``None``: not), its time once made."""

    since: float | None = None
    register_time: int | None = None
    last: int = 0
    failing: bool = False


class Registrations:
    """The registration state of one device's accounts."""

    __slots__ = ("_lines", "delay")

    def __init__(self, numbers: tuple[int, ...], *, delay: float) -> None:
        self.delay = delay
        self._lines = {number: _Line() for number in numbers}

    def restart(self, number: int, *, eligible: bool, now: float) -> None:
        """SIP settings changed: unregister now; register after the delay if eligible."""
        line = self._settle(number, now)
        line.register_time = None
        line.since = now if eligible else None

    def fail(self, number: int, *, failing: bool, eligible: bool, now: float) -> None:
        """Make the PBX refuse the account (it unregisters), or accept it again (registers anew)."""
        line = self._settle(number, now)
        if failing:
            line.register_time = None
        elif line.failing:
            line.since = now if eligible else None
        line.failing = failing

    def register_time(self, number: int, *, now: float) -> int | None:
        """The account's ``registerTime`` if it is registered at ``now``, else ``None``."""
        return self._settle(number, now).register_time

    def failing(self, number: int) -> bool:
        """Whether the account's registration is being made to fail."""
        return self._lines[number].failing

    def _settle(self, number: int, now: float) -> _Line:
        line = self._lines[number]
        if line.since is None or line.failing or line.register_time is not None:
            return line
        registered_at = line.since + self.delay
        if now >= registered_at:
            line.register_time = max(math.floor(registered_at), line.last + 1)
            line.last = line.register_time
        return line
