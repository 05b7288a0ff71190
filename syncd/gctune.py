"""The garbage collector's pace for a process that holds a whole fleet.

CPython starts a young-generation collection every 700 container allocations,
and each one that promotes objects edges the costly full collections closer.
Loading 10,000 desired-state files or a pass over 10,000 devices allocates
millions of short-lived containers that reference counting frees anyway;
measured, the default pace was a fifth of loading such a tree. Collections
every 50,000 allocations keep at most that many cyclic leftovers (a few MiB)
alive between collections.

Even at that pace, building a tree that stays (the desired state: some 30
containers per device file) made the collector walk it again and again, and a
middle-generation collection over 300,000 fresh objects took a tenth of a
second: :func:`collector_paused` holds collections off while such a batch is
built. Reference counting still frees everything but cycles meanwhile.

At exit CPython collects once more, over every object still alive: after a
pass over 10,000 devices that walk took 0.37 s of a one-shot command's
time. :func:`spare_exit` freezes what the process holds just before it ends.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["collector_paused", "pace_collector", "spare_exit"]

#: Container allocations between young-generation collections (CPython's default: 700).
_YOUNG_THRESHOLD = 50_000

_lock = threading.Lock()
#: How many callers hold the collector paused, and whether it ran before the first did.
_paused = 0
_was_enabled = False


def pace_collector() -> None:
    """Collect garbage less often than CPython's default; the older generations unchanged."""
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(_YOUNG_THRESHOLD, older, oldest)


@contextmanager
def collector_paused() -> Iterator[None]:
    """No automatic collections inside the block (from any thread); nests, and is thread-safe.

    For building a batch of long-lived values whose allocations would only
    make the collector walk them. The collector runs again, as it was, when
    the last paused block ends.
    """
    global _paused, _was_enabled
    with _lock:
        if _paused == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _paused += 1
    try:
        yield
    finally:
        with _lock:
            _paused -= 1
            if _paused == 0 and _was_enabled:
                gc.enable()


def spare_exit() -> None:
    """The process ends now: its last collections need not walk what it holds.

    Frozen objects are left to the collector's permanent generation; they are
    freed at exit as before (0.37 s spent there at 10,000 devices, 0.03 s frozen).
    """
    gc.freeze()
