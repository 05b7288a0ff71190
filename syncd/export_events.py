"""``syncd export``'s log events (SPEC section 7): what it read, skipped and wrote.

Like :mod:`syncd.events`, one typed function each, taking the logger to write to
and keyword-only fields.
"""

from __future__ import annotations

from structlog.typing import FilteringBoundLogger as Log

__all__ = [
    "export_defaults_not_factored",
    "export_defaults_written",
    "export_field_skipped",
    "export_no_identity",
    "export_read",
    "export_tls_unverified",
    "export_written",
]


def export_tls_unverified(log: Log, *, error: str) -> None:
    log.warning("export.tls_unverified", error=error)


def export_no_identity(log: Log, *, error: str) -> None:
    log.debug("export.no_identity", error=error)


def export_field_skipped(log: Log, *, error: str) -> None:
    log.warning("export.field_skipped", error=error)


def export_defaults_written(log: Log, *, file: str, devices: int) -> None:
    log.info("export.defaults_written", file=file, devices=devices)


def export_defaults_not_factored(log: Log, *, error: str) -> None:
    log.warning("export.defaults_not_factored", error=error)


def export_read(log: Log, *, url: str, accounts: int) -> None:
    log.info("export.read", url=url, accounts=accounts)


def export_written(log: Log, *, url: str, file: str) -> None:
    log.info("export.written", url=url, file=file)
