"""What the daemon saw of each device, and which events that is worth.

One :class:`DeviceView` per device remembers its last outcome, last error
sentence, when it was last read and changed, since when it fails, the SIP
registration of each account, and which repeating events were already
logged. Its methods are pure decisions (the caller passes the time and does
the logging and the requests); :class:`FleetView` holds them all and builds
the status snapshot of SPEC section 10 from them.

The rollout engine plugs in through :class:`RolloutControl` (pause/resume on
the control socket, rollout, window and wave in the status).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from syncd.device_status import AccountStatus
from syncd.diff import Change
from syncd.model import DeviceSpec, Mode
from syncd.outcome import Outcome
from syncd.status import (
    STATES,
    DeviceState,
    DeviceStatus,
    FleetStatus,
    InvalidFile,
    RolloutSummary,
    WindowStatus,
    device_from_json,
    sort_devices,
    status_json,
    summary_counts,
)

__all__ = [
    "DeviceView",
    "FleetView",
    "RolloutControl",
    "difference_key",
    "revision_material",
]

#: Topics of repeating events and how often each may be logged again while it lasts
#: (None: once, until the condition goes away or changes).
REPEAT_EVERY: dict[str, float | None] = {
    "unreachable": 3600.0,
    "auth": 3600.0,
    "observe": None,
    "observe-count": None,
    "suspend": None,
    "registration-unreadable": None,
}
#: At most one automatic password resend per account in this many seconds.
RESEND_EVERY = 3600.0
#: Topics that end when the device answers again.
_ENDS_WHEN_REACHABLE = ("unreachable", "auth")
#: The outcome statuses that mean "in sync now".
_CONVERGED = frozenset({"in_sync", "applied"})
#: What ``syncd status`` calls a device after each outcome status.
_STATE_OF: dict[str, DeviceState] = {
    "in_sync": "in_sync",
    "applied": "in_sync",
    "changes": "drifted",
    "skipped": "suspended",
    "waiting": "waiting",  # set by the rollout engine's gate
}
#: Failure kinds where the device did not answer at all.
_UNREACHABLE_KINDS = frozenset({"transport", "tls"})


class RolloutControl(Protocol):
    """What the rollout engine (``daemon.conductor``) offers the status and the control socket.

    ``pause``/``resume`` are called on the daemon's event loop and return one
    sentence for the operator (ValueError: refused, with the reason); the others
    are read when the status snapshot is rebuilt (once a second).
    """

    def pause(self) -> str: ...
    def resume(self) -> str: ...
    def rollout_status(self) -> RolloutSummary: ...
    def window_status(self) -> WindowStatus: ...
    def wave_of(self, device: str) -> str | None: ...


def revision_material(specs: Mapping[str, DeviceSpec]) -> str:
    """What a ``tree:`` revision hashes: one ``name=fingerprint`` line per spec in force, sorted."""
    return "".join(f"{name}={specs[name].fingerprint}\n" for name in sorted(specs))


def difference_key(changes: Iterable[Change]) -> tuple[tuple[int, str, str, str], ...]:
    """A difference as a value: the same fields with the same values give the same key."""
    return tuple(sorted((c.account, c.field, repr(c.live), repr(c.desired)) for c in changes))


@dataclass
class _Account:
    """One account's registration as the monitor followed it."""

    registered: bool | None = None
    #: Unix time of the first read that found it unregistered (None: registered or unknown).
    down_since: float | None = None
    #: It was seen registered while the password syncd applied was in force.
    proven: bool = False
    #: ``registration.lost`` was logged and ``registration.restored`` not yet.
    lost: bool = False
    resent_at: float | None = None


@dataclass(frozen=True)
class RegistrationNews:
    """What one phone-status read means: accounts lost, restored, whose password to resend."""

    lost: tuple[int, ...] = ()
    restored: tuple[int, ...] = ()
    resend: tuple[int, ...] = ()


