"""The pure heart of syncd: desired accounts + live accounts -> a plan.

A plan lists every managed field that differs (``live -> desired``) and the
body of the one PUT that fixes them: only the changed accounts, each with
``account`` and only its changed fields, in the device's own typing. Passwords
cannot be read back, so the caller says which accounts' passwords are due.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import SecretStr

from syncd.model import (
    ACCOUNT_FIELDS,
    AccountSpec,
    FieldKind,
    is_digits,
    normalise_live,
    render_for_device,
)

__all__ = [
    "PASSWORD_PLACEHOLDER",
    "Change",
    "DiffError",
    "Plan",
    "diff",
    "normalise_live_account",
]

PASSWORD_PLACEHOLDER = "(will be set)"


class DiffError(Exception):
    """The live answer cannot be compared (e.g. the device lacks a desired account)."""


@dataclass(frozen=True)
class Change:
    """One field to change. For a password, ``live`` is None and ``desired`` a placeholder."""

    account: int
    field: str
    live: Any
    desired: Any

    def as_dict(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "field": self.field,
            "live": self.live,
            "desired": self.desired,
        }


@dataclass(frozen=True)
class Plan:
    changes: tuple[Change, ...] = ()
    #: Changed readable fields per account, rendered for the device.
    updates: Mapping[int, Mapping[str, Any]] = field(default_factory=dict)
    #: Passwords to send, per account. Never printed: see ``changes`` for that.
    passwords: Mapping[int, SecretStr] = field(default_factory=dict, repr=False)

    @property
    def empty(self) -> bool:
        return not self.changes

    @property
    def readable_changes(self) -> tuple[Change, ...]:
        """Changes the device can confirm by a GET (everything but passwords)."""
        return tuple(c for c in self.changes if c.field != "password")

    def put_body(self) -> list[dict[str, Any]]:
        """The ``accounts`` of the PUT, passwords in clear: hand it to the client only."""
        accounts = []
        for number in sorted(set(self.updates) | set(self.passwords)):
            entry: dict[str, Any] = {"account": number, **self.updates.get(number, {})}
            if number in self.passwords:
                entry["password"] = self.passwords[number].get_secret_value()
            accounts.append(entry)
        return accounts


def live_by_account(live: Sequence[Mapping[str, Any]]) -> dict[int, Mapping[str, Any]]:
    out: dict[int, Mapping[str, Any]] = {}
    for account in live:
        number = normalise_live_account(account.get("account"))
        if number is not None:
            out[number] = account
    return out


def normalise_live_account(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and is_digits(value):
        return int(value)
    return None


def _accounts(numbers: Collection[int], none: str = "no accounts") -> str:
    listed = ", ".join(str(n) for n in sorted(numbers))
    return {0: none, 1: f"account {listed}"}.get(len(numbers), f"accounts {listed}")


def _equal(have: Any, want: Any) -> bool:
    """Equal values of one kind: a live ``1`` is not ``true``, nor ``false`` a mode ``0``."""
    return isinstance(have, bool) == isinstance(want, bool) and have == want


def _numeric_typing(live: Sequence[Mapping[str, Any]]) -> Any:
    """A sample of how this firmware types numbers: ``0`` (integers) or ``""`` (strings)."""
    numeric = [
        k for k, kind in ACCOUNT_FIELDS.items() if kind in (FieldKind.PORT, FieldKind.NUMBER)
    ]
    for account in live:
        for name in numeric:
            value = account.get(name)
            if isinstance(value, int) and not isinstance(value, bool):
                return 0
            if isinstance(value, str):
                return ""
    return ""


def diff(
    desired: Mapping[int, AccountSpec],
    live: Sequence[Mapping[str, Any]],
    *,
    passwords_due: Collection[int] = (),
) -> Plan:
    """Compare ``desired`` with a GET answer's accounts.

    Only fields present in ``desired`` are compared; live fields syncd does
    not manage (or does not know) are ignored. ``passwords_due`` names the
    accounts whose desired password is new or changed since last applied.
    """
    current = live_by_account(live)
    managed = [
        number
        for number, spec in sorted(desired.items())
        if spec.fields or (spec.password and number in passwords_due)
    ]
    missing = [number for number in managed if number not in current]
    if missing:
        # A device has the accounts its GET lists: nothing is sent to it.
        raise DiffError(
            f"the device has no SIP {_accounts(missing)} (it reports {_accounts(current)})"
        )
    typing = _numeric_typing(live)
    changes: list[Change] = []
    updates: dict[int, dict[str, Any]] = {}
    passwords: dict[int, SecretStr] = {}
    for number in managed:
        spec = desired[number]
        live_account = current[number]
        for name, kind in ACCOUNT_FIELDS.items():
            if name not in spec.fields:
                continue
            want = spec.fields[name]
            have = live_account.get(name)
            if name in live_account and _equal(normalise_live(kind, have), want):
                continue
            # A field the device does not report takes the typing of its other numbers.
            rendered = render_for_device(kind, want, have if name in live_account else typing)
            changes.append(Change(number, name, have, rendered))
            updates.setdefault(number, {})[name] = rendered
        if spec.password is not None and number in passwords_due:
            changes.append(Change(number, "password", None, PASSWORD_PLACEHOLDER))
            passwords[number] = spec.password
    return Plan(changes=tuple(changes), updates=updates, passwords=passwords)
