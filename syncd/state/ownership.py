"""Whose files the state directory holds: one user's, the daemon's.

Under systemd's ``DynamicUser=`` the daemon runs as a user of its own, and the
state directory belongs to it. An operator's command run from a root shell on
the same state dir (``syncd apply``, ``syncd rollout pause`` with no daemon
running) writes files there as root, mode 0600: the daemon, started again,
could not read them — a pause it cannot read is a pause it does not keep. So:

- a process running as root in a state dir another user owns hands every file
  it leaves there to that user at exit (:func:`hand_back_at_exit`);
- a process that finds a file there it cannot read and write refuses the state
  dir with one sentence naming the file and the fix (:func:`unusable_file`),
  as SPEC 6 makes an unusable state dir a start-up error.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["hand_back_at_exit", "unusable_file"]

#: State dirs this process hands back at exit (registered once each).
_registered: set[Path] = set()


def _foreign_owner(directory: Path) -> tuple[int, int] | None:
    """The owner of ``directory`` when this process is root and it is not: its files go to them."""
    if os.geteuid() != 0:
        return None
    try:
        info = os.stat(directory)
    except OSError:
        return None
    return None if info.st_uid == 0 else (info.st_uid, info.st_gid)


def _entries(directory: Path) -> Iterator[Path]:
    for root, dirs, files in os.walk(directory):
        for name in (*dirs, *files):
            yield Path(root, name)


def hand_back(directory: Path) -> None:
    """Give every entry of ``directory`` owned by another user to the directory's owner
    (when this process is root and the directory is not root's)."""
    owner = _foreign_owner(directory)
    if owner is None:
        return
    uid, gid = owner
    for path in _entries(directory):
        try:
            if os.lstat(path).st_uid != uid:
                os.chown(path, uid, gid, follow_symlinks=False)
        except OSError:
            pass  # gone meanwhile, or a file system that keeps no owners


def hand_back_at_exit(directory: Path) -> None:
    """:func:`hand_back` ``directory`` when this process exits (a no-op unless root in a
    directory another user owns)."""
    resolved = directory.resolve()
    if resolved in _registered or _foreign_owner(resolved) is None:
        return
    _registered.add(resolved)
    atexit.register(hand_back, resolved)


def unusable_file(directory: Path) -> str | None:
    """One sentence naming the first file of ``directory`` this process cannot read and
    write (None when all can be), with whose it is and how to give it back."""
    me = os.geteuid()
    for path in _entries(directory):
        if os.access(path, os.R_OK | os.W_OK, follow_symlinks=False):
            continue
        try:
            owner = os.lstat(path).st_uid
        except OSError:
            continue  # gone meanwhile
        if path.is_symlink():
            continue
        return (
            f"{path} cannot be read and written by this user (uid {me}; the file belongs to "
            f"uid {owner}): a command run as another user left it; give the state dir back "
            f"to the daemon's user (chown -R {me} {directory}), or run commands as that user"
        )
    return None
