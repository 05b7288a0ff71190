"""``syncd run`` nodes sharing one emulated fleet through a real etcd (SPEC section 11).

Each node names itself in its User-Agent, so the emulator's journal tells
which node read or changed which device, and when ([started, finished]).
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from syncd.cluster.agreement import revision_grace
from syncd.cluster.hashing import owner_of
from syncd.control import ControlClient, ControlError
from syncd.simulator import EmulatedDevice, Fleet, run_fleet_in_thread
from tests.cluster.conftest import _binary, enable_auth
from tests.cluster.daemons import (
    LEASE_TTL,
    RESYNC,
    SIP_PASSWORD,
    all_labelled,
    desired_tree,
    drift,
    etcd_keys,
    events_named,
    label_of,
    node_args,
    node_of,
    overlapping_puts,
    requests_by_node,
    start_node,
    wait_until,
)
from tests.e2e.conftest import DaemonProcess, syncd
from tests.etcd_server import EtcdServer, free_port
from tests.git_repo import git

#: A takeover may take lease_ttl + one resync; this much more is allowed for a busy machine.
SLACK = 4.0


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    """60 emulated intercoms shared by the module (each test writes its own desired values)."""
    with run_fleet_in_thread(devices=60) as running:
        yield running


@pytest.fixture
def launch(
    nodes: list[DaemonProcess], tmp_path: Path, cluster_name: str
) -> Callable[..., DaemonProcess]:
    def start(
        node: str, endpoint: str, desired: Path, *extra: str, env: dict[str, str] | None = None
    ) -> DaemonProcess:
        args = node_args(
            endpoint=endpoint,
            cluster=cluster_name,
            node=node,
            desired=desired,
            tmp_path=tmp_path,
            extra=extra,
        )
        proc = start_node(args, env)
        nodes.append(proc)
        return proc

    return start


def settled(procs: list[DaemonProcess], members: int) -> None:
    """Wait until every node's last membership event names ``members`` live nodes."""

    def seen(proc: DaemonProcess) -> int:
        found = events_named(proc, "cluster.joined") + events_named(proc, "cluster.members")
        found.sort(key=lambda e: str(e["timestamp"]))
        return len(found[-1]["members"]) if found else 0

    wait_until(lambda: all(seen(p) == members for p in procs), 20, f"{members} members seen")


