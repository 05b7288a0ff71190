"""A cluster's rollout: one conductor drives, the others follow its document and report.

Two conductors on one state directory stand in for two nodes on one etcd
(both stores read and write the same rollout document); the relay is a dict,
as etcd's ``state/reports/`` keys are (syncd/cluster/store.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from syncd.client import ClientPool, DeviceClient
from syncd.conductor import Conductor
from syncd.diff import Change
from syncd.model import DeviceSpec
from syncd.outcome import Failure, Outcome
from syncd.policy import FleetPolicy, PolicyResult, RolloutPolicy, Wave
from syncd.rollout_relay import fresh_reports, report_doc
from syncd.rollout_role import NotDriving, Role
from syncd.simulator.device import EmulatedDevice
from syncd.simulator.fleet import Fleet
from syncd.state import FileStateStore
from tests.e2e.conftest import puts
from tests.rollouts.helpers import BAD, GOOD
from tests.rollouts.test_units import fleet_specs, spec_for

POLICY = PolicyResult(
    FleetPolicy(
        rollout=RolloutPolicy(
            waves=(Wave("canary", devices=("dev1", "dev2")), Wave("rest")),
            max_failures=0,
            on_failure="revert",
        )
    )
)


class DictRelay:
    def __init__(self) -> None:
        self.docs: dict[str, dict[str, Any]] = {}

    def report(self, device: str, doc: Mapping[str, Any]) -> None:
        self.docs[device] = dict(doc)

    def reports(self) -> Mapping[str, Mapping[str, Any]]:
        return self.docs


class Node:
    """A conductor whose role the test sets, and the devices it was told to look at."""

    def __init__(
        self,
        state_dir: Path,
        relay: DictRelay,
        *,
        driving: bool,
        owns: str = "every",
        pool: ClientPool | None = None,
    ) -> None:
        self.driving = driving
        self.kicked: list[str] = []
        self.conductor = Conductor(
            state=FileStateStore.open(state_dir),
            kick=self.kicked.extend,
            client_of=lambda spec: DeviceClient(url=spec.url, pool=pool or ClientPool()),
            clock=lambda: 0.0,
            drives=lambda: self.driving,
            owns=lambda device: owns in ("every", device),
            relay=relay,
        )


@pytest.fixture
def relay() -> DictRelay:
    return DictRelay()


class TestDriverAndFollower:
    def test_the_follower_waits_for_the_driver_then_follows_its_waves(
        self, tmp_path: Path, relay: DictRelay
    ) -> None:
        """Nothing starts on a follower before the driver's rollout of its revision; then its
        canary device starts, its outcome reaches the driver as a report (the follower writes
        no document), and the next wave reaches the follower's devices."""
        specs = fleet_specs(4)
        follower = Node(tmp_path / "state", relay, driving=False)
        follower.conductor.load(policy=POLICY, specs=specs, revision="r1")
        assert not follower.conductor.may_start(specs["dev2"]).go  # no rollout of r1 yet
        leader = Node(tmp_path / "state", relay, driving=True)
        leader.conductor.load(policy=POLICY, specs=specs, revision="r1")
        assert leader.conductor.state == "running"
        follower.conductor.step()
        assert set(follower.kicked) == {"dev1", "dev2"}
        assert follower.conductor.may_start(specs["dev2"]).go
        assert not follower.conductor.may_start(specs["dev3"]).go
        document = (tmp_path / "state" / "rollout.json").read_bytes()
        follower.conductor.begin("dev2")
        follower.conductor.observe(Outcome.of(specs["dev2"], "applied"))
        assert (tmp_path / "state" / "rollout.json").read_bytes() == document
        assert relay.docs["dev2"]["said"] == "healthy"
        leader.conductor.observe(Outcome.of(specs["dev1"], "applied"))
        leader.conductor.step()  # reads the report: the canary is done, the rest starts
        assert leader.conductor.summary()["wave"] == "rest"
        follower.conductor.step()
        assert {"dev3", "dev4"} <= set(follower.kicked)
        assert follower.conductor.may_start(specs["dev4"]).go
        for name in ("dev3", "dev4"):
            follower.conductor.observe(Outcome.of(specs[name], "applied"))
        leader.conductor.step()
        assert leader.conductor.state == "completed"
        assert leader.conductor.summary()["wave"] is None  # no wave under way any more
        assert leader.conductor.rollout_status().wave is None
        follower.conductor.step()
        assert follower.conductor.state == "completed"

    async def test_a_followers_failure_halts_the_driver_and_only_the_owner_reverts(
        self, tmp_path: Path, relay: DictRelay
    ) -> None:
        """A failed health check reported with its undo halts the rollout; the revert of the
        follower's device goes out from the follower (its owner), not from the driver."""
        specs = fleet_specs(3)
        leader = Node(tmp_path / "state", relay, driving=True, owns="dev1")
        follower = Node(tmp_path / "state", relay, driving=False, owns="dev2")
        leader.conductor.load(policy=POLICY, specs=specs, revision="r1")
        follower.conductor.load(policy=POLICY, specs=specs, revision="r1")
        failed = Outcome.of(specs["dev2"], "error", failure=Failure("health", "no"))
        follower.conductor.observe(failed)
        leader.conductor.step()
        assert leader.conductor.state == "halted"
        assert not leader.conductor._reverts.busy
        follower.conductor.step()
        assert follower.conductor.state == "halted"
        assert follower.conductor.summary()["failed"] == ["dev2"]
        assert follower.conductor._reverts.busy  # its PUT goes to a port nobody listens on
        follower.conductor._reverts.cancel()

    @pytest.mark.parametrize("driver_reads_first", [False, True])
    async def test_canaries_failing_on_two_nodes_around_the_halt_are_both_reverted(
        self,
        tmp_path: Path,
        relay: DictRelay,
        sim: Callable[..., Fleet],
        driver_reads_first: bool,
    ) -> None:
        """The driver's canary halts the rollout; the other canary fails on its owner just after
        and is looked at again at once (still unhealthy: no changes of its own). Each owner
        sends its revert PUT, and the document says reverted only after it. Also when the
        driver settled the failure from a report without the undo (the owner's own counts)."""
        fleet = sim(devices=3)
        specs = {f"dev{d.number}": spec_for(d, domain=BAD) for d in fleet.devices}
        canaries = fleet.devices[:2]
        for device in canaries:
            device.set_live(1, domain=BAD)  # the rollout's PUT is in force
        async with ClientPool(timeout=5.0) as pool:
            logs = await self._canaries_fail(
                tmp_path, relay, specs, canaries, pool, driver_reads_first=driver_reads_first
            )
        reverted = [e["device"] for e in logs if e["event"] == "apply.reverted"]
        assert sorted(reverted) == ["dev1", "dev2"]
        for device in canaries:
            assert device.accounts[0]["domain"] == GOOD
            assert len(puts(device)) == 1  # the revert

    async def _canaries_fail(
        self,
        tmp_path: Path,
        relay: DictRelay,
        specs: dict[str, DeviceSpec],
        canaries: list[EmulatedDevice],
        pool: ClientPool,
        *,
        driver_reads_first: bool,
    ) -> list[dict[str, Any]]:
        """dev1 fails on the driver, dev2 on a follower; both nodes tick until both are
        reverted, the document never saying so before the revert PUT went out."""
        leader = Node(tmp_path / "state", relay, driving=True, owns="dev1", pool=pool)
        follower = Node(tmp_path / "state", relay, driving=False, owns="dev2", pool=pool)
        for node in (leader, follower):
            node.conductor.load(policy=POLICY, specs=specs, revision="r1")
        follower.conductor.step()
        undo = (Change(1, "domain", GOOD, BAD),)

        def failed(name: str, changes: tuple[Change, ...] = ()) -> Outcome:
            return Outcome.of(
                specs[name], "error", changes=changes, failure=Failure("health", "no")
            )

        with capture_logs() as logs:
            leader.conductor.observe(failed("dev1", undo))  # halts the rollout
            if driver_reads_first:
                follower.conductor.observe(failed("dev2"))
                leader.conductor.step()
                follower.conductor.observe(failed("dev2", undo))
            else:
                follower.conductor.observe(failed("dev2", undo))  # 2 ms later, on its owner
                follower.conductor.observe(failed("dev2"))  # looked at again: still unhealthy
            for _ in range(100):
                leader.conductor.step()
                follower.conductor.step()
                rollout = leader.conductor.rollout
                assert rollout is not None
                for name, device in zip(("dev1", "dev2"), canaries, strict=True):
                    if str(rollout.status[name]) == "reverted":
                        assert len(puts(device)) == 1, name  # the revert PUT went first
                if all(str(rollout.status[d]) == "reverted" for d in ("dev1", "dev2")):
                    break
                await asyncio.sleep(0.05)
        assert leader.conductor.state == "halted"
        assert rollout is not None
        assert {d: str(s) for d, s in rollout.status.items() if d != "dev3"} == {
            "dev1": "reverted",
            "dev2": "reverted",
        }
        return logs

    def test_a_device_begun_by_the_driver_then_taken_by_a_follower_is_not_stuck(
        self, tmp_path: Path, relay: DictRelay
    ) -> None:
        """Nodes starting together: the driver begins a canary device, then loses it to a
        follower before its PUT; the follower may start it, and the driver's document puts it
        back to pending (it stayed under way for ever, and the rollout in its first wave)."""
        specs = fleet_specs(3)
        leader = Node(tmp_path / "state", relay, driving=True)
        follower = Node(tmp_path / "state", relay, driving=False)
        for node in (leader, follower):
            node.conductor.load(policy=POLICY, specs=specs, revision="r1")
        leader.conductor.begin("dev2")
        follower.conductor.step()
        assert follower.conductor.rollout is not None
        assert str(follower.conductor.rollout.status["dev2"]) == "active"
        assert follower.conductor.may_start(specs["dev2"]).go
        leader.conductor.observe(Outcome.of(specs["dev2"], "skipped"))  # another node holds it
        assert leader.conductor.rollout is not None
        assert str(leader.conductor.rollout.status["dev2"]) == "pending"
        follower.conductor.observe(Outcome.of(specs["dev2"], "applied"))
        leader.conductor.observe(Outcome.of(specs["dev1"], "applied"))
        leader.conductor.step()
        assert leader.conductor.summary()["wave"] == "rest"

    def test_pause_on_a_follower_names_the_leader_instead(
        self, tmp_path: Path, relay: DictRelay
    ) -> None:
        """A follower does not write the pause into the driver's document."""
        follower = Node(tmp_path / "state", relay, driving=False)
        with pytest.raises(ValueError, match="does not drive the rollout"):
            follower.conductor.pause()
        assert not (tmp_path / "state" / "rollout.json").exists()

    @pytest.mark.parametrize(
        ("leader", "node", "said"),
        [
            ("n1", "n2", "run it on the cluster's leader, n1"),
            (None, "n2", "its STATUS line in `syncd status` says which"),
            ("n2", "n2", "it leads the cluster, but its desired checkout is behind"),
        ],
    )
    def test_the_refusal_says_where_to_go(self, leader: str | None, node: str, said: str) -> None:
        """The refusal names the leader; with none known, where to look; the lagging leader, why."""
        assert said in str(NotDriving(leader, node))
        assert str(NotDriving(leader, node)).startswith("this node does not drive the rollout; ")

    def test_a_node_taking_over_continues_at_the_same_wave(
        self, tmp_path: Path, relay: DictRelay
    ) -> None:
        """The driver's death: a follower that becomes the driver starts from the document
        (the same wave), settles the reports it has not seen, and finishes the rollout."""
        specs = fleet_specs(4)
        leader = Node(tmp_path / "state", relay, driving=True)
        follower = Node(tmp_path / "state", relay, driving=False)
        for node in (leader, follower):
            node.conductor.load(policy=POLICY, specs=specs, revision="r1")
        leader.conductor.observe(Outcome.of(specs["dev1"], "applied"))
        leader.conductor.observe(Outcome.of(specs["dev2"], "applied"))
        leader.conductor.step()
        assert leader.conductor.summary()["wave"] == "rest"
        follower.conductor.observe(Outcome.of(specs["dev3"], "applied"))  # reported
        follower.driving = True  # the leader is gone
        follower.conductor.step()
        assert follower.conductor.summary()["wave"] == "rest"
        assert follower.conductor.summary()["waves"][1]["done"] == 1  # dev3's own report
        follower.conductor.observe(Outcome.of(specs["dev4"], "applied"))
        assert follower.conductor.state == "completed"

    def test_a_new_driver_starts_the_rollout_its_predecessor_had_not(
        self, tmp_path: Path, relay: DictRelay
    ) -> None:
        specs = fleet_specs(2)
        follower = Node(tmp_path / "state", relay, driving=False)
        follower.conductor.load(policy=POLICY, specs=specs, revision="r1")
        assert follower.conductor.state == "none"
        follower.driving = True
        assert not follower.conductor.may_start(specs["dev1"]).go  # asked at each tick only
        follower.conductor.step()
        assert follower.conductor.state == "running"
        assert follower.conductor.may_start(specs["dev1"]).go


