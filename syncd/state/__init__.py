"""What syncd remembers between runs, behind one interface.

:class:`StateStore` is what the rest of syncd uses; :class:`FileStateStore`
(:mod:`syncd.state.files`) keeps it in the state directory. Another store (etcd,
for a cluster) implements the same methods, and its callers do not change.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from pydantic import SecretStr

from syncd.model import AccountSpec
from syncd.state.files import FileStateStore, StateError

__all__ = ["FileStateStore", "StateError", "StateStore"]


class StateStore(Protocol):
    """Per-device records (password digests, applied fingerprint and revision), and the rollout.

    Methods that write raise :class:`StateError` when the state cannot be kept.
    """

    def password_due(self, device: str, target: str, account: int, password: SecretStr) -> bool:
        """True unless exactly this password was applied to ``target``'s account."""
        ...

    def record_passwords(
        self, device: str, target: str, passwords: Mapping[int, SecretStr]
    ) -> None:
        """Remember that these passwords were applied to ``target``."""
        ...

    def applied_fingerprint(self, device: str) -> str | None:
        """The fingerprint of the desired state last seen in force on the device."""
        ...

    def record_fingerprint(self, device: str, fingerprint: str) -> None: ...

    def applied_revision(self, device: str) -> str | None:
        """The desired revision last seen in force on the device."""
        ...

    def record_revision(self, device: str, revision: str) -> None: ...

    def record_in_force(
        self,
        device: str,
        fingerprint: str,
        revision: str | None,
        *,
        changed_at: datetime | None = None,
    ) -> None:
        """:meth:`record_fingerprint` and :meth:`record_revision` (unless None) in one write,
        with ``changed_at`` (unless None) when a verified PUT changed the device."""
        ...

    def record_changed(self, device: str, at: datetime) -> None:
        """When syncd changed the device other than to its desired state (a revert): what
        :meth:`last_change` says from then on; and the revision in force before the
        reverted PUT is what :meth:`applied_revision` says again."""
        ...

    def unhealthy_fingerprint(self, device: str) -> str | None:
        """The desired state whose PUT failed its health check, while that is so."""
        ...

    def record_unhealthy(self, device: str, fingerprint: str, *, restored: str) -> None:
        """``fingerprint`` failed its health check: ``restored`` (the fingerprint applied
        before its PUT) counts as applied again, and ``fingerprint`` is not in force even
        when the device is found equal to it, until :meth:`record_in_force`."""
        ...

    def pending_put(self, device: str) -> Mapping[str, Any] | None:
        """The health-checked PUT whose check has not ended (:mod:`syncd.pending_put`)."""
        ...

    def rejection(self, device: str, fingerprint: str) -> tuple[int, str] | None:
        """The device's code and sentence when it rejected the PUT of desired state
        ``fingerprint`` (codes 11, 12, 13), while that stands: not sent again until the
        desired state changes or an operator asks (a SIGHUP, ``syncd rollout resume``).
        It survives restarts, and in a cluster it moves with the device."""
        ...

    def record_rejection(self, device: str, fingerprint: str, *, code: int, error: str) -> None:
        """The device rejected the PUT of ``fingerprint``; :meth:`record_in_force` ends it."""
        ...

    def drop_rejection(self, device: str) -> None:
        """An operator asks for the PUT again: the rejection no longer stands."""
        ...

    def record_pending_put(self, device: str, doc: Mapping[str, Any] | None) -> None:
        """Keep ``doc`` as the device's pending PUT, written before the PUT goes out (None:
        its check ended; :meth:`record_unhealthy` ends it too)."""
        ...

    def last_change(self, device: str) -> datetime | None:
        """When syncd last changed the device, if recorded (it survives restarts)."""
        ...

    def forget_passwords(self, device: str, *, operator: bool = False) -> None:
        """Mark every password of the device due again (after a factory reset; ``operator``:
        asked for by ``syncd passwords resend``, so the PUT that sends them says so)."""
        ...

    def resend_requested(self, device: str) -> bool:
        """Whether an operator's resend is still to be sent (it survives restarts)."""
        ...

    def account_proof(self, account: AccountSpec[SecretStr]) -> str:
        """A keyed digest of a desired account, its fields and password (reveals neither)."""
        ...

    def proven(self, device: str, account: int) -> str | None:
        """The :meth:`account_proof` under which the account was last seen registered."""
        ...

    def record_proven(self, device: str, account: int, proof: str) -> None:
        """The account was seen registered under the desired account ``proof`` stands for
        (it survives restarts: a later lasting loss is a factory reset, not a bad setting)."""
        ...

    def load_rollout(self) -> dict[str, Any] | None:
        """The rollout's saved state, or None if there is none; StateError if it cannot be
        read (damaged), which its callers tell and take as none."""
        ...

    def save_rollout(self, doc: Mapping[str, Any]) -> None: ...

    def append_rollout(self, entry: Mapping[str, Any]) -> None:
        """Add ``entry`` after the document this store saved last, at a cost that does not
        grow with the document: :meth:`load_rollout` gives the entries since the last
        :meth:`save_rollout` as a list under ``journal``. StateError before any save."""
        ...
