"""The daemon's registration monitoring: after each reconcile, read ``/api/phone/status``.

Only the daemon monitors (``syncd apply`` and ``plan`` do not). Each read
feeds the device's :class:`~syncd.devices_view.DeviceView`, which decides what
it means: ``registration.lost`` / ``registration.restored`` when an account's
registration changed by itself, and a password to send again when an account
that had registered with syncd's password stays unregistered for a whole
resync (a factory reset in place). That it registered is kept in the state,
so a device reset while the daemon was down gets its password back too. The
gauge ``syncd_account_registered`` follows every read.

``health.monitor: false`` in ``_fleet.yaml`` turns it off: no reads, no
gauge series, no resends.

A device that cannot report registration (code 1, 4 or 10) gets one warning
and is not asked again until its desired state changes; an answer that makes
no sense is one warning sentence until it is read again. Neither affects the
device's reconciles.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from syncd import events
from syncd.client import DeviceError
from syncd.device_errors import cannot_report
from syncd.devices_view import DeviceView
from syncd.logs import get_logger
from syncd.model import DeviceSpec, Mode
from syncd.outcome import Outcome
from syncd.reconcile import Reconciler
from syncd.state import StateStore

if TYPE_CHECKING:  # prometheus-client is imported only where metrics are served
    from syncd.metrics import Metrics

__all__ = ["RegistrationMonitor"]

#: The share of the resync interval an account must stay unregistered before its password
#: is sent again (resyncs are jittered by ±10 %).
_WHOLE_RESYNC = 0.8


class RegistrationMonitor:
    """Reads each reconciled device's SIP registration; logs what changed by itself."""

    def __init__(
        self,
        *,
        reconciler: Reconciler,
        state: StateStore,
        resync_interval: float,
        kick: Callable[[str], None],
        metrics: Metrics | None = None,
        enabled: Callable[[], bool] = lambda: True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._reconciler = reconciler
        self._state = state
        self._metrics = metrics
        self._kick = kick
        self._clock = clock
        self.resend_after = resync_interval * _WHOLE_RESYNC
        #: ``health.monitor`` of the ``_fleet.yaml`` in force (default on).
        self._enabled = enabled
        self.log = get_logger()

    def retune(self, resync_interval: float) -> None:
        """A new resync interval (SIGHUP): how long a lost registration waits for a resend."""
        self.resend_after = resync_interval * _WHOLE_RESYNC

    async def check(self, spec: DeviceSpec, outcome: Outcome, view: DeviceView) -> None:
        """Read the device's registration after ``outcome`` (if it answered) and act on it.

        Monitoring never fails a reconcile: an internal error is one warning.
        """
        try:
            await self._check(spec, outcome, view)
        except Exception as exc:
            events.registration_unreadable(
                self.log.bind(device=spec.name),
                error=f"internal error: {type(exc).__name__}: {exc}",
            )

    async def _check(self, spec: DeviceSpec, outcome: Outcome, view: DeviceView) -> None:
        if not self._enabled():
            if view.registration_off():  # turned off: what was read last is not kept
                self._gauge(view)
            return
        if not view.should_monitor(spec, outcome):
            return
        log = self.log.bind(device=spec.name)
        try:
            statuses = await self._reconciler.client(spec).phone_status()
        except DeviceError as exc:
            if cannot_report(exc):
                view.registration_unsupported(spec)
                events.registration_unsupported(
                    log,
                    error=f"device {spec.name} cannot report SIP registration ({exc}); "
                    'give its API user the privilege "Phone/Calls - Monitoring" to have it '
                    "monitored; not asked again until its settings change",
                )
            else:
                view.registration_unreadable()
                if view.first("registration-unreadable", str(exc), self._clock()):
                    events.registration_unreadable(
                        log, error=f"cannot read the SIP registration: {exc}"
                    )
            self._gauge(view)
            return
        changed = {c.account for c in outcome.changes} if outcome.status != "changes" else set()
        managed = {n: a for n, a in spec.accounts.items() if a.password is not None}
        state = self._state

        def proven_before(account: int) -> bool:
            return state.proven(spec.name, account) == state.account_proof(managed[account])

        news = view.registration_read(
            statuses,
            now=self._clock(),
            changed=changed,
            managed=managed,
            in_force=outcome.status in ("in_sync", "applied")
            and spec.mode is Mode.ENFORCE
            and not self._reconciler.failed_health(spec),
            resend_after=self.resend_after,
            proven_before=proven_before,
        )
        for account in news.proven:
            state.record_proven(spec.name, account, state.account_proof(managed[account]))
        for account in news.lost:
            events.registration_lost(log, account=account)
        for account in news.restored:
            events.registration_restored(log, account=account)
        for account in news.resend:
            self._reconciler.resend_password(spec.name, account, reason="registration")
        if news.resend:
            self._kick(spec.name)
        self._gauge(view)

    def _gauge(self, view: DeviceView) -> None:
        if self._metrics is not None:
            self._metrics.set_registration(view.name, view.registration())
