"""The operator's commands: ``syncd status``, ``history``, ``passwords resend``, ``rollout``.

``status`` asks the running daemon over its control socket; ``history``
reads the history file (also while the daemon writes it), or in a cluster
the history the nodes keep in etcd; ``passwords resend`` and ``rollout
pause|resume`` go through the daemon when one answers, else act on the state
dir directly. In a cluster nothing falls back to the local state dir, which
the cluster ignores: with no node answering here, or on a node's state dir
without the cluster settings, they refuse (:mod:`syncd.cluster_refusals`).
Each returns its exit status; a user-caused failure is a
:class:`~syncd.commands.CommandError` (one sentence, exit 1).
"""

from __future__ import annotations

import json
import shutil
import sys
import textwrap
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from functools import partial
from pathlib import Path
from typing import Any

from syncd.cluster_refusals import check_not_node_dir, no_node_here
from syncd.command_errors import report_warning
from syncd.commands import EXIT_OK, CommandError, check_local_state_dir, state_dir_missing
from syncd.control import (
    ControlClient,
    ControlError,
    ControlUnavailable,
    NoDaemon,
    default_socket_path,
)
from syncd.history import HistoryLog, HistoryRead, format_history_table, since_start
from syncd.local_state import open_state
from syncd.settings import Settings
from syncd.status import device_from_json, format_status, summary_counts

__all__ = ["history_command", "resend_command", "rollout_command", "status_command"]


def socket_path(settings: Settings) -> Path:
    """The control socket: the ``socket`` setting, else its default."""
    return settings.socket or default_socket_path(settings.state_dir)


def status_command(settings: Settings, *, as_json: bool, devices: Sequence[str] = ()) -> int:
    """Print the running daemon's status (SPEC section 10); no daemon is a CommandError.

    ``devices`` (``--device`` globs) limits it to those devices, the summary counting them.
    """
    try:
        data = ControlClient(socket_path(settings)).status()
    except ControlUnavailable as exc:
        _not_on_node_state(settings, exc, command="syncd status")
        raise CommandError(str(exc)) from None
    except ControlError as exc:
        raise CommandError(str(exc)) from None
    if devices:
        try:
            shown = [d for d in data["devices"] if _matches(d["device"], patterns=devices)]
            counts = summary_counts([device_from_json(d) for d in shown])
        except (KeyError, TypeError, ValueError):
            raise _unreadable(settings) from None
        data = {**data, "devices": shown, "summary": counts}
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return EXIT_OK
    width = min(shutil.get_terminal_size((100, 24)).columns, 100)
    try:
        text = format_status(data, datetime.now(UTC), width=max(width, 60))
    except (KeyError, TypeError, ValueError):
        raise _unreadable(settings) from None
    sys.stdout.write(text)
    return EXIT_OK


def _unreadable(settings: Settings) -> CommandError:
    return CommandError(
        f"the daemon on {socket_path(settings)} answered a status this syncd cannot read"
    )


def history_command(
    settings: Settings, *, devices: Sequence[str], since: str | None, as_json: bool
) -> int:
    """Print what syncd changed, oldest first; skipped lines are warned about on stderr.

    A ``since`` that is not a duration is one sentence and exit 1 (issue 12 asks
    for that, where a flag argparse refuses exits 2).
    """
    start = None
    if since is not None:
        try:
            start = since_start(since, datetime.now(UTC))
        except ValueError as exc:
            raise CommandError(f"--since {exc}") from None
    keep = partial(_matches, patterns=devices) if devices else None
    read = _read_history(settings, since=start, keep=keep)
    for warning in read.warnings:
        report_warning(warning, event="history.skipped")
    if as_json:
        _write_json_array(e.as_dict() for e in read.entries)
    else:
        sys.stdout.write(format_history_table(read.entries))
    return EXIT_OK


def _write_json_array(items: Iterable[Any]) -> None:
    """``json.dumps(list(items), indent=2)``, written an item at a time: the whole
    document at once took 0.8 GB for the history of four fleet-wide changes."""
    out, opening = sys.stdout, "["
    for item in items:
        out.write(opening + "\n" + textwrap.indent(json.dumps(item, indent=2), "  "))
        opening = ","
    out.write("\n]\n" if opening == "," else "[]\n")


