"""Spread the first load of a large tree over the host's cores.

Reading and validating a device file is pure and independent of every other
(given its ``_defaults.yaml`` chain), and a one-shot command loads each file
once: with more than one core, forked workers build part of the files while
this process builds the rest. Each worker reads the ``_defaults.yaml`` files
it needs itself and sends its results back as bytes. Only from a process that
has no other thread (forking one with threads is unsafe), only for a tree
large enough to repay the fork, and anything wrong with the workers falls
back to loading here.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

__all__ = ["spread"]

#: Below this many files a fork and the transfer cost more than they save.
MIN_ITEMS = 2_000
#: Workers besides this process: one per further core, and few.
MAX_WORKERS = 3

T = TypeVar("T")


def spread(
    items: Sequence[T],
    here: Callable[[Sequence[T]], object],
    away: Callable[[Sequence[T]], bytes],
) -> list[bytes] | None:
    """Run ``here`` on a share of ``items`` in this process and ``away`` on the rest in workers.

    ``away`` must be a module-level function or a ``functools.partial`` of one
    (workers are told its name, not its code). Returns what the workers
    returned; ``None`` when spreading does not pay or is not safe here, or a
    worker failed: the caller builds what is still missing itself.
    """
    workers = min(MAX_WORKERS, _cores() - 1)
    if workers < 1 or len(items) < MIN_ITEMS or threading.active_count() > 1:
        return None
    # Loaded here: a tree that small (every daemon reload, most one-shot commands) never
    # forks, and importing them was a hundredth of a second of every start.
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    if "fork" not in multiprocessing.get_all_start_methods():
        return None
    shares = [items[i :: workers + 1] for i in range(workers + 1)]
    sys.stdout.flush()  # a forked worker flushes its copy of the buffers when it exits
    sys.stderr.flush()
    try:
        pool = ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("fork"), initializer=_worker_start
        )
        with pool:
            futures = [pool.submit(away, share) for share in shares[1:]]
            here(shares[0])
            return [future.result() for future in futures]
    except Exception:
        # No worker (no working semaphores here, a worker killed), or one raised:
        # the caller builds what is still missing, as without workers, and meets
        # any error of its own there.
        return None


def _worker_start() -> None:
    """A worker's signals are not this process's: Ctrl-C is ignored (the pool ends it),
    SIGTERM ends it, and neither reaches the event loop it was forked from."""
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1
