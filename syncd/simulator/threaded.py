"""Run a fleet in a background thread, for synchronous tests that drive syncd as a subprocess.

The fleet gets its own event loop in its own thread; the caller's thread keeps
calling the devices' methods, which are thread-safe (each device guards its
state with a lock), so no call has to be marshalled onto the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final, TypedDict

from syncd.simulator.auth import AuthMethod
from syncd.simulator.fields import Firmware
from syncd.simulator.fleet import Fleet

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["FleetOptions", "run_fleet_in_thread"]

_START_SECONDS: Final = 60.0


class FleetOptions(TypedDict, total=False):
    """The keyword arguments of :class:`Fleet`."""

    devices: int
    host: str
    port: int
    tls: bool
    cert_dir: str | Path | None
    auth: AuthMethod
    username: str
    password: str
    firmware: Firmware
    monitor_username: str | None
    monitor_password: str | None
    nonce_lifetime: float
    journal_limit: int
    accounts: int
    pbx: Sequence[str]
    register_delay: float
    latency: float
    nonce_uses: int
    dual_challenge: bool


@contextlib.contextmanager
def run_fleet_in_thread(**options: Unpack[FleetOptions]) -> Iterator[Fleet]:
    """Serve ``Fleet(**options)`` from a background thread for the ``with`` block.

    The fleet is listening when the block starts and closed, ports freed,
    when it ends. Start-up errors (:class:`FleetError`) are raised here.
    """
    fleet = Fleet(**options)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=_run, args=(loop,), name="syncd-simulator", daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(fleet.start(), loop).result(_START_SECONDS)
        try:
            yield fleet
        finally:
            asyncio.run_coroutine_threadsafe(fleet.close(), loop).result(_START_SECONDS)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()


def _run(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