class Notifications:
    """A $NOTIFY_SOCKET that keeps the last STATUS= line a daemon sent."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.status = ""

    def last_status(self) -> str:
        while True:
            try:
                message = self.sock.recv(4096).decode()
            except BlockingIOError:
                return self.status
            for line in message.splitlines():
                if line.startswith("STATUS="):
                    self.status = line

    def close(self) -> None:
        self.sock.close()


def healthz(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def membership_news(procs: list[DaemonProcess]) -> int:
    """How many membership events the nodes have logged so far."""
    names = ("cluster.joined", "cluster.members", "cluster.unavailable")
    return sum(len(events_named(p, name)) for p in procs for name in names)


def readers_while_members_hold(
    procs: list[DaemonProcess], devices: list[EmulatedDevice], names: list[str]
) -> dict[str, str]:
    """The one node that read each device over 2.5 resyncs in which no node saw the members
    change (on a loaded machine a late lease renewal can hide a node for a moment; the
    window is then measured again, up to three times)."""
    for _ in range(3):
        news = membership_news(procs)
        for device in devices:
            device.clear_journal()
        time.sleep(2.5 * RESYNC)
        if membership_news(procs) == news:
            break
    readers = {name: requests_by_node(d) for name, d in zip(names, devices, strict=True)}
    shared = {name: nodes for name, nodes in readers.items() if len(nodes) != 1}
    assert not shared, shared
    return {name: next(iter(nodes)) for name, nodes in readers.items()}


class TestSharedFleet:
    def test_one_node_per_device_and_a_killed_node_taken_over(
        self, fleet: Fleet, etcd: EtcdServer, launch: Callable[..., DaemonProcess], tmp_path: Path
    ) -> None:
        """Three nodes: each device read and changed by its one owner; a SIGKILLed node's drift is corrected by the others within lease_ttl + one resync; no PUT windows overlap across the kill and a restart."""
        devices = fleet.devices
        names = desired_tree(tmp_path / "desired", devices, "Kill")
        procs = [launch(n, etcd.endpoint, tmp_path / "desired") for n in ("n1", "n2", "n3")]
        wait_until(all_labelled(devices, "Kill"), 40, "the fleet converged")
        settled(procs, 3)

        owners = readers_while_members_hold(procs, devices, names)
        assert owners == {n: owner_of(n, ["n1", "n2", "n3"]) for n in names}
        shares = {node: list(owners.values()).count(node) for node in ("n1", "n2", "n3")}
        assert min(shares.values()) >= 8, shares

        drift(devices)
        wait_until(all_labelled(devices, "Kill"), 3 * RESYNC + SLACK, "drift corrected")
        for name, device in zip(names, devices, strict=True):
            assert set(requests_by_node(device, "PUT")) == {owners[name]}, name

        victims = [d for n, d in zip(names, devices, strict=True) if owners[n] == "n1"]
        procs[0].proc.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        drift(victims)
        wait_until(all_labelled(devices, "Kill"), LEASE_TTL + RESYNC + SLACK, "takeover")
        took = time.monotonic() - killed_at
        print(f"takeover of {len(victims)} devices after SIGKILL: {took:.2f} s")
        for name, device in zip(names, devices, strict=True):
            if owners[name] == "n1":
                after_kill = [e for e in device.journal if e.method == "PUT"][-1]
                assert node_of(after_kill.user_agent) == owner_of(name, ["n2", "n3"]), name

        procs[0] = launch("n1", etcd.endpoint, tmp_path / "desired")
        settled(procs, 3)
        drift(devices)
        wait_until(all_labelled(devices, "Kill"), 3 * RESYNC + SLACK, "drift corrected")
        for name, device in zip(names, devices, strict=True):
            last = [e for e in device.journal if e.method == "PUT"][-1]
            assert node_of(last.user_agent) == owners[name], name
        assert overlapping_puts(devices) == []

    def test_added_node_takes_about_a_third_and_sends_no_password_again(
        self,
        fleet: Fleet,
        etcd: EtcdServer,
        launch: Callable[..., DaemonProcess],
        tmp_path: Path,
        cluster_name: str,
    ) -> None:
        """A third node joining while PUTs are in flight takes about a third of the devices, from their old owners only, never overlapping their PUTs; moved devices keep their password records; owner keys name the node that changed each device."""
        devices = fleet.devices
        names = desired_tree(tmp_path / "desired", devices, "Grow")
        procs = [launch(n, etcd.endpoint, tmp_path / "desired") for n in ("n1", "n2")]
        wait_until(all_labelled(devices, "Grow"), 40, "the fleet converged")
        settled(procs, 2)
        for device in devices:
            device.clear_journal()
        drift(devices)
        wait_until(all_labelled(devices, "Grow"), 3 * RESYNC + SLACK, "drift corrected")
        before = {n: node_of(d.journal[-1].user_agent) for n, d in zip(names, devices, strict=True)}

        # The old owners' next PUTs take 1.5 s each: the new node joins while they are in flight.
        for device in devices:
            device.inject(kind="delay", delay=1.5, method="PUT", count=1)
        drift(devices)
        time.sleep(RESYNC + 0.2)
        procs.append(launch("n3", etcd.endpoint, tmp_path / "desired"))
        settled(procs, 3)
        wait_until(all_labelled(devices, "Grow"), 3 * RESYNC + SLACK, "drift corrected")
        assert overlapping_puts(devices) == []
        for device in devices:
            device.clear_journal()
        drift(devices)
        wait_until(all_labelled(devices, "Grow"), 3 * RESYNC + SLACK, "drift corrected")
        after = {}
        for name, device in zip(names, devices, strict=True):
            puts = [e for e in device.journal if e.method == "PUT"]
            assert len({node_of(e.user_agent) for e in puts}) == 1, name
            after[name] = node_of(puts[-1].user_agent)
            assert all("password" not in json.dumps(e.blob) for e in puts), name
        moved = [n for n in names if after[n] != before[n]]
        assert all(after[n] == "n3" for n in moved)
        assert 10 <= len(moved) <= 30, len(moved)
        keys = etcd_keys(etcd.endpoint, f"/{cluster_name}/owners/")
        assert {n: keys.get(n) for n in names} == after
        assert overlapping_puts(devices) == []


