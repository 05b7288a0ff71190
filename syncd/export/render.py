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
from dataclasses import dataclass
from typing import Any

from syncd import __version__
from syncd.desired.schema import text_problem
from syncd.diff import normalise_live_account
from syncd.export.request import Access
from syncd.model import ACCOUNT_FIELDS, ACCOUNT_NUMBERS, AuthMethod, FieldKind, normalise_live

__all__ = [
    "PASSWORD_HINT",
    "Document",
    "defaults_text",
    "document_text",
    "read_document",
    "shared_values",
    "yaml_string",
]

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


@dataclass(frozen=True)
class Account:
    """One exported account: ``(field, line)`` pairs (field None: a comment line)."""

    number: int
    lines: tuple[tuple[str | None, str], ...]


@dataclass(frozen=True)
class Document:
    """A device's desired state as export renders it, before it becomes text."""

    header: tuple[str, ...]
    #: ``url`` and ``name`` lines of the ``device:`` block.
    identity: tuple[str, ...]
    #: The other lines of the ``device:`` block (auth, tls, mode): the same for every device
    #: of one export, as one set of flags gave them.
    settings: tuple[str, ...]
    #: Accounts, and comment lines (str) about live accounts left out.
    accounts: tuple[Account | str, ...]


#: Per account number, the field lines every device of an export has alike.
Shared = Mapping[int, Mapping[str, str]]


def read_document(
    *,
    url: str,
    name: str | None,
    access: Access,
    accounts: Sequence[Mapping[str, Any]],
    info: Mapping[str, Any] | None = None,
) -> tuple[Document, list[str]]:
    """The document for a live device, and notes on live values left out of it."""
    notes: list[str] = []
    header = [f"# Desired state of {_comment(url)}, exported by syncd {__version__}."]
    header += _identity(info)
    device = _device(url, name, access)
    split = 3 if name is not None else 2
    body: list[Account | str] = []
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
        body.append(_account(number, live, notes))
    document = Document(
        header=tuple(header),
        identity=tuple(device[:split]),
        settings=tuple(device[split:]),
        accounts=tuple(body),
    )
    return document, notes


def document_text(document: Document, shared: Shared | None = None) -> str:
    """The device file; with ``shared``, without the values ``_defaults.yaml`` holds."""
    lines = [*document.header, *document.identity]
    if shared is None:
        lines += document.settings
    else:
        lines.append("  # auth, tls and mode are in _defaults.yaml")
    body: list[str] = []
    for item in document.accounts:
        if isinstance(item, str):
            body.append(item)
            continue
        alike = shared.get(item.number, {}) if shared is not None else {}
        body += [line for field, line in item.lines if field is None or field not in alike]
    has_accounts = any(isinstance(item, Account) for item in document.accounts)
    lines += ["accounts:", *body] if has_accounts else ["accounts: []", *body]
    return "\n".join(lines) + "\n"


def shared_values(documents: Sequence[Document]) -> Shared:
    """The account fields every document has, with the same value (for ``_defaults.yaml``)."""
    if not documents:
        return {}
    per_document = [
        {a.number: dict(_field_lines(a)) for a in d.accounts if isinstance(a, Account)}
        for d in documents
    ]
    first, *rest = per_document
    shared: dict[int, dict[str, str]] = {}
    for number, fields in first.items():
        alike = {
            field: line
            for field, line in fields.items()
            if all(other.get(number, {}).get(field) == line for other in rest)
        }
        if alike:
            shared[number] = alike
    return shared


def _field_lines(account: Account) -> list[tuple[str, str]]:
    return [(field, line) for field, line in account.lines if field is not None]


def defaults_text(documents: Sequence[Document], shared: Shared) -> str:
    """``_defaults.yaml`` for an export: device settings and the account values all share."""
    lines = [
        f"# Values shared by the {len(documents)} devices exported by syncd {__version__}.",
        "# Every device file below this folder is merged over this file (the device file wins);",
        "# change a value here to change it on every device.",
        "device:",
        *documents[0].settings,
    ]
    if shared:
        lines.append("accounts:")
        for number in sorted(shared):
            lines.append(f"  - account: {number}")
            lines += shared[number].values()
    return "\n".join(lines) + "\n"


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


def _account(number: int, live: Mapping[str, Any], notes: list[str]) -> Account:
    lines: list[tuple[str | None, str]] = [(None, f"  - account: {number}")]
    for field, kind in ACCOUNT_FIELDS.items():
        if field not in live:
            continue
        rendered = render_value(kind, live[field])
        if rendered is None:
            notes.append(
                f"account {number} {field}: the device reports {_comment(repr(live[field]))}, "
                "which the desired-state format cannot hold; not exported"
            )
            lines.append((None, f"    # {field}: not exported (device reports an unusable value)"))
            continue
        lines.append((field, f"    {field}: {rendered}"))
    unmanaged = sorted(k for k in live if k not in ACCOUNT_FIELDS and k not in _KEYS)
    if unmanaged:
        lines.append(
            (None, f"    # not managed by syncd, not exported: {_comment(', '.join(unmanaged))}")
        )
    lines.append((None, f"    {PASSWORD_HINT}"))
    return Account(number, tuple(lines))
