"""Password entries follow the physical device, not its name (pure; no I/O).

A device record holds, per account, the HMAC of the password last applied
(``passwords``) and the target it went to (``targets``: the URL and serial
number). A desired file that is moved or renamed (``git mv``) gives the same
device a new name; its passwords are still in force, so the new name *takes
over* the old name's entries when the target and the HMAC match, and no
password is sent. Each (target, account) is held by at most one record: when a
password is applied, other records' entries for that target and account are
*released*, so a stale entry can never stand in for a newer password.

A record marked ``forgotten`` (its passwords were made due on purpose, after a
factory reset) never takes an entry over.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["TargetIndex", "release", "take_over"]


def _map(record: dict[str, Any], key: str) -> dict[str, Any]:
    value = record.get(key)
    if not isinstance(value, dict):
        value = {}  # missing or damaged: as if never applied
        record[key] = value
    return value


def take_over(
    own: dict[str, Any],
    others: Iterable[dict[str, Any]],
    *,
    target: str,
    account: int,
    digest: str,
) -> dict[str, Any] | None:
    """Move another record's entry for exactly this target, account and HMAC into ``own``.

    Only when ``own`` has no entry for the account and was not forgotten.
    Returns the record the entry came from (both records changed), or None.
    """
    key = str(account)
    if own.get("forgotten") or key in _map(own, "passwords"):
        return None
    for other in others:
        if other is own:
            continue
        passwords, targets = _map(other, "passwords"), _map(other, "targets")
        if targets.get(key) == target and passwords.get(key) == digest:
            del passwords[key], targets[key]
            _map(own, "passwords")[key] = digest
            _map(own, "targets")[key] = target
            return other
    return None


def release(
    own: dict[str, Any], others: Iterable[dict[str, Any]], *, target: str, accounts: Iterable[int]
) -> list[dict[str, Any]]:
    """Drop other records' entries for ``target`` and these accounts; the records changed."""
    keys = {str(a) for a in accounts}
    changed: list[dict[str, Any]] = []
    for other in others:
        if other is own:
            continue
        targets = _map(other, "targets")
        stale = [k for k in keys if targets.get(k) == target]
        for key in stale:
            _map(other, "passwords").pop(key, None)
            del targets[key]
        if stale:
            changed.append(other)
    return changed


class TargetIndex:
    """Which device records may hold an entry for a target: a superset, to look in few records.

    Names are added as records gain entries and never removed (a record whose
    entry moved away is looked at and passed over), so the index needs no
    upkeep when records change behind it.
    """

    def __init__(self) -> None:
        self._names: dict[str, set[str]] = {}

    def add(self, record: Mapping[str, Any]) -> None:
        targets = record.get("targets")
        device = record.get("device")
        if isinstance(targets, dict) and isinstance(device, str):
            for target in targets.values():
                if isinstance(target, str):
                    self._names.setdefault(target, set()).add(device)

    def clear(self) -> None:
        self._names.clear()

    def holders(
        self, target: str, records: Mapping[str, dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """The records (of ``records``, by device name) that may hold an entry for ``target``."""
        names = sorted(self._names.get(target, ()))
        return [records[name] for name in names if name in records]
