"""The SIP account fields of ``/api/phone/config``: their rules, factory values, rendering.

One module knows every field, so PUT validation, drift and GET rendering agree.
Values are stored in one canonical typing (ports and ``answerMode`` as ``int``,
port ``0`` meaning "default port") and rendered in the firmware's typing on the
way out: the manual's string firmware reports ``"5060"``/``""``/``"1"``, newer
integer firmware ``5060``/``0``/``1`` plus an extra read-only ``accountType``.
Both firmwares accept both typings on input, as the real devices do.

A device has 2 accounts, or 4 as newer firmware does: accounts 1 to 3 are
``general`` SIP accounts, account 4 is ``local`` (no registration).
"""

from __future__ import annotations

import re
from typing import Final, Literal

__all__ = [
    "ACCOUNT_COUNTS",
    "ACCOUNT_NUMBERS",
    "FIELD_ORDER",
    "PASSWORD",
    "READ_ONLY_FIELDS",
    "SIP_FIELDS",
    "Account",
    "AccountType",
    "FieldValue",
    "Firmware",
    "InvalidValue",
    "account_numbers",
    "account_type",
    "coerce",
    "coerce_text",
    "factory_account",
    "render",
]

Firmware = Literal["string", "integer"]
AccountType = Literal["general", "local"]
FieldValue = bool | int | str
Account = dict[str, FieldValue]

ACCOUNT_COUNTS: Final = (2, 4)
ACCOUNT_NUMBERS: Final = (1, 2)
"""The accounts of a device with the default two; see :func:`account_numbers`."""

FIELD_ORDER: Final = (
    "enabled",
    "displayName",
    "sipNumber",
    "domain",
    "domainPort",
    "authId",
    "proxyAddress",
    "proxyPort",
    "registrationEnabled",
    "registrarAddress",
    "registrarPort",
    "answerMode",
)
BOOL_FIELDS: Final = frozenset({"enabled", "registrationEnabled"})
PORT_FIELDS: Final = frozenset({"domainPort", "proxyPort", "registrarPort"})
PASSWORD: Final = "password"
ANSWER_MODE: Final = "answerMode"

SIP_FIELDS: Final = frozenset(
    {
        "enabled",
        "sipNumber",
        "authId",
        PASSWORD,
        "domain",
        "domainPort",
        "proxyAddress",
        "proxyPort",
        "registrationEnabled",
        "registrarAddress",
        "registrarPort",
    }
)
"""The fields a registration depends on: changing one makes the account register anew."""

ACCOUNT_TYPE: Final = "accountType"
READ_ONLY_FIELDS: Final[dict[Firmware, frozenset[str]]] = {
    "string": frozenset(),
    "integer": frozenset({ACCOUNT_TYPE}),
}

MAX_TEXT: Final = 255
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_PORT = re.compile(r"[0-9]{1,5}")
_DIGIT = re.compile(r"[0-9]")


class InvalidValue(ValueError):
    """A value the device would reject with code 12 naming ``field``."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


def coerce(field: str, value: object) -> FieldValue:
    """Check ``value`` for ``field`` (``password`` included) and return it canonically typed."""
    if field in BOOL_FIELDS:
        if isinstance(value, bool):
            return value
        raise InvalidValue(field, "must be a JSON boolean")
    if field in PORT_FIELDS:
        return _number(field, value, pattern=_PORT, limit=65535, empty_allowed=True)
    if field == ANSWER_MODE:
        return _number(field, value, pattern=_DIGIT, limit=9, empty_allowed=False)
    if field == PASSWORD or field in FIELD_ORDER:
        return coerce_text(field, value)
    raise InvalidValue(field, "unknown parameter")


def _number(
    field: str, value: object, *, pattern: re.Pattern[str], limit: int, empty_allowed: bool
) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value == "" and empty_allowed:
        number = 0
    elif isinstance(value, str) and pattern.fullmatch(value):
        number = int(value)
    else:
        raise InvalidValue(field, f"must be an integer 0..{limit} or its decimal string")
    if not 0 <= number <= limit:
        raise InvalidValue(field, f"must be between 0 and {limit}")
    return number


def coerce_text(field: str, value: object) -> str:
    """Check a text value: a string of at most 255 characters, no control characters."""
    if not isinstance(value, str):
        raise InvalidValue(field, "must be a string")
    if len(value) > MAX_TEXT:
        raise InvalidValue(field, f"longer than {MAX_TEXT} characters")
    if _CONTROL.search(value):
        raise InvalidValue(field, "contains a control character")
    return value


def account_numbers(count: int) -> tuple[int, ...]:
    """The account numbers of a device with ``count`` accounts (2 or 4)."""
    if count not in ACCOUNT_COUNTS:
        raise ValueError(f"a device has 2 or 4 accounts, not {count!r}")
    return tuple(range(1, count + 1))


def account_type(number: int) -> AccountType:
    """The fixed type of account ``number``: 4 is the ``local`` account, the others ``general``."""
    return "local" if number == 4 else "general"


def factory_account() -> Account:
    """An account as the device ships: disabled, empty, default ports, answer mode 1."""
    account: Account = {field: "" for field in FIELD_ORDER}
    account.update(enabled=False, registrationEnabled=False, answerMode=1)
    account.update({field: 0 for field in PORT_FIELDS})
    return account


def render(number: int, account: Account, *, firmware: Firmware) -> dict[str, FieldValue]:
    """The account as ``GET /api/phone/config`` reports it in ``firmware``'s typing."""
    shown: dict[str, FieldValue] = {"account": number}
    for field in FIELD_ORDER:
        value = account[field]
        if firmware == "string" and field in PORT_FIELDS:
            value = str(value) if value else ""
        elif firmware == "string" and field == ANSWER_MODE:
            value = str(value)
        shown[field] = value
    if ACCOUNT_TYPE in READ_ONLY_FIELDS[firmware]:
        shown[ACCOUNT_TYPE] = account_type(number)
    return shown
