"""The state store of cluster mode: what every node must know, kept in etcd.

Same interface as the file store (``syncd.state``), synchronous for the
reconcile path: reads come from an in-memory mirror of etcd, loaded at start
and kept current by watches; writes update the mirror at once and are sent
to etcd in the background, in batches (one transaction per batch of up to
100 keys), so a pass that records 1,000 devices costs a few round trips.
``await flush()`` waits until every write so far is in etcd.

Keys, under ``/{cluster}/``:

- ``state/devices/{device}``: ``{"device", "fingerprint", "revision",
  "passwords": {account: HMAC-SHA256}, "targets": {account: URL#serial}}``,
  a few hundred bytes (a renamed device's records follow it, as in the file
  store: :mod:`syncd.state.records`);
- ``state/rollout``: the rollout document;
- ``state/status/{device}``: the device's ``syncd status`` JSON as its owner
  last saw it (SPEC section 10's per-device object), written by the owner
  only when it changed, so every node can show the whole fleet;
- ``state/reports/{device}``: the latest outcome of the device in the rollout,
  as its owner reported it to the node driving the rollout
  (:mod:`syncd.rollout_relay`), a few hundred bytes;
- ``history/{time-ns}-{node}-{seq}``: one history entry each, the last
  ``history_limit`` kept.

Passwords never leave the process: records hold an HMAC keyed with the
password key every node is given (setting ``password_key_file``), and that
key is never stored in etcd.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from syncd.cluster.connection import TRANSIENT_ERRORS, EtcdConnection
from syncd.cluster.state_codec import decode, device_doc, device_record, encode
from syncd.cluster.watching import Change, PrefixMirror, read_prefix
from syncd.state import StateError
from syncd.state.records import DeviceRecords, TargetIndex

__all__ = ["EtcdStateStore", "history_prefix"]

_log = logging.getLogger(__name__)
_BATCH = 100  # etcd allows 128 operations per transaction by default


def history_prefix(cluster_name: str) -> str:
    """The key prefix of the cluster's history entries (``history/{time-ns}-{node}-{seq}``)."""
    return f"/{cluster_name}/history/"


