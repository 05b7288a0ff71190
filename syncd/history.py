"""What syncd changed: one JSON line per PUT in ``STATE_DIR/history.jsonl``.

Each line is written and flushed at once, so ``syncd history`` can read the
file while the daemon runs. The file is rotated at 10 MiB, keeping three old
files (``history.jsonl.1`` newest .. ``.3`` oldest). A daemon killed in the
middle of a write leaves a torn last line: readers skip it with a warning, and
the next append starts on a fresh line.

A password never reaches the file: a change of field ``password`` is always
stored as ``{"from": null, "to": "(set)"}``, whatever the caller passes.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, Literal, NamedTuple, Protocol, cast, get_args

from syncd import events

__all__ = [
    "HISTORY_FILE",
    "PASSWORD_SET",
    "HistoryChange",
    "HistoryEntry",
    "HistoryLog",
    "HistoryRead",
    "Result",
    "Trigger",
    "append_entry",
    "collect_entries",
    "format_history_table",
    "format_time",
    "history_changes",
    "oldest_first",
    "parse_duration",
    "parse_time",
    "since_start",
]

HISTORY_FILE = "history.jsonl"
PASSWORD_SET = "(set)"
ROTATE_BYTES = 10 * 1024 * 1024
KEEP_OLD = 3

Trigger = Literal["change", "drift", "revert"]
Result = Literal["succeeded", "failed", "unhealthy", "reverted"]
_TRIGGERS: tuple[str, ...] = get_args(Trigger)
_RESULTS: tuple[str, ...] = get_args(Result)
_SCALARS = (str, int, float, bool, type(None))
#: Read for the last byte (a torn line), appended to, made if missing.
_APPEND = os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)


def format_time(moment: datetime) -> str:
    """ISO 8601 in UTC with a ``Z``, to the millisecond."""
    text = moment.astimezone(UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    """The inverse of :func:`format_time` (any ISO 8601 with an offset or ``Z``)."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"time {text!r} has no time zone")
    return moment.astimezone(UTC)


def _plain(value: Any) -> Any:
    """A value as JSON can hold it; anything unusual (a secret type) as its ``str``."""
    return value if isinstance(value, _SCALARS) else str(value)


@dataclass(frozen=True, slots=True)
class HistoryChange:
    """One field a PUT changed. A password change holds no value, whatever is passed."""

    account: int
    field: str
    old: Any
    new: Any

    def __post_init__(self) -> None:
        if self.field == "password":
            object.__setattr__(self, "old", None)
            object.__setattr__(self, "new", PASSWORD_SET)
        else:
            object.__setattr__(self, "old", _plain(self.old))
            object.__setattr__(self, "new", _plain(self.new))

    def as_dict(self) -> dict[str, Any]:
        return {"account": self.account, "field": self.field, "from": self.old, "to": self.new}


class _PlanChange(Protocol):
    """What :class:`syncd.diff.Change` offers: a field going from ``live`` to ``desired``."""

    @property
    def account(self) -> int: ...
    @property
    def field(self) -> str: ...
    @property
    def live(self) -> Any: ...
    @property
    def desired(self) -> Any: ...


def history_changes(
    changes: Iterable[_PlanChange], *, reverse: bool = False
) -> tuple[HistoryChange, ...]:
    """A plan's changes as history records (``live`` -> ``desired``; ``reverse`` for a revert).

    Passwords become ``(set)``; a revert does not send passwords, so they are dropped there.
    """
    records = []
    for change in changes:
        if reverse and change.field == "password":
            continue
        old, new = (change.desired, change.live) if reverse else (change.live, change.desired)
        records.append(HistoryChange(change.account, change.field, old, new))
    return tuple(records)


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One PUT, as SPEC section 10 lists its fields."""

    time: datetime
    device: str
    revision: str
    trigger: Trigger
    result: Result
    changes: tuple[HistoryChange, ...] = ()
    wave: str | None = None
    error: str | None = None

    def __post_init__(self) -> None:
        if self.trigger not in _TRIGGERS:
            raise ValueError(f"history trigger {self.trigger!r} is not one of {_TRIGGERS}")
        if self.result not in _RESULTS:
            raise ValueError(f"history result {self.result!r} is not one of {_RESULTS}")
        if self.time.tzinfo is None:
            raise ValueError("history time must be timezone-aware")
        object.__setattr__(self, "changes", tuple(self.changes))

    def matches(self, *, device: str | None, since: datetime | None) -> bool:
        """Whether ``syncd history --device/--since`` keeps this entry."""
        return (device is None or self.device == device) and (since is None or self.time >= since)

    def as_dict(self) -> dict[str, Any]:
        return {
            "time": format_time(self.time),
            "device": self.device,
            "revision": self.revision,
            "trigger": self.trigger,
            "wave": self.wave,
            "result": self.result,
            "changes": [c.as_dict() for c in self.changes],
            "error": self.error,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HistoryEntry:
        """Parse one stored line's object; raises ValueError/KeyError/TypeError when malformed."""
        changes = tuple(
            HistoryChange(int(c["account"]), str(c["field"]), c["from"], c["to"])
            for c in data["changes"]
        )
        return cls(
            time=parse_time(str(data["time"])),
            device=str(data["device"]),
            revision=str(data["revision"]),
            trigger=cast(Trigger, data["trigger"]),
            result=cast(Result, data["result"]),
            changes=changes,
            wave=None if data.get("wave") is None else str(data["wave"]),
            error=None if data.get("error") is None else str(data["error"]),
        )


