"""Where the fleet stands: the values behind ``syncd status``, ``/status`` and the page.

Pure: the daemon builds a :class:`FleetStatus` from what it saw (last outcome,
last error sentence, registration); this module turns it into SPEC section 10's
JSON and into text for a 100-column terminal. The text form works from the
JSON as well, which is what ``syncd status`` receives over the control socket.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, get_args

from syncd.history import format_time, parse_time

__all__ = [
    "STATES",
    "WORST_FIRST",
    "ClusterSummary",
    "DeviceState",
    "DeviceStatus",
    "FleetStatus",
    "InvalidFile",
    "RolloutState",
    "RolloutSummary",
    "WindowStatus",
    "device_from_json",
    "device_json",
    "format_age",
    "format_status",
    "short_revision",
    "sort_devices",
    "status_from_json",
    "status_json",
    "summary_counts",
    "summary_text",
]

DeviceState = Literal[
    "in_sync", "changing", "waiting", "failed", "unreachable", "drifted", "suspended", "unknown"
]
RolloutState = Literal["none", "running", "paused", "halted", "completed"]
#: Every state, in the order of SPEC section 10 (and of the summary's keys).
STATES: tuple[str, ...] = get_args(DeviceState)
#: The order devices are listed in: what needs a look first.
WORST_FIRST: tuple[str, ...] = (
    "failed", "unreachable", "drifted", "changing", "waiting", "unknown", "suspended", "in_sync",
)  # fmt: skip
_RANK = {state: rank for rank, state in enumerate(WORST_FIRST)}


@dataclass(frozen=True)
class DeviceStatus:
    """One device in SPEC section 10's status; its fields are the JSON's keys, in order."""

    device: str
    url: str
    mode: str
    state: DeviceState = "unknown"
    wave: str | None = None
    #: The revision last applied to the device.
    revision: str | None = None
    #: When the device was last reconciled (read), whatever the outcome.
    last_sync: datetime | None = None
    #: When syncd last changed it (a PUT accepted).
    last_change: datetime | None = None
    #: One sentence: the last error, or what it waits for.
    message: str | None = None
    #: Per account: registered at the last read, or None when not known.
    accounts: tuple[tuple[int, bool | None], ...] = ()
    owner: str | None = None


@dataclass(frozen=True)
class RolloutSummary:
    revision: str | None = None
    state: RolloutState = "none"
    wave: str | None = None
    failed: tuple[str, ...] = ()


@dataclass(frozen=True)
class ClusterSummary:
    """A cluster node's view of the cluster: its live members, and the leader (if any)."""

    members: tuple[str, ...] = ()
    leader: str | None = None


@dataclass(frozen=True)
class WindowStatus:
    open: bool = True
    next_open: datetime | None = None


@dataclass(frozen=True)
class InvalidFile:
    file: str
    line: int | None
    error: str


@dataclass(frozen=True)
class FleetStatus:
    revision: str
    node: str
    rollout: RolloutSummary = field(default_factory=RolloutSummary)
    window: WindowStatus = field(default_factory=WindowStatus)
    devices: tuple[DeviceStatus, ...] = ()
    invalid_files: tuple[InvalidFile, ...] = ()
    #: On a cluster node (SPEC 11), the members and the leader; None standalone.
    cluster: ClusterSummary | None = None


def _time(moment: datetime | None) -> str | None:
    return None if moment is None else format_time(moment)


def sort_devices(devices: Sequence[DeviceStatus]) -> list[DeviceStatus]:
    """Worst state first, then by name."""
    return sorted(devices, key=lambda d: (_RANK.get(d.state, len(_RANK)), d.device))


def summary_counts(devices: Sequence[DeviceStatus]) -> dict[str, int]:
    """``devices`` and one count per state, every state present."""
    counts = {"devices": len(devices), **dict.fromkeys(STATES, 0)}
    for device in devices:
        counts[device.state] += 1
    return counts


