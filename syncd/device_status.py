"""The device's own health signals, typed: SIP registration and active calls.

Pure readers of the ``result`` of ``GET /api/phone/status`` and
``GET /api/call/status``. They accept what firmware sends (integers also as
digit strings; fields syncd does not use are ignored) and refuse anything
else with one phrase naming the offending place, so that a decision is never
based on an answer that was only half understood.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from syncd.model import is_digits

__all__ = [
    "AccountStatus",
    "CallSession",
    "StatusFormatError",
    "read_call_status",
    "read_phone_status",
]


class StatusFormatError(ValueError):
    """A status answer of the wrong shape; ``str()`` completes "the device answered ..."."""


@dataclass(frozen=True)
class AccountStatus:
    """The registration of one SIP account, as ``/api/phone/status`` reports it.

    ``registered`` is None for an account without registration (``accountType``
    ``local``); ``register_time`` (Unix seconds) is present only while registered.
    """

    account: int
    account_type: str | None = None
    enabled: bool | None = None
    registration_enabled: bool | None = None
    registered: bool | None = None
    register_time: int | None = None


@dataclass(frozen=True)
class CallSession:
    """One active call: ``direction`` incoming/outgoing, ``state`` connecting/ringing/connected."""

    session: int
    direction: str
    state: str


def read_phone_status(result: Any) -> list[AccountStatus]:
    """The accounts of a phone-status ``result``."""
    return [_account(item, where) for where, item in _items(result, "accounts")]


def read_call_status(result: Any) -> list[CallSession]:
    """The sessions of a call-status ``result``; empty when the device is idle."""
    return [_session(item, where) for where, item in _items(result, "sessions")]


def _account(item: Mapping[str, Any], where: str) -> AccountStatus:
    return AccountStatus(
        account=_integer(item, "account", where),
        account_type=_maybe_text(item, "accountType", where),
        enabled=_boolean(item, "enabled", where),
        registration_enabled=_boolean(item, "registrationEnabled", where),
        registered=_boolean(item, "registered", where),
        register_time=_maybe_integer(item, "registerTime", where),
    )


def _session(item: Mapping[str, Any], where: str) -> CallSession:
    return CallSession(
        session=_integer(item, "session", where),
        direction=_text(item, "direction", where),
        state=_text(item, "state", where),
    )


def _items(result: Any, key: str) -> list[tuple[str, Mapping[str, Any]]]:
    if not isinstance(result, Mapping):
        raise StatusFormatError("without a result")
    items = result.get(key)
    if not isinstance(items, list):
        raise StatusFormatError(f"without a list of {key}")
    out = []
    for index, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise StatusFormatError(f"{key}[{index}] as {_kind(item)}, not an object")
        out.append((f"{key}[{index}]", item))
    return out


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "an object"


def _integer(item: Mapping[str, Any], key: str, where: str) -> int:
    if key not in item:
        raise StatusFormatError(f"{where} without {key}")
    value = item[key]
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and is_digits(value):
        return int(value)
    raise StatusFormatError(f"{where}.{key} as {_kind(value)}, not a whole number")


def _maybe_integer(item: Mapping[str, Any], key: str, where: str) -> int | None:
    return None if item.get(key) is None else _integer(item, key, where)


def _text(item: Mapping[str, Any], key: str, where: str) -> str:
    if key not in item:
        raise StatusFormatError(f"{where} without {key}")
    value = item[key]
    if isinstance(value, str):
        return value
    raise StatusFormatError(f"{where}.{key} as {_kind(value)}, not text")


def _maybe_text(item: Mapping[str, Any], key: str, where: str) -> str | None:
    return None if item.get(key) is None else _text(item, key, where)


def _boolean(item: Mapping[str, Any], key: str, where: str) -> bool | None:
    value = item.get(key)
    if value is None or isinstance(value, bool):
        return value
    raise StatusFormatError(f"{where}.{key} as {_kind(value)}, not true or false")