class TestWholeFleetStatus:
    def test_every_node_shows_every_device_with_its_owner(
        self,
        fleet: Fleet,
        etcd: EtcdServer,
        launch: Callable[..., DaemonProcess],
        tmp_path: Path,
        cluster_name: str,
    ) -> None:
        """Three nodes over 30 devices: `syncd status --json` on each lists all 30, in_sync, each with the owner its etcd owner key names."""
        devices = fleet.devices[:30]
        names = desired_tree(tmp_path / "desired", devices, "Seen")
        sockets = {n: tmp_path / f"{n}.sock" for n in ("n1", "n2", "n3")}
        procs = [
            launch(n, etcd.endpoint, tmp_path / "desired", "--socket", str(sockets[n]))
            for n in sockets
        ]
        wait_until(all_labelled(devices, "Seen"), 30, "the fleet converged")
        settled(procs, 3)
        owners = {n: owner_of(n, list(sockets)) for n in names}

        def shows_all(node: str) -> Callable[[], bool]:
            def check() -> bool:
                try:
                    data = ControlClient(sockets[node], timeout=2).status()
                except (ControlError, OSError):
                    return False
                seen = {d["device"]: (d["state"], d["owner"]) for d in data["devices"]}
                return seen == {n: ("in_sync", owners[n]) for n in names}

            return check

        for node in sockets:
            wait_until(shows_all(node), 10, f"{node} shows the whole fleet in sync")
        keys = etcd_keys(etcd.endpoint, f"/{cluster_name}/owners/")
        assert {n: keys.get(n) for n in names} == owners
        for node, path in sockets.items():
            result = syncd("status", "--json", "--socket", str(path), timeout=20)
            assert result.returncode == 0, result.stderr
            data = json.loads(result.stdout)
            assert data["node"] == node
            assert data["summary"]["devices"] == 30 and data["summary"]["in_sync"] == 30
            assert sorted(d["device"] for d in data["devices"]) == names
            assert {d["device"]: d["owner"] for d in data["devices"]} == keys
            assert all(d["last_sync"] is not None for d in data["devices"])
            assert SIP_PASSWORD not in result.stdout
            assert data["cluster"]["members"] == ["n1", "n2", "n3"]
            assert data["cluster"]["leader"] in ("n1", "n2", "n3")
        leaders = {
            json.loads(syncd("status", "--json", "--socket", str(p), timeout=20).stdout)["cluster"][
                "leader"
            ]
            for p in sockets.values()
        }
        assert len(leaders) == 1  # every node names the same leader
        text = syncd("status", "--socket", str(sockets["n1"]), timeout=20).stdout
        assert f"cluster   n1, n2, n3 (leader {leaders.pop()})" in text, text

        # Every node's outcomes reached the one node driving the rollout: it completed. (Without
        # _fleet.yaml nothing waits for the driver, SPEC 9: when the devices were all changed
        # before the leader first ticked as driver there is nothing left to roll out, "none".
        # Either way it must not stay "running".)
        def over(path: Path) -> Callable[[], bool]:
            return lambda: (
                ControlClient(path, timeout=2).status()["rollout"]["state"] in ("completed", "none")
            )

        for path in sockets.values():
            wait_until(over(path), 10, "the rollout completed")


