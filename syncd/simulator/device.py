"""One emulated intercom: its live SIP accounts, passwords, faults, journal and nonces.

Every device of a fleet is independent, so all of a device's mutable state
lives on its :class:`EmulatedDevice`. Tests drive devices from other threads
(a fleet run by :func:`run_fleet_in_thread` serves from its own event loop), so
every public method takes the device's lock; none holds it across an await.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from typing import Any

from syncd.simulator.auth import AuthPolicy, NonceStore
from syncd.simulator.blob import AccountUpdate, parse_updates
from syncd.simulator.errors import ApiError
from syncd.simulator.faults import Fault, FaultKind, FaultQueue
from syncd.simulator.fields import (
    ACCOUNT_NUMBERS,
    Account,
    FieldValue,
    Firmware,
    factory_account,
    render,
)
from syncd.simulator.journal import JournalEntry

__all__ = ["EmulatedDevice", "identity"]

_SOFTWARE = {"string": "2.44.1.61.2", "integer": "2.50.0.66.1"}


def identity(number: int, *, firmware: Firmware) -> dict[str, str]:
    """What ``GET /api/system/info`` reports: distinct serial, MAC and name per device."""
    return {
        "variant": "2N IP Verso",
        "serialNumber": f"54-{number // 10000:04d}-{number % 10000:04d}",
        "macAddr": "7C-1E-B3-{:02X}-{:02X}-{:02X}".format(*number.to_bytes(3, "big")),
        "hwVersion": "535v1",
        "swVersion": _SOFTWARE[firmware],
        "buildType": "release",
        "deviceName": f"Emulated intercom {number}",
    }


class EmulatedDevice:
    """An intercom of the fleet, listening on its own port with its own state.

    ``accounts`` and ``passwords`` are copies of the live state; change it
    behind a client's back with :meth:`set_live` (drift), make the device
    misbehave with :meth:`inject`, and read what it received in ``journal``.
    """

    def __init__(
        self,
        *,
        number: int,
        url: str,
        port: int,
        firmware: Firmware,
        auth: AuthPolicy,
        journal_limit: int = 1000,
    ) -> None:
        self.number = number
        self.url = url
        self.port = port
        self.firmware: Firmware = firmware
        self.auth = auth
        self.nonces = NonceStore(lifetime=auth.nonce_lifetime)
        self.identity = identity(number, firmware=firmware)
        self._lock = threading.Lock()
        self._accounts: dict[int, Account] = {}
        self._passwords: dict[int, str | None] = {}
        self._faults = FaultQueue()
        self._journal: deque[JournalEntry] = deque(maxlen=journal_limit)
        self.factory_reset()

    def __repr__(self) -> str:
        return f"<EmulatedDevice {self.number} {self.url}>"

    # live state

    @property
    def accounts(self) -> list[dict[str, FieldValue]]:
        """Both accounts exactly as ``GET /api/phone/config`` would report them now."""
        return self.read()

    def read(self, account: int | None = None) -> list[dict[str, FieldValue]]:
        """The GET answer's ``accounts`` list, for one account or both."""
        numbers = ACCOUNT_NUMBERS if account is None else (account,)
        with self._lock:
            return [render(n, self._accounts[n], firmware=self.firmware) for n in numbers]

    @property
    def passwords(self) -> dict[int, str | None]:
        """The SIP password last set on each account, ``None`` if never set."""
        with self._lock:
            return dict(self._passwords)

    def apply(self, updates: Sequence[AccountUpdate]) -> None:
        """Apply validated updates all at once, as an accepted PUT does."""
        with self._lock:
            for update in updates:
                self._accounts[update.account].update(update.fields)
                if update.password is not None:
                    self._passwords[update.account] = update.password

    def set_live(self, account: int, /, **fields: Any) -> None:
        """Drift: change live fields (``password`` too) directly, bypassing journal and faults.

        Values follow the PUT rules in either typing; a rejected value raises
        ``ValueError`` and changes nothing.
        """
        try:
            updates = parse_updates(
                {"accounts": [{"account": account, **fields}]}, firmware=self.firmware
            )
        except ApiError as exc:
            raise ValueError(f"set_live({account}): {exc.param}: {exc.description}") from None
        self.apply(updates)

    def factory_reset(self) -> None:
        """Back to the factory state: both accounts disabled and empty, no passwords."""
        with self._lock:
            self._accounts = {n: factory_account() for n in ACCOUNT_NUMBERS}
            self._passwords = dict.fromkeys(ACCOUNT_NUMBERS)

    # faults

    def inject(
        self,
        *,
        kind: FaultKind,
        count: int = 1,
        method: str | None = None,
        status: int = 503,
        body: str | None = None,
        delay: float = 1.0,
        code: int = 14,
        param: str = "",
        description: str | None = None,
    ) -> Fault:
        """Misbehave on the next ``count`` device-API requests (of ``method`` only, if given).

        See :class:`~syncd.simulator.faults.Fault` for what each ``kind`` does.
        """
        fault = Fault(
            kind=kind,
            count=count,
            method=method,
            status=status,
            body=body,
            delay=delay,
            code=code,
            param=param,
            description=description,
        )
        self.add_fault(fault)
        return fault

    def add_fault(self, fault: Fault) -> None:
        """Queue an already built fault (the admin endpoint's way in)."""
        with self._lock:
            self._faults.add(fault)

    def take_fault(self, method: str) -> Fault | None:
        """Consume the fault that applies to a request with ``method``, if any."""
        with self._lock:
            return self._faults.take(method)

    @property
    def faults(self) -> list[Fault]:
        """Faults still pending, each with its remaining count."""
        with self._lock:
            return self._faults.pending()

    def clear_faults(self) -> None:
        """Cancel every pending fault."""
        with self._lock:
            self._faults.clear()

    # journal

    def record(self, entry: JournalEntry) -> None:
        """Append a received request to the journal (oldest entries drop past the limit)."""
        with self._lock:
            self._journal.append(entry)

    @property
    def journal(self) -> list[JournalEntry]:
        """The device-API requests received, oldest first."""
        with self._lock:
            return list(self._journal)

    def clear_journal(self) -> None:
        """Forget every journal entry."""
        with self._lock:
            self._journal.clear()

    # auth

    def expire_nonces(self) -> None:
        """Expire every Digest nonce issued so far: the next request gets ``stale=true``."""
        self.nonces.expire_all()
