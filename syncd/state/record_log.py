"""Device records as lines of JSON: appended as they change, folded when read (pure; no I/O).

The state dir keeps every device's record in one file, ``devices.jsonl``. A
changed record is appended to it as one line: one short write, where replacing
a file per device (create, write, rename) cost ten times the CPU and blocked
the event loop on the file system's journal for a third of a millisecond at
every PUT. Reading folds the lines in order, so a device's last line is its
record. When the lines outnumber the records (see :func:`rewrite_due`), the
file is rewritten with one line per device.

What a fold makes of a damaged file:

- a last line without its newline was cut short by a process killed while
  writing it: it is left out, as if that last write had not happened;
- a line that is JSON but not a sound record of a device (a value of the wrong
  type) leaves that device with no record from there on, as if syncd had never
  applied anything to it: its managed passwords are due again;
- a line that is not JSON names no device, so no device's record before it can
  be trusted to be its latest: every password recorded before that line is
  taken as not applied (and so sent once more), like a damaged key does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Damage",
    "compacted",
    "fold",
    "record_line",
    "record_problem",
    "rewrite_due",
    "sound_record",
]

#: Keys of a device record whose value, when present, must be text (or null).
_TEXT_KEYS = ("fingerprint", "revision", "changed", "unhealthy", "resend", "prior")


@dataclass(frozen=True)
class Damage:
    """A damaged line: its number (from 1), the device it is about (None when it names
    none), and why."""

    line: int
    device: str | None
    why: str


@dataclass
class Folded:
    """The records a file's lines make, and what was wrong with them."""

    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    damage: list[Damage] = field(default_factory=list)
    #: Whole lines read (the measure of when to rewrite the file).
    lines: int = 0
    #: The last line had no newline (a write cut short) and was left out.
    torn: bool = False


def record_problem(loaded: object, device: str | None = None) -> str | None:
    """What makes ``loaded`` not a sound device record (of ``device``, when given), or None."""
    if not isinstance(loaded, dict):
        return "not a JSON object"
    named = loaded.get("device")
    if not isinstance(named, str):
        return "no device name"
    if device is not None and named != device:
        return f"the record of device {named!r}"
    for key in ("passwords", "targets"):
        value = loaded.get(key, {})
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            return f"{key!r} not an object of text values"
    for key in _TEXT_KEYS:
        if not isinstance(loaded.get(key), str | None):
            return f"{key!r} not text"
    if not isinstance(loaded.get("forgotten", False), bool):
        return "'forgotten' not true or false"
    if not isinstance(loaded.get("put"), dict | None):
        return "'put' not an object"
    return None


def sound_record(loaded: dict[str, Any]) -> dict[str, Any]:
    """A sound record as the store keeps it: every key it reads is present."""
    record: dict[str, Any] = {"fingerprint": None, **loaded}
    for key in ("passwords", "targets"):
        record.setdefault(key, {})
    return record


def fold(data: bytes, base: Mapping[str, dict[str, Any]] | None = None) -> Folded:
    """The records ``data`` (the file's bytes) leaves, over ``base`` (older records)."""
    folded = Folded(records=dict(base or {}))
    #: The line each record was last written on (0: from ``base``), and the last damaged
    #: line that names no device: records written before it lose their passwords.
    written_on = dict.fromkeys(folded.records, 0)
    unnamed = -1
    lines = data.split(b"\n")
    if lines[-1]:
        folded.torn = True  # no newline at the end: a write cut short
    for number, line in enumerate(lines[:-1], start=1):
        folded.lines += 1
        if not line.strip():
            continue
        try:
            loaded = json.loads(line)
        except ValueError:
            folded.damage.append(Damage(number, None, "not JSON"))
            unnamed = number
            continue
        problem = record_problem(loaded)
        if problem is None:
            folded.records[loaded["device"]] = sound_record(loaded)
            written_on[loaded["device"]] = number
            continue
        named = loaded.get("device") if isinstance(loaded, dict) else None
        device = named if isinstance(named, str) else None
        folded.damage.append(Damage(number, device, problem))
        if device is not None:
            folded.records.pop(device, None)  # as if never applied
        else:
            unnamed = number
    for name, record in folded.records.items():
        if written_on[name] < unnamed:  # perhaps not its latest: no password counts as applied
            folded.records[name] = {**record, "passwords": {}, "targets": {}}
    return folded


def record_line(record: Mapping[str, Any]) -> bytes:
    """One record as the line appended for it."""
    return (json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n").encode()


def compacted(records: Mapping[str, Mapping[str, Any]]) -> bytes:
    """The whole file anew: one line per record, by device name."""
    return b"".join(record_line(records[name]) for name in sorted(records))


def rewrite_due(lines: int, records: int) -> bool:
    """Whether a file of ``lines`` lines holding ``records`` records is worth rewriting.

    Once the lines are more than twice the records (and a thousand more), so a
    rewrite, whose cost grows with the records, comes at most once every
    ``records + 1000`` appends: a small, constant share of each.
    """
    return lines > 2 * records + 1000
