"""Typed values for devices and SIP accounts, and how values compare.

Everything syncd knows about the fields of ``/api/phone/config`` lives here:
their kinds, how a desired or live value is normalised so that ``"5060"``,
``5060`` and ``"0"``/``""``/``0`` compare the way the device means them, and
how a value is rendered back in a device's own typing.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Generic

from pydantic import SecretStr
from typing_extensions import TypeVar

__all__ = [
    "ACCOUNT_FIELDS",
    "ACCOUNT_NUMBERS",
    "AccountSpec",
    "AuthMethod",
    "AuthSpec",
    "DeviceSpec",
    "FieldKind",
    "Mode",
    "TlsSpec",
    "is_digits",
    "normalise_live",
    "render_for_device",
]

#: What a secret is while a spec travels: a reference (``SecretRef``) as loaded,
#: its value (``SecretStr``, the default) once resolved.
P = TypeVar("P", default=SecretStr)


class FieldKind(enum.Enum):
    BOOL = "bool"
    TEXT = "text"
    PORT = "port"
    NUMBER = "number"


#: SIP account numbers: 1 and 2 on every firmware, 3 and 4 on newer ones. A device
#: has the accounts its GET lists.
ACCOUNT_NUMBERS = (1, 2, 3, 4)

#: The managed fields of one SIP account, in the device's own order.
#: ``account`` is the key and ``password`` is write-only; both are handled apart.
ACCOUNT_FIELDS: Mapping[str, FieldKind] = {
    "enabled": FieldKind.BOOL,
    "displayName": FieldKind.TEXT,
    "sipNumber": FieldKind.TEXT,
    "domain": FieldKind.TEXT,
    "domainPort": FieldKind.PORT,
    "authId": FieldKind.TEXT,
    "proxyAddress": FieldKind.TEXT,
    "proxyPort": FieldKind.PORT,
    "registrationEnabled": FieldKind.BOOL,
    "registrarAddress": FieldKind.TEXT,
    "registrarPort": FieldKind.PORT,
    "answerMode": FieldKind.NUMBER,
}


class AuthMethod(enum.StrEnum):
    DIGEST = "digest"
    BASIC = "basic"
    NONE = "none"


class Mode(enum.StrEnum):
    ENFORCE = "enforce"
    OBSERVE = "observe"
    SUSPEND = "suspend"


@dataclass(frozen=True)
class AuthSpec(Generic[P]):
    method: AuthMethod = AuthMethod.DIGEST
    username: str | None = None
    password: P | None = None


@dataclass(frozen=True)
class TlsSpec:
    verify: bool = True
    ca_file: str | None = None


@dataclass(frozen=True)
class AccountSpec(Generic[P]):
    """The managed part of one account: only the fields the operator wrote.

    ``fields`` holds canonical values (ports and ``answerMode`` as ``int``,
    port ``0`` meaning "default"); ``password`` is the secret (a reference
    until resolved), or ``None`` when the password is not managed.
    """

    account: int
    fields: Mapping[str, bool | str | int]
    password: P | None = None


@dataclass(frozen=True)
class DeviceSpec(Generic[P]):
    """One device's desired state, validated; the one shape from the file to the PUT.

    As loaded, its secrets are references (``DeviceSpec[SecretRef]``); once
    resolved, values (``DeviceSpec``, that is ``DeviceSpec[SecretStr]``).
    """

    name: str
    file: str
    url: str
    auth: AuthSpec[P] = field(default_factory=AuthSpec)
    tls: TlsSpec = field(default_factory=TlsSpec)
    mode: Mode = Mode.ENFORCE
    accounts: Mapping[int, AccountSpec[P]] = field(default_factory=dict)
    #: Paths of every file this spec was built from (device file and defaults).
    sources: tuple[str, ...] = ()
    #: Where its ``url`` was written (file and line; a ``_defaults.yaml`` may set it):
    #: a duplicate URL is told there.
    url_at: tuple[str, int] | None = field(default=None, compare=False, repr=False)

    @functools.cached_property
    def fingerprint(self) -> str:
        """A digest of the managed, readable desired state (never a password).

        syncd stores it after a device was seen equal to this state; a later
        difference under the same fingerprint is drift, under another one a change.
        Worked out once per spec (a pass asked three times per device).
        """
        doc = {
            "url": self.url,
            "accounts": {str(n): dict(a.fields) for n, a in sorted(self.accounts.items())},
        }
        raw = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(raw).hexdigest()[:32]


def is_digits(text: str) -> bool:
    """True for a plain ASCII decimal of sane length ("5060"), which ``int()`` reads safely.

    ``str.isdigit`` alone admits "²" (which ``int()`` refuses) and non-ASCII digits,
    and ``int()`` refuses strings of thousands of digits.
    """
    return text.isascii() and text.isdigit() and len(text) <= 18


def normalise_live(kind: FieldKind, value: Any) -> Any:
    """Map a value as a device reports it onto the canonical form of ``kind``.

    Values a firmware reports in a shape syncd does not know stay as they are,
    so they compare unequal to any desired value and show up in a plan.
    """
    if kind in (FieldKind.PORT, FieldKind.NUMBER):
        if isinstance(value, bool):
            return value
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            text = value.strip()
            if text == "" and kind is FieldKind.PORT:
                return 0
            if is_digits(text):
                return int(text)
    return value


def render_for_device(kind: FieldKind, value: bool | str | int, live: Any) -> Any:
    """Render a canonical desired value in the typing the device uses for it.

    A device that reports ``"5060"`` gets ``"5060"`` (and ``""`` for the
    default port); one that reports ``5060`` gets ``5060`` (and ``0``). Where
    the device reports nothing to copy, the manual's string typing is used.
    """
    if kind is FieldKind.PORT or kind is FieldKind.NUMBER:
        assert isinstance(value, int)
        if isinstance(live, int) and not isinstance(live, bool):
            return value
        if kind is FieldKind.PORT and value == 0:
            return ""
        return str(value)
    return value
