"""The state store as files in the state directory.

Per device, one small JSON file holding:

- ``fingerprint``: of the desired state last seen in force on the device, so a
  later difference under the same desired state is *drift*, not a *change*;
- ``passwords``: per account, an HMAC-SHA256 (random per-installation key,
  ``key`` in the same directory) of the password last applied, so a password is
  sent only when it is new or changed. The password itself is never stored;
- ``revision``: the desired revision last seen in force on the device.

The rollout's state is one JSON document, ``rollout.json``.

Files are replaced atomically (write, then rename), so a process killed at any
point leaves either the old or the new file. They are not fsynced: losing the
last write to a power cut only means a password is sent once more.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pydantic import SecretStr

__all__ = ["FileStateStore", "StateError"]

_KEY_FILE = "key"
_DEVICES_DIR = "devices"
_ROLLOUT_FILE = "rollout.json"


class StateError(Exception):
    """The state directory cannot be used; the message names it and why."""


class FileStateStore:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._devices = directory / _DEVICES_DIR
        self._key = b""
        self._cache: dict[str, dict[str, Any]] = {}

    def __repr__(self) -> str:
        return f"FileStateStore({str(self.directory)!r})"

    @classmethod
    def open(cls, directory: Path, *, key: bytes | None = None) -> FileStateStore:
        """Create or open the state directory (0700) and its key (0600), unless ``key`` is given."""
        store = cls(directory)
        try:
            store._devices.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(directory, 0o700)
            store._key = key or store._load_key()
            with tempfile.NamedTemporaryFile(dir=store._devices, prefix=".probe-"):
                pass
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise StateError(f"state directory {directory} is not usable: {reason}") from None
        return store

    def _load_key(self) -> bytes:
        path = self.directory / _KEY_FILE
        try:
            key = bytes.fromhex(path.read_text().strip())
            if len(key) >= 32:
                return key
        except FileNotFoundError:
            pass
        except ValueError:
            pass
        key = secrets.token_bytes(32)
        self._write(path, key.hex() + "\n")
        return key

    # -------------------------------------------------------------- records

    def _record(self, device: str) -> dict[str, Any]:
        record = self._cache.get(device)
        if record is None:
            record = {"device": device, "fingerprint": None, "passwords": {}}
            try:
                loaded = json.loads(self._path(device).read_text())
                if isinstance(loaded, dict) and loaded.get("device") == device:
                    record.update(loaded)
                    if not isinstance(record["passwords"], dict):
                        record["passwords"] = {}  # damaged: as if never applied
            except (OSError, ValueError):
                pass  # missing or damaged: as if never applied
            self._cache[device] = record
        return record

    def _path(self, device: str) -> Path:
        return self._devices / (quote(device, safe="") + ".json")

    def _save(self, device: str) -> None:
        record = self._cache[device]
        try:
            self._write(self._path(device), json.dumps(record, sort_keys=True, indent=1) + "\n")
        except OSError as exc:
            raise StateError(
                f"cannot write state for device {device} in {self.directory}: {exc.strerror}"
            ) from None

    def _write(self, path: Path, text: str) -> None:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _digest(self, target: str, account: int, password: SecretStr) -> str:
        message = f"{target}\0{account}\0".encode() + password.get_secret_value().encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def password_due(self, device: str, target: str, account: int, password: SecretStr) -> bool:
        """True unless exactly this password was applied to this device's account.

        ``target`` names the physical device the password went to (its URL, and
        its serial number where known): another target means another device.
        """
        stored = self._record(device)["passwords"].get(str(account))
        return not (
            isinstance(stored, str)
            and hmac.compare_digest(stored, self._digest(target, account, password))
        )

    def record_passwords(
        self, device: str, target: str, passwords: Mapping[int, SecretStr]
    ) -> None:
        if not passwords:
            return
        record = self._record(device)
        for account, password in passwords.items():
            record["passwords"][str(account)] = self._digest(target, account, password)
        self._save(device)

    def _text(self, device: str, key: str) -> str | None:
        value = self._record(device).get(key)
        return value if isinstance(value, str) else None

    def _set_text(self, device: str, key: str, value: str) -> None:
        record = self._record(device)
        if record.get(key) != value:
            record[key] = value
            self._save(device)

    def applied_fingerprint(self, device: str) -> str | None:
        return self._text(device, "fingerprint")

    def record_fingerprint(self, device: str, fingerprint: str) -> None:
        self._set_text(device, "fingerprint", fingerprint)

    def applied_revision(self, device: str) -> str | None:
        return self._text(device, "revision")

    def record_revision(self, device: str, revision: str) -> None:
        self._set_text(device, "revision", revision)

    def forget_passwords(self, device: str) -> None:
        record = self._record(device)
        if record["passwords"]:
            record["passwords"] = {}
            self._save(device)

    # -------------------------------------------------------------- rollout

    def load_rollout(self) -> dict[str, Any] | None:
        try:
            loaded = json.loads((self.directory / _ROLLOUT_FILE).read_text())
        except (OSError, ValueError):
            return None  # none yet, or damaged: as if no rollout were under way
        return loaded if isinstance(loaded, dict) else None

    def save_rollout(self, doc: Mapping[str, Any]) -> None:
        try:
            self._write(self.directory / _ROLLOUT_FILE, json.dumps(dict(doc), indent=1) + "\n")
        except (OSError, TypeError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            message = f"cannot write the rollout state in {self.directory}: {reason}"
            raise StateError(message) from None
