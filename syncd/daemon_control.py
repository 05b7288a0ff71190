"""The running daemon's side of the control socket (:mod:`syncd.control`) and its status.

:class:`StatusBoard` keeps the STATUS line (sd_notify) and the status snapshot
(SPEC section 10) that the socket, the page and ``/metrics`` read: the event
loop replaces it whole once a tick. The socket server calls
:class:`DaemonControl` in its own threads. ``status`` answers from that
snapshot; the actions (pause, resume, :func:`resend_passwords`) run on the
event loop (where every other piece of daemon state lives) and their answer is
waited for here. :func:`control_server` puts them together.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from syncd.control import ControlServer
from syncd.rollout_role import NotDriving
from syncd.state import StateError, StateStore

if TYPE_CHECKING:
    from syncd.fleet_view import FleetView, RolloutControl
    from syncd.notify import Notifier
    from syncd.reconcile import Reconciler
    from syncd.sharing import Sharing
    from syncd.worker import DeviceWorker

__all__ = ["StatusBoard", "control_server", "resend_passwords"]

T = TypeVar("T")

#: At most this share of the event loop's time rebuilds the status snapshot: every
#: second up to a few thousand devices; at 10,000 (~0.15 s a build), every few seconds.
SNAPSHOT_SHARE = 0.05


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


class StatusBoard:
    """The STATUS line and the status snapshot; ``update`` on the loop, ``snapshot`` anywhere."""

    def __init__(
        self,
        *,
        view: FleetView,
        notifier: Notifier,
        sharing: Sharing,
        rollout: RolloutControl | None,
        summary: Callable[[], str],
    ) -> None:
        self._view = view
        self._notifier = notifier
        self._sharing = sharing
        self._rollout = rollout
        self._summary = summary
        self._last_line = ""
        self._snapshot: dict[str, Any] = view.snapshot()
        self._version = -1
        self._next_build = 0.0

    def update(self) -> None:
        line = self._summary()
        if line != self._last_line:
            self._last_line = line
            self._notifier.status(line)
        # The snapshot the socket and the page read: replaced whole, rebuilt only when
        # something changed (or a rollout engine or the cluster may have news), and
        # not so often that it takes more than SNAPSHOT_SHARE of the loop's time.
        news = self._rollout is not None or self._sharing.node is not None
        now = time.monotonic()
        if (self._view.version != self._version or news) and now >= self._next_build:
            self._version = self._view.version
            self._snapshot = self._view.snapshot(self._rollout)
            self._sharing.publish_status(self._snapshot["devices"])
            self._next_build = now + (time.monotonic() - now) / SNAPSHOT_SHARE

    def rebuild(self) -> None:
        """Rebuild the snapshot now (an operator's pause or resume must show at once)."""
        self._next_build = 0.0
        self._version = -1
        self.update()

    def snapshot(self) -> dict[str, Any]:
        """The latest status snapshot (SPEC section 10); safe to call from any thread."""
        return self._snapshot


def resend_passwords(
    device: str,
    *,
    workers: Mapping[str, DeviceWorker],
    state: StateStore,
    reconciler: Reconciler,
    elsewhere: Callable[[str], str | None] = lambda device: None,
) -> str:
    """Mark ``device``'s passwords due (``syncd passwords resend``) and reconcile it now.

    ``elsewhere``: the cluster node that owns the device when it is not this one
    (the state says the passwords are due; that node sends them at its next resync).
    """
    worker = workers.get(device)
    if worker is None:
        raise KeyError(f"no device {device} is managed by this daemon")
    try:
        state.forget_passwords(device, operator=True)
    except StateError as exc:
        raise ValueError(str(exc)) from None
    managed = [n for n, a in worker.spec.accounts.items() if a.password is not None]
    for account in managed:
        reconciler.resend_password(device, account, reason="operator")
    worker.update(worker.spec)  # now, without the backoff of a failing device
    if not managed:
        return f"device {device} has no password that syncd manages"
    owner = elsewhere(device)
    if owner is not None:
        return (
            f"the passwords of {device} are due again; node {owner} owns it and sends them "
            "at its next resync (run this on its host to send them now)"
        )
    return (
        f"the passwords of {device} are due again; its reconcile starts now and sends them "
        "(unless a window, a call or the rollout makes the change wait)"
    )


def control_server(
    path: Path,
    *,
    snapshot: Callable[[], dict[str, Any]],
    rollout: RolloutControl | None,
    resend: Callable[[str], str],
    changed: Callable[[], None] = lambda: None,
    leader: Callable[[], tuple[str | None, str | None]] = lambda: (None, None),
) -> ControlServer:
    """The control socket of the daemon running on this event loop (not started yet).

    ``changed`` runs after a pause or resume, so the next ``status`` shows it;
    ``leader`` gives the cluster's leader and this node's name, for a refusal.
    """

    def on_rollout(action: Callable[[RolloutControl], str]) -> str:
        if rollout is None:
            raise ValueError("no rollout engine runs in this daemon")
        try:
            message = action(rollout)
        except NotDriving:
            raise NotDriving(*leader()) from None
        changed()
        return message

    handlers = DaemonControl(
        asyncio.get_running_loop(),
        snapshot=snapshot,
        pause=lambda: on_rollout(lambda r: r.pause()),
        resume=lambda: on_rollout(lambda r: r.resume()),
        resend=resend,
    )
    return ControlServer(path, handlers)
