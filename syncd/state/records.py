"""Password entries follow the physical device, not its name (pure; no I/O).

A device record holds, per account, the HMAC of the password last applied
(``passwords``) and the target it went to (``targets``: the URL and serial
number). A desired file that is moved or renamed (``git mv``) gives the same
device a new name; its passwords are still in force, so the new name *takes
over* the old name's entries when the target and the HMAC match, and no
password is sent. Each (target, account) is held by at most one record: when a
password is applied, other records' entries for that target and account are
*released*, so a stale entry can never stand in for a newer password.

A serial number that could not be read (the device's ``/api/system/info``
failed once) is not another serial: a target without one stands for the same
URL with any serial, both ways, and an entry made without the serial is bound
to it once it is known. Only two known serials that differ make another device.

A record marked ``forgotten`` (its passwords were made due on purpose, after a
factory reset) never takes an entry over.

``proven`` keeps, per account, a keyed digest of the desired account (its
fields and password) under which the account was last seen registered: the
registration monitor's evidence that a later, lasting loss of registration is a
factory reset, not a bad setting, survives a restart of the daemon.

:class:`DeviceRecords` is the per-device half of the state interface over
records kept anywhere (files, etcd): a store says how to find, save and look
up records; the decisions are made here, once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import SecretStr

from syncd.model import AccountSpec

__all__ = ["DeviceRecords", "TargetIndex"]


def _map(record: dict[str, Any], key: str) -> dict[str, Any]:
    value = record.get(key)
    if not isinstance(value, dict):
        value = {}  # missing or damaged: as if never applied
        record[key] = value
    return value


def bound_target(target: str, stored: object) -> str:
    """The target an entry recorded for ``stored`` is checked against when the device
    is now ``target``: ``stored`` itself when only the serial is unknown on either side
    (same URL), else ``target`` (another URL or another serial: another device)."""
    if not isinstance(stored, str) or stored == target:
        return target
    url, _, serial = target.partition("#")
    stored_url, _, stored_serial = stored.partition("#")
    if url != stored_url or (serial and stored_serial):
        return target
    return stored


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

    def holders(self, target: str, records: Mapping[str, dict[str, Any]]) -> list[dict[str, Any]]:
        """The records (of ``records``, by device name) that may hold an entry for ``target``."""
        names = sorted(self._names.get(target, ()))
        return [records[name] for name in names if name in records]


class DeviceRecords(ABC):
    """Password records, applied fingerprint and revision per device, over a store's records.

    A store gives ``_key`` (the HMAC key), ``_by_target`` (its index) and says
    how to get a device's record (``_record``: created empty when missing),
    write one (``_save``) and find the records that may hold a target's
    entries (``_holders``).
    """

    _key: bytes
    _by_target: TargetIndex

    @abstractmethod
    def _record(self, device: str) -> dict[str, Any]:
        """The device's record (a new, empty one when there is none)."""

    @abstractmethod
    def _save(self, device: str) -> None:
        """Write the device's record as it is now."""

    @abstractmethod
    def _holders(self, target: str) -> list[dict[str, Any]]:
        """The records that may hold an entry for ``target``."""

    def _save_moved(self, device: str) -> None:
        """Save a record an entry moved to or from during a lookup (as ``_save`` unless told)."""
        self._save(device)

    def _digest(self, target: str, account: int, password: SecretStr) -> str:
        message = f"{target}\0{account}\0".encode() + password.get_secret_value().encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def password_due(self, device: str, target: str, account: int, password: SecretStr) -> bool:
        """True unless exactly this password was applied to this device's account.

        ``target`` names the physical device the password went to (its URL, and
        its serial number where known): another target means another device.
        A record kept under another name for the same target counts (the
        desired file was moved or renamed); it then moves to this name.
        """
        record = self._record(device)
        bound = bound_target(target, _map(record, "targets").get(str(account)))
        stored = record["passwords"].get(str(account))
        if isinstance(stored, str) and hmac.compare_digest(
            stored, self._digest(bound, account, password)
        ):
            if bound != target and "#" in target:  # the serial is known now: bind to it
                record["passwords"][str(account)] = self._digest(target, account, password)
                record["targets"][str(account)] = target
                self._by_target.add(record)
                self._save_moved(device)
            return False
        if stored is not None:
            return True
        digest = self._digest(target, account, password)
        source = take_over(
            record, self._holders(target), target=target, account=account, digest=digest
        )
        if source is None:
            return True
        self._by_target.add(record)
        self._save_moved(device)
        self._save_moved(source["device"])
        return False

    def record_passwords(
        self, device: str, target: str, passwords: Mapping[int, SecretStr]
    ) -> None:
        if not passwords:
            return
        record = self._record(device)
        record.pop("resend", None)  # an operator's request is met by this PUT
        targets = record.setdefault("targets", {})
        for account, password in passwords.items():
            record["passwords"][str(account)] = self._digest(target, account, password)
            targets[str(account)] = target
        self._by_target.add(record)
        self._save(device)
        for other in release(record, self._holders(target), target=target, accounts=passwords):
            self._save(other["device"])

    def forget_passwords(self, device: str, *, operator: bool = False) -> None:
        record = self._record(device)
        if record["passwords"] or not record.get("forgotten") or operator:
            record["passwords"] = {}
            record["targets"] = {}
            record["forgotten"] = True  # never take another name's record over
            if operator:
                record["resend"] = "operator"  # logged as password.resent when sent
            self._save(device)

    def account_proof(self, account: AccountSpec[SecretStr]) -> str:
        """A keyed digest of one desired account, its fields and password (reveals neither)."""
        fields = json.dumps(dict(account.fields), sort_keys=True, separators=(",", ":"))
        secret = "" if account.password is None else account.password.get_secret_value()
        message = f"proof\0{account.account}\0{fields}\0".encode() + secret.encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()[:32]

    def proven(self, device: str, account: int) -> str | None:
        """The :meth:`account_proof` under which the account was last seen registered."""
        proven = self._record(device).get("proven")
        value = proven.get(str(account)) if isinstance(proven, dict) else None
        return value if isinstance(value, str) else None

    def record_proven(self, device: str, account: int, proof: str) -> None:
        """The account was seen registered under the desired account ``proof`` stands for."""
        record = self._record(device)
        proven = _map(record, "proven")
        if proven.get(str(account)) != proof:
            proven[str(account)] = proof
            self._save(device)

    def resend_requested(self, device: str) -> bool:
        """Whether an operator asked for the device's passwords and no PUT has sent them yet."""
        return self._record(device).get("resend") == "operator"

    def applied_fingerprint(self, device: str) -> str | None:
        return self._text(device, "fingerprint")

    def record_fingerprint(self, device: str, fingerprint: str) -> None:
        self._set_texts(device, fingerprint=fingerprint)

    def record_in_force(
        self,
        device: str,
        fingerprint: str,
        revision: str | None,
        *,
        changed_at: datetime | None = None,
    ) -> None:
        """Both at once, in one write; ``changed_at``: when a verified PUT changed the device.
        A failed health check recorded before is over (a new PUT, or found healthy)."""
        changed = None if changed_at is None else changed_at.astimezone(UTC).isoformat()
        before = self._text(device, "revision")
        prior = before if revision is not None and before not in (None, revision) else None
        self._set_texts(
            device,
            fingerprint=fingerprint,
            revision=revision,
            changed=changed,
            prior=prior,
            drop=("unhealthy", "rejected"),
        )

    def record_changed(self, device: str, at: datetime) -> None:
        """When syncd changed the device other than to its desired state (a revert); the
        revision in force before the reverted PUT is in force again."""
        self._set_texts(
            device,
            changed=at.astimezone(UTC).isoformat(),
            revision=self._text(device, "prior"),
            drop=("prior",),
        )

    def unhealthy_fingerprint(self, device: str) -> str | None:
        return self._text(device, "unhealthy")

    def rejection(self, device: str, fingerprint: str) -> tuple[int, str] | None:
        value = self._record(device).get("rejected")
        if isinstance(value, dict) and value.get("fingerprint") == fingerprint:
            code, error = value.get("code"), value.get("error")
            if isinstance(code, int) and isinstance(error, str):
                return code, error
        return None

    def record_rejection(self, device: str, fingerprint: str, *, code: int, error: str) -> None:
        record = self._record(device)
        record["rejected"] = {"fingerprint": fingerprint, "code": code, "error": error}
        self._save(device)

    def drop_rejection(self, device: str) -> None:
        if self._record(device).pop("rejected", None) is not None:
            self._save(device)

    def record_unhealthy(self, device: str, fingerprint: str, *, restored: str) -> None:
        """Also ends the pending PUT (its check is over)."""
        self._set_texts(device, fingerprint=restored, unhealthy=fingerprint, drop=("put",))

    def pending_put(self, device: str) -> Mapping[str, Any] | None:
        """The health-checked PUT whose check has not ended (:mod:`syncd.pending_put`)."""
        value = self._record(device).get("put")
        return value if isinstance(value, dict) else None

    def record_pending_put(self, device: str, doc: Mapping[str, Any] | None) -> None:
        """Keep ``doc`` as the device's pending PUT (None: there is none any more)."""
        record = self._record(device)
        if doc is None:
            if record.pop("put", None) is not None:
                self._save(device)
            return
        record["put"] = dict(doc)
        self._save(device)

    def last_change(self, device: str) -> datetime | None:
        """When syncd last changed the device (its last verified PUT), if recorded."""
        text = self._text(device, "changed")
        try:
            return None if text is None else datetime.fromisoformat(text)
        except ValueError:
            return None

    def applied_revision(self, device: str) -> str | None:
        return self._text(device, "revision")

    def record_revision(self, device: str, revision: str) -> None:
        self._set_texts(device, revision=revision)

    def _text(self, device: str, key: str) -> str | None:
        value = self._record(device).get(key)
        return value if isinstance(value, str) else None

    def _set_texts(self, device: str, *, drop: tuple[str, ...] = (), **values: str | None) -> None:
        """Set the values given (None: leave as it is) and remove the keys in ``drop``;
        one write if anything changed."""
        record = self._record(device)
        changed = {k: v for k, v in values.items() if v is not None and record.get(k) != v}
        dropped = [k for k in drop if record.pop(k, None) is not None]
        if changed or dropped:
            record.update(changed)
            self._save(device)
