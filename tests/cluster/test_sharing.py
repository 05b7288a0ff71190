"""The Sharing facade: standalone unchanged, and a cluster node's ownership, kicks, PUT window, revisions, metrics."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from syncd.cli import main
from syncd.cluster import CLUSTER_SETTINGS
from syncd.cluster.lease import revoke_lease
from syncd.cluster.sharing import Clustered
from syncd.metrics import Metrics
from syncd.model import DeviceSpec
from syncd.outcome import Outcome
from syncd.settings import Settings, SettingsError, load_settings
from syncd.sharing import SharingError, Standalone, open_sharing
from tests.etcd_server import EtcdServer

DEVICES = [f"door-{n:02d}" for n in range(30)]
PASSWORD = SecretStr("Sup3r-Secret-SIP")


class FakeWorker:
    def __init__(self) -> None:
        self.kicks = 0

    def kick(self) -> None:
        self.kicks += 1


def key_file(tmp_path: Path, text: str = "0123456789abcdef0123456789abcdef") -> Path:
    path = tmp_path / "password-key"
    path.write_text(text + "\n")
    return path


class TestSettings:
    def test_every_cluster_setting_has_its_field_default_and_flag(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Each setting syncd.cluster reads is a Settings field with the same default, and a flag of run."""
        with pytest.raises(SystemExit):
            main(["run", "--help"])
        flags = set(capsys.readouterr().out.split())
        for name, (_, default, _) in CLUSTER_SETTINGS.items():
            assert Settings.model_fields[name].default == default, name
            assert f"--{name.replace('_', '-')}" in flags, name

    def test_environment_and_bounds(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """SYNCD_CLUSTER_ENDPOINTS sets cluster mode; a lease_ttl under 2 s names the setting."""
        monkeypatch.setenv("SYNCD_CLUSTER_ENDPOINTS", "http://127.0.0.1:2379")
        assert load_settings(None).cluster_endpoints == "http://127.0.0.1:2379"
        with pytest.raises(SettingsError, match=r"lease_ttl .*--lease-ttl"):
            load_settings(None, lease_ttl=1)


class TestStandalone:
    def test_daemon_imports_no_cluster_code(self, tmp_path: Path) -> None:
        """Without cluster_endpoints the daemon is built without importing syncd.cluster or gRPC."""
        script = (
            "import sys\n"
            "from syncd.daemon import Daemon\n"
            "from syncd.settings import load_settings\n"
            f"d = Daemon(load_settings(None, state_dir={str(tmp_path / 'state')!r}))\n"
            "print(type(d.sharing).__name__, d.tuning.pool.user_agent.endswith(')'),"
            " 'grpc' in sys.modules, 'syncd.cluster' in sys.modules)\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, check=True
        )
        assert result.stdout.split() == ["Standalone", "False", "False", "False"]

    def test_owns_everything_and_leads(self, tmp_path: Path) -> None:
        """Standalone owns every device, leads, has no owner name, an empty STATUS prefix and shares no status."""
        sharing = open_sharing(load_settings(None, state_dir=tmp_path), workers=dict)
        assert isinstance(sharing, Standalone)
        assert sharing.owns("any") and sharing.is_leader and sharing.available
        assert sharing.owner_of("any") is None and sharing.node is None
        assert sharing.describe() == "" and sharing.may_drive("tree:abc")
        assert asyncio.run(sharing.may_put("any")) is None
        sharing.publish_status([{"device": "any", "state": "in_sync", "owner": None}])
        assert sharing.shared_statuses() == {}

    def test_password_key_file_replaces_the_generated_key(self, tmp_path: Path) -> None:
        """With password_key_file the records are keyed with it: no key is generated, and the generated one does not match them."""
        key = key_file(tmp_path)

        def store(key_path: Path | None) -> Any:
            settings = load_settings(None, state_dir=tmp_path / "state", password_key_file=key_path)
            return open_sharing(settings, workers=dict).state

        store(key).record_passwords("door", "http://d", {1: PASSWORD})
        assert not (tmp_path / "state" / "key").exists()
        assert not store(key).password_due("door", "http://d", 1, PASSWORD)
        assert store(None).password_due("door", "http://d", 1, PASSWORD)
        assert (tmp_path / "state" / "key").exists()
        assert not store(key).password_due("door", "http://d", 1, PASSWORD)

    def test_short_password_key_names_the_setting(self, tmp_path: Path) -> None:
        """A password key that is too short is one sentence naming password_key_file."""
        settings = load_settings(
            None, state_dir=tmp_path, password_key_file=key_file(tmp_path, "short")
        )
        with pytest.raises(SharingError, match="password_key_file"):
            open_sharing(settings, workers=dict)


Factory = Callable[..., Awaitable[Clustered]]


@pytest.fixture
async def make_sharing(
    etcd: EtcdServer, cluster_name: str, tmp_path: Path
) -> AsyncIterator[Factory]:
    """Started cluster nodes (lease_ttl 2 s) on the shared etcd, each with 30 fake workers."""
    made: list[Clustered] = []

    async def make(name: str, **extra: Any) -> Clustered:
        settings = load_settings(
            None,
            state_dir=tmp_path / name,
            cluster_endpoints=etcd.endpoint,
            cluster_name=cluster_name,
            node_name=name,
            lease_ttl=2,
            password_key_file=key_file(tmp_path),
        )
        workers = {device: FakeWorker() for device in DEVICES}
        sharing = open_sharing(settings, workers=lambda: workers, **extra)
        assert isinstance(sharing, Clustered)
        sharing.workers = workers  # type: ignore[attr-defined]
        made.append(sharing)
        await sharing.start()
        await eventually(lambda: sharing.available)
        return sharing

    yield make
    for sharing in made:
        await sharing.stop()


async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout, "condition not met in time"
        await asyncio.sleep(0.01)


def spec(name: str) -> DeviceSpec:
    return DeviceSpec(name=name, file=f"{name}.yaml", url="http://127.0.0.1:9")


class TestClustered:
    async def test_devices_split_and_gained_devices_kicked(self, make_sharing: Factory) -> None:
        """Two nodes split the devices; when one leaves, the other kicks exactly the devices it gained."""
        one, two = await make_sharing("s1"), await make_sharing("s2")
        await eventually(lambda: one.members == two.members == {"s1", "s2"})
        mine = {d for d in DEVICES if one.owns(d)}
        theirs = {d for d in DEVICES if two.owns(d)}
        assert mine.isdisjoint(theirs) and mine | theirs == set(DEVICES)
        assert all(one.owner_of(d) == two.owner_of(d) for d in DEVICES)
        await asyncio.sleep(1.2)  # one look each second: settled
        kicks = {d: w.kicks for d, w in one.workers.items()}  # type: ignore[attr-defined]
        await two.stop()
        await eventually(lambda: one.members == {"s1"})
        await eventually(lambda: all(one.workers[d].kicks > kicks[d] for d in theirs))  # type: ignore[attr-defined]
        assert all(one.workers[d].kicks == kicks[d] for d in mine)  # type: ignore[attr-defined]

    async def test_turn_runs_only_owned_devices_holding_their_key(
        self, make_sharing: Factory
    ) -> None:
        """A node's turn runs its own devices (key held meanwhile) and skips the others' without work, marked as elsewhere."""
        one, two = await make_sharing("t1"), await make_sharing("t2")
        await eventually(lambda: one.members == two.members == {"t1", "t2"})
        ran: list[str] = []

        async def work_for(device: str) -> Outcome:
            ran.append(device)
            return Outcome.of(spec(device), "in_sync")

        for device in DEVICES:
            outcome = await one.turn(spec(device), lambda d=device: work_for(d))  # type: ignore[misc]
            assert outcome.status == ("in_sync" if one.owns(device) else "skipped")
            assert outcome.elsewhere == (not one.owns(device))
        assert ran == [d for d in DEVICES if one.owns(d)]
        ours = ran[0]
        assert await one.acquire(ours)
        assert not await two.acquire(ours)

    async def test_held_elsewhere_logged_once_until_reconciled(
        self, make_sharing: Factory, cluster_name: str
    ) -> None:
        """A device whose key another node holds is skipped at every turn but logged once; again once it was reconciled in between."""
        device = DEVICES[0]
        key = f"/{cluster_name}/owners/{device}"

        async def work() -> Outcome:
            return Outcome.of(spec(device), "in_sync")

        with capture_logs() as logs:
            node = await make_sharing("h1")
            client = await node._cluster.connection.open()
            assert client.kv is not None
            await client.kv.put(key, "ghost")  # another node's PUT still in flight
            for _ in range(5):
                assert (await node.turn(spec(device), work)).status == "skipped"
            await client.kv.delete(key)
            assert (await node.turn(spec(device), work)).status == "in_sync"
            await node.release(device)
            await client.kv.put(key, "ghost")
            for _ in range(3):
                assert (await node.turn(spec(device), work)).status == "skipped"
            await client.kv.delete(key)
        skipped = [e for e in logs if e["event"] == "reconcile.skipped"]
        assert len(skipped) == 2
        assert all(e["reason"] == "another cluster node still holds the device" for e in skipped)

    async def test_no_put_from_a_read_made_under_a_lease_that_ended(
        self, make_sharing: Factory
    ) -> None:
        """A node whose lease ended between a device's GET and its PUT (a paused host) and
        that owns the device again under a new lease PUTs nothing from that read: the
        device may have changed meanwhile, so it is read again (kicked)."""
        node = await make_sharing("p1")
        device = DEVICES[0]
        worker = node.workers[device]  # type: ignore[attr-defined]
        verdicts: list[str | None] = []

        async def work() -> Outcome:
            verdicts.append(await node.may_put(device))  # the same lease: go
            old = node._cluster._lease.id
            assert old is not None
            await revoke_lease(node._cluster.connection, old)  # as if it expired meanwhile
            await eventually(lambda: node._cluster._lease.id not in (None, old) and node.available)
            kicks = worker.kicks
            assert node.void_read(device) is not None  # what the turn read is void
            verdicts.append(await node.may_put(device))
            await eventually(lambda: worker.kicks > kicks)
            return Outcome.of(spec(device), "changes")

        assert (await node.turn(spec(device), work)).status == "changes"
        assert verdicts[0] is None
        assert verdicts[1] is not None and "lease ended" in verdicts[1]  # its new key
        verdicts.clear()

        async def again() -> Outcome:  # the next turn, under the new lease: the PUT may go
            verdicts.append(await node.may_put(device))
            return Outcome.of(spec(device), "applied")

        assert (await node.turn(spec(device), again)).status == "applied"
        assert verdicts == [None]

    async def test_a_read_is_void_once_the_lease_is_not_sure_to_live(
        self, make_sharing: Factory
    ) -> None:
        """Woken from a pause, a node's own clock fences its lease before etcd's answer
        says it ended (the key still looks held): what the turn read is void already."""
        node = await make_sharing("p2")
        device = DEVICES[0]
        seen: list[str | None] = []

        async def work() -> Outcome:
            seen.append(node.void_read(device))
            node._cluster._lease.failed()  # renewals overdue: fenced; the key not dropped yet
            assert node._cluster.key_revision(device) is not None
            seen.append(node.void_read(device))
            return Outcome.of(spec(device), "changes")

        await node.turn(spec(device), work)
        assert seen[0] is None
        assert seen[1] is not None and "could not be renewed" in seen[1]

    async def test_start_on_answering_etcd_logs_joined_not_unavailable(
        self, make_sharing: Factory
    ) -> None:
        """Loading the shared state at start-up, etcd answering, is no outage: cluster.joined and no cluster.unavailable."""
        with capture_logs() as logs:
            node = await make_sharing("j1")
            await asyncio.sleep(1.2)  # one look each second
        names = [e["event"] for e in logs if e["event"].startswith("cluster.")]
        assert names == ["cluster.joined"]
        assert node.available

    async def test_each_node_publishes_only_its_own_devices_status(
        self, make_sharing: Factory
    ) -> None:
        """Given every device's status, a node publishes those it owns under its name; the other node reads them, and nothing else."""
        one, two = await make_sharing("p1", metrics=Metrics()), await make_sharing("p2")
        # Both joined and both loaded the shared state (a node owns nothing before).
        await eventually(
            lambda: one.members == two.members == {"p1", "p2"} and one.available and two.available
        )
        docs = [
            {"device": d, "state": "in_sync", "owner": one.owner_of(d), "accounts": []}
            for d in DEVICES
        ]
        docs.append({"device": "door-00", "state": "failed", "owner": "p2"})  # not p1's to say
        one.publish_status(docs)
        mine = {d for d in DEVICES if one.owns(d)}
        assert mine and mine != set(DEVICES)
        await eventually(lambda: set(two.shared_statuses()) == mine)
        assert all(two.shared_statuses()[d]["owner"] == "p1" for d in mine)
        assert all(two.shared_statuses()[d]["state"] == "in_sync" for d in mine)

    async def test_put_window_follows_renewals_and_ends_before_the_lease(
        self, make_sharing: Factory
    ) -> None:
        """A renewing node's PUT may outlast the lease TTL; one that stopped renewing is cut before its lease ends."""
        node = await make_sharing("w1")
        async with node.put_window():
            await asyncio.sleep(2.5)
        await node._cluster.abandon()  # as if etcd stopped answering this node
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            async with node.put_window():
                await asyncio.sleep(5)
        assert time.monotonic() - started < 2.0

    async def test_lagging_revision_may_not_drive(self, make_sharing: Factory) -> None:
        """A node whose revision is older than another node's may not drive a rollout; the newer one may."""
        one = await make_sharing("r1")
        two = await make_sharing("r2")
        await eventually(lambda: one.is_leader or two.is_leader)
        one.publish_revision("aaaa")
        two.publish_revision("aaaa")
        await eventually(lambda: len(one._cluster.revisions) == 2)
        assert one.may_drive("aaaa") == one.is_leader
        await asyncio.sleep(0.05)
        two.publish_revision("bbbb")
        await eventually(lambda: one._cluster.revisions.get("r2", ("",))[0] == "bbbb")
        assert one.lagging("aaaa") and not one.may_drive("aaaa")
        assert not two.lagging("bbbb")
        assert two.may_drive("bbbb") == two.is_leader

    async def test_a_revision_loaded_while_fenced_is_published_once_renewed(
        self, make_sharing: Factory
    ) -> None:
        """A revision loaded while the node's lease is fenced (a host woken from a pause
        loads its new tree before it has renewed) reaches its registration at the next
        renewal, not at the next reload: no lasting cluster.revision_differs."""
        one, two = await make_sharing("v1"), await make_sharing("v2")
        one.publish_revision("aaaa")
        await eventually(lambda: two._cluster.revisions.get("v1", ("",))[0] == "aaaa")
        one._cluster._lease.failed()  # renewals overdue: nothing is written now
        await one._cluster.publish_revision("bbbb", time.time())
        await eventually(lambda: two._cluster.revisions.get("v1", ("",))[0] == "bbbb")

    async def test_metrics_and_health(self, make_sharing: Factory) -> None:
        """Members, owned devices and leadership are gauges; /healthz's problem is None while joined."""
        metrics = [Metrics(), Metrics()]
        nodes = [
            await make_sharing(n, metrics=m) for n, m in zip(("m1", "m2"), metrics, strict=True)
        ]
        await eventually(lambda: all(n.members == {"m1", "m2"} for n in nodes))

        def value(m: Metrics, name: str) -> float:
            return m.registry.get_sample_value(name) or 0.0

        await eventually(
            lambda: (
                sum(value(m, "syncd_owned_devices") for m in metrics) == len(DEVICES)
                and all(value(m, "syncd_cluster_members") == 2 for m in metrics)
                and sum(value(m, "syncd_cluster_leader") for m in metrics) == 1
            )
        )
        assert [m.health_problem() for m in metrics] == [None, None]
        assert "owns" in nodes[0].describe()
