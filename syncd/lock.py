"""One ``syncd run`` or ``syncd apply`` per state dir: an exclusive ``flock`` on ``STATE_DIR/lock``.

The holder writes its PID into the file so that a second process can name
it. The kernel drops the lock when the holder dies, however it dies, so a
lock left by a killed process never blocks (the stale PID in the file is
simply overwritten).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["LOCK_FILE", "StateDirLocked", "hold_state_lock", "state_lock_error"]

LOCK_FILE = "lock"


class StateDirLocked(Exception):
    """Another process holds the state dir: one sentence naming its PID."""


@contextlib.contextmanager
def hold_state_lock(state_dir: Path) -> Iterator[None]:
    """Hold the state dir's lock for the ``with`` block; :class:`StateDirLocked` if taken.

    An ``OSError`` (no such dir and it cannot be made, no permission) is left
    to the caller, which reports an unusable state dir as it always did.
    """
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = state_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            raise StateDirLocked(
                f"the state dir {state_dir} is in use by another syncd (PID {holder}); "
                "only one `syncd run` or `syncd apply` may use it at a time"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the last descriptor releases the lock


def state_lock_error(state_dir: Path, exc: StateDirLocked | OSError) -> str:
    """The sentence for a lock that could not be taken."""
    if isinstance(exc, StateDirLocked):
        return str(exc)
    reason = exc.strerror or str(exc)
    return f"state directory {state_dir} is not usable: {reason}"
