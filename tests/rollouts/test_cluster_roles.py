"""A cluster's rollout: one conductor drives, the others follow its document and report.

Two conductors on one state directory stand in for two nodes on one etcd
(both stores read and write the same rollout document); the relay is a dict,
as etcd's ``state/reports/`` keys are (syncd/cluster/store.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from syncd.client import ClientPool, DeviceClient
from syncd.conductor import Conductor
from syncd.outcome import Failure, Outcome
from syncd.policy import FleetPolicy, PolicyResult, RolloutPolicy, Wave
from syncd.rollout_relay import fresh_reports, report_doc
from syncd.rollout_role import NotDriving
from syncd.state import FileStateStore
from tests.rollouts.test_units import fleet_specs

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
        self, state_dir: Path, relay: DictRelay, *, driving: bool, owns: str = "every"
    ) -> None:
        self.driving = driving
        self.kicked: list[str] = []
        self.conductor = Conductor(
            state=FileStateStore.open(state_dir),
            kick=self.kicked.extend,
            client_of=lambda spec: DeviceClient(url=spec.url, pool=ClientPool()),
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
