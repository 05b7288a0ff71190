"""The key of the password records, from ``password_key_file`` or a systemd credential.

A cluster needs one key on every node (SPEC section 11); a standalone host
may be given it too, else its state store generates one in the state dir.
This module imports nothing of the cluster (no gRPC in standalone mode).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["PASSWORD_KEY_CREDENTIAL", "PasswordKeyError", "credential", "read_password_key"]

PASSWORD_KEY_CREDENTIAL = "syncd-password-key"
_MIN_KEY = 16


class PasswordKeyError(ValueError):
    """The key cannot be used; one sentence naming ``password_key_file``."""


def credential(name: str) -> Path | None:
    """``$CREDENTIALS_DIRECTORY/name`` when systemd passed that credential."""
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    if directory and (Path(directory) / name).is_file():
        return Path(directory) / name
    return None


def read_password_key(path: Path | None) -> bytes | None:
    """The key from ``path``, else the credential ``syncd-password-key``, else None."""
    source = path or credential(PASSWORD_KEY_CREDENTIAL)
    if source is None:
        return None
    try:
        key = source.read_bytes().strip()
    except OSError as exc:
        raise PasswordKeyError(
            f"password_key_file: cannot read {source}: {exc.strerror or exc}"
        ) from None
    if len(key) < _MIN_KEY:
        raise PasswordKeyError(
            f"password_key_file: {source} holds fewer than {_MIN_KEY} bytes "
            "(make one with: openssl rand -hex 32)"
        )
    return key
