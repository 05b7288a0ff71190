"""The state store as files in the state directory.

Per device, one record (:mod:`syncd.state.record_log`: a line of JSON in
``devices.jsonl``, appended whenever it changes) holding:

- ``fingerprint``: of the desired state last seen in force on the device, so a
  later difference under the same desired state is *drift*, not a *change*;
- ``passwords``: per account, an HMAC-SHA256 (random per-installation key,
  ``key`` in the same directory) of the password last applied, so a password is
  sent only when it is new or changed. The password itself is never stored;
- ``targets``: per account, the device (URL and serial number) that password
  went to, so a device whose desired file was moved or renamed keeps its
  records under the new name (:mod:`syncd.state.records`);
- ``revision``: the desired revision last seen in force on the device.

The records are read once, when first needed, and kept in memory. A store that
may write rewrites ``devices.jsonl`` (a new file renamed over the old one) when
its lines have come to outnumber its records, and when reading it found
something to leave behind: a damaged line, a line cut short, or the records of
an older syncd, one file per device under ``devices/``, which are read first
and removed once the new file holds them.

The rollout's state is one JSON document, ``rollout.json``, and a journal,
``rollout.journal``: one line per device whose rollout status changed since the
document was written (a PUT starting must be on disk before the PUT goes out,
and rewriting the whole document for each would cost O(devices) per device).
Each document carries a new ``journalId`` and each line the id of the document
it follows, so lines left by a process killed between writing the document and
removing the old journal are not read again.

``open_readonly`` (for ``plan``) never creates or writes anything: what the
pass would record stays in memory.

A damaged record is taken as empty, as if syncd had never applied anything to
that device (:mod:`syncd.state.record_log` says what each damage costs), and
:attr:`FileStateStore.on_damaged` is told of it, so the caller can say that
passwords are due again.

A record is one write of one line, and every other file is replaced atomically
(write, then rename): a process killed at any point leaves each record old or
new, never half. Nothing is fsynced: losing the last writes to a power cut only
means a password is sent once more.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import secrets
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from syncd.state import record_log
from syncd.state.ownership import hand_back_at_exit, unusable_file
from syncd.state.records import DeviceRecords, TargetIndex

__all__ = ["FileStateStore", "StateError", "replace_file"]

_KEY_FILE = "key"
_RECORDS_FILE = "devices.jsonl"
#: Where syncd 0.1 kept the records, one file per device (read, then folded in).
_LEGACY_DIR = "devices"
_ROLLOUT_FILE = "rollout.json"
_JOURNAL_FILE = "rollout.journal"
_APPEND = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
#: The key, in ``rollout.json``, of the id its journal lines carry.
_JOURNAL_ID = "journalId"


class StateError(Exception):
    """The state directory cannot be used; the message names it and why."""


#: Told of a damaged record: the device (None when the damage names none), the file, and why.
DamagedRecord = Callable[[str | None, Path, str], None]


class FileStateStore(DeviceRecords):
    def __init__(self, directory: Path, *, readonly: bool = False) -> None:
        self.directory = directory
        self.readonly = readonly
        self._records_file = directory / _RECORDS_FILE
        self._legacy = directory / _LEGACY_DIR
        self._key = b""
        #: The state dir's key file was there but unusable, and a new key replaced it
        #: (in memory only, when read-only).
        self.key_damaged = False
        self._cache: dict[str, dict[str, Any]] = {}
        #: Every record on disk is in ``_cache`` (loaded once, when first needed).
        self._all_loaded = False
        #: Lines in ``devices.jsonl``; when they outnumber the records, it is rewritten.
        self._lines = 0
        #: The records file holds what a rewrite should leave behind (see the docstring).
        self._rewrite_due = False
        #: ``devices.jsonl``, appended to since it was last rewritten.
        self._records_out = _AppendOnly(self._records_file)
        self._by_target = TargetIndex()
        #: The id of the rollout document this process wrote last (its journal follows it).
        self._journal_id: str | None = None
        #: The journal, appended to after the document saved last.
        self._journal = _AppendOnly(directory / _JOURNAL_FILE)
        #: Told once per damaged record (taken as empty): see :meth:`_damaged`.
        self.on_damaged: DamagedRecord | None = None
        self._damaged_told: set[tuple[Path, int]] = set()

    def __repr__(self) -> str:
        return f"FileStateStore({str(self.directory)!r})"

    @classmethod
    def open(cls, directory: Path, *, key: bytes | None = None) -> FileStateStore:
        """Create or open the state directory (0700) and its key (0600), unless ``key`` is given.

        A damaged key file is replaced by a new key (every password is then due
        again, which is harmless); :attr:`key_damaged` says so, for the caller to tell.
        """
        store = cls(directory)
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(directory, 0o700)
            hand_back_at_exit(directory)  # root in the daemon's dir: its files stay the daemon's
            if (foreign := unusable_file(directory)) is not None:
                raise StateError(f"state directory {directory} is not usable: {foreign}")
            store._key = key or store._load_key()
            with tempfile.NamedTemporaryFile(dir=directory, prefix=".probe-"):
                pass
            if store._records_file.exists() and not store._records_file.is_file():
                raise StateError(
                    f"state directory {directory} is not usable: "
                    f"{store._records_file} is not a regular file"
                )
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise StateError(f"state directory {directory} is not usable: {reason}") from None
        return store

    @classmethod
    def open_readonly(cls, directory: Path, *, key: bytes | None = None) -> FileStateStore:
        """Open the state directory to read only; a missing one reads as holding no record.

        Nothing is created or written: not the directory, not the key (unless
        ``key`` is given, a missing or damaged key file is replaced by a key in
        memory, so every password is due).
        """
        store = cls(directory, readonly=True)
        if directory.exists() and not directory.is_dir():
            raise StateError(f"state directory {directory} is not usable: not a directory")
        try:
            store._key = key or store._load_key()
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise StateError(f"state directory {directory} is not readable: {reason}") from None
        return store

    @property
    def key_file(self) -> Path:
        """The state dir's own key of the password records (used unless a key is given)."""
        return self.directory / _KEY_FILE

    def _load_key(self) -> bytes:
        path = self.key_file
        try:
            key = bytes.fromhex(path.read_text().strip())
            if len(key) >= 32:
                return key
            self.key_damaged = True
        except FileNotFoundError:
            pass
        except ValueError:
            self.key_damaged = True  # not hex, not text: a new key, every password due again
        key = secrets.token_bytes(32)
        if not self.readonly:
            self._write(path, key.hex() + "\n")
        return key

    # -------------------------------------------------------------- records

    def _record(self, device: str) -> dict[str, Any]:
        records = self._all_records()
        record = records.get(device)
        if record is None:
            record = records[device] = {"device": device, "fingerprint": None, "passwords": {}}
        return record

    def _all_records(self) -> dict[str, dict[str, Any]]:
        """Every device record, read from disk once; later ones are kept in memory."""
        if not self._all_loaded:
            self._all_loaded = True
            self._cache = self._load()
            for record in self._cache.values():
                self._by_target.add(record)
            if self._rewrite_due and not self.readonly:
                with contextlib.suppress(StateError):  # tried again at the next rewrite
                    self._rewrite()
        return self._cache

    def _load(self) -> dict[str, dict[str, Any]]:
        """The records on disk: syncd 0.1's files first, then ``devices.jsonl`` over them."""
        legacy = self._read_legacy()
        unreadable = False
        try:
            data = self._records_file.read_bytes()
        except FileNotFoundError:
            data = b""
        except OSError as exc:  # damaged as a whole: no record in it can be read
            self._damaged(None, self._records_file, 0, f"unreadable: {exc.strerror or exc}")
            data, unreadable = b"", True
        folded = record_log.fold(data, legacy)
        for damage in folded.damage:
            self._damaged(damage.device, self._records_file, damage.line, damage.why)
        self._lines = folded.lines
        self._rewrite_due = bool(legacy or unreadable or folded.damage or folded.torn)
        return folded.records

    def _read_legacy(self) -> dict[str, dict[str, Any]]:
        """The records of ``devices/NAME.json``, as syncd 0.1 kept them."""
        try:
            paths = sorted(self._legacy.glob("*.json"))
        except OSError:
            return {}
        records = {}
        for path in paths:
            device = unquote(path.name.removesuffix(".json"))
            if path != self._legacy / (quote(device, safe="") + ".json"):
                continue  # not a file syncd wrote
            loaded, problem = _read_record(path, device)
            if problem is not None:
                self._damaged(device, path, 0, problem)
            if loaded is not None:
                records[device] = loaded
        return records

    def _damaged(self, device: str | None, path: Path, line: int, why: str) -> None:
        """Tell :attr:`on_damaged` of a damaged record, once (the record is taken as empty)."""
        if (path, line) in self._damaged_told:
            return
        self._damaged_told.add((path, line))
        if self.on_damaged is not None:
            self.on_damaged(device, path, f"line {line}: {why}" if line else why)

    def _holders(self, target: str) -> list[dict[str, Any]]:
        return self._by_target.holders(target, self._all_records())

    def has_password_records(self) -> bool:
        """Whether any device has a password on record (False for a new or missing state)."""
        return any(
            isinstance(r.get("passwords"), dict) and r["passwords"]
            for r in self._all_records().values()
        )

    def _save(self, device: str) -> None:
        """Append the device's record (or rewrite the file, when that is due)."""
        if self.readonly:
            return  # what the pass would record stays in memory
        if self._rewrite_due or record_log.rewrite_due(self._lines + 1, len(self._cache)):
            self._rewrite()
            return
        line = record_log.record_line(self._cache[device])
        try:
            written = self._records_out.write(line)
        except OSError as exc:
            self._rewrite_due = True  # a line may be cut short: the next save rewrites
            raise self._write_error(device, exc) from None
        self._lines += 1
        if written != len(line):  # the disk filled up mid-line
            self._rewrite_due = True
            raise StateError(
                f"cannot write state for device {device} in {self.directory}: "
                "No space left on device"
            )

    def _rewrite(self) -> None:
        """Write ``devices.jsonl`` anew, one line per record, and remove syncd 0.1's files."""
        self._records_out.close()  # its file is replaced
        try:
            self._write(self._records_file, record_log.compacted(self._cache))
        except OSError as exc:
            raise self._write_error(None, exc) from None
        self._lines = len(self._cache)
        self._rewrite_due = False
        if self._legacy.is_dir():
            with contextlib.suppress(OSError):  # they are read again, and agree, next time
                for path in self._legacy.glob("*.json"):
                    path.unlink()
                self._legacy.rmdir()  # unless something else was left in it

    def _write_error(self, device: str | None, exc: OSError) -> StateError:
        whose = f" for device {device}" if device is not None else ""
        return StateError(f"cannot write state{whose} in {self.directory}: {exc.strerror}")

    def _write(self, path: Path, content: str | bytes) -> None:
        replace_file(path, content)

    def _save_moved(self, device: str) -> None:
        """Save a record moved by a lookup; if that fails, a password is at worst sent again."""
        with contextlib.suppress(StateError):
            self._save(device)

    # -------------------------------------------------------------- rollout

    def load_rollout(self) -> dict[str, Any] | None:
        """The saved document; lines journalled since it was written are under ``journal``."""
        path = self.directory / _ROLLOUT_FILE
        try:
            loaded = json.loads(path.read_text())
        except FileNotFoundError:
            return None  # none yet
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise StateError(f"cannot read the saved rollout {path}: {reason}") from None
        if not isinstance(loaded, dict):
            raise StateError(f"cannot read the saved rollout {path}: not a JSON object")
        journal = _read_journal(self.directory / _JOURNAL_FILE, loaded.pop(_JOURNAL_ID, None))
        return {**loaded, "journal": journal} if journal else loaded

    def save_rollout(self, doc: Mapping[str, Any]) -> None:
        journal_id = secrets.token_hex(8)
        try:
            text = json.dumps({**doc, _JOURNAL_ID: journal_id}, separators=(",", ":"))
            self._write(self.directory / _ROLLOUT_FILE, text + "\n")
            self._journal_id = journal_id
            self._journal.close()
            (self.directory / _JOURNAL_FILE).unlink(missing_ok=True)
        except (OSError, TypeError, ValueError) as exc:
            raise self._rollout_error(exc) from None

    def append_rollout(self, entry: Mapping[str, Any]) -> None:
        """Journal ``entry`` after the document this store saved last (one short write)."""
        if self._journal_id is None:
            raise StateError(f"no rollout saved in {self.directory} to journal after")
        line = json.dumps({"id": self._journal_id, "entry": entry}, separators=(",", ":"))
        try:
            self._journal.write((line + "\n").encode())
        except OSError as exc:
            raise self._rollout_error(exc) from None

    def _rollout_error(self, exc: Exception) -> StateError:
        reason = getattr(exc, "strerror", None) or str(exc)
        return StateError(f"cannot write the rollout state in {self.directory}: {reason}")


