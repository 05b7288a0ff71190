"""ClusterNode against a real etcd: membership, ownership, fencing, rejoin, leader."""

from __future__ import annotations

import asyncio
import json
import stat
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from syncd.cluster.connection import ClusterError, EtcdAccess, EtcdConnection
from syncd.cluster.hashing import owner_of
from syncd.cluster.node import ClusterNode
from syncd.cluster.watching import read_prefix
from tests.cluster.conftest import NodeFactory, enable_auth
from tests.etcd_server import EtcdServer

DEVICES = [f"site-{i % 4}/door-{i:02d}" for i in range(60)]
# Deadlines for polling only; they are loose on purpose (2 shared cores).
SLACK = 5.0


async def wait_for(condition: Callable[[], bool], timeout: float = SLACK) -> float:
    """Seconds until ``condition`` held; fails the test after ``timeout``."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.01)
    return time.monotonic() - start


def owners(nodes: list[ClusterNode], device: str) -> list[str]:
    return [node.node_name for node in nodes if node.owns(device)]


def exactly_one_owner(nodes: list[ClusterNode]) -> bool:
    return all(len(owners(nodes, device)) == 1 for device in DEVICES)


class TestMembership:
    async def test_members_seen_by_all_quickly(self, make_node: NodeFactory) -> None:
        """A node that joins is seen by the others through the watch well under a second later."""
        a, b = await make_node("a"), await make_node("b")
        await wait_for(lambda: a.members == b.members == {"a", "b"})
        c = await make_node("c")
        seen = await wait_for(lambda: a.members == b.members == c.members == {"a", "b", "c"})
        assert seen < 1.0, f"membership took {seen:.3f} s"

    async def test_each_device_owned_by_exactly_one_node(self, make_node: NodeFactory) -> None:
        """Of 60 devices each is owned by exactly one of three nodes, and only its owner can take its key."""
        nodes = [await make_node(name) for name in ("a", "b", "c")]
        await wait_for(lambda: all(n.members == {"a", "b", "c"} for n in nodes))
        assert exactly_one_owner(nodes)
        assert all(n.owned(DEVICES) for n in nodes)
        for device in DEVICES[:12]:
            results = {n.node_name: await n.acquire(device) for n in nodes}
            assert [name for name, ok in results.items() if ok] == owners(nodes, device)

    async def test_duplicate_node_name_refused(self, make_node: NodeFactory) -> None:
        """A second live node with the same node_name refuses to start with one sentence naming it."""
        await make_node("a")
        with pytest.raises(ClusterError) as raised:
            await make_node("a")
        message = str(raised.value)
        assert "node_name 'a'" in message and "\n" not in message

    async def test_stopped_node_devices_move_at_once(self, make_node: NodeFactory) -> None:
        """A node that stops revokes its lease: the others own its devices, and can take them, at once."""
        nodes = [await make_node(name) for name in ("a", "b", "c")]
        await wait_for(lambda: all(n.members == {"a", "b", "c"} for n in nodes))
        c_devices = nodes[2].owned(DEVICES)
        for device in c_devices:
            assert await nodes[2].acquire(device)
        await nodes[2].stop()
        took = await wait_for(lambda: exactly_one_owner(nodes[:2]))
        assert took < 1.0
        for device in c_devices:
            owner = next(n for n in nodes[:2] if n.owns(device))
            assert await owner.acquire(device)

    async def test_killed_node_devices_taken_over_within_lease_ttl(
        self, make_node: NodeFactory
    ) -> None:
        """A node that stops renewing (killed) loses its devices to the others once its lease expires."""
        nodes = [await make_node(name) for name in ("a", "b", "c")]
        await wait_for(lambda: all(n.members == {"a", "b", "c"} for n in nodes))
        victim = nodes[2]
        held = victim.owned(DEVICES)
        for device in held:
            assert await victim.acquire(device)
        await victim.abandon()
        start = time.monotonic()
        # Until the lease expires nobody else may take the devices.
        for device in held[:3]:
            assert not await nodes[0].acquire(device)
            assert not await nodes[1].acquire(device)
        await wait_for(lambda: exactly_one_owner(nodes[:2]), timeout=victim.lease_ttl + SLACK)
        for device in held:
            owner = next(n for n in nodes[:2] if n.owns(device))
            while not await owner.acquire(device):
                await asyncio.sleep(0.05)
        takeover = time.monotonic() - start
        print(f"takeover after kill: {takeover:.2f} s (lease_ttl {victim.lease_ttl} s)")
        assert takeover < victim.lease_ttl + SLACK

    async def test_new_node_takes_about_a_third(self, make_node: NodeFactory) -> None:
        """A third node joining two takes about a third of the devices, and no device moves between the two."""
        a, b = await make_node("a"), await make_node("b")
        await wait_for(lambda: a.members == b.members == {"a", "b"})
        before = {d: owners([a, b], d)[0] for d in DEVICES}
        c = await make_node("c")
        await wait_for(lambda: a.members == b.members == {"a", "b", "c"})
        after = {d: owners([a, b, c], d)[0] for d in DEVICES}
        moved = [d for d in DEVICES if before[d] != after[d]]
        assert all(after[d] == "c" for d in moved)
        assert 10 <= len(moved) <= 30

    async def test_old_holder_blocks_new_owner_until_release(self, make_node: NodeFactory) -> None:
        """A device that moves stays with its old holder (a PUT in flight) until that one releases it."""
        a = await make_node("a")
        await wait_for(lambda: a.members == {"a"})
        for device in DEVICES:
            assert await a.acquire(device)
        b = await make_node("b")
        await wait_for(lambda: a.members == {"a", "b"})
        moving = b.owned(DEVICES)
        assert moving and a.held >= set(moving)
        assert not await b.acquire(moving[0])
        for device in a.held - set(a.owned(DEVICES)):
            await a.release(device)
        assert await b.acquire(moving[0])


class TestLeader:
    async def test_one_leader_and_handover_on_stop(self, make_node: NodeFactory) -> None:
        """Exactly one node leads; when it stops, another takes over."""
        nodes = [await make_node(name) for name in ("a", "b", "c")]
        await wait_for(lambda: sum(n.is_leader for n in nodes) == 1)
        leader = next(n for n in nodes if n.is_leader)
        assert all(n.leader == leader.node_name for n in nodes)
        await leader.stop()
        rest = [n for n in nodes if n is not leader]
        await wait_for(lambda: sum(n.is_leader for n in rest) == 1)

    async def test_handover_when_leader_lease_expires(self, make_node: NodeFactory) -> None:
        """A killed leader keeps the role until its lease expires, then another node leads."""
        nodes = [await make_node(name) for name in ("a", "b")]
        await wait_for(lambda: sum(n.is_leader for n in nodes) == 1)
        leader = next(n for n in nodes if n.is_leader)
        other = next(n for n in nodes if n is not leader)
        await leader.abandon()
        assert not other.is_leader
        await wait_for(lambda: other.is_leader, timeout=leader.lease_ttl + SLACK)


class TestEtcdDown:
    async def test_no_ownership_while_etcd_down_and_rejoin(
        self, make_node: NodeFactory, own_etcd: EtcdServer
    ) -> None:
        """etcd stopped: no node owns any device within lease_ttl; etcd back: they rejoin by themselves."""
        nodes = [await make_node(name, server=own_etcd) for name in ("a", "b")]
        await wait_for(lambda: all(n.members == {"a", "b"} for n in nodes))
        assert exactly_one_owner(nodes)
        own_etcd.stop()
        stopped = time.monotonic()
        await wait_for(lambda: not any(n.owns(d) for n in nodes for d in DEVICES))
        fenced = time.monotonic() - stopped
        print(f"fenced {fenced:.2f} s after etcd stopped (lease_ttl {nodes[0].lease_ttl} s)")
        assert fenced < nodes[0].lease_ttl
        assert not any(n.is_leader for n in nodes)
        own_etcd.start()
        await wait_for(lambda: all(n.healthy for n in nodes) and exactly_one_owner(nodes))
        await wait_for(lambda: sum(n.is_leader for n in nodes) == 1)

    async def test_release_failed_while_etcd_down_is_asked_again(
        self, make_node: NodeFactory, own_etcd: EtcdServer
    ) -> None:
        """A release that fails while etcd is down leaves the device held, so it is released once etcd answers and its new owner can take it."""
        a = await make_node("a", server=own_etcd)
        await wait_for(lambda: a.members == {"a"})
        for device in DEVICES:
            assert await a.acquire(device)
        b = await make_node("b", server=own_etcd)
        await wait_for(lambda: a.members == b.members == {"a", "b"})
        moving = b.owned(DEVICES)[0]
        own_etcd.stop()
        await a.release(moving)
        own_etcd.start()
        await wait_for(lambda: a.healthy and b.healthy)
        assert moving in a.held
        assert not await b.acquire(moving)
        # Right after etcd's restart one request may still fail (a loaded machine): the
        # device then stays held, and is released when asked again, as a daemon's next
        # pass asks; the same for b's next try to take it.
        for _ in range(50):
            await a.release(moving)
            if moving not in a.held:
                break
            await asyncio.sleep(0.1)
        assert moving not in a.held
        for _ in range(50):
            if await b.acquire(moving):
                break
            await asyncio.sleep(0.1)
        assert moving in b.held

    async def test_frozen_etcd_fences_before_lease_expiry(
        self, make_node: NodeFactory, own_etcd: EtcdServer
    ) -> None:
        """etcd frozen (no answer, no error): nodes own nothing before their lease could expire, and recover."""
        nodes = [await make_node(name, server=own_etcd) for name in ("a", "b")]
        await wait_for(lambda: all(n.members == {"a", "b"} for n in nodes))
        assert all(0 < n.lease_remaining <= n.lease_ttl for n in nodes)
        own_etcd.pause()
        try:
            frozen = time.monotonic()
            await wait_for(lambda: not any(n.owns(d) for n in nodes for d in DEVICES))
            fenced = time.monotonic() - frozen
            print(f"fenced {fenced:.2f} s after etcd froze (lease_ttl {nodes[0].lease_ttl} s)")
            assert fenced < nodes[0].lease_ttl
            assert all(n.lease_remaining == 0 for n in nodes)
        finally:
            own_etcd.resume()
        await wait_for(lambda: all(n.healthy for n in nodes) and exactly_one_owner(nodes))

    async def test_restarted_etcd_with_auth_rejoined_with_a_new_token(
        self, make_node: NodeFactory, own_etcd: EtcdServer, cluster_name: str
    ) -> None:
        """etcd with authentication restarted (it forgets every token): the nodes authenticate again and rejoin, whether they saw it down or not."""
        await enable_auth(
            own_etcd.endpoint, user="syncd", password="syncd-Pass-1", prefix=f"/{cluster_name}/"
        )
        user = ("syncd", "syncd-Pass-1")
        nodes = [await make_node(n, server=own_etcd, user=user) for n in ("a", "b")]
        slow = await make_node("c", server=own_etcd, user=user, lease_ttl=30.0)
        await wait_for(lambda: all(n.members == {"a", "b", "c"} for n in [*nodes, slow]))
        own_etcd.stop()
        await wait_for(lambda: not any(n.healthy for n in nodes))
        own_etcd.start()  # c renews every 10 s: it may not have seen etcd down
        everyone = [*nodes, slow]
        await wait_for(lambda: all(n.healthy for n in nodes))
        # Rejoined as the others see it (on a busy machine a node may be healthy before
        # its own membership is back in every view): each owns its share again.
        await wait_for(
            lambda: all(n.members == {"a", "b", "c"} and n.owned(DEVICES) for n in everyone)
        )
        for node in [*nodes, slow]:  # taking an ownership key needs a token etcd takes
            device = node.owned(DEVICES)[0]
            deadline = time.monotonic() + SLACK
            while not await node.acquire(device):
                assert time.monotonic() < deadline, f"{node.node_name} took no key"
                await asyncio.sleep(0.05)

    async def test_start_without_etcd_then_join(
        self, make_node: NodeFactory, own_etcd: EtcdServer
    ) -> None:
        """A node started while etcd is down starts anyway, unavailable, and joins when etcd answers."""
        own_etcd.stop()
        node = await make_node("a", server=own_etcd)
        assert not node.available and not node.healthy
        assert not node.owns(DEVICES[0])
        own_etcd.start()
        await wait_for(lambda: node.available and node.healthy and node.owns(DEVICES[0]))


class TestProcesses:
    async def test_sigkilled_node_process_taken_over(
        self, make_node: NodeFactory, etcd: EtcdServer, cluster_name: str
    ) -> None:
        """A node in another process killed with SIGKILL has its devices owned by the others after its lease expires."""
        a, b = await make_node("a"), await make_node("b")
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.cluster.node_process",
            etcd.endpoint,
            cluster_name,
            "c",
            "2",
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            assert child.stdout is not None
            line = await asyncio.wait_for(child.stdout.readline(), 20)
            assert line.strip() == b"joined"
            await wait_for(lambda: a.members == b.members == {"a", "b", "c"})
            c_devices = [d for d in DEVICES if owner_of(d, {"a", "b", "c"}) == "c"]
            assert c_devices and not any(owners([a, b], d) for d in c_devices)
        finally:
            child.kill()
            await child.wait()
        killed = time.monotonic()
        await wait_for(lambda: exactly_one_owner([a, b]), timeout=2 + SLACK)
        print(f"takeover after SIGKILL: {time.monotonic() - killed:.2f} s (lease_ttl 2 s)")


def remembered(path: Path) -> dict[str, Any]:
    """The lease file's record, and its permission bits as ``mode``."""
    return {**json.loads(path.read_text()), "mode": stat.S_IMODE(path.stat().st_mode)}


