"""The cluster's device records as etcd held them at one moment, for ``syncd plan`` (pure).

A plan on a cluster host must judge fingerprints and passwords by the records
the nodes keep in etcd (``/{cluster}/state/``, see :mod:`syncd.cluster.store`),
not by the host's own state dir. :class:`StateSnapshot` is the state interface
over those records, read once (:func:`syncd.cluster.reading.read_state_snapshot`):
lookups decide as every store does (:class:`~syncd.state.records.DeviceRecords`),
and what a pass would record stays in memory; nothing is ever written back.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from syncd.cluster.state_codec import decode, device_record
from syncd.state.records import DeviceRecords, TargetIndex

__all__ = ["StateSnapshot", "state_prefix"]


def state_prefix(cluster_name: str) -> str:
    """The key prefix of the cluster's shared state (device records, rollout, statuses)."""
    return f"/{cluster_name}/state/"


class StateSnapshot(DeviceRecords):
    """The records of ``pairs`` (etcd's keys under :func:`state_prefix`, and their values).

    Keys outside the device records and the rollout are passed over; a damaged
    record reads as absent, as a node reads it.
    """

    def __init__(
        self,
        pairs: Iterable[tuple[str, bytes | None]],
        *,
        cluster_name: str,
        password_key: bytes,
    ) -> None:
        if len(password_key) < 16:
            raise ValueError("the password key must be at least 16 bytes")
        self._key = password_key
        self._cluster = cluster_name
        self._by_target = TargetIndex()
        self._devices: dict[str, dict[str, Any]] = {}
        self._rollout: dict[str, Any] | None = None
        devices_prefix = state_prefix(cluster_name) + "devices/"
        for key, value in pairs:
            if key == state_prefix(cluster_name) + "rollout":
                self._rollout = decode(value)
            elif key.startswith(devices_prefix):
                record = device_record(value)
                if record is not None:  # read as a node's mirror reads it
                    self._devices[record["device"]] = record
                    self._by_target.add(record)

    def __repr__(self) -> str:
        return f"StateSnapshot({self._cluster!r}, {len(self._devices)} devices)"

    def has_password_records(self) -> bool:
        """Whether any device has a password on record (False for a cluster never applied)."""
        return any(r["passwords"] for r in self._devices.values())

    # ------------------------------------------------------------ records

    def _record(self, device: str) -> dict[str, Any]:
        empty: dict[str, Any] = {"device": device, "fingerprint": None, "passwords": {}}
        return self._devices.setdefault(device, empty)

    def _save(self, device: str) -> None:
        """Kept in memory only: a plan never writes to etcd."""

    def _holders(self, target: str) -> list[dict[str, Any]]:
        return self._by_target.holders(target, self._devices)

    # ------------------------------------------------------------ rollout

    def load_rollout(self) -> dict[str, Any] | None:
        return json.loads(json.dumps(self._rollout)) if self._rollout is not None else None

    def save_rollout(self, doc: Mapping[str, Any]) -> None:
        self._rollout = dict(doc)

    def append_rollout(self, entry: Mapping[str, Any]) -> None:
        """Journalled in memory (after an empty document when none was read or saved)."""
        if self._rollout is None:
            self._rollout = {}
        self._rollout.setdefault("journal", []).append(dict(entry))