#: Whether ``syncd history`` keeps a device's entries (its ``--device`` globs).
Keep = Callable[[Any], bool]


class HistoryRead(NamedTuple):
    """What :meth:`HistoryLog.read` found: entries oldest first, and lines it had to skip."""

    entries: list[HistoryEntry]
    warnings: list[str]


@dataclass
class HistoryLog:
    """The history file and its rotated predecessors. Appends come from one process."""

    path: Path
    rotate_bytes: int = ROTATE_BYTES
    keep: int = KEEP_OLD
    _files: tuple[Path, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        old = [self.path.with_name(f"{self.path.name}.{n}") for n in range(self.keep, 0, -1)]
        self._files = (*old, self.path)

    @classmethod
    def in_state_dir(cls, state_dir: Path) -> HistoryLog:
        return cls(state_dir / HISTORY_FILE)

    def append(self, entry: HistoryEntry) -> None:
        """Write one line and flush it; rotate first if it would pass the size limit.

        Raises OSError when the file cannot be written (the caller logs it).
        """
        line = (json.dumps(entry.as_dict(), ensure_ascii=False) + "\n").encode()
        fd = os.open(self.path, _APPEND, 0o600)
        try:
            size = os.fstat(fd).st_size
            if size and size + len(line) > self.rotate_bytes:
                os.close(fd)
                fd = -1
                self._rotate()
                fd = os.open(self.path, _APPEND, 0o600)
                size = 0
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = b"\n" + line  # after a torn line: start afresh
            os.write(fd, line)
        finally:
            if fd >= 0:
                os.close(fd)

    def _rotate(self) -> None:
        self._files[0].unlink(missing_ok=True)
        for older, newer in zip(self._files, self._files[1:], strict=False):
            if newer.exists():
                newer.replace(older)

    def read(
        self,
        *,
        device: str | None = None,
        since: datetime | None = None,
        keep: Keep | None = None,
    ) -> HistoryRead:
        """Entries oldest first across the rotated files, filtered (``keep``: device names).

        Oldest by each entry's time (its PUT's), not by the order written: a
        rollout's entry is written once the device's health check ends, after
        the PUTs of other devices made meanwhile. A line that is not a whole
        entry (a torn last line) is skipped with a warning naming file and line.
        """
        found = HistoryRead([], [])
        for path in self._files:
            try:
                raw = path.read_bytes()
            except FileNotFoundError:
                continue
            except OSError as exc:
                found.warnings.append(f"cannot read {path}: {exc.strerror or exc}")
                continue
            lines = ((n, line) for n, line in enumerate(raw.splitlines(), start=1) if line.strip())
            torn = partial(_torn_line, path)
            collect_entries(lines, torn, device=device, since=since, keep=keep, into=found)
        return oldest_first(found)


def append_entry(
    append: Callable[[HistoryEntry], None] | None, entry: HistoryEntry, log: Any
) -> None:
    """Hand ``entry`` to a history's ``append`` (if any); an OSError is logged, not raised."""
    if append is None:
        return
    try:
        append(entry)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        events.state_write_failed(
            log.bind(device=entry.device), error=f"cannot append to the history: {reason}"
        )


def oldest_first(found: HistoryRead) -> HistoryRead:
    """``found`` by each entry's time: entries are written when their outcome is known
    (after a health check), and a cluster's nodes append concurrently."""
    found.entries.sort(key=lambda entry: entry.time)  # stable: equal times keep their order
    return found


def _torn_line(path: Path, number: int) -> str:
    return f"{path}:{number}: skipped a line that is not a whole entry"


def collect_entries(
    docs: Iterable[tuple[int, bytes | dict[str, Any]]],
    skipped: Callable[[int], str],
    *,
    device: str | None,
    since: datetime | None,
    into: HistoryRead,
    keep: Keep | None = None,
) -> None:
    """Add to ``into`` those of the numbered ``docs`` (JSON lines or objects) the filter keeps.

    A doc that is not a whole entry is skipped with the warning ``skipped(number)``.
    A device ``keep`` refuses is passed over before its entry is built (a history of
    a fleet-wide change per day is hundreds of thousands of entries).
    """
    for number, doc in docs:
        try:
            data = json.loads(doc) if isinstance(doc, bytes) else doc
            if keep is not None and not keep(data["device"]):
                continue
            entry = HistoryEntry.from_dict(data)
        except (ValueError, KeyError, TypeError, AttributeError):
            into.warnings.append(skipped(number))
            continue
        if entry.matches(device=device, since=since):
            into.entries.append(entry)


_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """Seconds in ``90``, ``90s``, ``5m``, ``2h``, ``1d`` (fractions allowed)."""
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ValueError(
            f"{text!r} is not a duration: give seconds or a number with m, h or d, "
            "such as 90, 5m, 2h or 1d"
        )
    seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if not math.isfinite(seconds):
        raise ValueError(f"{text!r} is too long a duration")
    return seconds


def since_start(text: str, now: datetime) -> datetime | None:
    """The start of ``--since TEXT`` before ``now``; None when it reaches before any date
    (``--since 99999999d``: everything). ValueError for what is not a duration."""
    seconds = parse_duration(text)
    try:
        return now - timedelta(seconds=seconds)
    except OverflowError:
        return None


def _summary(change: HistoryChange) -> str:
    return f"{change.account}.{change.field}: {_short(change.old)} -> {_short(change.new)}"


def _short(value: Any) -> str:
    """As the desired files spell it: ``true``, ``""``; nothing for a value not there."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    return '""' if value == "" else _printable(str(value))


def _printable(text: str) -> str:
    """One line, no control characters (names come from files and devices)."""
    return "".join(ch if ch.isprintable() else " " for ch in text)


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def format_history_table(entries: Sequence[HistoryEntry], *, width: int = 100) -> str:
    """A table for people: time, device, revision (12), wave, trigger, result, changes.

    The changes (and the error of a failed PUT) follow on the row when they fit,
    else one per continuation line, so every line fits ``width`` columns.
    """
    if not entries:
        return "no changes recorded\n"
    device_w = min(max(len("DEVICE"), *(len(e.device) for e in entries)), 24)
    trigger_w = max(len("TRIGGER"), *(len(e.trigger) for e in entries))
    result_w = max(len("RESULT"), *(len(e.result) for e in entries))
    wave_w = min(max(len("WAVE"), *(len(e.wave or "-") for e in entries)), 12)
    widths = (20, device_w, 12, wave_w, trigger_w, result_w)
    rest_w = width - sum(widths) - 2 * len(widths)

    def row(cells: Sequence[str], tail: str) -> str:
        padded = [_fit(c, w).ljust(w) for c, w in zip(cells, widths, strict=True)]
        return ("  ".join(padded) + "  " + tail).rstrip()

    lines = [row(("TIME", "DEVICE", "REVISION", "WAVE", "TRIGGER", "RESULT"), "CHANGES")]
    for entry in entries:
        items = [_summary(c) for c in entry.changes]
        if entry.error:
            items.append("error: " + _printable(entry.error))
        joined = ", ".join(items) or "-"
        inline = len(joined) <= rest_w
        stamp = entry.time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        wave = _printable(entry.wave or "-")
        cells = (
            stamp, _printable(entry.device), entry.revision[:12], wave, entry.trigger, entry.result
        )  # fmt: skip
        lines.append(row(cells, joined if inline else ""))
        if not inline:
            lines.extend("    " + _fit(item, width - 4) for item in items)
    return "\n".join(lines) + "\n"
