"""The whole fleet as the daemon saw it: the status snapshot of SPEC section 10.

:class:`FleetView` holds every device's :class:`~syncd.devices_view.DeviceView`,
the revision in force and the invalid files, and builds the status from them,
each device's JSON kept until the device changes. In a cluster, a device
another node owns shows the status its owner published. The rollout engine
plugs in through :class:`RolloutControl` (pause/resume on the control socket,
rollout, window and wave in the status).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from syncd.devices_view import DeviceView
from syncd.status import (
    STATES,
    ClusterSummary,
    DeviceStatus,
    FleetStatus,
    InvalidFile,
    RolloutSummary,
    WindowStatus,
    device_from_json,
    device_json,
    short_revision,
    sort_devices,
    status_json,
    summary_counts,
)

__all__ = ["FleetView", "RolloutControl"]


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


def _lagging(owner: str, revision: str) -> str:
    return (
        f"its owner {owner} is on revision {short_revision(revision)}, behind another node's: "
        f"the newer revision reaches this device when {owner} loads it"
    )


#: A device's message while its node has lost the cluster.
UNAVAILABLE = "not read: this node has lost etcd and reads no device until it answers"


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
    #: Whether this node reads devices now (the cluster sets it): while it does not
    #: (etcd lost), no device's last state is shown as current.
    available: Callable[[], bool] | None = None
    #: The revision a node has loaded when it lags behind another's (the cluster sets it):
    #: a device it owns, in sync with that revision, waits for it.
    lagging_revision: Callable[[str], str | None] | None = None
    #: The fingerprint of the desired state last applied to a device (the cluster's
    #: records): a lagging owner's device that holds this node's desired state already
    #: is in sync with it.
    applied: Callable[[str], str | None] | None = None
    #: The cluster's live members and leader (the cluster sets it); None: no ``cluster``.
    cluster: Callable[[], ClusterSummary] | None = None
    #: Bumped when something the status shows outside the devices changes.
    version: int = 0
    _cache: dict[str, tuple[object, DeviceStatus, dict[str, Any]]] = field(
        default_factory=dict, repr=False
    )

    def first(self, device: str, topic: str, key: Hashable) -> bool:
        view = self.devices.get(device)
        return view is None or view.first(topic, key, self.clock())

    def logged_key(self, device: str, topic: str) -> Hashable | None:
        view = self.devices.get(device)
        return None if view is None else view.logged_key(topic)

    def changed(self, device: str, *, revision: str | None = None) -> None:
        """syncd changed ``device`` outside a reconcile (a revert): its last change is now,
        and ``revision`` (the one before the reverted PUT) in force again."""
        view = self.devices.get(device)
        if view is not None:
            view.changed(self.clock(), revision=revision)
            self.version += 1

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
        shared: Mapping[str, Mapping[str, Any]] | None,
        lags: Mapping[str, str],
    ) -> tuple[DeviceStatus, Any]:
        """The device's status and its JSON, rebuilt only when the device changed."""
        view = self.devices[name]
        wave = rollout.wave_of(name) if rollout is not None else None
        owner = self.owner_of(name) if self.owner_of is not None else None
        elsewhere = shared is not None and owner is not None and owner != self.node
        record = shared.get(name) if shared is not None and elsewhere else None
        lag = lags.get(owner) if owner is not None and elsewhere else None
        held = self.applied(name) if lag is not None and self.applied is not None else None
        source = (view.version, elsewhere, record, lag, held)  # record: by identity first
        cached = self._cache.get(name)
        if (
            cached is None
            or cached[0] != source
            or (cached[1].wave, cached[1].owner) != (wave, owner)
        ):
            if elsewhere:
                status = _shared_status(view, record, wave=wave, owner=owner)
                if (
                    lag is not None
                    and owner is not None
                    and status.state == "in_sync"
                    and held != view.fingerprint  # else it holds this node's desired state
                ):
                    status = replace(status, state="waiting", message=_lagging(owner, lag))
            else:
                status = view.status(wave=wave, owner=owner)
            cached = (source, status, device_json(status))
            self._cache[name] = cached
        if self.available is not None and not self.available():
            stale = replace(cached[1], state="unknown", message=UNAVAILABLE)
            return stale, {**cached[2], "state": stale.state, "message": stale.message}
        return cached[1], cached[2]

    def fleet_status(self, rollout: RolloutControl | None = None) -> FleetStatus:
        """The fleet as :mod:`syncd.status` shows it."""
        shared = self.shared() if self.shared is not None else None
        lags = self._lags()
        devices = tuple(self._device(name, rollout, shared, lags)[0] for name in self.devices)
        return replace(self._head(rollout), devices=devices)

    def _lags(self) -> dict[str, str]:
        """The lagging nodes' revisions, by node: asked once per status, not per device."""
        lagging = self.lagging_revision
        if lagging is None or self.owner_of is None:
            return {}
        owners = {self.owner_of(name) for name in self.devices}
        found = {node: lagging(node) for node in owners if node is not None and node != self.node}
        return {node: revision for node, revision in found.items() if revision is not None}

    def _head(self, rollout: RolloutControl | None) -> FleetStatus:
        """The fleet's status without its devices."""
        return FleetStatus(
            revision=self.revision,
            node=self.node,
            rollout=rollout.rollout_status() if rollout is not None else RolloutSummary(),
            window=rollout.window_status() if rollout is not None else WindowStatus(),
            invalid_files=self.invalid_files,
            cluster=self.cluster() if self.cluster is not None else None,
        )

    def snapshot(self, rollout: RolloutControl | None = None) -> dict[str, Any]:
        """SPEC section 10's status JSON, as a new dict (callers share it read-only).

        Equal to ``status_json(self.fleet_status(rollout))``, but each device's
        JSON is kept until the device changes, so 10,000 devices cost little.
        """
        shared = self.shared() if self.shared is not None else None
        lags = self._lags()
        built = [self._device(name, rollout, shared, lags) for name in self.devices]
        statuses = [status for status, _ in built]
        shown = {id(status): data for status, data in built}
        data = status_json(self._head(rollout))
        data["summary"] = summary_counts(statuses)
        data["devices"] = [shown[id(status)] for status in sort_devices(statuses)]
        return data