def _read_history(
    settings: Settings, *, since: datetime | None, keep: Callable[[Any], bool] | None
) -> HistoryRead:
    """The cluster's history from etcd when the settings name a cluster, else the state dir's."""
    if settings.cluster_endpoints:
        from syncd.cluster import ClusterError
        from syncd.cluster.history import read_cluster_history

        try:
            return read_cluster_history(settings, since=since, keep=keep)
        except ClusterError as exc:
            raise CommandError(str(exc)) from None
    check_not_node_dir(settings)
    if not settings.state_dir.is_dir():
        raise CommandError(state_dir_missing(settings.state_dir))
    return HistoryLog.in_state_dir(settings.state_dir).read(since=since, keep=keep)


def _matches(name: object, *, patterns: Sequence[str]) -> bool:
    return isinstance(name, str) and any(fnmatchcase(name, p) for p in patterns)


def resend_command(settings: Settings, *, device: str) -> int:
    """Mark ``device``'s passwords due again: through the daemon, or on the state when none runs."""
    try:
        message = ControlClient(socket_path(settings)).resend(device)
    except ControlUnavailable as exc:
        command = f"syncd passwords resend {device}"
        _not_on_node_state(settings, exc, command=command, device=device)
    except ControlError as exc:
        raise CommandError(str(exc)) from None
    else:
        print(message)
        return EXIT_OK
    _check_managed(settings.desired_dir, device)
    check_local_state_dir(settings.state_dir, socket_path(settings))
    if not settings.state_dir.is_dir():
        print(f"no state in {settings.state_dir}: every password of {device} is due anyway")
        return EXIT_OK
    from syncd.lock import StateDirLocked, StateLock, state_lock_error

    try:
        lock = StateLock.acquire(settings.state_dir)  # a syncd apply may be writing it
    except (StateDirLocked, OSError) as exc:
        raise CommandError(state_lock_error(settings.state_dir, exc)) from None
    with lock:
        open_state(settings).forget_passwords(device, operator=True)
    print(
        f"no daemon answers on {socket_path(settings)}: the passwords of {device} are marked "
        f"due in {settings.state_dir}; they are sent at its next reconcile"
    )
    return EXIT_OK


def _check_managed(desired_dir: Path, device: str) -> None:
    """A CommandError unless ``desired_dir`` has a file for ``device`` (as the daemon checks)."""
    from syncd.desired import Loader, name_from_path

    if not desired_dir.is_dir():
        return  # nothing to check against: the state alone is changed
    desired = Loader(desired_dir).load()
    names = set(desired.devices) | {name_from_path(p.file) for p in desired.problems}
    if device not in names:
        raise CommandError(f"no device {device} in {desired_dir}")


def rollout_command(settings: Settings, *, action: str) -> int:
    """``syncd rollout pause|resume``: through the daemon's socket, else on the state dir."""
    from syncd.rollout_control import on_state_dir

    path = socket_path(settings)
    client = ControlClient(path)
    try:
        message = client.pause() if action == "pause" else client.resume()
    except ControlUnavailable as exc:
        _not_on_node_state(settings, exc, command=f"syncd rollout {action}")
        message = on_state_dir(settings, action, path)
    except ControlError as exc:
        raise CommandError(str(exc)) from None
    print(message)
    return EXIT_OK


def _not_on_node_state(
    settings: Settings, exc: ControlUnavailable, *, command: str, device: str | None = None
) -> None:
    """No daemon answered: a CommandError unless the state dir is standalone's to act on.

    With the cluster settings nothing here is the cluster's: nothing runs here
    (named where to run it instead), or the node did not answer (``exc``).
    Without them, a cluster node's state dir is refused as such.
    """
    if settings.cluster_endpoints:
        if isinstance(exc, NoDaemon):
            raise no_node_here(settings, socket_path(settings), command=command, device=device)
        raise CommandError(str(exc)) from None
    check_not_node_dir(settings)
