"""One emulated intercom: its live SIP accounts, passwords, registrations, calls,
faults, journal and nonces.

Every device of a fleet is independent, so all of a device's mutable state
lives on its :class:`EmulatedDevice`. Tests drive devices from other threads
(a fleet run by :func:`run_fleet_in_thread` serves from its own event loop), so
every public method takes the device's lock; none holds it across an await.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import Collection, Sequence
from typing import Any

from syncd.simulator.auth import AuthPolicy, NonceStore
from syncd.simulator.blob import AccountUpdate, account_range, parse_updates
from syncd.simulator.calls import CallTable, Session
from syncd.simulator.errors import ApiError
from syncd.simulator.faults import Fault, FaultKind, FaultQueue
from syncd.simulator.fields import (
    ACCOUNT_NUMBERS,
    SIP_FIELDS,
    Account,
    FieldValue,
    Firmware,
    account_type,
    factory_account,
    render,
)
from syncd.simulator.journal import JournalEntry
from syncd.simulator.registration import Registrations, is_eligible

DEFAULT_PBX = ("pbx.example.com",)

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
    ``status()`` is the registration as ``GET /api/phone/status`` reports it;
    :meth:`start_call`, :meth:`end_calls` and :meth:`fail_registration` play
    the world around the device. ``latency`` (seconds) delays every answer of
    the device API and may be changed at any time.
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
        account_numbers: tuple[int, ...] = ACCOUNT_NUMBERS,
        pbx: Collection[str] = DEFAULT_PBX,
        register_delay: float = 1.0,
        latency: float = 0.0,
    ) -> None:
        self.number = number
        self.url = url
        self.port = port
        self.firmware: Firmware = firmware
        self.auth = auth
        self.account_numbers = account_numbers
        self.pbx = pbx if isinstance(pbx, frozenset) else frozenset(h.lower() for h in pbx)
        self.latency = latency
        self.nonces = NonceStore(lifetime=auth.nonce_lifetime, uses=auth.nonce_uses)
        self.identity = identity(number, firmware=firmware)
        self._lock = threading.Lock()
        self._accounts: dict[int, Account] = {}
        self._passwords: dict[int, str | None] = {}
        self._registrations = Registrations(account_numbers, delay=register_delay)
        self._calls = CallTable()
        self._faults = FaultQueue()
        self._hanging: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._journal: deque[JournalEntry] = deque(maxlen=journal_limit)
        self.factory_reset()

    def __repr__(self) -> str:
        return f"<EmulatedDevice {self.number} {self.url}>"

    # live state

    @property
    def accounts(self) -> list[dict[str, FieldValue]]:
        """Every account exactly as ``GET /api/phone/config`` would report them now."""
        return self.read()

    def read(self, account: int | None = None) -> list[dict[str, FieldValue]]:
        """The GET answer's ``accounts`` list, for one account or all."""
        numbers = self._numbers(account)
        with self._lock:
            return [render(n, self._accounts[n], firmware=self.firmware) for n in numbers]

    def status(self, account: int | None = None) -> list[dict[str, FieldValue]]:
        """The ``accounts`` of ``GET /api/phone/status``: registration, for one account or all.

        ``registered`` is absent for ``local`` accounts; ``registerTime``
        (Unix seconds) is present only while registered.
        """
        numbers = self._numbers(account)
        now = time.time()
        with self._lock:
            return [self._status_of(n, now) for n in numbers]

    def registered(self, account: int) -> bool:
        """Whether ``account`` is registered now."""
        (status,) = self.status(account)
        return status.get("registered") is True

    def _status_of(self, number: int, now: float) -> dict[str, FieldValue]:
        live = self._accounts[number]
        kind = account_type(number)
        shown: dict[str, FieldValue] = {
            "account": number,
            "accountType": kind,
            "enabled": live["enabled"],
            "sipNumber": live["sipNumber"],
            "registrationEnabled": live["registrationEnabled"],
        }
        if kind != "local":
            register_time = self._registrations.register_time(number, now=now)
            shown["registered"] = register_time is not None
            if register_time is not None:
                shown["registerTime"] = register_time
        return shown

    def _numbers(self, account: int | None) -> tuple[int, ...]:
        if account is None:
            return self.account_numbers
        if account not in self.account_numbers:
            raise ValueError(
                f"device {self.number} has no account {account} "
                f"(it has {account_range(self.account_numbers)})"
            )
        return (account,)

    def _eligible(self, number: int) -> bool:
        return is_eligible(
            self._accounts[number],
            number=number,
            password=self._passwords[number],
            pbx=self.pbx,
        )

    @property
    def passwords(self) -> dict[int, str | None]:
        """The SIP password last set on each account, ``None`` if never set."""
        with self._lock:
            return dict(self._passwords)

    def apply(self, updates: Sequence[AccountUpdate]) -> None:
        """Apply validated updates all at once, as an accepted PUT does.

        An account whose SIP settings (:data:`~syncd.simulator.fields.SIP_FIELDS`)
        change, or whose password is written, unregisters at once and
        registers anew after the register delay if it still may.
        """
        now = time.time()
        with self._lock:
            for update in updates:
                number = update.account
                live = self._accounts[number]
                changed = update.password is not None or any(
                    name in SIP_FIELDS and live[name] != value
                    for name, value in update.fields.items()
                )
                live.update(update.fields)
                if update.password is not None:
                    self._passwords[number] = update.password
                if changed:
                    self._registrations.restart(number, eligible=self._eligible(number), now=now)

    def set_live(self, account: int, /, **fields: Any) -> None:
        """Drift: change live fields (``password`` too) directly, bypassing journal and faults.

        Values follow the PUT rules in either typing; a rejected value raises
        ``ValueError`` and changes nothing.
        """
        try:
            updates = parse_updates(
                {"accounts": [{"account": account, **fields}]},
                firmware=self.firmware,
                accounts=self.account_numbers,
            )
        except ApiError as exc:
            raise ValueError(f"set_live({account}): {exc.param}: {exc.description}") from None
        self.apply(updates)

    def factory_reset(self) -> None:
        """Back to the factory state: every account disabled and empty, no passwords.

        Every account unregisters; a later registration still gets a
        ``registerTime`` greater than any before the reset.
        """
        now = time.time()
        with self._lock:
            self._accounts = {n: factory_account() for n in self.account_numbers}
            self._passwords = dict.fromkeys(self.account_numbers)
            for number in self.account_numbers:
                self._registrations.restart(number, eligible=False, now=now)

    # the world around the device

    def fail_registration(self, account: int, fail: bool = True) -> None:
        """Make the PBX refuse ``account`` (it unregisters and stays so), or accept it again.

        Lifting the failure makes the account register after the register
        delay (if its settings allow) with a new ``registerTime``.
        """
        (number,) = self._numbers(account)
        now = time.time()
        with self._lock:
            self._registrations.fail(number, failing=fail, eligible=self._eligible(number), now=now)

    def start_call(self, direction: str = "incoming", state: str = "connected") -> Session:
        """Start a call (``incoming``/``outgoing``; ``connecting``/``ringing``/``connected``)."""
        with self._lock:
            return self._calls.start(direction=direction, state=state)

    def end_calls(self) -> int:
        """End every call; return how many there were."""
        with self._lock:
            return self._calls.end_all()

    @property
    def calls(self) -> list[Session]:
        """The active calls, as ``GET /api/call/status`` lists them."""
        with self._lock:
            return self._calls.sessions()

    # faults

    def inject(
        self,
        *,
        kind: FaultKind,
        count: int | None = 1,
        method: str | None = None,
        path: str | None = None,
        status: int = 503,
        body: str | None = None,
        delay: float = 1.0,
        code: int = 14,
        param: str = "",
        description: str | None = None,
    ) -> Fault:
        """Misbehave on the next ``count`` device-API requests (``None``: until cleared).

        ``method`` and ``path`` limit the requests that match. See
        :class:`~syncd.simulator.faults.Fault` for what each ``kind`` does.
        """
        fault = Fault(
            kind=kind,
            count=count,
            method=method,
            path=path,
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

    def take_fault(self, method: str, path: str | None = None) -> Fault | None:
        """Consume the fault that applies to a request with ``method`` to ``path``, if any."""
        with self._lock:
            return self._faults.take(method, path)

    @property
    def has_faults(self) -> bool:
        """Whether any fault is pending (cheaper than :attr:`faults` for a server's hot path)."""
        with self._lock:
            return bool(self._faults)

    @property
    def faults(self) -> list[Fault]:
        """Faults still pending, each with its remaining count."""
        with self._lock:
            return self._faults.pending()

    def clear_faults(self) -> None:
        """Cancel every pending fault and release hanging requests (closed unanswered)."""
        with self._lock:
            self._faults.clear()
        self.release_hanging()

    async def hang(self) -> None:
        """Wait, inside a request, until :meth:`release_hanging` (or cancellation)."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        entry = (loop, waiter)
        with self._lock:
            self._hanging.append(entry)
        try:
            await waiter
        finally:
            with self._lock, contextlib.suppress(ValueError):
                self._hanging.remove(entry)

    def release_hanging(self) -> None:
        """End every request held by a ``hang`` fault; callable from any thread."""
        with self._lock:
            hanging, self._hanging = self._hanging, []
        for loop, waiter in hanging:
            with contextlib.suppress(RuntimeError):  # its loop has closed: nothing hangs
                loop.call_soon_threadsafe(_wake, waiter)

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


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