def device_json(device: DeviceStatus) -> dict[str, Any]:
    """The device's fields under their own names, times as text and accounts as objects."""
    return {
        **vars(device),
        "last_sync": _time(device.last_sync),
        "last_change": _time(device.last_change),
        "accounts": [{"account": n, "registered": r} for n, r in device.accounts],
    }


def status_json(fleet: FleetStatus) -> dict[str, Any]:
    """SPEC section 10's ``syncd status --json`` object, devices worst first; on a cluster
    node also ``cluster``: its live ``members`` and the ``leader``."""
    data = {
        "revision": fleet.revision,
        "node": fleet.node,
        "rollout": {
            "revision": fleet.rollout.revision,
            "state": fleet.rollout.state,
            "wave": fleet.rollout.wave,
            "failed": list(fleet.rollout.failed),
        },
        "window": {"open": fleet.window.open, "next_open": _time(fleet.window.next_open)},
        "summary": summary_counts(fleet.devices),
        "devices": [device_json(d) for d in sort_devices(fleet.devices)],
        "invalid_files": [
            {"file": f.file, "line": f.line, "error": f.error} for f in fleet.invalid_files
        ],
    }
    if fleet.cluster is not None:
        cluster = fleet.cluster
        data["cluster"] = {"members": list(cluster.members), "leader": cluster.leader}
    return data


def _opt_time(value: Any) -> datetime | None:
    return None if value is None else parse_time(str(value))


def status_from_json(data: Mapping[str, Any]) -> FleetStatus:
    """Parse the JSON of :func:`status_json` back; KeyError/ValueError when it is not that."""
    rollout = data["rollout"]
    window = data["window"]
    cluster = data.get("cluster")
    return FleetStatus(
        cluster=None
        if cluster is None
        else ClusterSummary(tuple(cluster["members"]), cluster["leader"]),
        revision=data["revision"],
        node=data["node"],
        rollout=RolloutSummary(
            revision=rollout["revision"],
            state=rollout["state"],
            wave=rollout["wave"],
            failed=tuple(rollout["failed"]),
        ),
        window=WindowStatus(open=bool(window["open"]), next_open=_opt_time(window["next_open"])),
        devices=tuple(device_from_json(d) for d in data["devices"]),
        invalid_files=tuple(
            InvalidFile(f["file"], f["line"], f["error"]) for f in data["invalid_files"]
        ),
    )


def device_from_json(d: Mapping[str, Any]) -> DeviceStatus:
    """One device of :func:`status_json`'s ``devices``; KeyError, ValueError or TypeError if not."""
    return DeviceStatus(
        device=d["device"],
        url=d["url"],
        mode=d["mode"],
        state=d["state"],
        wave=d["wave"],
        revision=d["revision"],
        last_sync=_opt_time(d["last_sync"]),
        last_change=_opt_time(d["last_change"]),
        message=d["message"],
        accounts=tuple((a["account"], a["registered"]) for a in d["accounts"]),
        owner=d["owner"],
    )


def format_age(seconds: float | None) -> str:
    """``12s``, ``5m``, ``3h``, ``2d``; ``-`` when never."""
    if seconds is None:
        return "-"
    seconds = max(seconds, 0)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def short_revision(revision: str | None) -> str:
    """A commit as its first 12 digits; a ``tree:`` revision whole (it has 12 already)."""
    if revision is None:
        return "-"
    return revision if revision.startswith("tree:") else revision[:12]


def summary_text(summary: Mapping[str, int]) -> str:
    """``20 devices: 17 in_sync, 2 failed, 1 unreachable`` (states with none left out)."""
    parts = [f"{summary.get(s, 0)} {s}" for s in WORST_FIRST if summary.get(s, 0)]
    total = summary.get("devices", 0)
    head = f"{total} device" + ("" if total == 1 else "s")
    return head + (": " + ", ".join(parts) if parts else "")


def _line(text: Any) -> str:
    """One printable line: whitespace runs become one space, control characters ``?``."""
    flat = " ".join(str(text).split())
    return "".join(ch if ch.isprintable() else "?" for ch in flat)


