"""The desired-state YAML of a live device: small, deterministic, pure.

Text fields are always double-quoted (so ``"4001"`` and ``"0123"`` stay
strings), ports are integers with ``""`` for the default port, ``answerMode``
an integer, booleans YAML booleans. Passwords are write-only on the device, so
none is exported: the API password appears as the reference it was given by
(``{env: VAR}`` or ``{file: PATH}``), and each account carries a comment on how
to add one. Live fields syncd does not manage (``accountType`` of newer
firmware) are left out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from syncd import __version__
from syncd.desired.schema import text_problem
from syncd.diff import normalise_live_account
from syncd.export.request import Access
from syncd.model import ACCOUNT_FIELDS, ACCOUNT_NUMBERS, AuthMethod, FieldKind, normalise_live

__all__ = ["PASSWORD_HINT", "render_document", "yaml_string"]

#: Live keys handled apart from the managed fields (a password is never exported).
_KEYS = frozenset({"account", "password"})
PASSWORD_HINT = (
    "# password: {env: NAME} | {file: PATH} | {credential: NAME}  (write-only; not exported)"
)


def _printable(ch: str) -> bool:
    """Characters that may stand unescaped in a double-quoted YAML scalar.

    YAML's printable set, minus the characters PyYAML reads as line breaks
    (U+0085, U+2028, U+2029) and the byte-order mark.
    """
    code = ord(ch)
    return (
        0x20 <= code <= 0x7E
        or (0xA0 <= code <= 0xD7FF and code not in (0x2028, 0x2029))
        or (0xE000 <= code <= 0xFFFD and code != 0xFEFF)
        or code >= 0x10000
    )


def yaml_string(text: str) -> str:
    """``text`` as a double-quoted YAML scalar that reads back as exactly ``text``."""
    out = ['"']
    for ch in text:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif _printable(ch):
            out.append(ch)
        elif ord(ch) <= 0xFF:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(f"\\u{ord(ch):04x}")
    out.append('"')
    return "".join(out)


def _comment(text: str) -> str:
    """Text safe to put after ``#``: one line, printable."""
    return "".join(c if c.isprintable() else "?" for c in text)


def render_value(kind: FieldKind, value: Any) -> str | None:
    """A live value as desired-state YAML that compares equal to it, or None if none can."""
    if kind is FieldKind.BOOL:
        return ("true" if value else "false") if isinstance(value, bool) else None
    if kind is FieldKind.TEXT:
        return (
            yaml_string(value) if isinstance(value, str) and text_problem(value) is None else None
        )
    number = normalise_live(kind, value)
    if not isinstance(number, int) or isinstance(number, bool) or number < 0:
        return None
    if kind is FieldKind.PORT:
        if number > 65535:
            return None
        return '""' if number == 0 else str(number)
    return str(number)


def render_document(
    *,
    url: str,
    name: str | None,
    access: Access,
    accounts: Sequence[Mapping[str, Any]],
    info: Mapping[str, Any] | None = None,
) -> tuple[str, list[str]]:
    """The desired-state YAML for a device, and notes on live values left out of it."""
    notes: list[str] = []
    lines = [f"# Desired state of {_comment(url)}, exported by syncd {__version__}."]
    lines += _identity(info)
    lines += _device(url, name, access)
    body: list[str] = []
    seen: set[int] = set()
    for index, live in enumerate(accounts):
        number = normalise_live_account(live.get("account"))
        number = number if number in ACCOUNT_NUMBERS else None
        if number is None or number in seen:
            why = "is listed twice" if number in seen else "has no account number 1 to 4"
            notes.append(f"live account #{index + 1} {why}; not exported")
            body.append(f"  # live account #{index + 1} {why}; not exported")
            continue
        seen.add(number)
        body += _account(number, live, notes)
    lines += ["accounts:", *body] if body and seen else ["accounts: []", *body]
    return "\n".join(lines) + "\n", notes


def _identity(info: Mapping[str, Any] | None) -> list[str]:
    """A comment naming the device (model, name, serial, firmware), where it told us."""
    if not info:
        return []
    about = [str(info[k]) for k in ("variant", "deviceName") if isinstance(info.get(k), str)]
    for key, label in (("serialNumber", "serial"), ("swVersion", "firmware")):
        if isinstance(info.get(key), str):
            about.append(f"{label} {info[key]}")
    return [f"# {_comment(', '.join(about))}"] if about else []


def _device(url: str, name: str | None, access: Access) -> list[str]:
    lines = ["device:", f"  url: {yaml_string(url)}"]
    if name is not None:
        lines.append(f"  name: {yaml_string(name)}")
    auth = access.auth
    lines += ["  auth:", f"    method: {auth.method.value}"]
    if auth.method is not AuthMethod.NONE:
        if auth.username is not None:
            lines.append(f"    username: {yaml_string(auth.username)}")
        if access.password_ref is not None:
            source, where = access.password_ref
            lines.append(f"    password: {{{source}: {yaml_string(where)}}}")
    if not access.tls.verify or access.tls.ca_file:
        lines.append("  tls:")
        if not access.tls.verify:
            lines.append("    verify: false")
        if access.tls.ca_file:
            lines.append(f"    caFile: {yaml_string(access.tls.ca_file)}")
    lines.append("  mode: enforce")
    return lines


def _account(number: int, live: Mapping[str, Any], notes: list[str]) -> list[str]:
    body = [f"  - account: {number}"]
    for field, kind in ACCOUNT_FIELDS.items():
        if field not in live:
            continue
        rendered = render_value(kind, live[field])
        if rendered is None:
            notes.append(
                f"account {number} {field}: the device reports {_comment(repr(live[field]))}, "
                "which the desired-state format cannot hold; not exported"
            )
            body.append(f"    # {field}: not exported (device reports an unusable value)")
            continue
        body.append(f"    {field}: {rendered}")
    unmanaged = sorted(k for k in live if k not in ACCOUNT_FIELDS and k not in _KEYS)
    if unmanaged:
        body.append(f"    # not managed by syncd, not exported: {_comment(', '.join(unmanaged))}")
    body.append(f"    {PASSWORD_HINT}")
    return body
