"""Validation of the ``blob-json`` parameter of ``PUT /api/phone/config``.

The device checks the whole blob before touching anything ("should an error
occur during verification, the whole process fails and none of the parameters
will be used"), so this module turns a parsed document into a complete list of
updates or raises the first :class:`ApiError`; applying happens elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from syncd.simulator.errors import ApiError
from syncd.simulator.fields import (
    ACCOUNT_NUMBERS,
    PASSWORD,
    READ_ONLY_FIELDS,
    FieldValue,
    Firmware,
    InvalidValue,
    coerce,
    coerce_text,
)

__all__ = ["MAX_BLOB_BYTES", "AccountUpdate", "account_range", "parse_updates"]

MAX_BLOB_BYTES: Final = 64 * 1024
BLOB: Final = "blob-json"


@dataclass(frozen=True)
class AccountUpdate:
    """Validated new values for one account; ``password`` is ``None`` when not sent."""

    account: int
    fields: dict[str, FieldValue]
    password: str | None


def parse_updates(
    document: object, *, firmware: Firmware, accounts: tuple[int, ...] = ACCOUNT_NUMBERS
) -> list[AccountUpdate]:
    """Validate a parsed blob ``{"accounts": [...]}``; raise the device's first complaint.

    ``accounts`` are the account numbers the device has; naming another is code 12.
    """
    if not isinstance(document, dict) or set(document) != {"accounts"}:
        raise ApiError(12, BLOB, description='expected {"accounts": [...]}')
    entries = document["accounts"]
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ApiError(12, BLOB, description="accounts must be a list of objects")
    updates: list[AccountUpdate] = []
    for entry in entries:
        update = _account_update(entry, firmware=firmware, accounts=accounts)
        if any(done.account == update.account for done in updates):
            raise ApiError(12, "account", description=f"account {update.account} given twice")
        updates.append(update)
    return updates


def account_range(accounts: tuple[int, ...]) -> str:
    """How an error names the valid account numbers: ``1 or 2``, ``1 to 4``."""
    return f"{accounts[0]} or {accounts[-1]}" if len(accounts) == 2 else f"1 to {accounts[-1]}"


def _account_update(
    entry: dict[str, object], *, firmware: Firmware, accounts: tuple[int, ...]
) -> AccountUpdate:
    if "account" not in entry:
        raise ApiError(11, "account")
    number = entry["account"]
    if not isinstance(number, int) or isinstance(number, bool) or number not in accounts:
        raise ApiError(12, "account", description=f"account must be {account_range(accounts)}")
    if len(entry) == 1:
        raise ApiError(11, "account", description="an account needs at least one more parameter")
    fields: dict[str, FieldValue] = {}
    password: str | None = None
    for name, value in entry.items():
        if name in READ_ONLY_FIELDS[firmware]:
            raise ApiError(12, name, description="read-only parameter")
        try:
            if name == PASSWORD:
                password = coerce_text(name, value)
            elif name != "account":
                fields[name] = coerce(name, value)
        except InvalidValue as exc:
            raise ApiError(12, name, description=exc.reason) from None
    return AccountUpdate(account=number, fields=fields, password=password)