class _AppendOnly:
    """A file written one line at a time, each line one ``write``, kept open between lines:
    a pass writes two or three lines per device, and opening the file for each was a third
    of their cost."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def write(self, data: bytes) -> int:
        """The bytes written; OSError closes the file (the next line opens it afresh)."""
        try:
            if self._fd is None:
                self._fd = os.open(self.path, _APPEND, 0o600)
            return os.write(self._fd, data)
        except OSError:
            self.close()
            raise

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


def _read_journal(path: Path, journal_id: object) -> list[Any]:
    """The entries journalled after the document ``journal_id`` (a torn last line is skipped)."""
    try:
        lines = path.read_bytes().splitlines()
    except OSError:
        return []
    entries = []
    for line in lines:
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if isinstance(item, dict) and item.get("id") == journal_id and "entry" in item:
            entries.append(item["entry"])
    return entries


def _read_record(path: Path, device: str) -> tuple[dict[str, Any] | None, str | None]:
    """The record of ``device`` in ``path`` (syncd 0.1's file per device), or None and why
    it is damaged (why: None when the file is missing)."""
    try:
        loaded = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"unreadable: {exc.strerror or exc}"
    except ValueError:
        return None, "not JSON"
    problem = record_log.record_problem(loaded, device)
    if problem is not None:
        return None, problem
    return record_log.sound_record(loaded), None


#: Names a temporary file apart from every other this process writes; the pid parts
#: it from other processes'.
_TEMPORARY = itertools.count()
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def replace_file(path: Path, content: str | bytes) -> None:
    """Write ``content`` to a new private file (mode 0600) beside ``path``, then rename it
    over ``path``: a crash at any point leaves the old file or the new one whole.

    Plain ``os`` calls (a state file per device is written at each change: a
    pass over a fleet writes thousands): ``tempfile``'s random names and a text
    wrapper cost as much again as the writing.
    """
    tmp = os.path.join(os.path.dirname(path), f".tmp-{os.getpid()}-{next(_TEMPORARY)}")
    try:
        fd = os.open(tmp, _CREATE, 0o600)
        try:
            data = memoryview(content.encode() if isinstance(content, str) else content)
            while data:
                data = data[os.write(fd, data) :]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