class TestEtcdLost:
    def test_unavailable_at_start_then_lost_and_back(
        self, fleet: Fleet, launch: Callable[..., DaemonProcess], tmp_path: Path
    ) -> None:
        """Nodes started without etcd change nothing and answer /healthz 503; with etcd they converge; etcd stopped, no PUT after lease_ttl; etcd back, the drift is corrected."""
        devices = fleet.devices[:30]
        desired_tree(tmp_path / "desired", devices, "Lost")
        for device in devices:
            device.clear_journal()
        server = EtcdServer(_binary(), tmp_path / "etcd")
        port = free_port()
        notify = Notifications(tmp_path / "notify.sock")
        procs = [
            launch(
                "n1",
                server.endpoint,
                tmp_path / "desired",
                "--metrics-address",
                f"127.0.0.1:{port}",
                env={"NOTIFY_SOCKET": str(notify.path)},
            ),
            launch(
                "n2", server.endpoint, tmp_path / "desired", "--socket", str(tmp_path / "n2.sock")
            ),
        ]
        try:
            first = [proc.wait_for("cluster.unavailable", timeout=20) for proc in procs]
            # never answered since start: the setting and what may be wrong with it are named
            assert (
                f"cluster_endpoints {server.endpoint} since this node started" in first[0]["error"]
            ), first[0]
            wait_until(lambda: healthz(port) == 503, 10, "/healthz says 503")
            wait_until(lambda: "STATUS=cluster unavailable" in notify.last_status(), 5, "STATUS")
            time.sleep(2 * RESYNC)
            assert [d.number for d in devices if any(e.method == "PUT" for e in d.journal)] == []

            time.sleep(3)  # a few seconds without etcd: gRPC's reconnect backoff grows
            server.start()
            for proc in procs:
                proc.wait_for("cluster.joined", timeout=LEASE_TTL + 3)
            wait_until(all_labelled(devices, "Lost"), 30, "the fleet converged once etcd answered")
            wait_until(lambda: healthz(port) == 200, 10, "/healthz says 200")
            wait_until(lambda: "STATUS=node n1" in notify.last_status(), 5, "STATUS names n1")

            server.stop()
            lost = [proc.wait_for("cluster.unavailable", timeout=LEASE_TTL + 5) for proc in procs]
            assert f"cluster_endpoints {server.endpoint};" in lost[0]["error"], lost[0]
            time.sleep(LEASE_TTL)
            for device in devices:
                device.clear_journal()
            drift(devices)
            time.sleep(3 * RESYNC)
            assert [d.number for d in devices if any(e.method == "PUT" for e in d.journal)] == []
            assert healthz(port) == 503
            assert "STATUS=cluster unavailable" in notify.last_status()
            # Nothing is read now: status shows no device's last state as current.
            shown = ControlClient(tmp_path / "n2.sock", timeout=5).status()
            assert shown["summary"]["unknown"] == 30 and shown["summary"]["in_sync"] == 0
            assert all("lost etcd" in d["message"] for d in shown["devices"])

            server.start()
            took = wait_until(
                all_labelled(devices, "Lost"), 20, "drift corrected after etcd returned"
            )
            print(f"drift corrected {took:.2f} s after etcd returned")
        finally:
            server.stop()
            notify.close()
        assert overlapping_puts(devices) == []

    def test_with_authentication_rejoined_after_etcd_restarted(
        self,
        fleet: Fleet,
        launch: Callable[..., DaemonProcess],
        tmp_path: Path,
        cluster_name: str,
    ) -> None:
        """etcd with a user for syncd, as the README sets it up, restarted (its tokens gone): the nodes rejoin and stay joined, and correct the drift made meanwhile; cluster.unavailable once, for the outage; no warning whose event is not a name."""
        devices = fleet.devices[34:40]
        desired_tree(tmp_path / "desired", devices, "Auth")
        server = EtcdServer(_binary(), tmp_path / "etcd")
        server.start()
        password = "syncd-Etcd-Pass-1"
        asyncio.run(
            enable_auth(
                server.endpoint, user="syncd", password=password, prefix=f"/{cluster_name}/"
            )
        )
        (tmp_path / "etcd-password").write_text(password + "\n")
        user = (
            "--cluster-username",
            "syncd",
            "--cluster-password-file",
            str(tmp_path / "etcd-password"),
        )
        procs = [launch(n, server.endpoint, tmp_path / "desired", *user) for n in ("n1", "n2")]
        try:
            wait_until(all_labelled(devices, "Auth"), 30, "the devices converged")
            settled(procs, 2)
            server.stop()
            for proc in procs:
                proc.wait_for("cluster.unavailable", timeout=LEASE_TTL + 5)
            drift(devices)
            server.start()
            took = wait_until(
                all_labelled(devices, "Auth"), 20, "drift corrected after etcd returned"
            )
            print(f"drift corrected {took:.2f} s after etcd returned, with authentication")
            time.sleep(LEASE_TTL)  # and they stay joined
            # What they said while etcd was up: stopping it below is news they may log at once.
            said = [list(proc.events) for proc in procs]
        finally:
            server.stop()
        for proc, events in zip(procs, said, strict=True):
            seen = [e["event"] for e in events if e["event"].startswith("cluster.")]
            assert seen[-1] in ("cluster.joined", "cluster.members"), seen
            assert seen.count("cluster.unavailable") == 1, seen
            loud = [e for e in proc.events if e.get("level") in ("warning", "error")]
            assert all(re.fullmatch(r"[a-z_]+(\.[a-z_]+)+", e["event"]) for e in loud), loud
            assert password not in "".join(proc.lines)

    def test_stopped_while_etcd_is_down_exits_cleanly(
        self, fleet: Fleet, launch: Callable[..., DaemonProcess], tmp_path: Path
    ) -> None:
        """SIGTERM while etcd is down, its watches reconnecting: the node exits 0 within the stop timeout, daemon.stopped its last event, nothing on stderr."""
        devices = fleet.devices[30:34]
        desired_tree(tmp_path / "desired", devices, "Stop")
        server = EtcdServer(_binary(), tmp_path / "etcd")
        server.start()
        try:
            proc = launch("n1", server.endpoint, tmp_path / "desired")
            proc.wait_for("cluster.joined", timeout=20)
            wait_until(all_labelled(devices, "Stop"), 30, "the devices converged")
            server.stop()
            proc.wait_for("cluster.unavailable", timeout=LEASE_TTL + 5)
            time.sleep(1.5)  # the watches are reconnecting by now
            started = time.monotonic()
            assert proc.stop(timeout=15) == 0
            print(f"stopped {time.monotonic() - started:.2f} s after SIGTERM, etcd down")
        finally:
            server.stop()
        assert proc.events[-1]["event"] == "daemon.stopped"
        assert proc.proc.stderr is not None
        assert proc.proc.stderr.read() == ""