def _fit(text: str, width: int) -> str:
    if width <= 0:
        return ""
    return text if len(text) <= width else text[: width - 1] + "…"


def format_status(
    fleet: FleetStatus | Mapping[str, Any], now: datetime, *, width: int = 100
) -> str:
    """The text of ``syncd status``: a header, then one line per device, worst first.

    ``now`` is timezone-aware (ages are counted from it).
    """
    data = status_json(fleet) if isinstance(fleet, FleetStatus) else fleet
    lines = [_fit(line, width) for line in _header(data, width)]
    devices = data["devices"]
    if not devices:
        return "\n".join([*lines, "", "no devices"]) + "\n"
    # In a cluster each device's row names the node that owns it (SPEC 11).
    clustered = any(d["owner"] for d in devices)
    rows = [_cells(d, now, owner=clustered) for d in devices]
    head = (
        "DEVICE",
        "STATE",
        "WAVE",
        "REVISION",
        "AGE",
        *(("OWNER",) if clustered else ()),
        "MESSAGE",
    )
    caps = (28, 11, 12, 17, 4, *((16,) if clustered else ()))
    widths = [min(max(len(head[i]), *(len(r[i]) for r in rows)), caps[i]) for i in range(len(caps))]
    message_w = width - sum(widths) - 2 * len(widths)
    lines.append("")
    for cells in (head, *rows):
        fixed = "  ".join(_fit(c, w).ljust(w) for c, w in zip(cells[:-1], widths, strict=True))
        lines.append((fixed + "  " + _fit(cells[-1], message_w)).rstrip())
    return "\n".join(lines) + "\n"


def _wrap(prefix: str, text: str, width: int) -> list[str]:
    """``prefix`` + ``text``, broken after its commas onto lines indented like the prefix."""
    lines, current = [], prefix
    for part in text.split(", "):
        if current != prefix and len(current) + 2 + len(part) > width:
            lines.append(current + ",")
            current = " " * len(prefix) + part
        else:
            current = current + part if current == prefix else f"{current}, {part}"
    return [*lines, current]


def _cells(device: Mapping[str, Any], now: datetime, *, owner: bool) -> tuple[str, ...]:
    synced = device["last_sync"]
    age = None if synced is None else (now - parse_time(synced)).total_seconds()
    return (
        _line(device["device"]),
        _line(device["state"]),
        _line(device["wave"] or "-"),
        _line(short_revision(device["revision"])),
        format_age(age),
        *((_line(device["owner"] or "-"),) if owner else ()),
        _line(device["message"] or ""),
    )


def _header(data: Mapping[str, Any], width: int) -> list[str]:
    rollout = data["rollout"]
    window = data["window"]
    lines = [f"revision  {_line(data['revision'])}   node {_line(data['node'])}"]
    cluster = data.get("cluster")
    if cluster is not None:
        members = ", ".join(_line(m) for m in cluster["members"]) or "none live"
        leader = f"leader {_line(cluster['leader'])}" if cluster["leader"] else "no leader"
        lines.append(f"cluster   {members} ({leader})")
    if rollout["state"] != "none":
        text = f"rollout   {rollout['state']} {short_revision(rollout['revision'])}"
        if rollout["wave"]:
            text += f", wave {_line(rollout['wave'])}"
        if rollout["failed"]:
            text += ", failed: " + ", ".join(_line(n) for n in rollout["failed"])
        lines.append(text)
    if window["open"]:
        lines.append("window    open")
    elif window["next_open"]:
        lines.append(f"window    closed, opens {window['next_open']}")
    else:
        lines.append("window    closed")
    lines.extend(_wrap("devices   ", summary_text(data["summary"]), width))
    lines.extend(
        f"invalid   {_line(f['file'])}:{f['line'] or '?'}: {_line(f['error'])}"
        for f in data["invalid_files"]
    )
    return lines
