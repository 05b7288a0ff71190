"""The desired-state file format as typed pydantic models, with operator-worded errors.

Each validator raises a custom error whose message reads well after
``FILE:LINE: path:`` (``must be a port number 1-65535, ...``);
:mod:`syncd.desired.locate` turns pydantic's error locations into file and line.
The account fields come from :data:`syncd.model.ACCOUNT_FIELDS`, the one list
of them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, PlainValidator, create_model
from pydantic_core import PydanticCustomError

from syncd.desired.yamldoc import Yaml11Bool
from syncd.model import ACCOUNT_FIELDS, ACCOUNT_NUMBERS, AuthMethod, FieldKind, Mode, is_digits
from syncd.secrets import SecretRef, parse_secret_ref

__all__ = [
    "MAX_TEXT",
    "Bool",
    "FileDoc",
    "Text",
    "UrlError",
    "normalise_url",
    "text_problem",
]

#: Longest text value accepted; no intercom field needs more.
MAX_TEXT = 255


def _error(kind: str, message: str) -> PydanticCustomError:
    return PydanticCustomError(kind, message)


#: C0 controls, DEL and the C1 controls (a regex: a per-character loop was slow).
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f]")


def text_problem(value: str) -> str | None:
    """What keeps ``value`` from being a text field's value, or None: the one text rule.

    A device refuses (code 12) the C0 controls, DEL and the C1 controls
    U+0080-U+009F, so a file holding one never passes ``validate``.
    """
    if len(value) > MAX_TEXT:
        return f"is {len(value)} characters long; at most {MAX_TEXT} allowed"
    if _CONTROLS.search(value):
        return "contains a control character"
    return None


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise _error("text_type", "must be a string")
    if len(value) <= MAX_TEXT and _CONTROLS.search(value) is None:
        return value  # text_problem's verdict, without a call: this runs for every text value
    problem = text_problem(value)
    assert problem is not None
    raise _error("text_value", problem)


def _bool(value: object) -> bool:
    if isinstance(value, Yaml11Bool):
        raise _error(
            "bool_type", f"'{value.text}' is a boolean only in YAML 1.1: write true or false"
        )
    if not isinstance(value, bool):
        raise _error(
            "bool_type", 'must be true or false (a YAML boolean, unquoted; "yes" is a string)'
        )
    return value


def _port(value: object) -> int:
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and (value == "" or is_digits(value)):
        number = int(value) if value else 0
    if number is None or not 0 <= number <= 65535:
        raise _error("port", 'must be a port number 1-65535, or "" or 0 for the default port')
    return number


def _number(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and is_digits(value):
        return int(value)
    raise _error("number", "must be a whole number, e.g. 1")


def _account_number(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value in ACCOUNT_NUMBERS:
        return value
    raise _error("account", "must be 1 to 4")


def _secret(value: object) -> SecretRef:
    try:
        return parse_secret_ref(value)
    except ValueError as exc:
        raise _error("secret", str(exc)) from None


def _account_secret(value: object) -> SecretRef:
    """A SIP password: a literal one is a text value to the device (never echoed here)."""
    ref = _secret(value)
    if ref.literal is not None:
        problem = text_problem(ref.literal.get_secret_value())
        if problem is not None:
            raise _error("text_value", problem)
    return ref


#: ``scheme://host[:port][/]`` with a plain host name or IPv4 address: the usual device URL.
_SIMPLE_URL = re.compile(
    r"(?P<scheme>https?)://(?P<netloc>[A-Za-z0-9.-]+(?::(?P<port>[0-9]{0,5}))?)/?"
)


class UrlError(ValueError):
    """A device URL is not ``scheme://host[:port]``; the message reads after "the URL"."""