#: A lease long enough that "joined well before the old lease could expire" is plain on a
#: slow machine: a node that had to wait for it would take this long, one that did not about 1 s.
LONG_TTL = 15.0


class TestRestartedNode:
    def test_stopped_while_etcd_down_and_started_again_rejoins_at_once(
        self, fleet: Fleet, launch: Callable[..., DaemonProcess], tmp_path: Path
    ) -> None:
        """SIGTERM while etcd is down (its lease cannot be revoked), started again, etcd back: the node rejoins well before that old lease could expire, blaming no setting, and changes its devices again."""
        devices = fleet.devices[40:50]
        names = desired_tree(tmp_path / "desired", devices, "Restart")
        ttl = ("--lease-ttl", str(LONG_TTL))
        server = EtcdServer(_binary(), tmp_path / "etcd")
        server.start()
        try:
            procs = [launch(n, server.endpoint, tmp_path / "desired", *ttl) for n in ("n1", "n2")]
            wait_until(all_labelled(devices, "Restart"), 30, "the devices converged")
            settled(procs, 2)
            server.stop()
            assert procs[1].stop(timeout=20) == 0
            procs[1] = launch("n2", server.endpoint, tmp_path / "desired", *ttl)
            procs[1].wait_for("cluster.unavailable", timeout=20)
            server.start()
            back = time.monotonic()
            procs[1].wait_for("cluster.joined", timeout=LONG_TTL + 15)
            joined = time.monotonic() - back
            print(f"n2 joined {joined:.2f} s after etcd answered (its old lease: {LONG_TTL} s)")
            mine = [
                d for n, d in zip(names, devices, strict=True) if owner_of(n, ["n1", "n2"]) == "n2"
            ]
            assert mine
            for device in mine:
                device.clear_journal()
            drift(mine)
            wait_until(all_labelled(devices, "Restart"), LONG_TTL + 15, "n2 corrected its drift")
            corrected = time.monotonic() - back
        finally:
            server.stop()
        assert joined < LONG_TTL / 2 and corrected < LONG_TTL / 2, (joined, corrected)
        assert all(set(requests_by_node(d, "PUT")) == {"n2"} for d in mine)
        blamed = [e["error"] for e in events_named(procs[1], "cluster.unavailable")]
        assert not [error for error in blamed if "node_name" in error], blamed

    def test_killed_and_started_again_at_once_rejoins(
        self, fleet: Fleet, etcd: EtcdServer, launch: Callable[..., DaemonProcess], tmp_path: Path
    ) -> None:
        """SIGKILLed and started again while its lease lives on: the node joins (no refusal) and changes its devices again well before that lease could expire, with no overlapping PUTs."""
        devices = fleet.devices[50:60]
        names = desired_tree(tmp_path / "desired", devices, "Revive")
        ttl = ("--lease-ttl", str(LONG_TTL))
        procs = [launch(n, etcd.endpoint, tmp_path / "desired", *ttl) for n in ("n1", "n2")]
        wait_until(all_labelled(devices, "Revive"), 30, "the devices converged")
        settled(procs, 2)
        procs[1].kill()
        restarted = time.monotonic()
        procs[1] = launch("n2", etcd.endpoint, tmp_path / "desired", *ttl)
        procs[1].wait_for("cluster.joined", timeout=LONG_TTL + 15)
        mine = [d for n, d in zip(names, devices, strict=True) if owner_of(n, ["n1", "n2"]) == "n2"]
        assert mine
        for device in mine:
            device.clear_journal()
        drift(mine)
        wait_until(all_labelled(devices, "Revive"), LONG_TTL + 15, "n2 corrected its drift")
        took = time.monotonic() - restarted
        print(f"n2 restarted and corrected its drift in {took:.2f} s (its old lease: {LONG_TTL} s)")
        assert took < LONG_TTL / 2
        assert all(set(requests_by_node(d, "PUT")) == {"n2"} for d in mine)
        assert overlapping_puts(devices) == []


