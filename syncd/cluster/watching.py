"""Keep a local copy of one etcd key prefix current: a snapshot, then a watch.

The snapshot is read in pages at one revision, then a watch continues from
the next revision, so no change is lost in between. When the watch breaks
(etcd restarted, history compacted) the copy is read again in full.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import etcd3aio

from syncd import events
from syncd.cluster.connection import TRANSIENT_ERRORS, EtcdConnection
from syncd.logs import get_logger

__all__ = ["Change", "PrefixMirror", "read_prefix"]

_log = logging.getLogger(__name__)
_PAGE = 500


@dataclass(frozen=True)
class Change:
    """One key as etcd now holds it; ``value`` None means deleted."""

    key: str
    value: bytes | None
    lease: int = 0
    revision: int = 0  # the key's mod_revision (of the deletion, for a deletion)


async def read_prefix(connection: EtcdConnection, prefix: str) -> tuple[list[Change], int]:
    """Every key under ``prefix`` at one revision, and that revision."""
    client = await connection.open()
    assert client.kv is not None
    end = etcd3aio.prefix_range_end(prefix.encode())
    start = prefix.encode()
    revision = 0
    found: list[Change] = []
    while True:
        response: Any = await client.kv.get(
            start, end, revision=revision, limit=_PAGE, timeout=connection.timeout
        )
        if revision == 0:
            revision = int(response.header.revision)
        found.extend(
            Change(kv.key.decode(), bytes(kv.value), int(kv.lease), int(kv.mod_revision))
            for kv in response.kvs
        )
        if not response.more or not response.kvs:
            return found, revision
        start = bytes(response.kvs[-1].key) + b"\0"


class PrefixMirror:
    """Calls ``on_snapshot`` with the whole prefix, then ``on_change`` per change, until closed.

    A watch can miss an event (seen with etcd 3.5.1 around a watch's creation,
    and etcd3aio resumes a broken watch past events it has not delivered), so
    the mirror restarts from a snapshot whenever the watch was re-created, and
    ``refresh`` re-reads the prefix on demand; changes no newer than the last
    snapshot are ignored.
    """

    def __init__(
        self,
        connection: EtcdConnection,
        prefix: str,
        *,
        on_snapshot: Callable[[list[Change]], None],
        on_change: Callable[[Change], None],
        retry: float = 0.5,
    ) -> None:
        self.connection = connection
        self.prefix = prefix
        self._on_snapshot = on_snapshot
        self._on_change = on_change
        self._retry = retry
        self._task: asyncio.Task[None] | None = None
        self._floor = 0  # revision of the last snapshot applied
        self.loaded = asyncio.Event()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"etcd-mirror {self.prefix}")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def reload(self) -> None:
        """Read the prefix again now (after a rejoin), then go on watching."""
        await self.close()
        self.loaded.clear()
        self.start()

    async def refresh(self) -> None:
        """Read the whole prefix again and apply it (raises transient errors)."""
        changes, revision = await read_prefix(self.connection, self.prefix)
        if revision > self._floor:
            self._floor = revision
            self._on_snapshot(changes)

    async def _run(self) -> None:
        while True:
            try:
                await self._mirror()
            except asyncio.CancelledError:
                raise
            except TRANSIENT_ERRORS as exc:
                self.connection.noticed(exc)
                _log.debug("watch of %s interrupted: %s", self.prefix, type(exc).__name__)
            except Exception:  # a bug must not end the mirror for good
                events.cluster_internal_error(get_logger(), what=f"the watch of {self.prefix}")
            await asyncio.sleep(self._retry)

    async def _mirror(self) -> None:
        changes, revision = await read_prefix(self.connection, self.prefix)
        self._floor = revision
        self._on_snapshot(changes)
        self.loaded.set()
        client = await self.connection.open()
        assert client.watch is not None
        key = self.prefix.encode()
        stream = client.watch.watch(
            key, etcd3aio.prefix_range_end(key), start_revision=revision + 1
        )
        created = 0
        reader: asyncio.Task[Any] | None = None
        try:
            while True:
                # Each response is read by a task of its own, and this task
                # only waits for it (see _stop_reader): a cancel of the mirror
                # then always reaches the mirror, never a gRPC call that drops it.
                reader = asyncio.create_task(_next(stream), name=f"etcd watch {self.prefix}")
                await asyncio.wait({reader})
                response = reader.result()
                if response is None:
                    return
                created += bool(response.created)
                if response.canceled or response.compact_revision or created > 1:
                    return  # broken or silently re-created: read it all again
                for event in response.events:
                    if int(event.kv.mod_revision) <= self._floor:
                        continue
                    deleted = event.type == 1
                    self._on_change(
                        Change(
                            event.kv.key.decode(),
                            None if deleted else bytes(event.kv.value),
                            int(event.kv.lease),
                            int(event.kv.mod_revision),
                        )
                    )
        finally:
            if reader is None or await _stop_reader(reader):
                aclose = getattr(stream, "aclose", None)
                if aclose is not None:
                    await aclose()


async def _next(stream: AsyncIterator[Any]) -> Any:
    """The watch's next response, None when it ended."""
    try:
        return await anext(stream)
    except StopAsyncIteration:
        return None


async def _stop_reader(reader: asyncio.Task[Any], *, patience: float = 5.0) -> bool:
    """End a watch reader; True once it has ended (False: still running after ``patience`` s).

    A cancel can be lost inside the reader: grpc.aio's stream set-up task
    (``StreamStreamCall._prepare_rpc``) swallows a cancel that comes after the
    call failed but before that task resumed, so the read ends in UNAVAILABLE,
    and etcd3aio's watch takes that for a dropped connection and reconnects,
    for as long as etcd is down. So cancel again until the reader ends: it
    holds nothing but the watch, there is no cleanup of ours to cut short.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    while not reader.done() and loop.time() < deadline:
        reader.cancel()
        await asyncio.wait({reader}, timeout=0.1)
    if not reader.done():
        _log.debug("watch reader %s did not stop within %.0f s", reader.get_name(), patience)
        reader.add_done_callback(_retrieve)
        return False
    _retrieve(reader)
    return True


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Mark a finished task's exception as seen (the mirror has moved on)."""
    if not task.cancelled():
        task.exception()