class EtcdStateStore(DeviceRecords):
    """StateStore over etcd; see the module docstring."""

    def __init__(
        self,
        connection: EtcdConnection,
        *,
        cluster_name: str = "syncd",
        node_name: str,
        password_key: bytes,
        history_limit: int = 10_000,
        flush_delay: float = 0.05,
        refresh_interval: float = 60.0,
    ) -> None:
        if len(password_key) < 16:
            raise ValueError("the password key must be at least 16 bytes")
        self.connection = connection
        self.node_name = node_name
        self.history_limit = history_limit
        self._key = password_key
        self._flush_delay = flush_delay
        self._refresh_interval = refresh_interval
        self._refresher: asyncio.Task[None] | None = None
        self._devices_prefix = f"/{cluster_name}/state/devices/"
        self._rollout_key = f"/{cluster_name}/state/rollout"
        self._status_prefix = f"/{cluster_name}/state/status/"
        self._reports_prefix = f"/{cluster_name}/state/reports/"
        self._history_prefix = history_prefix(cluster_name)
        self._devices: dict[str, dict[str, Any]] = {}
        self._by_target = TargetIndex()
        self._rollout: dict[str, Any] | None = None
        #: The rollout is encoded when a batch is written, not at each save (O(devices)).
        self._rollout_unwritten = False
        self._statuses: dict[str, dict[str, Any]] = {}
        self._reports: dict[str, dict[str, Any]] = {}
        self._history: dict[str, dict[str, Any]] = {}
        self._pending: dict[str, bytes | None] = {}  # key -> value to write (None: delete)
        self._sequence = itertools.count()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._flusher: asyncio.Task[None] | None = None
        self._state_mirror = PrefixMirror(
            connection,
            f"/{cluster_name}/state/",
            on_snapshot=self._state_snapshot,
            on_change=self._state_changed,
        )
        self._history_mirror = PrefixMirror(
            connection,
            self._history_prefix,
            on_snapshot=self._history_snapshot,
            on_change=self._history_changed,
        )

    def __repr__(self) -> str:
        return f"EtcdStateStore({self._devices_prefix.split('/')[1]!r})"

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Start loading and watching; returns at once (see ``loaded`` / ``wait_loaded``)."""
        self._state_mirror.start()
        self._history_mirror.start()
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_loop(), name="etcd state flusher")
        if self._refresher is None:
            self._refresher = asyncio.create_task(self._refresh_loop(), name="etcd state refresh")

    @property
    def loaded(self) -> bool:
        """The mirror holds what etcd held (no decision should be made before)."""
        return self._state_mirror.loaded.is_set() and self._history_mirror.loaded.is_set()

    async def wait_loaded(self) -> None:
        await self._state_mirror.loaded.wait()
        await self._history_mirror.loaded.wait()

    async def flush(self) -> None:
        """Wait until every write so far has reached etcd."""
        self._wake.set()
        await self._idle.wait()

    async def refresh_device(self, device: str) -> None:
        """Read ``device``'s record from etcd now, into the mirror.

        A node that takes a device over judges its passwords by what the last
        owner wrote, which that owner flushed before letting go but the watch may
        not have brought here yet (a password would be sent twice). Best effort:
        when etcd does not answer, the mirror stays as it is.
        """
        key = self._device_key(device)
        try:
            changes, _ = await read_prefix(self.connection, key)
        except TRANSIENT_ERRORS as exc:
            _log.debug("cannot read the record of %s: %s", device, exc)
            return
        for change in changes:
            if change.key == key:  # not a longer name the prefix also matches
                self._state_changed(change)

    async def close(self, timeout: float = 5.0) -> None:
        """Flush what is pending (at most ``timeout`` seconds), then stop."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self.flush()
        for task in (self._flusher, self._refresher):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._flusher = self._refresher = None
        await self._state_mirror.close()
        await self._history_mirror.close()

    # ------------------------------------------------------------ the interface

    def load_rollout(self) -> dict[str, Any] | None:
        return json.loads(json.dumps(self._rollout)) if self._rollout is not None else None

    def save_rollout(self, doc: Mapping[str, Any]) -> None:
        self._rollout = dict(doc)
        self._rollout_changed()

    def append_rollout(self, entry: Mapping[str, Any]) -> None:
        """Journalled in memory; etcd gets the document (journal included) with the next batch."""
        if self._rollout is None:
            raise StateError(f"no rollout saved under {self._rollout_key} to journal after")
        self._rollout.setdefault("journal", []).append(dict(entry))
        self._rollout_changed()

    def _rollout_changed(self) -> None:
        self._rollout_unwritten = True
        self._idle.clear()
        self._wake.set()

    def save_status(self, device: str, doc: Mapping[str, Any]) -> None:
        """Publish ``device``'s status JSON (written only when it differs from what etcd holds)."""
        value = dict(doc)
        if self._statuses.get(device) == value:
            return
        self._statuses[device] = value
        self._queue(self._status_key(device), encode(value))

    def statuses(self) -> dict[str, dict[str, Any]]:
        """The status JSON each device's owner published, by device (read-only values)."""
        return dict(self._statuses)

    def report(self, device: str, doc: Mapping[str, Any]) -> None:
        """A follower's report about its device, for the rollout's driver (syncd.rollout_relay)."""
        self._reports[device] = dict(doc)
        key = self._reports_prefix + quote(device, safe="")
        self._queue(key, encode({**doc, "device": device}))

    def reports(self) -> dict[str, dict[str, Any]]:
        return dict(self._reports)

    def append_history(self, entry: Mapping[str, Any]) -> None:
        stamp = f"{time.time_ns():020d}-{self.node_name}-{next(self._sequence):06d}"
        key = self._history_prefix + stamp
        value = dict(entry)
        self._history[key] = value
        self._queue(key, encode(value))
        self._trim_history(delete=True)

    def history(self) -> list[dict[str, Any]]:
        """Entries of every node, oldest first (by time written, then node)."""
        return [dict(self._history[key]) for key in sorted(self._history)]

    # ---------------------------------------------------------------- records

    def _device_key(self, device: str) -> str:
        return self._devices_prefix + quote(device, safe="")

    def _status_key(self, device: str) -> str:
        return self._status_prefix + quote(device, safe="")

    def _record(self, device: str) -> dict[str, Any]:
        record = self._devices.get(device)
        if record is None:
            record = {"device": device, "fingerprint": None, "revision": None, "passwords": {}}
            self._devices[device] = record
        return record

    def _save(self, device: str) -> None:
        self._queue(self._device_key(device), encode(self._devices[device]))

    def _holders(self, target: str) -> list[dict[str, Any]]:
        return self._by_target.holders(target, self._devices)

    def _queue(self, key: str, value: bytes | None) -> None:
        self._pending[key] = value
        self._idle.clear()
        self._wake.set()

    def _trim_history(self, *, delete: bool) -> None:
        """Keep the newest ``history_limit`` entries; the node that appended deletes the rest."""
        excess = len(self._history) - self.history_limit
        if excess <= 0:
            return
        for key in sorted(self._history)[:excess]:
            del self._history[key]
            if delete:
                self._queue(key, None)

    # ---------------------------------------------------------------- flushing

    async def _refresh_loop(self) -> None:
        """Re-read the records now and then: a watch can miss an event (etcd 3.5.1)."""
        while True:
            await asyncio.sleep(self._refresh_interval)
            with contextlib.suppress(*TRANSIENT_ERRORS):
                await self._state_mirror.refresh()

    async def _flush_loop(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(self._flush_delay)  # gather a pass's writes into one batch
            self._wake.clear()
            try:
                await self._flush_pending()
            except asyncio.CancelledError:
                raise
            except TRANSIENT_ERRORS as exc:
                self.connection.noticed(exc)
                _log.debug("state not written to etcd yet: %s", type(exc).__name__)
                await asyncio.sleep(0.5)
                self._wake.set()
                continue
            if not self._pending and not self._rollout_unwritten:
                self._idle.set()
            else:
                self._wake.set()

    async def _flush_pending(self) -> None:
        client = await self.connection.open()
        assert client.kv is not None
        kv = client.kv
        if self._rollout_unwritten and self._rollout is not None:
            self._pending[self._rollout_key] = encode(self._rollout)
        self._rollout_unwritten = False
        batch = list(self._pending.items())
        for start in range(0, len(batch), _BATCH):
            chunk = batch[start : start + _BATCH]
            operations = [
                kv.txn_op_delete(key) if value is None else kv.txn_op_put(key, value)
                for key, value in chunk
            ]
            await kv.txn([], operations, timeout=self.connection.timeout)
            for key, value in chunk:
                if self._pending.get(key, b"") is value:
                    del self._pending[key]

    # ---------------------------------------------------------------- mirrors

    def _state_snapshot(self, changes: list[Change]) -> None:
        devices: dict[str, dict[str, Any]] = {}
        rollout: dict[str, Any] | None = None
        statuses: dict[str, dict[str, Any]] = {}
        reports: dict[str, dict[str, Any]] = {}
        # Local writes not yet in etcd win over what etcd held.
        pending = [Change(key, value) for key, value in self._pending.items()]
        for change in [*changes, *pending]:
            if change.key == self._rollout_key:
                rollout = decode(change.value)
            elif change.key.startswith(self._devices_prefix):
                record = device_record(change.value)
                if record is not None:
                    devices[record["device"]] = record
            elif change.key.startswith(self._status_prefix):
                doc = device_doc(change.value)
                if doc is not None:
                    statuses[doc["device"]] = doc
            elif change.key.startswith(self._reports_prefix):
                doc = device_doc(change.value)
                if doc is not None:
                    reports[doc["device"]] = doc
        if self._rollout_unwritten:
            rollout = self._rollout
        self._devices, self._rollout, self._statuses = devices, rollout, statuses
        self._reports = reports
        self._by_target.clear()
        for record in devices.values():
            self._by_target.add(record)

    def _state_changed(self, change: Change) -> None:
        if change.key in self._pending or (
            change.key == self._rollout_key and self._rollout_unwritten
        ):
            return  # our newer write is on its way
        if change.key == self._rollout_key:
            self._rollout = decode(change.value)
        elif change.key.startswith(self._devices_prefix):
            record = device_record(change.value)
            if record is not None:
                self._devices[record["device"]] = record
                self._by_target.add(record)
            else:
                self._devices = {
                    d: r for d, r in self._devices.items() if self._device_key(d) != change.key
                }
        elif change.key.startswith(self._status_prefix):
            doc = device_doc(change.value)
            if doc is not None:
                self._statuses[doc["device"]] = doc
            else:
                self._statuses = {
                    d: s for d, s in self._statuses.items() if self._status_key(d) != change.key
                }
        elif change.key.startswith(self._reports_prefix):
            doc = device_doc(change.value)
            if doc is not None:
                self._reports[doc["device"]] = doc

    def _history_snapshot(self, changes: list[Change]) -> None:
        history: dict[str, dict[str, Any]] = {}
        for change in changes:
            entry = decode(change.value)
            if entry is not None:
                history[change.key] = entry
        for key, value in self._pending.items():
            if key.startswith(self._history_prefix):
                entry = decode(value)
                if entry is None:
                    history.pop(key, None)
                else:
                    history[key] = entry
        self._history = history

    def _history_changed(self, change: Change) -> None:
        if change.key in self._pending:
            return
        entry = decode(change.value)
        if entry is None:
            self._history.pop(change.key, None)
        else:
            self._history[change.key] = entry
            self._trim_history(delete=False)