class TestResumeOnFollowers:
    def test_a_resume_asks_the_followers_devices_again(
        self, tmp_path: Path, relay: DictRelay
    ) -> None:
        """The leader's resume of a completed rollout with a failed device owned by a
        follower: the follower asks that device again (its rejection no longer holds), not
        the devices that did not fail."""
        specs = fleet_specs(2)
        asked: list[str] = []
        follower = Conductor(
            state=FileStateStore.open(tmp_path / "state"),
            kick=lambda names: None,
            ask_again=asked.extend,
            client_of=lambda spec: DeviceClient(url=spec.url, pool=ClientPool()),
            clock=lambda: 0.0,
            drives=lambda: False,
            owns=lambda device: device == "dev2",
            relay=relay,
        )
        leader = Node(tmp_path / "state", relay, driving=True, owns="dev1")
        for node in (leader.conductor, follower):
            node.load(policy=PolicyResult(FleetPolicy()), specs=specs, revision="r1")
        follower.step()
        follower.begin("dev2")
        rejected = Failure("rejected", "dev2 rejected the PUT (code 12)")
        follower.observe(Outcome.of(specs["dev2"], "error", failure=rejected))
        leader.conductor.observe(Outcome.of(specs["dev1"], "applied"))
        leader.conductor.step()
        assert leader.conductor.state == "completed"
        follower.step()
        assert asked == []
        assert leader.conductor.resume() == "rollout resumed"
        follower.step()
        assert asked == ["dev2"]
        follower.step()
        assert asked == ["dev2"]


