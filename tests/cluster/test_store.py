"""EtcdStateStore against a real etcd: shared records, batching, bounded history, no secrets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from pydantic import SecretStr

from syncd.cluster.connection import EtcdAccess, EtcdConnection
from syncd.cluster.store import EtcdStateStore
from syncd.state import StateError
from tests.etcd_server import EtcdServer

KEY = bytes(range(32))
PASSWORD = SecretStr("Sup3r-Secret-SIP")
TARGET = "http://10.0.0.5 serial 54-0123-4567"

StoreFactory = Callable[..., Awaitable[EtcdStateStore]]


@pytest.fixture
async def make_store(etcd: EtcdServer, cluster_name: str) -> AsyncIterator[StoreFactory]:
    """Started stores on one cluster of the shared etcd; closed afterwards."""
    stores: list[EtcdStateStore] = []

    async def make(
        node: str,
        *,
        key: bytes = KEY,
        server: EtcdServer | None = None,
        history_limit: int = 10_000,
        wait: bool = True,
    ) -> EtcdStateStore:
        connection = EtcdConnection(EtcdAccess(((server or etcd).endpoint,)), timeout=1.0)
        store = EtcdStateStore(
            connection,
            cluster_name=cluster_name,
            node_name=node,
            password_key=key,
            history_limit=history_limit,
        )
        stores.append(store)
        await store.start()
        if wait:
            await asyncio.wait_for(store.wait_loaded(), 10)
        return store

    yield make
    for store in stores:
        await store.close(timeout=1)
        await store.connection.close()


async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout, "condition not met in time"
        await asyncio.sleep(0.01)


async def everything(store: EtcdStateStore) -> list[tuple[bytes, bytes]]:
    client = await store.connection.open()
    assert client.kv is not None
    response: Any = await client.kv.get(b"\0", b"\0")
    return [(bytes(kv.key), bytes(kv.value)) for kv in response.kvs]


async def revision(store: EtcdStateStore) -> int:
    client = await store.connection.open()
    assert client.kv is not None
    response: Any = await client.kv.get(b"/", count_only=True)
    return int(response.header.revision)


class TestSharedRecords:
    async def test_record_written_by_one_node_seen_by_another(
        self, make_store: StoreFactory
    ) -> None:
        """Fingerprint, revision and password records written by A are what B reads."""
        a, b = await make_store("a"), await make_store("b")
        assert a.applied_fingerprint("lab/door") is None
        assert b.password_due("lab/door", TARGET, 1, PASSWORD)
        a.record_fingerprint("lab/door", "fp-1")
        a.record_revision("lab/door", "0123456789abcdef")
        a.record_passwords("lab/door", TARGET, {1: PASSWORD})
        await a.flush()
        await eventually(lambda: b.applied_fingerprint("lab/door") == "fp-1")
        assert b.applied_revision("lab/door") == "0123456789abcdef"
        assert not b.password_due("lab/door", TARGET, 1, PASSWORD)
        assert b.password_due("lab/door", TARGET, 1, SecretStr("another"))
        assert b.password_due("lab/door", "http://10.0.0.6 serial 99", 1, PASSWORD)
        assert b.password_due("lab/door", TARGET, 2, PASSWORD)
        b.forget_passwords("lab/door")
        await b.flush()
        await eventually(lambda: a.password_due("lab/door", TARGET, 1, PASSWORD))

    async def test_a_device_taken_over_is_read_afresh_whatever_the_watch(
        self, make_store: StoreFactory
    ) -> None:
        """B's watch has not brought A's record yet (here: it is stopped); refresh_device reads
        that one record from etcd, so B does not take the password as due (sent twice)."""
        a, b = await make_store("a"), await make_store("b")
        await b._state_mirror.close()  # the watch lags behind, as it may under load
        a.record_fingerprint("lab/door", "fp-1")
        a.record_passwords("lab/door", TARGET, {1: PASSWORD})
        a.record_fingerprint("lab/door2", "fp-2")
        await a.flush()
        assert b.password_due("lab/door", TARGET, 1, PASSWORD)
        await b.refresh_device("lab/door")
        assert not b.password_due("lab/door", TARGET, 1, PASSWORD)
        assert b.applied_fingerprint("lab/door") == "fp-1"
        assert b.applied_fingerprint("lab/door2") is None  # only the device asked for

    async def test_renamed_device_keeps_its_password_record(self, make_store: StoreFactory) -> None:
        """A device renamed (same target) finds the old name's record, on another node too."""
        a = await make_store("a")
        a.record_passwords("site-a/door", TARGET, {1: PASSWORD})
        await a.flush()
        b = await make_store("b")
        assert b.password_due("site-b/door", "http://10.0.0.6 serial 99", 1, PASSWORD)
        assert not b.password_due("site-b/door", TARGET, 1, PASSWORD)
        await b.flush()
        c = await make_store("c")
        assert not c.password_due("site-b/door", TARGET, 1, PASSWORD)
        c.forget_passwords("elsewhere")
        assert c.password_due("elsewhere", TARGET, 1, PASSWORD)

    async def test_password_key_decides(self, make_store: StoreFactory) -> None:
        """A node with another password key cannot match the records: the password is due there."""
        a = await make_store("a")
        a.record_passwords("d", TARGET, {1: PASSWORD})
        await a.flush()
        other = await make_store("x", key=bytes(32))
        assert other.applied_fingerprint("d") is None
        assert other.password_due("d", TARGET, 1, PASSWORD)

    async def test_state_loaded_at_start(self, make_store: StoreFactory) -> None:
        """A store started later finds what was written before, rollout included."""
        a = await make_store("a")
        assert a.load_rollout() is None
        a.record_fingerprint("d1", "fp")
        a.save_rollout({"revision": "r1", "state": "running", "wave": "canary", "failed": []})
        await a.flush()
        b = await make_store("b")
        assert b.applied_fingerprint("d1") == "fp"
        assert b.load_rollout() == {
            "revision": "r1",
            "state": "running",
            "wave": "canary",
            "failed": [],
        }

    async def test_rollout_journal_reaches_another_node(self, make_store: StoreFactory) -> None:
        """Entries appended after a document reach etcd with it; the next save starts afresh."""
        a = await make_store("a")
        with pytest.raises(StateError):
            a.append_rollout({"device": "d1", "status": "active"})
        a.save_rollout({"revision": "r1"})
        a.append_rollout({"device": "d1", "status": "active"})
        a.append_rollout({"device": "d2", "status": "active"})
        await a.flush()
        b = await make_store("b")
        assert b.load_rollout() == {
            "revision": "r1",
            "journal": [{"device": "d1", "status": "active"}, {"device": "d2", "status": "active"}],
        }
        a.save_rollout({"revision": "r2"})
        await a.flush()
        c = await make_store("c")
        assert c.load_rollout() == {"revision": "r2"}

    async def test_secret_never_in_etcd(self, make_store: StoreFactory) -> None:
        """Neither a password nor the password key appears in any etcd key or value."""
        a = await make_store("a")
        a.record_passwords("lab/door", TARGET, {1: PASSWORD, 2: SecretStr("other-Secret-2")})
        a.append_history(
            {"device": "lab/door", "changes": [{"field": "password", "from": None, "to": "(set)"}]}
        )
        await a.flush()
        stored = await everything(a)
        assert stored
        blob = b"\n".join(k + b"=" + v for k, v in stored)
        for secret in (b"Sup3r-Secret-SIP", b"other-Secret-2", KEY, KEY.hex().encode()):
            assert secret not in blob
        assert "Sup3r" not in repr(a)


