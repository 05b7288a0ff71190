"""Reverts of a halted rollout (``onFailure: revert``): one PUT per device, out of the gate.

A device whose rollout PUT failed its verify or health check is put back to
the values it held before that PUT (the rollout's *undo* changes: ``live`` is
the value before). The revert takes the device's turn (:mod:`syncd.turns`: no
reconcile of the device runs meanwhile) and a concurrency slot, as any change
does (thousands of failed devices are reverted ``concurrency`` at a time, not
all at once). It waits until the device has no call under way
(``calls.waitForIdle``, at most ``maxWait``), retries its PUT as
every request does, and when it fails is tried again after
:data:`REVERT_RETRY` seconds, for as long as it is due (the undo values are
saved with the rollout, so also after a restart). A revert that keeps failing
the same way is logged (``apply.failed``) and written to the history once, then
at most every :data:`SAY_AGAIN_AFTER` seconds, not at every try. The conductor
decides which devices are due (:func:`syncd.rollout.reverts_due`) and settles
each one a revert finished.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from functools import partial
from typing import Any

from syncd import events
from syncd.client import DeviceClient, DeviceError
from syncd.device_errors import cannot_report
from syncd.diff import Change
from syncd.logs import get_logger
from syncd.model import DeviceSpec
from syncd.policy import CallsPolicy
from syncd.retrying import RetryPolicy, with_retries
from syncd.turns import Turn, no_turn

__all__ = ["REVERT_RETRY", "Reverter", "SlotFor", "wait_until_idle"]

#: Seconds before a revert PUT that failed is tried again.
REVERT_RETRY = 10.0
#: Seconds before the same failure of a device's revert is logged and recorded again.
SAY_AGAIN_AFTER = 3600.0

#: A device's spec (None: gone) and its undo changes, as the rollout saved them.
UndoOf = Callable[[str], tuple[DeviceSpec | None, Sequence[Mapping[str, Any]]]]
#: Called when a device's revert is over: the changes put back (none: nothing to revert).
Done = Callable[[str, Sequence[Change]], None]
#: Called when a device's revert PUT failed: the changes it tried to put back, and why.
Failed = Callable[[str, Sequence[Change], str], None]
#: A concurrency slot for one revert (the daemon's :class:`~syncd.slots.Slot`).
SlotFor = Callable[[], AbstractAsyncContextManager[object]]


class Reverter:
    """The revert PUTs under way, one task per device; see the module docstring."""

    def __init__(
        self,
        *,
        client_of: Callable[[DeviceSpec], DeviceClient],
        undo_of: UndoOf,
        calls: Callable[[], CallsPolicy],
        revision: Callable[[], str | None],
        done: Done,
        retry: RetryPolicy,
        failed: Failed = lambda device, changes, error: None,
        clock: Callable[[], float] = time.monotonic,
        turn: Turn | None = None,
        slot: SlotFor | None = None,
    ) -> None:
        self._turn = turn or no_turn
        self._slot = slot or nullcontext
        self._client_of = client_of
        self._undo_of = undo_of
        self._calls = calls
        self._revision = revision
        self._done = done
        self._on_failure = failed
        self._retry = retry
        self._clock = clock
        self.log = get_logger()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._failed: dict[str, float] = {}
        #: Per device, the failure last said and when (cleared when its revert goes out).
        self._said: dict[str, tuple[str, float]] = {}

    def retune(self, retry: RetryPolicy) -> None:
        """New settings (SIGHUP): the retries of the next reverts."""
        self._retry = retry

    @property
    def busy(self) -> bool:
        """A revert is under way."""
        return any(not t.done() for t in self._tasks.values())

    def start(self, due: Iterable[str]) -> None:
        """Start a revert of each ``due`` device not under way nor failed lately."""
        now = self._clock()
        for device in due:
            task = self._tasks.get(device)
            if task is not None and not task.done():
                continue
            if now - self._failed.get(device, -REVERT_RETRY) < REVERT_RETRY:
                continue
            self._tasks[device] = asyncio.get_running_loop().create_task(
                self._in_turn(device), name=f"revert:{device}"
            )

    def cancel(self) -> None:
        for task in self._tasks.values():
            task.cancel()

    async def _in_turn(self, device: str) -> None:
        async with self._turn(device), self._slot():
            await self._revert(device)

    async def _revert(self, device: str) -> None:
        """One PUT of the values the rollout's PUT changed, as read before it."""
        spec, undo = self._undo_of(device)
        changes = [
            Change(int(c["account"]), str(c["field"]), c["live"], c["desired"])
            for c in undo
            if c["live"] is not None
        ]
        if not changes or spec is None:
            self._done(device, [])
            return
        log = self.log.bind(device=device)
        client = self._client_of(spec)
        revision = self._revision()
        deferred = partial(events.apply_deferred, log, reason="call", revision=revision)
        if not await wait_until_idle(client, self._calls(), self._clock, on_wait=deferred):
            return  # in a call: tried again at a later tick
        body: dict[int, dict[str, Any]] = {}
        for c in changes:
            body.setdefault(c.account, {"account": c.account})[c.field] = c.live
        try:
            await with_retries(
                lambda: client.put_accounts(list(body.values())),
                device=device,
                request="PUT",
                policy=self._retry,
            )
        except DeviceError as exc:
            now = self._failed[device] = self._clock()
            error = f"revert failed: {exc}"
            said, when = self._said.get(device, ("", 0.0))
            if said != error or now - when >= SAY_AGAIN_AFTER:
                self._said[device] = (error, now)
                events.apply_failed(
                    log, error=error, code=exc.code, kind=exc.kind, revision=self._revision()
                )
                self._on_failure(device, changes, error)
            return
        self._said.pop(device, None)
        fields = [
            {"account": c.account, "field": c.field, "live": c.desired, "desired": c.live}
            for c in changes
        ]
        events.apply_reverted(log, fields=fields, revision=self._revision())
        self._done(device, changes)


async def wait_until_idle(
    client: DeviceClient,
    calls: CallsPolicy,
    clock: Callable[[], float],
    on_wait: Callable[[], None] = lambda: None,
) -> bool:
    """No call under way (or the device cannot tell, or the wait passed ``maxWait``).

    An unusable answer (no connection, HTTP 5xx, not a call list, an error code other
    than "cannot report") may hide a call: looked at again, as a call would be, within
    ``maxWait``. ``on_wait`` is called once, when a call is first listed (an unusable
    answer is not said to be a call).
    """
    if not calls.wait_for_idle:
        return True
    started = clock()
    waited = False
    while True:
        in_call = False
        try:
            if not await client.call_status():
                return True
            in_call = True
        except DeviceError as exc:
            if cannot_report(exc):
                return True
        if clock() - started >= calls.max_wait:
            return True
        if in_call and not waited:
            waited = True
            on_wait()
        await asyncio.sleep(min(3.0, calls.max_wait))