class DeviceView:
    """What the daemon knows of one device; every method is a pure decision or bookkeeping."""

    def __init__(self, spec: DeviceSpec, *, revision: str | None = None) -> None:
        self.name = spec.name
        self.url = spec.url
        self.mode = spec.mode
        #: The desired revision last seen in force on the device.
        self.revision = revision
        self.outcome: Outcome | None = None
        self.changing = False
        self.last_sync: float | None = None
        self.last_change: float | None = None
        self.failing_since: float | None = None
        self.accounts: dict[int, _Account] = {}
        #: The spec under which the device could not report registration (not asked again).
        self.unsupported_for: DeviceSpec | None = None
        self._expected = tuple(sorted(spec.accounts))
        self._logged: dict[str, tuple[Hashable, float]] = {}
        #: Bumped on every change the status shows.
        self.version = 0

    # ------------------------------------------------------------ the spec

    def update_spec(self, spec: DeviceSpec) -> None:
        """A new desired state: a device that could not report registration is asked again."""
        self.url, self.mode, self._expected = spec.url, spec.mode, tuple(sorted(spec.accounts))
        if spec.mode is not Mode.SUSPEND:
            self._logged.pop("suspend", None)
        if spec.mode is not Mode.OBSERVE:
            self._logged.pop("observe", None)
        self.version += 1

    # ------------------------------------------------------------ repeating events

    def first(self, topic: str, key: Hashable, now: float) -> bool:
        """Whether to log the event ``topic`` about ``key`` now (and remember that it was).

        Yes when it was not logged, was logged about another key, or (topics with
        a repeat interval in :data:`REPEAT_EVERY`) was logged that long ago.
        """
        every = REPEAT_EVERY.get(topic)
        last = self._logged.get(topic)
        if last is not None and last[0] == key and (every is None or now - last[1] < every):
            return False
        self._logged[topic] = (key, now)
        return True

    def logged(self, topic: str) -> bool:
        return topic in self._logged

    def end(self, topic: str) -> None:
        """The condition behind ``topic`` went away: its next occurrence is news."""
        self._logged.pop(topic, None)

    # ------------------------------------------------------------ outcomes

    def begin_change(self) -> None:
        """A PUT (or the health check after it) starts: the device shows as ``changing``."""
        self.changing = True
        self.version += 1

    def observe(self, outcome: Outcome, now: float, *, revision: str | None) -> float | None:
        """Take one reconcile's outcome; seconds it had been failing when it just recovered."""
        self.changing = False
        self.outcome = outcome
        self.mode = outcome.mode
        self.last_sync = now
        self.version += 1
        if outcome.status == "applied":
            self.last_change = now
        if outcome.status == "error":
            kind = outcome.failure.kind if outcome.failure is not None else "internal"
            if kind not in _UNREACHABLE_KINDS and kind != "auth":
                for topic in _ENDS_WHEN_REACHABLE:
                    self.end(topic)
            if self.failing_since is None:
                self.failing_since = now
            return None
        if outcome.status != "skipped":
            for topic in _ENDS_WHEN_REACHABLE:
                self.end(topic)
        if outcome.status == "in_sync":
            self.end("observe")
            self.end("observe-count")
        if outcome.status not in _CONVERGED:
            return None
        if revision is not None:
            self.revision = revision
        since, self.failing_since = self.failing_since, None
        return None if since is None else max(now - since, 0.0)

    @property
    def failing_kind(self) -> str | None:
        """The kind of the last failure while the device fails, else None."""
        outcome = self.outcome
        if outcome is None or outcome.status != "error":
            return None
        return outcome.failure.kind if outcome.failure is not None else "internal"

    # ------------------------------------------------------------ registration

    def should_monitor(self, spec: DeviceSpec, outcome: Outcome) -> bool:
        """Read registration after ``outcome``? Only if the device answered, and not while
        it is known unable to report registration under this ``spec``."""
        if self.unsupported_for is not None and self.unsupported_for != spec:
            self.unsupported_for = None
        return self.unsupported_for is None and _reachable(outcome)

    def registration_unsupported(self, spec: DeviceSpec) -> None:
        self.unsupported_for = spec
        self._forget_registration()

    def registration_unreadable(self) -> None:
        self._forget_registration()

    def _forget_registration(self) -> None:
        for account in self.accounts.values():
            account.registered = None
            account.down_since = None
        self.version += 1

    def registration_read(
        self,
        statuses: Sequence[AccountStatus],
        *,
        now: float,
        changed: Iterable[int] = (),
        managed: Iterable[int] = (),
        in_force: bool = False,
        resend_after: float,
    ) -> RegistrationNews:
        """Take a phone-status read; what changed by itself, and which passwords to send again.

        ``changed``: accounts syncd's own PUT just changed (their registration
        restarts, that is no news); ``managed``: accounts whose password syncd
        manages; ``in_force``: the device is in sync in enforce mode, so the
        passwords syncd applied are the ones on it. A managed account that was
        registered with syncd's password, should register (enabled, with
        registration) and stays unregistered for ``resend_after`` seconds gets
        its password sent again, at most once an hour.
        """
        changed, managed = set(changed), set(managed)
        self.end("registration-unreadable")
        lost: list[int] = []
        restored: list[int] = []
        resend: list[int] = []
        for status in statuses:
            number = status.account
            account = self.accounts.setdefault(number, _Account())
            before, now_registered = account.registered, status.registered
            account.registered = now_registered
            if now_registered is None:
                account.down_since = None
                continue
            if now_registered:
                account.down_since = None
                if account.lost:
                    account.lost = False
                    restored.append(number)
                if in_force and number in managed:
                    account.proven = True
                continue
            if number in changed:
                account.down_since = now  # syncd's PUT restarted its registration
                continue
            if account.down_since is None:
                account.down_since = now
            if before is True and not account.lost:
                account.lost = True
                lost.append(number)
            should = status.enabled is not False and status.registration_enabled is True
            due = account.resent_at is None or now - account.resent_at >= RESEND_EVERY
            if (
                account.proven
                and should
                and number in managed
                and in_force
                and due
                and now - account.down_since >= resend_after
            ):
                account.resent_at = now
                account.down_since = now
                resend.append(number)
        self.version += 1
        return RegistrationNews(tuple(lost), tuple(restored), tuple(resend))

    def registration(self) -> tuple[tuple[int, bool | None], ...]:
        """Per account: registered at the last read, None when not known."""
        numbers = sorted(set(self._expected) | set(self.accounts))
        known = self.accounts
        return tuple((n, known[n].registered if n in known else None) for n in numbers)

    # ------------------------------------------------------------ status

    def state(self) -> DeviceState:
        if self.changing:
            return "changing"
        outcome = self.outcome
        if outcome is None:
            return "suspended" if self.mode is Mode.SUSPEND else "unknown"
        if outcome.status == "error":
            return "unreachable" if self.failing_kind in _UNREACHABLE_KINDS else "failed"
        return _STATE_OF.get(outcome.status, "unknown")

    def message(self) -> str | None:
        outcome = self.outcome
        if outcome is None:
            return None
        if outcome.failure is not None:
            return outcome.failure.message
        if outcome.status == "changes" and outcome.changes:
            fields = ", ".join(f"account {c.account} {c.field}" for c in outcome.changes[:3])
            more = len(outcome.changes) - 3
            return f"differs: {fields}" + (f" and {more} more" if more > 0 else "")
        return None

    def status(self, *, wave: str | None = None, owner: str | None = None) -> DeviceStatus:
        return DeviceStatus(
            device=self.name,
            url=self.url,
            mode=str(self.mode),
            state=self.state(),
            wave=wave,
            revision=self.revision,
            last_sync=_moment(self.last_sync),
            last_change=_moment(self.last_change),
            message=self.message(),
            accounts=self.registration(),
            owner=owner,
        )