class TestWrites:
    async def test_many_writes_go_in_few_transactions(self, make_store: StoreFactory) -> None:
        """250 records written in one pass reach etcd in 3 transactions (batches of 100)."""
        a = await make_store("a")
        before = await revision(a)
        for i in range(250):
            a.record_fingerprint(f"dev-{i:03d}", f"fp-{i}")
        await a.flush()
        assert await revision(a) - before == 3
        b = await make_store("b")
        assert all(b.applied_fingerprint(f"dev-{i:03d}") == f"fp-{i}" for i in range(250))

    async def test_unchanged_record_not_rewritten(self, make_store: StoreFactory) -> None:
        """Recording the same fingerprint again writes nothing."""
        a = await make_store("a")
        a.record_fingerprint("d", "fp")
        await a.flush()
        before = await revision(a)
        a.record_fingerprint("d", "fp")
        await a.flush()
        assert await revision(a) == before

    async def test_writes_kept_while_etcd_down(
        self, own_etcd: EtcdServer, make_store: StoreFactory
    ) -> None:
        """Records written while etcd is down are read locally and reach etcd when it is back."""
        # own_etcd is asked for first, so it is torn down last: the stores close while it answers.
        a = await make_store("a", server=own_etcd)
        own_etcd.stop()
        a.record_fingerprint("d", "fp-down")
        assert a.applied_fingerprint("d") == "fp-down"
        await asyncio.sleep(0.3)
        own_etcd.start()
        await asyncio.wait_for(a.flush(), 10)
        b = await make_store("b", server=own_etcd)
        assert b.applied_fingerprint("d") == "fp-down"

    async def test_closes_within_seconds_while_etcd_is_down(
        self, own_etcd: EtcdServer, make_store: StoreFactory
    ) -> None:
        """A store closed while etcd is down, a write pending and its watches reconnecting, ends its tasks within seconds."""
        a = await make_store("a", server=own_etcd)
        own_etcd.stop()
        a.record_fingerprint("d", "fp-never-written")
        await asyncio.sleep(1.5)  # the watches are reconnecting by now
        async with asyncio.timeout(15):
            await a.close(timeout=1)
        running = [t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("etcd")]
        assert running == []


