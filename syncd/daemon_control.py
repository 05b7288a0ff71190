"""The running daemon's side of the control socket (:mod:`syncd.control`).

The socket server calls :class:`DaemonControl` in its own threads. ``status``
answers from the snapshot the event loop replaces whole once a second; the
actions run on the event loop (where every other piece of daemon state lives)
and their answer is waited for here.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["DaemonControl"]

T = TypeVar("T")


class DaemonControl:
    """:class:`syncd.control.ControlHandlers` for a daemon whose state lives on ``loop``."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        snapshot: Callable[[], dict[str, Any]],
        pause: Callable[[], str],
        resume: Callable[[], str],
        resend: Callable[[str], str],
        timeout: float = 10.0,
    ) -> None:
        self._loop = loop
        self._snapshot = snapshot
        self._pause = pause
        self._resume = resume
        self._resend = resend
        self._timeout = timeout

    def _on_loop(self, action: Callable[[], T]) -> T:
        """Run ``action`` on the event loop; its result, or its exception raised here."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(action())
            except Exception as exc:
                future.set_exception(exc)

        self._loop.call_soon_threadsafe(run)
        try:
            return future.result(self._timeout)
        except concurrent.futures.TimeoutError:
            raise ValueError(f"the daemon did not act within {self._timeout:g} s") from None

    def status(self) -> dict[str, Any]:
        return self._snapshot()

    def pause(self) -> str:
        return self._on_loop(self._pause)

    def resume(self) -> str:
        return self._on_loop(self._resume)

    def resend_passwords(self, device: str) -> str:
        return self._on_loop(lambda: self._resend(device))