class TestRefusals:
    def test_same_node_name_refused(
        self, fleet: Fleet, etcd: EtcdServer, launch: Callable[..., DaemonProcess], tmp_path: Path
    ) -> None:
        """A second node with a live node's name exits 1 with one sentence naming node_name."""
        desired_tree(tmp_path / "desired", fleet.devices[:2], "Twin")
        first = launch("twin", etcd.endpoint, tmp_path / "desired")
        first.wait_for("cluster.joined", timeout=20)
        # Its own state dir: the state-dir lock would refuse it before the cluster could.
        second = launch(
            "twin", etcd.endpoint, tmp_path / "desired", "--state-dir", str(tmp_path / "twin-2")
        )
        assert second.proc.wait(timeout=20) == 1
        assert second.proc.stderr is not None
        error = second.proc.stderr.read().strip()
        assert "node_name 'twin'" in error and "\n" not in error
        assert first.proc.poll() is None

    def test_cluster_without_password_key_refused(self, etcd: EtcdServer, tmp_path: Path) -> None:
        """A cluster node without the password-record key exits 1 naming password_key_file."""
        (tmp_path / "desired").mkdir()
        result = syncd(
            "run",
            "--desired",
            str(tmp_path / "desired"),
            "--cluster-endpoints",
            etcd.endpoint,
            env={"CREDENTIALS_DIRECTORY": str(tmp_path)},
            timeout=20,
        )
        assert result.returncode == 1
        assert "password_key_file" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


