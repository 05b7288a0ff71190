"""PrefixMirror against a real etcd: closing it ends its watch within seconds, etcd up or down."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc.aio._call
import pytest

from syncd.cluster.connection import TRANSIENT_ERRORS, EtcdAccess, EtcdConnection
from syncd.cluster.watching import Change, PrefixMirror
from tests.etcd_server import EtcdServer

PREFIX = "/watching/"


@pytest.fixture
async def connection(own_etcd: EtcdServer) -> AsyncIterator[EtcdConnection]:
    connection = EtcdConnection(EtcdAccess((own_etcd.endpoint,)), timeout=1.0)
    yield connection
    await connection.close()


def mirror_of(connection: EtcdConnection, seen: list[Change] | None = None) -> PrefixMirror:
    found = seen if seen is not None else []
    return PrefixMirror(
        connection,
        PREFIX,
        on_snapshot=lambda changes: found.extend(changes),
        on_change=found.append,
        retry=0.1,
    )


def watch_tasks() -> list[asyncio.Task[Any]]:
    """The mirror's task and its watch reader, by the names watching.py gives them."""
    names = (f"etcd-mirror {PREFIX}", f"etcd watch {PREFIX}")
    return [task for task in asyncio.all_tasks() if task.get_name() in names]


async def put(connection: EtcdConnection, key: str, value: bytes) -> bool:
    """Write ``key``; False when etcd does not answer."""
    client = await connection.open()
    assert client.kv is not None
    try:
        await client.kv.put(key, value, timeout=2)
    except TRANSIENT_ERRORS:
        return False
    return True


async def started(mirror: PrefixMirror, connection: EtcdConnection, seen: list[Change]) -> None:
    """Start ``mirror`` and wait until its watch delivers a change (the watch is set up)."""
    mirror.start()
    await asyncio.wait_for(mirror.loaded.wait(), 10)
    assert await put(connection, f"{PREFIX}ready", b"1")
    async with asyncio.timeout(10):
        while not any(c.key == f"{PREFIX}ready" for c in seen):
            await asyncio.sleep(0.01)


class FailingWatchCalls:
    """Calls ``action`` the moment a watch call opened from now on fails (its status is set)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, action: Callable[[], None]) -> None:
        self.fired = 0
        original = grpc.aio._call.StreamStreamCall.__init__

        def opened(call: Any, *args: Any, **kwargs: Any) -> None:
            original(call, *args, **kwargs)
            call.add_done_callback(self._done)

        self._action = action
        monkeypatch.setattr(grpc.aio._call.StreamStreamCall, "__init__", opened)

    def _done(self, _call: object) -> None:
        self.fired += 1
        self._action()


class TestClose:
    async def test_a_cancel_arriving_as_a_watch_call_fails_is_not_lost(
        self, own_etcd: EtcdServer, connection: EtcdConnection, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Cancelled the moment a watch call fails (gRPC's stream set-up then drops the cancel), the mirror still ends within seconds."""
        seen: list[Change] = []
        mirror = mirror_of(connection, seen)
        await started(mirror, connection, seen)

        def cancel_all() -> None:
            for task in watch_tasks():
                task.cancel()

        # Only calls opened while etcd is down: the watch's reconnects, each failing
        # while its set-up still waits, which is when gRPC drops a cancel. The mirror
        # gets that one cancel (close() would add another): it must end on it.
        own_etcd.stop()
        failing = FailingWatchCalls(monkeypatch, cancel_all)
        try:
            async with asyncio.timeout(15):
                while not failing.fired:
                    await asyncio.sleep(0.01)
                while watch_tasks():
                    await asyncio.sleep(0.05)
        except TimeoutError:
            fired = failing.fired
            pytest.fail(f"the mirror went on after {fired} cancel(s): lost", pytrace=False)
        finally:
            monkeypatch.undo()
            await mirror.close()

    async def test_goes_on_after_etcd_returns(
        self, own_etcd: EtcdServer, connection: EtcdConnection
    ) -> None:
        """After an outage the mirror reads the prefix again and follows changes."""
        seen: list[Change] = []
        mirror = mirror_of(connection, seen)
        await started(mirror, connection, seen)
        own_etcd.stop()
        await asyncio.sleep(0.5)
        own_etcd.start()
        async with asyncio.timeout(15):
            while not await put(connection, f"{PREFIX}k", b"v"):
                await asyncio.sleep(0.1)  # gRPC has not reconnected yet
        async with asyncio.timeout(15):
            while not any(c.key == f"{PREFIX}k" and c.value == b"v" for c in seen):
                await asyncio.sleep(0.05)
        await mirror.close()
        assert watch_tasks() == []
