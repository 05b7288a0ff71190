"""The daemon's periodic tasks: the heartbeat and the backstop reload.

The heartbeat turns once a tick (a second, or half the systemd watchdog
interval if that is shorter): it shows ``/healthz`` that the event loop turns,
refreshes the STATUS line and the status snapshot, and pings the watchdog.
The backstop reloads the desired tree every :data:`BACKSTOP_RELOAD` seconds,
whether or not a file event arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from syncd.daemon_control import StatusBoard
from syncd.notify import Notifier

if TYPE_CHECKING:  # prometheus-client is imported only where metrics are served
    from syncd.metrics import Metrics

__all__ = ["backstop", "heartbeat"]

#: Full reloads happen at least this often even if no file event arrives.
BACKSTOP_RELOAD = 30.0


async def heartbeat(
    stopping: asyncio.Event, *, board: StatusBoard, notifier: Notifier, metrics: Metrics
) -> None:
    """Until ``stopping``: bump the heartbeat, update the board, ping the watchdog when due."""
    interval = notifier.watchdog_interval()
    tick = min(interval, 1.0) if interval else 1.0
    last_ping = 0.0
    while not stopping.is_set():
        now = time.monotonic()
        metrics.heartbeat = now
        board.update()  # once a tick: a summary costs a walk over the fleet
        if interval and now - last_ping >= interval:
            notifier.watchdog()
            last_ping = now
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), tick)


async def backstop(stopping: asyncio.Event, reload: Callable[[], Awaitable[None]]) -> None:
    """Until ``stopping``: ``reload`` every :data:`BACKSTOP_RELOAD` seconds."""
    while not stopping.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), BACKSTOP_RELOAD)
        if not stopping.is_set():
            await reload()