FLEET_POLICY = """\
rollout:
  waves:
    - name: canary
      devices: [dev01, dev02, dev03]
    - name: rest
  bake: 1
health:
  registration: false
"""


class TestRolloutDriver:
    def test_one_node_drives_the_waves_and_another_finishes_when_it_dies(
        self, fleet: Fleet, etcd: EtcdServer, launch: Callable[..., DaemonProcess], tmp_path: Path
    ) -> None:
        """Two nodes, a canary wave then the rest: only the leader logs rollout events, the followers' devices wait for their wave and report back, the rollout completes; a new commit's rollout, its driver SIGKILLed during the canary's bake, is finished by the other node."""
        devices = fleet.devices[30:42]
        began = time.time()  # other tests of the module changed these devices before
        desired = tmp_path / "desired"
        desired_tree(desired, devices, "Wave")
        (desired / "_fleet.yaml").write_text(FLEET_POLICY)
        sockets = {n: tmp_path / f"{n}.sock" for n in ("n1", "n2")}
        procs = {n: launch(n, etcd.endpoint, desired, "--socket", str(sockets[n])) for n in sockets}
        settled(list(procs.values()), 2)
        wait_until(all_labelled(devices, "Wave"), 40, "the rollout reached every device")

        def completed(proc: DaemonProcess) -> bool:
            return bool(events_named(proc, "rollout.completed"))

        wait_until(lambda: any(completed(p) for p in procs.values()), 20, "rollout.completed")
        drivers = [n for n, p in procs.items() if events_named(p, "rollout.started")]
        assert len(drivers) == 1, drivers
        # The canary's three devices were changed before any other (the bake in between).
        first_put = {
            d.number: min(e.started for e in d.journal if e.method == "PUT" and e.started >= began)
            for d in devices
        }
        canary = [first_put[d.number] for d in devices[:3]]
        rest = [first_put[d.number] for d in devices[3:]]
        assert max(canary) + 1.0 <= min(rest)
        # Both nodes changed devices: the follower's canary outcomes reached the driver.
        putting = {
            node_of(e.user_agent)
            for d in devices
            for e in d.journal
            if e.method == "PUT" and e.started >= began
        }
        assert putting == {"n1", "n2"}

        # Pause and resume are the driver's: another node says so and changes nothing.
        follower = "n2" if drivers[0] == "n1" else "n1"
        refused = syncd("rollout", "pause", "--socket", str(sockets[follower]), timeout=20)
        assert refused.returncode == 1 and "does not drive the rollout" in refused.stderr
        assert f"run it on the cluster's leader, {drivers[0]}" in refused.stderr
        for action in ("pause", "resume"):
            done = syncd("rollout", action, "--socket", str(sockets[drivers[0]]), timeout=20)
            assert done.returncode == 0, done.stderr

        # A new commit; its driver dies while the canary bakes; the other node finishes.
        desired_tree(desired, devices, "Again")
        driver = procs[drivers[0]]
        wait_until(lambda: len(events_named(driver, "rollout.started")) == 2, 20, "second rollout")
        wait_until(
            lambda: all(label_of(d) == f"Again {n}" for n, d in enumerate(devices[:3], 1)),
            20,
            "the canary changed",
        )
        driver.kill()
        other = procs[follower]
        wait_until(all_labelled(devices, "Again"), LEASE_TTL + 30, "the other node finished")
        wait_until(lambda: completed(other), 20, "the other node completed the rollout")
        assert overlapping_puts(devices) == []