class TestReports:
    def test_only_new_reports_about_the_revision_count(self) -> None:
        ok = report_doc("r1", "healthy")
        docs = {
            "a": ok,
            "b": report_doc("r0", "failed"),  # another revision
            "c": {**report_doc("r1", "failed"), "said": "exploded"},  # damaged
            "d": {**report_doc("r1", "failed"), "undo": "not a list"},  # damaged
            "e": report_doc("r1", "failed", [{"account": 1, "field": "domain", "live": "x"}]),
        }
        fresh = fresh_reports(docs, {}, "r1")
        assert [(r.device, r.said) for r in fresh] == [("a", "healthy"), ("e", "failed")]
        assert fresh[1].undo == [{"account": 1, "field": "domain", "live": "x"}]
        assert [r.device for r in fresh_reports(docs, {"a": ok["id"]}, "r1")] == ["e"]
        assert fresh_reports(docs, {}, None) == []
        assert report_doc("r1", "healthy")["id"] != ok["id"]

    def test_a_followers_later_reports_keep_its_undo_and_its_revert(
        self, tmp_path: Path, relay: DictRelay
    ) -> None:
        """A failure looked at again (no changes) still reports what a revert gives back; once
        reverted, a later outcome does not replace the revert's report before the driver reads it."""
        role = Role(
            state=FileStateStore.open(tmp_path / "state"), drives=lambda: False, relay=relay
        )
        undo = [{"account": 1, "field": "domain", "live": GOOD, "desired": BAD}]
        role.report("dev2", "r1", "failed", undo)
        role.report("dev2", "r1", "failed", [])
        assert relay.docs["dev2"]["undo"] == undo
        assert role.undo_here("dev2") == undo
        role.report("dev2", "r1", "failed", None)
        assert relay.docs["dev2"]["undo"] == undo
        role.report("dev1", "r1", "failed", [])  # nothing known of dev1: nothing made up
        assert relay.docs["dev1"]["undo"] == []
        role.report_revert("dev2", "r1")
        role.report("dev2", "r1", "failed", [])
        assert relay.docs["dev2"]["said"] == "reverted"
        assert role.undo_here("dev2") == []
