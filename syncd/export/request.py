"""What ``syncd export`` is asked to do, as typed values (the CLI checks the flags)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from syncd.model import AuthMethod, AuthSpec, TlsSpec

__all__ = ["Access", "ExportError", "ExportRequest", "Target"]


class ExportError(Exception):
    """A user-caused failure of an export: one sentence naming what is wrong."""


@dataclass(frozen=True)
class ExportRequest:
    """The export command line, checked: one ``url``, or a ``from_list`` with an ``output``."""

    url: str | None = None
    from_list: Path | None = None
    output: Path | None = None
    name: str | None = None
    devices: tuple[str, ...] = ()
    auth: AuthMethod = AuthMethod.DIGEST
    username: str | None = None
    password_env: str | None = None
    password_file: Path | None = None
    ca_file: Path | None = None
    insecure: bool = False
    #: With ``from_list``: shared values go to ``output/_defaults.yaml``.
    factor_defaults: bool = True


@dataclass(frozen=True)
class Access:
    """How to reach the devices, and how the exported file should say so."""

    auth: AuthSpec
    tls: TlsSpec
    #: The password as the desired state should reference it: ("env", VAR) or ("file", PATH).
    password_ref: tuple[str, str] | None = None


@dataclass(frozen=True)
class Target:
    """One device to export."""

    url: str
    #: ``device.name`` to write, or None to leave the name to the file's path.
    name: str | None = None
    #: Where to write the YAML; None prints it to stdout.
    path: Path | None = None
    #: What messages call the device (its list name, or its URL).
    label: str = ""

    @property
    def who(self) -> str:
        return self.label or self.url
