"""Which managed passwords a device's next PUT carries, and what their records are bound to.

A GET never shows a password, so the state keeps a record per account of the
password last sent. A password is due when the state has no record of it for
this device, or when it was asked to be sent again (by the operator, or by the
registration monitor). A record is bound to the device's URL and serial
number: a device replaced at the same address (an RMA swap) has another
serial, so it gets its passwords again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from syncd import events
from syncd.client import DeviceClient, DeviceError
from syncd.diff import Plan
from syncd.logs import get_logger
from syncd.model import DeviceSpec
from syncd.state import StateError, StateStore

if TYPE_CHECKING:
    from pydantic import SecretStr

__all__ = ["PasswordsDue"]


class PasswordsDue:
    """The passwords due per device; one per :class:`syncd.reconcile.Reconciler`."""

    def __init__(self, state: StateStore) -> None:
        self._state = state
        #: Serial number per device, read once while the device stays reachable.
        self._serials: dict[str, str] = {}
        #: Accounts whose password is sent again at the next PUT, with the reason to log.
        self._resend: dict[str, dict[int, str]] = {}
        self.log = get_logger()

    def resend(self, device: str, account: int, *, reason: str) -> None:
        """Send this account's managed password at the device's next PUT, whatever the record."""
        self._resend.setdefault(device, {})[account] = reason

    def unreachable(self, device: str) -> None:
        """The device did not answer: read its serial again, it may come back as another device."""
        self._serials.pop(device, None)

    def forget(self, device: str) -> None:
        self._serials.pop(device, None)
        self._resend.pop(device, None)

    def reads_serial(self, spec: DeviceSpec) -> bool:
        """Whether :meth:`due` will read the device's serial number (a request)."""
        return spec.name not in self._serials and bool(_managed(spec))

    async def due(self, spec: DeviceSpec, client: DeviceClient) -> tuple[str, set[int]]:
        """What the records are bound to, and the accounts whose password the PUT must carry."""
        managed = _managed(spec)
        if not managed:
            return spec.url, set()
        target = await self._target(spec, client)
        if self._state.resend_requested(spec.name):  # asked for with no daemon running
            for account in managed:
                self._resend.setdefault(spec.name, {}).setdefault(account, "operator")
        due = {n for n, pw in managed.items() if self._state.password_due(spec.name, target, n, pw)}
        due |= set(self._resend.get(spec.name, {})) & set(managed)
        return target, due

    def sent(self, spec: DeviceSpec, target: str, plan: Plan) -> None:
        """An accepted PUT carried ``plan``'s passwords: record them, log those sent again."""
        try:
            self._state.record_passwords(spec.name, target, plan.passwords)
        except StateError as exc:
            events.state_write_failed(self.log.bind(device=spec.name), error=str(exc))
        self._resent(spec, plan)

    async def _target(self, spec: DeviceSpec, client: DeviceClient) -> str:
        """The URL and the device's serial number (the URL alone when it cannot be read).

        The serial is read once, and again after the device was unreachable.
        """
        serial = self._serials.get(spec.name)
        if serial is None:
            try:
                info = await client.system_info()
            except DeviceError:
                return spec.url
            serial = str(info.get("serialNumber") or "")
            self._serials[spec.name] = serial
        return f"{spec.url}#{serial}" if serial else spec.url

    def _resent(self, spec: DeviceSpec, plan: Plan) -> None:
        """Log ``password.resent`` for accounts sent again on request; clear the requests."""
        asked = self._resend.get(spec.name)
        if not asked:
            return
        log = self.log.bind(device=spec.name)
        for account in sorted(set(asked) & set(plan.passwords)):
            events.password_resent(log, account=account, reason=asked.pop(account))
        for account in set(asked) - set(_managed(spec)):
            del asked[account]  # no longer managed: nothing to send
        if not asked:
            del self._resend[spec.name]


def _managed(spec: DeviceSpec) -> dict[int, SecretStr]:
    """The accounts whose password the desired state manages, and those passwords."""
    return {n: a.password for n, a in spec.accounts.items() if a.password is not None}