class TestHistory:
    async def test_history_shared_ordered_and_bounded(
        self, make_store: StoreFactory, cluster_name: str
    ) -> None:
        """Entries of both nodes are listed oldest first, and only the newest history_limit are kept in etcd."""
        a = await make_store("a", history_limit=5)
        b = await make_store("b", history_limit=5)
        for i in range(4):
            a.append_history({"device": "d", "n": i})
        await a.flush()
        await eventually(lambda: len(b.history()) == 4)
        for i in range(4, 8):
            b.append_history({"device": "d", "n": i})
        await b.flush()
        assert [e["n"] for e in b.history()] == [3, 4, 5, 6, 7]
        await eventually(lambda: [e["n"] for e in a.history()] == [3, 4, 5, 6, 7])
        prefix = f"/{cluster_name}/history/".encode()
        await eventually(lambda: not a._pending)
        assert len([k for k, _ in await everything(a) if k.startswith(prefix)]) == 5


class TestStatuses:
    async def test_status_published_only_when_changed_and_seen_everywhere(
        self, make_store: StoreFactory, cluster_name: str
    ) -> None:
        """A device's status JSON saved by one node is read by another (and by one started later); saving it unchanged writes nothing; a deleted key leaves the mirror."""
        a, b = await make_store("a"), await make_store("b")
        doc = {"device": "lab/door", "state": "in_sync", "owner": "a", "accounts": []}
        a.save_status("lab/door", doc)
        await a.flush()
        await eventually(lambda: b.statuses() == {"lab/door": doc})
        before = await revision(a)
        a.save_status("lab/door", dict(doc))
        await a.flush()
        assert await revision(a) == before
        changed = {**doc, "state": "failed"}
        a.save_status("lab/door", changed)
        await a.flush()
        await eventually(lambda: b.statuses()["lab/door"]["state"] == "failed")
        c = await make_store("c")
        assert c.statuses() == {"lab/door": changed}
        assert b.load_rollout() is None and b.applied_fingerprint("lab/door") is None
        client = await a.connection.open()
        assert client.kv is not None
        await client.kv.delete(f"/{cluster_name}/state/status/lab%2Fdoor".encode())
        await eventually(lambda: b.statuses() == {} and c.statuses() == {})
