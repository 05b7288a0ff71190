"""Secret references in the desired state, and resolving them to values.

A secret is written as ``{env: NAME}``, ``{file: PATH}``, ``{credential: NAME}``
(a file in ``$CREDENTIALS_DIRECTORY``, as systemd's ``LoadCredential=`` makes
it) or, discouraged, as a literal string. References name where a secret lives,
so they may appear in messages; resolved values are :class:`SecretStr` and
never do.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import SecretStr

__all__ = ["SecretError", "SecretRef", "hide_credentials", "parse_secret_ref", "resolve_secret"]

SOURCES = ("env", "file", "credential", "literal")
_MAX_SECRET_BYTES = 64 * 1024


_URL_CREDENTIALS = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://)[^/?#@\s]*@")


def hide_credentials(text: str) -> str:
    """``text`` with the ``user:password@`` of every URL in it shown as ``***@``.

    For messages that quote what a user typed (a setting, a command-line URL):
    a URL that must not hold credentials is refused without repeating them.
    """
    return _URL_CREDENTIALS.sub(r"\1***@", text)


class SecretError(Exception):
    """A reference could not be resolved; the message names the reference only."""


@dataclass(frozen=True)
class SecretRef:
    """Where a secret lives. For ``literal`` the value is held hidden."""

    source: str
    name: str = ""
    literal: SecretStr | None = None
    #: Where it was written (file, line, field path), so a failure names that line.
    #: Not part of its identity: the same reference written elsewhere is equal.
    where: tuple[str, int, str] | None = field(default=None, compare=False)

    def __str__(self) -> str:
        return "(literal)" if self.source == "literal" else f"{{{self.source}: {self.name}}}"


def parse_secret_ref(value: object) -> SecretRef:
    """Read the YAML form of a secret; raise ``ValueError`` with a hint if malformed."""
    if isinstance(value, str):
        return SecretRef("literal", literal=SecretStr(value))
    if isinstance(value, Mapping) and len(value) == 1:
        ((source, name),) = value.items()
        if source in SOURCES[:3] and isinstance(name, str) and name.strip():
            return SecretRef(source, name=name)
    raise ValueError("must be {env: NAME}, {file: PATH}, {credential: NAME} or a quoted string")


def resolve_secret(
    ref: SecretRef,
    *,
    environ: Mapping[str, str],
    base_dir: Path,
) -> SecretStr:
    """Return the secret's value. ``base_dir`` anchors relative ``file`` paths."""
    if ref.source == "literal":
        assert ref.literal is not None
        return ref.literal
    if ref.source == "env":
        value = environ.get(ref.name)
        if value is None:
            raise SecretError(f"environment variable {ref.name} is not set")
        if not _utf8(value):  # os.environ keeps bytes that are not UTF-8 as surrogates
            raise SecretError(f"environment variable {ref.name} is not UTF-8 text")
        return SecretStr(value)
    if ref.source == "file":
        path = base_dir / ref.name
        return SecretStr(_read_secret_file(path, str(ref)))
    credentials = environ.get("CREDENTIALS_DIRECTORY")
    if not credentials:
        raise SecretError(f"{ref} needs $CREDENTIALS_DIRECTORY (systemd LoadCredential=)")
    if "/" in ref.name or ref.name in (".", ".."):
        raise SecretError(f"{ref}: a credential name cannot contain '/'")
    return SecretStr(_read_secret_file(Path(credentials) / ref.name, str(ref)))


def _read_secret_file(path: Path, what: str) -> str:
    try:
        with path.open("rb") as fh:
            data = fh.read(_MAX_SECRET_BYTES + 1)
    except FileNotFoundError:
        raise SecretError(f"{what}: file {path} does not exist") from None
    except OSError as exc:
        raise SecretError(f"{what}: cannot read {path}: {exc.strerror}") from None
    if len(data) > _MAX_SECRET_BYTES:
        raise SecretError(f"{what}: file {path} is too large to be a secret")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SecretError(f"{what}: file {path} is not UTF-8 text") from None
    return _strip_newline(text)


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _strip_newline(text: str) -> str:
    """``text`` without one trailing line end, ``\\n`` or a Windows ``\\r\\n``."""
    if text.endswith("\r\n"):
        return text[:-2]
    return text[:-1] if text.endswith("\n") else text
