"""The entry point of ``syncd run``: the state dir's lock, the daemon's event loop, a fatal error.

:func:`run_daemon` holds the state dir's lock while :class:`~syncd.daemon.Daemon`
serves; a start-up that fails (the lock taken, a :class:`~syncd.startup.StartupError`)
ends with the ``daemon.failed`` event and one sentence, exit status 1.
"""

from __future__ import annotations

import faulthandler
import signal
import sys
from collections.abc import Callable, Sequence
from types import FrameType

from syncd import daemon_events, loop
from syncd.command_errors import report_error
from syncd.daemon import Daemon
from syncd.lock import StateDirLocked, StateLock, state_lock_error
from syncd.logs import get_logger
from syncd.settings import Settings
from syncd.startup import StartupError, check_desired_dir
from syncd.streams import same_destination

__all__ = ["run_daemon"]


def run_daemon(
    settings: Settings,
    *,
    devices: Sequence[str] = (),
    reread: Callable[[], Settings] | None = None,
) -> int:
    """Entry point of ``syncd run``: 0 after SIGTERM/SIGINT, 1 on a fatal start-up error.

    ``reread`` reads the settings again as they were read for ``settings`` (on SIGHUP).
    """

    async def main() -> int:
        daemon = Daemon(settings, devices=devices, reread=reread)
        return await daemon.run()

    signal.signal(signal.SIGUSR1, _dump_stacks)
    try:
        check_desired_dir(settings.desired_dir)  # before the state dir is made for nothing
        lock = StateLock.acquire(settings.state_dir)
    except StartupError as exc:
        return _failed(str(exc))
    except (StateDirLocked, OSError) as exc:
        return _failed(state_lock_error(settings.state_dir, exc))
    with lock:
        try:
            return loop.run(main())
        except StartupError as exc:
            return _failed(str(exc))


def _dump_stacks(signum: int, frame: FrameType | None) -> None:
    """``kill -USR1 PID``, for a daemon that seems stuck: every thread's stack to stderr
    (journald), and the daemon goes on.

    A Python-level handler, so the dump runs holding the GIL: ``faulthandler.register``
    walks the other threads from inside the C signal handler, while they may be starting
    or ending, and once in many runs that crashed the daemon it was asked to look at.
    """
    faulthandler.dump_traceback(file=sys.stderr, all_threads=True)


def _failed(message: str) -> int:
    """A fatal start-up error: the ``daemon.failed`` event (stdout, the log) and the sentence
    on stderr, once when both go to one place (a terminal, ``2>&1``, journald); exit status 1."""
    daemon_events.daemon_failed(get_logger(), error=message)
    if not same_destination(sys.stdout, sys.stderr):
        report_error(message, stream=sys.stderr)
    return 1
