"""One ``syncd run`` or ``syncd apply`` per state dir: an exclusive ``flock`` on ``STATE_DIR/lock``.

The holder writes its PID into the file so that a second process can name
it. The kernel drops the lock when the holder dies, however it dies, so a
lock left by a killed process never blocks (the stale PID in the file is
simply overwritten).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from syncd.state.ownership import hand_back_at_exit

__all__ = ["LOCK_FILE", "StateDirLocked", "StateLock", "state_lock_error"]

LOCK_FILE = "lock"


class StateDirLocked(Exception):
    """Another process holds the state dir: one sentence naming its PID."""


class StateLock:
    """The held lock of one state dir; :meth:`release` (or process death) lets it go."""

    def __init__(self, state_dir: Path, fd: int) -> None:
        self.state_dir = state_dir
        self._fd: int | None = fd

    def __repr__(self) -> str:
        return f"StateLock({str(self.state_dir)!r})"

    @classmethod
    def acquire(cls, state_dir: Path) -> StateLock:
        """Take the lock now, or raise :class:`StateDirLocked` (``OSError``: an unusable dir)."""
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        hand_back_at_exit(state_dir)  # root in the daemon's dir: the lock file stays the daemon's
        fd = os.open(state_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise StateDirLocked(
                f"the state dir {state_dir} is in use by another syncd (PID {holder}); "
                "only one `syncd run` or `syncd apply` may use it at a time"
            ) from None
        except OSError:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(state_dir, fd)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor releases the lock
            self._fd = None

    def __enter__(self) -> StateLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def state_lock_error(state_dir: Path, exc: StateDirLocked | OSError) -> str:
    """The sentence for a lock that could not be taken."""
    if isinstance(exc, StateDirLocked):
        return str(exc)
    reason = exc.strerror or str(exc)
    if state_dir.exists() and not state_dir.is_dir():  # mkdir says "File exists"
        reason = "not a directory"  # as the read-only opening (plan) says it
    return f"state directory {state_dir} is not usable: {reason}"