class TestRevisions:
    def test_a_push_is_no_difference_but_a_checkout_left_behind_is(
        self, fleet: Fleet, etcd: EtcdServer, launch: Callable[..., DaemonProcess], tmp_path: Path
    ) -> None:
        """Two nodes on one checkout: pulled commits log no cluster.revision_differs, even past the grace; a node whose own checkout is not pulled is warned of (lagging) after the grace, once, and cluster.revision_agrees follows its pull."""
        devices = fleet.devices[42:46]
        grace = revision_grace(resync_interval=RESYNC, lease_ttl=LEASE_TTL)
        upstream, checkout, behind = (
            tmp_path / "upstream",
            tmp_path / "checkout",
            tmp_path / "behind",
        )
        desired_tree(upstream, devices, "Rev")
        git(upstream, "init", "-q", "-b", "main")
        git(upstream, "add", "-A")
        git(upstream, "commit", "-q", "-m", "one")
        git(tmp_path, "clone", "-q", str(upstream), str(checkout))
        link = tmp_path / "n2-desired"  # n2 reads the same checkout, through a link to swap later
        link.symlink_to(checkout)
        procs = {
            "n1": launch("n1", etcd.endpoint, checkout),
            "n2": launch("n2", etcd.endpoint, link),
        }
        settled(list(procs.values()), 2)
        wait_until(all_labelled(devices, "Rev"), 30, "the first commit applied")

        def push(label: str, *pulled: Path) -> str:
            """Commit new values upstream and pull them into ``pulled``; the commit ID."""
            desired_tree(upstream, devices, label)
            git(upstream, "commit", "-q", "-a", "-m", label)
            for path in pulled:
                git(path, "pull", "-q", "--ff-only")
            return git(upstream, "rev-parse", "HEAD")

        def loaded(revision: str) -> Callable[[], bool]:
            """Every node logged desired.loaded for ``revision``."""
            return lambda: all(
                any(e.get("revision") == revision for e in events_named(p, "desired.loaded"))
                for p in procs.values()
            )

        for label in ("Two", "Three"):
            head = push(label, checkout)
            wait_until(loaded(head), 20, f"{label} loaded by both")
            wait_until(all_labelled(devices, label), 30, f"{label} applied")
        time.sleep(grace + 1.5)
        for proc in procs.values():
            assert events_named(proc, "cluster.revision_differs") == []
            assert events_named(proc, "cluster.revision_agrees") == []

        # n2 moves to a checkout of its own at the same commit, which is then not pulled.
        git(tmp_path, "clone", "-q", str(upstream), str(behind))
        swapped = tmp_path / "n2-desired.new"
        swapped.symlink_to(behind)
        swapped.replace(link)
        procs["n2"].wait_for("desired.loaded", reason="desired dir relinked")  # the same commit
        pushed = time.monotonic()
        head = push("Four", checkout)
        warned = {
            name: proc.wait_for("cluster.revision_differs", timeout=grace + 15)
            for name, proc in procs.items()
        }
        assert time.monotonic() - pushed >= grace - 0.5
        assert warned["n2"]["lagging"] is True and warned["n1"]["lagging"] is False
        assert warned["n1"]["revision"] == head and warned["n2"]["revision"] != head
        assert all(w["differing_for"] >= grace - 0.5 for w in warned.values())
        assert all(w["revisions"]["n1"] == head for w in warned.values())
        time.sleep(2.5)  # the same difference: not logged again at every tick
        for proc in procs.values():
            assert len(events_named(proc, "cluster.revision_differs")) == 1

        git(behind, "pull", "-q", "--ff-only")
        for proc in procs.values():
            agreed = proc.wait_for("cluster.revision_agrees", timeout=15)
            assert agreed["revision"] == head and agreed["differing_for"] >= grace
            assert len(events_named(proc, "cluster.revision_differs")) == 1