def normalise_url(raw: str, *, credentials_hint: str = "put them under device.auth") -> str:
    """``scheme://host[:port]``, host lower-cased: one device, one URL, wherever it is written.

    Raises :class:`UrlError` saying what is wrong; ``credentials_hint`` says
    where credentials go instead of the URL.
    """
    text = raw.strip()
    simple = _SIMPLE_URL.fullmatch(text)
    if simple is not None and int(simple["port"] or 0) <= 65535:
        # What urlsplit below makes of it, at a fifth of the cost (one URL per device file).
        return f"{simple['scheme']}://{simple['netloc'].lower()}"
    try:
        parts = urlsplit(text)
    except ValueError as exc:  # an unclosed [ of an IPv6 address, say
        if "IPv6" in str(exc):
            raise UrlError("has unmatched [ ] around an IPv6 address") from None
        raise UrlError("cannot be read as a URL") from None
    if parts.scheme not in ("http", "https"):
        raise UrlError("must start with http:// or https://")
    if "@" in parts.netloc:
        raise UrlError(f"must not hold credentials; {credentials_hint}")
    try:
        parts.port  # noqa: B018 - validates the port
    except ValueError:
        raise UrlError("has an invalid port") from None
    if not parts.hostname:
        raise UrlError("has no host name")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise UrlError("must be just scheme, host and optional port (no path)")
    # Host names are case-insensitive: one device, one URL (for the same-URL check).
    return f"{parts.scheme}://{parts.netloc.lower()}"


def _url(value: object) -> str:
    if not isinstance(value, str):
        raise _error("url", "must be a URL such as https://192.0.2.10")
    try:
        return normalise_url(value)
    except UrlError as exc:
        raise _error("url", str(exc)) from None


Text = Annotated[str, PlainValidator(_text)]
Bool = Annotated[bool, PlainValidator(_bool)]
Port = Annotated[int, PlainValidator(_port)]
Number = Annotated[int, PlainValidator(_number)]
AccountNumber = Annotated[int, PlainValidator(_account_number)]
Secret = Annotated[SecretRef, PlainValidator(_secret)]
AccountSecret = Annotated[SecretRef, PlainValidator(_account_secret)]
Url = Annotated[str, PlainValidator(_url)]

_KIND_TYPES: Mapping[FieldKind, Any] = {
    FieldKind.BOOL: Bool,
    FieldKind.TEXT: Text,
    FieldKind.PORT: Port,
    FieldKind.NUMBER: Number,
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class AuthDoc(_Strict):
    method: AuthMethod = AuthMethod.DIGEST
    username: Text | None = None
    password: Secret | None = None


class TlsDoc(_Strict):
    verify: Bool = True
    caFile: Text | None = None


class DeviceDoc(_Strict):
    url: Url
    name: Text | None = None
    auth: AuthDoc = AuthDoc()
    tls: TlsDoc = TlsDoc()
    mode: Mode = Mode.ENFORCE


class _AccountBase(_Strict):
    account: AccountNumber
    password: AccountSecret | None = None
    #: Read-only on newer firmware (general, local, msteams): accepted so that a pasted
    #: GET answer is a valid desired state, and never managed or sent.
    accountType: Text | None = None

    def managed(self) -> dict[str, bool | str | int]:
        """The fields the operator wrote, canonical; left-out fields are unmanaged."""
        written = self.model_fields_set
        return {k: getattr(self, k) for k in ACCOUNT_FIELDS if k in written}


#: One account as written; its fields come from ACCOUNT_FIELDS, the one list of them.
#: Left out means unmanaged (the unvalidated default); an explicit null is a type error.
_FIELD_DEFS: dict[str, Any] = {
    name: (_KIND_TYPES[kind], None) for name, kind in ACCOUNT_FIELDS.items()
}
AccountDoc: type[_AccountBase] = create_model("AccountDoc", __base__=_AccountBase, **_FIELD_DEFS)


class FileDoc(_Strict):
    device: DeviceDoc
    accounts: list[AccountDoc] = []  # type: ignore[valid-type,unused-ignore]