async def member_lease(endpoint: str, cluster_name: str, node: str) -> int | None:
    """The lease ``node``'s registration names, read from etcd now."""
    connection = EtcdConnection(EtcdAccess((endpoint,)), timeout=2.0)
    try:
        changes, _ = await read_prefix(connection, f"/{cluster_name}/members/{node}")
    finally:
        await connection.close()
    return json.loads(changes[0].value or b"{}").get("lease") if changes else None


class TestRestarted:
    async def test_own_registration_taken_back_with_its_keys(
        self, make_node: NodeFactory, etcd: EtcdServer, cluster_name: str, tmp_path: Path
    ) -> None:
        """A node gone without revoking its lease (killed), started again with the same state dir: it joins at once, and its old ownership and leader keys keep it from nothing."""
        lease_file = tmp_path / "state" / "cluster-lease"
        lease_file.parent.mkdir()
        old = await make_node("a", lease_ttl=30.0, lease_file=lease_file)
        await wait_for(lambda: old.is_leader)
        for device in DEVICES[:5]:
            assert await old.acquire(device)
        old_lease = remembered(lease_file)["leases"]
        await old.abandon()

        new = await make_node("a", lease_ttl=30.0, lease_file=lease_file)
        assert new.healthy and new.members == {"a"}
        for device in DEVICES[:5]:
            assert await new.acquire(device), device
        await wait_for(lambda: new.is_leader)
        record = remembered(lease_file)
        assert record["leases"] != old_lease and len(record["leases"]) == 1
        assert record | {"leases": None} == {
            "cluster": cluster_name,
            "node": "a",
            "leases": None,
            "mode": 0o600,
        }
        assert await member_lease(etcd.endpoint, cluster_name, "a") == record["leases"][0]

    async def test_own_registration_taken_back_with_authentication(
        self, make_node: NodeFactory, own_etcd: EtcdServer, cluster_name: str, tmp_path: Path
    ) -> None:
        """With etcd's user limited to the cluster's prefix, as the README sets it up, the restarted node may still revoke its old lease: it takes back its device and the leader key."""
        await enable_auth(
            own_etcd.endpoint, user="syncd", password="syncd-Pass-1", prefix=f"/{cluster_name}/"
        )
        user = ("syncd", "syncd-Pass-1")
        lease_file = tmp_path / "cluster-lease"
        old = await make_node(
            "a", server=own_etcd, user=user, lease_ttl=30.0, lease_file=lease_file
        )
        await wait_for(lambda: old.is_leader)
        assert await old.acquire(DEVICES[0])
        await old.abandon()
        new = await make_node(
            "a", server=own_etcd, user=user, lease_ttl=30.0, lease_file=lease_file
        )
        assert new.healthy
        assert await new.acquire(DEVICES[0])
        await wait_for(lambda: new.is_leader)

    async def test_same_name_from_another_state_dir_refused(
        self, make_node: NodeFactory, etcd: EtcdServer, cluster_name: str, tmp_path: Path
    ) -> None:
        """A second node with a live node's name and its own state dir (its own leases remembered) is refused with the same sentence, and the live node keeps its registration."""
        (tmp_path / "one").mkdir()
        (tmp_path / "two").mkdir()
        live = await make_node("a", lease_file=tmp_path / "one" / "cluster-lease")
        lease = await member_lease(etcd.endpoint, cluster_name, "a")
        # The other state dir remembers a lease of its own, which holds nothing.
        before = await make_node("b", lease_ttl=30.0, lease_file=tmp_path / "two" / "cluster-lease")
        await before.abandon()
        (tmp_path / "two" / "cluster-lease").write_text(
            (tmp_path / "two" / "cluster-lease").read_text().replace('"b"', '"a"')
        )
        with pytest.raises(ClusterError) as raised:
            await make_node("a", lease_file=tmp_path / "two" / "cluster-lease")
        assert str(raised.value) == (
            f"node_name 'a' is already used by another live node of cluster {cluster_name!r}; "
            "give each node its own node_name"
        )
        await asyncio.sleep(1.0)  # a renewal of the live node (lease_ttl 2 s)
        assert live.healthy
        assert await member_lease(etcd.endpoint, cluster_name, "a") == lease

    async def test_lease_file_gone_after_a_clean_stop(
        self, make_node: NodeFactory, tmp_path: Path
    ) -> None:
        """A node that revoked its lease at stop remembers none; a file for another node name is ignored and replaced."""
        lease_file = tmp_path / "cluster-lease"
        lease_file.write_text('{"cluster": "elsewhere", "node": "a", "leases": [12345]}\n')
        node = await make_node("a", lease_file=lease_file)
        assert (
            remembered(lease_file)["node"] == "a" and 12345 not in remembered(lease_file)["leases"]
        )
        await node.stop()
        assert not lease_file.exists()