def _reachable(outcome: Outcome) -> bool:
    """Whether the reconcile that had ``outcome`` read the device."""
    if outcome.status == "skipped":
        return False
    if outcome.status != "error":
        return True
    kind = outcome.failure.kind if outcome.failure is not None else "internal"
    return kind not in (*_UNREACHABLE_KINDS, "auth", "internal")


def _shared_status(
    view: DeviceView, record: Mapping[str, Any] | None, *, wave: str | None, owner: str | None
) -> DeviceStatus:
    """Another node's device: the status its owner published, else ``unknown``."""
    unknown = DeviceStatus(
        device=view.name, url=view.url, mode=str(view.mode), wave=wave, owner=owner
    )
    if record is None:
        return unknown
    try:
        status = device_from_json(record)
    except (KeyError, ValueError, TypeError, AttributeError):
        return unknown  # damaged or from another version: as if not published
    if status.device != view.name or status.state not in STATES:
        return unknown
    return replace(status, wave=wave, owner=owner)


def _moment(unix: float | None) -> datetime | None:
    return None if unix is None else datetime.fromtimestamp(unix, UTC)


@dataclass
class FleetView:
    """Every device's view, the revision in force and the invalid files: the status's source.

    It is also the reconciler's :class:`~syncd.reconcile.ReconcileWatch`: ``first``
    and ``changing`` go to the device's view, at ``clock()`` (Unix seconds).
    """

    node: str
    revision: str = ""
    devices: dict[str, DeviceView] = field(default_factory=dict)
    invalid_files: tuple[InvalidFile, ...] = ()
    clock: Callable[[], float] = time.time
    #: Which node owns a device (the cluster sets it); None: ``owner`` is null.
    owner_of: Callable[[str], str | None] | None = None
    #: The status JSON each device's owner published, by device (the cluster sets it):
    #: a device another node owns shows its owner's record, ``unknown`` until there is one.
    shared: Callable[[], Mapping[str, Mapping[str, Any]]] | None = None
    #: Bumped when something the status shows outside the devices changes.
    version: int = 0
    _cache: dict[str, tuple[object, DeviceStatus, dict[str, Any]]] = field(
        default_factory=dict, repr=False
    )

    def first(self, device: str, topic: str, key: Hashable) -> bool:
        view = self.devices.get(device)
        return view is None or view.first(topic, key, self.clock())

    def changing(self, device: str) -> None:
        view = self.devices.get(device)
        if view is not None:
            view.begin_change()
            self.version += 1

    def forget(self, names: Iterable[str]) -> None:
        for name in names:
            self.devices.pop(name, None)
            self._cache.pop(name, None)

    def _device(
        self,
        name: str,
        rollout: RolloutControl | None,
        shared: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> tuple[DeviceStatus, Any]:
        """The device's status and its JSON, rebuilt only when the device changed."""
        view = self.devices[name]
        wave = rollout.wave_of(name) if rollout is not None else None
        owner = self.owner_of(name) if self.owner_of is not None else None
        elsewhere = shared is not None and owner is not None and owner != self.node
        record = shared.get(name) if shared is not None and elsewhere else None
        source = (view.version, elsewhere, record)  # the record compares by identity first
        cached = self._cache.get(name)
        if (
            cached is None
            or cached[0] != source
            or (cached[1].wave, cached[1].owner) != (wave, owner)
        ):
            if elsewhere:
                status = _shared_status(view, record, wave=wave, owner=owner)
            else:
                status = view.status(wave=wave, owner=owner)
            alone = FleetStatus(revision="", node="", devices=(status,))
            cached = (source, status, status_json(alone)["devices"][0])
            self._cache[name] = cached
        return cached[1], cached[2]

    def fleet_status(self, rollout: RolloutControl | None = None) -> FleetStatus:
        """The fleet as :mod:`syncd.status` shows it."""
        return self._fleet_status(rollout, self.shared() if self.shared is not None else None)

    def _fleet_status(
        self, rollout: RolloutControl | None, shared: Mapping[str, Mapping[str, Any]] | None
    ) -> FleetStatus:
        return FleetStatus(
            revision=self.revision,
            node=self.node,
            rollout=rollout.rollout_status() if rollout is not None else RolloutSummary(),
            window=rollout.window_status() if rollout is not None else WindowStatus(),
            devices=tuple(self._device(name, rollout, shared)[0] for name in self.devices),
            invalid_files=self.invalid_files,
        )

    def snapshot(self, rollout: RolloutControl | None = None) -> dict[str, Any]:
        """SPEC section 10's status JSON, as a new dict (callers share it read-only).

        Equal to ``status_json(self.fleet_status(rollout))``, but each device's
        JSON is kept until the device changes, so 10,000 devices cost little.
        """
        shared = self.shared() if self.shared is not None else None
        head = self._fleet_status(rollout, shared)
        data = status_json(replace(head, devices=()))
        data["summary"] = summary_counts(head.devices)
        data["devices"] = [
            self._device(d.device, rollout, shared)[1] for d in sort_devices(head.devices)
        ]
        return data
