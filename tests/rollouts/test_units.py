"""Gate, health check, conductor and lock, in-process against the emulator (no subprocess)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from syncd.client import ClientPool, DeviceClient
from syncd.conductor import Conductor
from syncd.desired import Problem
from syncd.device_status import AccountStatus
from syncd.diff import Change, Plan, diff
from syncd.gate import Gate, Wait
from syncd.health import REGISTRATION_FIELDS, Health, is_healthy
from syncd.lock import LOCK_FILE, StateDirLocked, StateLock
from syncd.model import AccountSpec, AuthMethod, AuthSpec, DeviceSpec, Mode
from syncd.outcome import Failure, Outcome
from syncd.pending_put import PendingPut
from syncd.permits import Permits
from syncd.policy import (
    CallsPolicy,
    FleetPolicy,
    HealthPolicy,
    PolicyResult,
    RolloutPolicy,
    Wave,
    Window,
)
from syncd.reconcile import Reconciler
from syncd.retrying import RetryPolicy
from syncd.reverting import REVERT_RETRY, Reverter, wait_until_idle
from syncd.rollout_control import pause_saved, resume_saved
from syncd.rollout_values import Decision, WaitReason
from syncd.simulator import EmulatedDevice, Fleet
from syncd.simulator.fields import SIP_FIELDS
from syncd.state import FileStateStore
from syncd.turns import Turns


def spec_for(
    device: EmulatedDevice, password: str | None = "pw", **fields: bool | str | int
) -> DeviceSpec:
    account = AccountSpec(1, fields, None if password is None else SecretStr(password))
    return DeviceSpec(
        name=f"dev{device.number}",
        file=f"dev{device.number}.yaml",
        url=device.url,
        auth=AuthSpec(AuthMethod.NONE),
        mode=Mode.ENFORCE,
        accounts={1: account},
    )


@pytest.fixture
async def pool() -> AsyncIterator[ClientPool]:
    async with ClientPool(timeout=5.0) as running:
        yield running


async def plan_for(client: DeviceClient, spec: DeviceSpec) -> Plan:
    return diff(spec.accounts, await client.get_accounts())


class TestGate:
    async def test_drift_passes_a_closed_window_a_change_does_not(
        self, emulated: Fleet, pool: ClientPool
    ) -> None:
        """A deny window holds a change (with when it opens) but not a drift correction."""
        device = emulated.devices[0]
        client = DeviceClient(url=device.url, pool=pool)
        spec = spec_for(device, displayName="Lobby")
        deny = Window("deny", start=0, end=60, tz="UTC")
        gate = Gate(
            policy=lambda: FleetPolicy(windows=(deny,)),
            wall=lambda: datetime(2026, 3, 2, 0, 30, tzinfo=UTC),
        )
        plan = await plan_for(client, spec)
        wait = await gate(spec, plan, False, client)
        assert wait == Wait("window", until=datetime(2026, 3, 2, 1, 0, tzinfo=UTC))
        assert gate.waiting(spec.name) == "window"
        assert await gate(spec, plan, True, client) is None

    async def test_a_call_waits_until_max_wait_then_goes(
        self, emulated: Fleet, pool: ClientPool
    ) -> None:
        """While a session is listed the PUT waits (look again soon); after maxWait it goes ahead."""
        device = emulated.devices[0]
        client = DeviceClient(url=device.url, pool=pool)
        spec = spec_for(device, displayName="Lobby")
        now = [100.0]
        gate = Gate(
            policy=lambda: FleetPolicy(calls=CallsPolicy(max_wait=10)),
            clock=lambda: now[0],
        )
        plan = await plan_for(client, spec)
        device.start_call()
        wait = await gate(spec, plan, True, client)
        assert wait is not None and wait.reason == "call" and wait.retry_after == 3.0
        now[0] += 8
        wait = await gate(spec, plan, True, client)
        assert wait is not None and wait.retry_after == pytest.approx(2.0)
        now[0] += 2
        assert await gate(spec, plan, True, client) is None
        device.end_calls()
        assert await gate(spec, plan, True, client) is None

    async def test_without_wait_for_idle_calls_are_not_read(
        self, emulated: Fleet, pool: ClientPool
    ) -> None:
        """calls.waitForIdle false: a device in a call gets its PUT."""
        device = emulated.devices[0]
        client = DeviceClient(url=device.url, pool=pool)
        spec = spec_for(device, displayName="Lobby")
        gate = Gate(policy=lambda: FleetPolicy(calls=CallsPolicy(wait_for_idle=False)))
        device.start_call()
        assert await gate(spec, await plan_for(client, spec), False, client) is None

    async def test_a_revert_waits_on_an_unusable_call_status_until_max_wait(
        self, emulated: Fleet, pool: ClientPool
    ) -> None:
        """A revert does not take a 503 from the call status as idle: it looks again, and goes
        only once ``maxWait`` has passed (a refusal, the device cannot tell, goes at once).
        A 503 is not a call: no ``apply.deferred`` (reason ``call``) is said for it; a
        call listed is said once."""
        device = emulated.devices[0]
        client = DeviceClient(url=device.url, pool=pool)
        ticks = iter([0.0, 1.0, 2.5])
        device.inject(kind="status", status=503, path="/api/call/status", count=None)
        policy = CallsPolicy(wait_for_idle=True, max_wait=2.0)
        with pytest.MonkeyPatch.context() as patch:
            slept: list[float] = []

            async def sleep(seconds: float) -> None:
                slept.append(seconds)

            patch.setattr("syncd.reverting.asyncio.sleep", sleep)
            waits: list[bool] = []
            went = await wait_until_idle(
                client, policy, lambda: next(ticks), on_wait=lambda: waits.append(True)
            )
            assert went is True and waits == []  # no answer is no call
            assert len(slept) == 1  # read twice: at 1.0 s it waited, at 2.5 s it went
            device.clear_faults()
            device.start_call()
            ticks = iter([0.0, 1.0, 1.5, 2.5])
            went = await wait_until_idle(
                client, policy, lambda: next(ticks), on_wait=lambda: waits.append(True)
            )
            assert went is True and waits == [True]  # said once, when it first waited
            device.end_calls()
            device.inject(kind="reject", path="/api/call/status", code=10, count=None)
            slept.clear()
            assert await wait_until_idle(client, policy, lambda: 0.0) is True
            assert slept == []

    async def test_the_rollout_is_asked_again_after_the_devices_calls_are_read(
        self, emulated: Fleet, pool: ClientPool
    ) -> None:
        """A reload while the gate read the call status (the rollout now holds the device):
        the PUT does not start and the rollout hears no begin."""
        device = emulated.devices[0]
        client = DeviceClient(url=device.url, pool=pool)
        spec = spec_for(device, displayName="Lobby")

        class Replaced:
            paused, revision, begun = False, "r2", [False]
            answers = [Decision(True), Decision(False, WaitReason.WAVE)]

            def may_start(self, spec: DeviceSpec) -> Decision:
                return self.answers.pop(0)

            def begin(self, device: str) -> None:
                self.begun[0] = True

        rollout = Replaced()
        gate = Gate(policy=lambda: FleetPolicy(), rollout=rollout)
        wait = await gate(spec, await plan_for(client, spec), False, client)
        assert wait is not None and wait.reason == "wave" and rollout.begun == [False]
        assert [e.path for e in device.journal][-1] == "/api/call/status"


class TestHealth:
    def test_rules(self) -> None:
        """Registered is healthy; a renewed registration needs another registerTime; no registration needs nothing."""
        up = AccountStatus(
            1, enabled=True, registration_enabled=True, registered=True, register_time=5
        )
        assert is_healthy(up, renewed=False, before=5)
        assert not is_healthy(up, renewed=True, before=5)
        assert is_healthy(up, renewed=True, before=4)
        assert is_healthy(up, renewed=True, before=None)
        down = AccountStatus(1, enabled=True, registration_enabled=True, registered=False)
        assert not is_healthy(down, renewed=False, before=None)
        off = AccountStatus(1, enabled=True, registration_enabled=False, registered=False)
        assert is_healthy(off, renewed=True, before=None)
        assert is_healthy(None, renewed=True, before=None)
        assert {"domain", "password", "registrarAddress"} <= REGISTRATION_FIELDS
        assert {
            "enabled", "sipNumber", "authId", "password", "domain", "domainPort",
            "proxyAddress", "proxyPort", "registrationEnabled", "registrarAddress",
            "registrarPort",
        } == REGISTRATION_FIELDS  # fmt: skip
        assert "displayName" not in REGISTRATION_FIELDS
        # The emulator states the same device fact on its own (it imports nothing from syncd).
        assert REGISTRATION_FIELDS == SIP_FIELDS

    async def test_unregistered_account_fails_within_the_timeout(
        self, tmp_path: Path, pool: ClientPool
    ) -> None:
        """A PUT to a PBX that does not exist: health.failed after the timeout, the fingerprint put back."""
        async with Fleet(devices=1, register_delay=0.05) as fleet:
            device = fleet.devices[0]
            state = FileStateStore.open(tmp_path / "state")
            state.record_fingerprint("dev1", "old")
            policy = FleetPolicy(health=HealthPolicy(timeout=0.5))
            health = Health(policy=lambda: policy, state=state, initial=0.05, maximum=0.1)
            client = DeviceClient(url=device.url, pool=pool)
            spec = spec_for(  # the password is not managed: only the domain changes
                device, None, enabled=True, registrationEnabled=True, domain="nowhere.invalid"
            )
            plan = await plan_for(client, spec)
            await health.snapshot(spec, plan, client)
            await client.put_accounts(plan.put_body())
            applied = Outcome.of(spec, "applied", changes=plan.changes)
            state.record_fingerprint("dev1", spec.fingerprint)
            outcome = await health.after_put(spec, applied, client, revision="r1")
            assert outcome.status == "error" and outcome.failure is not None
            assert outcome.failure.kind == "health" and "account 1" in outcome.failure.message
            assert state.applied_fingerprint("dev1") == "old"
            # A pass before any revert finds the device equal to the unhealthy state: that
            # is not "in force" (a revert would then look like drift and be undone) ...
            reconciler = Reconciler(pool=pool, state=state)
            found = await reconciler.reconcile(spec, apply=True, revision="r1")
            assert found.status == "in_sync" and state.applied_fingerprint("dev1") == "old"
            still = await health.still_unhealthy(spec, client, revision="r1")
            assert still is not None and still.kind == "health"
            assert "account 1 is not registered" in still.message
            # ... so after the revert the difference is a change (the rollout's), not drift.
            await client.put_accounts([{"account": 1, "domain": "pbx.example.com"}])
            after = await reconciler.reconcile(spec, apply=False, revision="r1")
            assert after.status == "changes" and not after.drift
            # Healthy at last under that state (the PBX came back): it is in force then.
            healed = spec_for(
                device, None, enabled=True, registrationEnabled=True, domain="pbx.example.com"
            )
            await client.put_accounts([{"account": 1, "password": "pw"}])
            state.record_unhealthy("dev1", healed.fingerprint, restored="old")
            for _ in range(100):
                if device.registered(1):
                    break
                await asyncio.sleep(0.02)
            assert await health.still_unhealthy(healed, client, revision="r2") is None
            assert state.applied_fingerprint("dev1") == healed.fingerprint
            assert state.unhealthy_fingerprint("dev1") is None

    async def test_a_new_registration_passes(self, tmp_path: Path, pool: ClientPool) -> None:
        """A PUT to a known PBX: the account registers anew and the outcome stays applied."""
        async with Fleet(devices=1, register_delay=0.05) as fleet:
            device = fleet.devices[0]
            state = FileStateStore.open(tmp_path / "state")
            policy = FleetPolicy(health=HealthPolicy(timeout=2))
            health = Health(policy=lambda: policy, state=state, initial=0.05, maximum=0.1)
            client = DeviceClient(url=device.url, pool=pool)
            spec = spec_for(
                device, enabled=True, registrationEnabled=True, domain="pbx.example.com"
            )
            plan = diff(spec.accounts, await client.get_accounts(), passwords_due={1})
            await health.snapshot(spec, plan, client)
            await client.put_accounts(plan.put_body())
            applied = Outcome.of(spec, "applied", changes=plan.changes)
            assert await health.after_put(spec, applied, client, revision=None) == applied
            assert device.registered(1)


def _conductor(state: FileStateStore, kicked: list[str]) -> Conductor:
    return Conductor(
        state=state,
        kick=kicked.extend,
        client_of=lambda spec: DeviceClient(url=spec.url, pool=ClientPool()),
        clock=lambda: 0.0,
    )


def fleet_specs(n: int) -> dict[str, DeviceSpec]:
    """``dev1`` .. ``devN``, each on a port nobody listens on (no request is made)."""
    out = {}
    for i in range(1, n + 1):
        fake = EmulatedDevice.__new__(EmulatedDevice)
        fake.number, fake.url = i, f"http://127.0.0.1:{9000 + i}"
        out[f"dev{i}"] = spec_for(fake, displayName=f"Door {i}")
    return out


class TestConductor:
    def test_a_reconcile_begun_before_a_newer_revision_may_not_put_its_stale_plan(
        self, tmp_path: Path
    ) -> None:
        """A halted revision, then a newer one: a reconcile still holding the halted revision's
        desired state (it read the device before the reload) is held; the new one's goes."""
        state = FileStateStore.open(tmp_path / "state")
        policy = FleetPolicy(
            rollout=RolloutPolicy(waves=(Wave("canary", devices=("dev1", "dev2")),), max_failures=0)
        )
        conductor = _conductor(state, [])
        bad = fleet_specs(2)
        conductor.load(policy=PolicyResult(policy), specs=bad, revision="bad")
        conductor.begin("dev1")
        conductor.observe(Outcome.of(bad["dev1"], "error", failure=Failure("rejected", "no")))
        assert conductor.state == "halted" and not conductor.may_start(bad["dev2"]).go
        fixed = {
            name: replace(
                spec, accounts={1: replace(spec.accounts[1], fields={"displayName": "New"})}
            )
            for name, spec in bad.items()
        }
        conductor.load(policy=PolicyResult(policy), specs=fixed, revision="fixed")
        assert conductor.state == "running"
        assert not conductor.may_start(bad["dev2"]).go
        assert conductor.may_start(fixed["dev2"]).go

    def test_a_revision_loaded_while_the_canary_is_checked_keeps_the_canary_first(
        self, tmp_path: Path
    ) -> None:
        """A new revision (a comment in _fleet.yaml: the same desired states) while the
        canary's health check runs: the new rollout starts at the canary wave with the
        canary in it, the rest waits, and the canary's failure halts it (it started at the
        rest and the whole fleet got the change before the canary's verdict)."""
        state = FileStateStore.open(tmp_path / "state")
        waves = (Wave("canary", devices=("dev1",)), Wave("rest"))
        policy = PolicyResult(FleetPolicy(rollout=RolloutPolicy(waves=waves, max_failures=0)))
        conductor = _conductor(state, [])
        specs = fleet_specs(3)
        conductor.load(policy=policy, specs=specs, revision="r1")
        assert conductor.may_start(specs["dev1"]).go and not conductor.may_start(specs["dev2"]).go
        conductor.begin("dev1")
        # dev1's PUT went out and verified; its health check runs (as Health and the
        # Reconciler record them)
        put = PendingPut.of(
            specs["dev1"].fingerprint, None, (), drift=False, time=datetime.now(UTC)
        )
        state.record_pending_put("dev1", put.to_doc())
        state.record_in_force("dev1", specs["dev1"].fingerprint, "r1")
        conductor.load(policy=policy, specs=specs, revision="r2")
        assert conductor.revision == "r2" and conductor.rollout is not None
        assert conductor.rollout.current_wave == "canary"
        assert "dev1" in conductor.rollout.status
        assert not conductor.may_start(specs["dev2"]).go
        failure = Failure("health", "account 1 did not register")
        conductor.observe(Outcome.of(specs["dev1"], "error", failure=failure))
        assert conductor.state == "halted" and not conductor.may_start(specs["dev2"]).go

    def test_a_halt_persists_and_a_restart_continues_it(self, tmp_path: Path) -> None:
        """A failure past maxFailures halts; the saved rollout is halted in a new conductor too."""
        state = FileStateStore.open(tmp_path / "state")
        policy = FleetPolicy(
            rollout=RolloutPolicy(waves=(Wave("canary", devices=("dev1",)),), max_failures=0)
        )
        kicked: list[str] = []
        conductor = _conductor(state, kicked)
        specs = fleet_specs(3)
        conductor.load(policy=PolicyResult(policy), specs=specs, revision="r1")
        assert kicked == ["dev1"]
        assert not conductor.may_start(specs["dev2"]).go
        conductor.begin("dev1")
        failed = Outcome.of(specs["dev1"], "error", failure=Failure("rejected", "no"))
        conductor.observe(failed)
        assert conductor.state == "halted" and conductor.summary()["failed"] == ["dev1"]
        again = _conductor(state, [])
        assert again.state == "halted"
        again.load(policy=PolicyResult(policy), specs=specs, revision="r1")
        assert again.state == "halted"  # the same revision: still halted
        again.load(policy=PolicyResult(policy), specs=specs, revision="r2")
        assert again.state == "running" and again.revision == "r2"

    def test_an_outcome_of_a_desired_state_the_rollout_does_not_carry_settles_nothing(
        self, tmp_path: Path
    ) -> None:
        """A reconcile begun before a reload ends "in sync" under the old desired state: the
        new rollout does not count the device done (it would never get its PUT)."""
        state = FileStateStore.open(tmp_path / "state")
        policy = FleetPolicy(rollout=RolloutPolicy(waves=(Wave("all"),)))
        conductor = _conductor(state, [])
        old = fleet_specs(2)
        new = {n: replace(s, accounts={1: replace(s.accounts[1], fields={"displayName": "v2"})})
               for n, s in old.items()}  # fmt: skip
        conductor.load(policy=PolicyResult(policy), specs=new, revision="r2")
        assert conductor.rollout is not None
        conductor.observe(Outcome.of(old["dev1"], "in_sync"))  # read before the reload
        assert str(conductor.rollout.status["dev1"]) == "pending"
        conductor.observe(Outcome.of(new["dev2"], "in_sync"))
        assert str(conductor.rollout.status["dev2"]) == "in_sync"

    def test_devices_unusable_for_a_while_keep_their_place(self, tmp_path: Path) -> None:
        """A load where the rollout's devices are in the tree but unusable (a secret missing at
        start) leaves them pending; only devices gone from the tree leave the rollout."""
        state = FileStateStore.open(tmp_path / "state")
        policy = FleetPolicy(
            rollout=RolloutPolicy(waves=(Wave("canary", devices=("dev1",)),), max_failures=0)
        )
        conductor = _conductor(state, [])
        specs = fleet_specs(3)
        conductor.load(policy=PolicyResult(policy), specs=specs, revision="r1")
        conductor.begin("dev1")
        conductor.observe(Outcome.of(specs["dev1"], "error", failure=Failure("rejected", "no")))
        assert conductor.state == "halted"
        again = _conductor(state, [])
        again.load(policy=PolicyResult(policy), specs={}, revision="r1", fleet=specs)
        assert again.rollout is not None
        assert {d: str(s) for d, s in again.rollout.status.items()} == {
            "dev1": "failed",
            "dev2": "pending",
            "dev3": "pending",
        }
        again.load(policy=PolicyResult(policy), specs={}, revision="r1", fleet=["dev1", "dev2"])
        assert str(again.rollout.status["dev3"]) == "in_sync"  # gone from the tree
        assert str(again.rollout.status["dev2"]) == "pending"

    def test_put_starts_and_verdicts_are_journalled_not_rewritten(self, tmp_path: Path) -> None:
        """A PUT starting and its healthy verdict are on disk at once as journal lines, the
        document untouched; a restarted conductor sees them (a PUT under way starts again)."""
        state = FileStateStore.open(tmp_path / "state")
        policy = FleetPolicy(
            rollout=RolloutPolicy(waves=(Wave("canary", devices=("dev1", "dev2")), Wave("rest")))
        )
        conductor = _conductor(state, [])
        specs = fleet_specs(3)
        conductor.load(policy=PolicyResult(policy), specs=specs, revision="r1")
        document = (tmp_path / "state" / "rollout.json").read_bytes()
        conductor.begin("dev1")
        conductor.begin("dev2")
        conductor.observe(Outcome.of(specs["dev1"], "applied"))
        assert (tmp_path / "state" / "rollout.json").read_bytes() == document
        assert (tmp_path / "state" / "rollout.journal").read_text().count("\n") == 3
        again = _conductor(FileStateStore.open(tmp_path / "state"), [])
        assert again.rollout is not None
        assert {d: str(s) for d, s in again.rollout.status.items()} == {
            "dev1": "healthy",
            "dev2": "pending",  # under way when the process ended: looked at again
            "dev3": "pending",
        }
        conductor.observe(Outcome.of(specs["dev2"], "applied"))  # the wave is done: an event
        assert (tmp_path / "state" / "rollout.json").read_bytes() != document
        assert not (tmp_path / "state" / "rollout.journal").exists()

    def test_a_damaged_saved_rollout_is_told_and_a_new_one_starts(self, tmp_path: Path) -> None:
        """A rollout.json that cannot be read gives one state.rollout_damaged warning naming the
        file; the conductor starts afresh, and pause on the state writes a good document."""
        state_dir = tmp_path / "state"
        state = FileStateStore.open(state_dir)
        (state_dir / "rollout.json").write_text('{"rollout": {"revision": "r1", "wav')
        with capture_logs() as logs:
            conductor = _conductor(state, [])
        (damaged,) = [e for e in logs if e["event"] == "state.rollout_damaged"]
        assert damaged["log_level"] == "warning"
        assert str(state_dir / "rollout.json") in damaged["error"]
        assert "halted rollout is forgotten" in damaged["message"]
        specs = fleet_specs(2)
        conductor.load(policy=PolicyResult(FleetPolicy()), specs=specs, revision="r2")
        assert conductor.state == "running" and conductor.revision == "r2"
        (state_dir / "rollout.json").write_text("[]")
        with capture_logs() as logs:
            assert "paused" in pause_saved(state)
        assert [e["event"] for e in logs] == ["state.rollout_damaged", "rollout.paused"]
        with capture_logs() as logs:
            assert _conductor(FileStateStore.open(state_dir), []).paused
        assert [e for e in logs if e["event"] == "state.rollout_damaged"] == []

    def test_pause_survives_restarts_and_is_changed_on_the_state(self, tmp_path: Path) -> None:
        """A pause on the state holds every change in a conductor started later; resume lifts it."""
        state = FileStateStore.open(tmp_path / "state")
        assert "paused" in pause_saved(state)
        conductor = _conductor(state, [])
        specs = fleet_specs(1)
        conductor.load(policy=PolicyResult(None), specs=specs, revision="r1")
        assert conductor.state == "paused" and not conductor.may_start(specs["dev1"]).go
        assert conductor.resume() == "rollout resumed"
        assert conductor.may_start(specs["dev1"]).go
        assert "already" not in conductor.pause()
        assert "resumed" in resume_saved(state)
        assert not _conductor(state, []).paused

    def test_a_wave_begun_while_paused_is_announced_at_resume(self, tmp_path: Path) -> None:
        """A revision loaded while paused logs rollout.started but not rollout.wave (no
        device starts); resume logs the wave then, once; a later resume says nothing more."""
        state = FileStateStore.open(tmp_path / "state")
        assert "paused" in pause_saved(state)
        conductor = _conductor(state, [])
        with capture_logs() as logs:
            conductor.load(policy=PolicyResult(None), specs=fleet_specs(2), revision="r1")
        assert [e["event"] for e in logs] == ["rollout.started"]
        with capture_logs() as logs:
            assert conductor.resume() == "rollout resumed"
        waves = [e for e in logs if e["event"] == "rollout.wave"]
        assert [(e["wave"], e["devices"], e["revision"]) for e in waves] == [
            ("all", ["dev1", "dev2"], "r1")
        ]
        conductor.pause()
        with capture_logs() as logs:
            conductor.resume()
        assert [e for e in logs if e["event"] == "rollout.wave"] == []

    def test_a_big_wave_names_its_first_hundred_devices_and_counts_the_rest(
        self, tmp_path: Path
    ) -> None:
        """rollout.wave of 250 devices lists the wave's first 100 names in its order and
        ``devices_more: 150``, so the line stays far below journald's 48 KiB; a wave of
        100 lists them all with no count."""
        for size, more in ((250, 150), (100, None)):
            conductor = _conductor(FileStateStore.open(tmp_path / f"state{size}"), [])
            with capture_logs() as logs:
                conductor.load(policy=PolicyResult(None), specs=fleet_specs(size), revision="r1")
            (wave,) = [e for e in logs if e["event"] == "rollout.wave"]
            assert conductor.rollout is not None
            ((_, names),) = conductor.rollout.waves
            assert wave["devices"] == list(names)[:100]
            assert wave.get("devices_more") == more

    def test_a_wave_begun_while_paused_is_announced_by_a_resume_on_the_state(
        self, tmp_path: Path
    ) -> None:
        """The revision loaded (and its rollout started) by one process while paused, the
        resume run on the state dir by another: that resume announces the wave."""
        state = FileStateStore.open(tmp_path / "state")
        assert "paused" in pause_saved(state)
        with capture_logs() as logs:
            _conductor(state, []).load(
                policy=PolicyResult(None), specs=fleet_specs(2), revision="r1"
            )
        assert [e["event"] for e in logs] == ["rollout.started"]
        with capture_logs() as logs:
            assert "resumed" in resume_saved(FileStateStore.open(tmp_path / "state"))
        assert [(e["event"], e.get("wave")) for e in logs] == [
            ("rollout.resumed", None),
            ("rollout.wave", "all"),
        ]

    def test_an_invalid_policy_keeps_the_last_valid_one(self, tmp_path: Path) -> None:
        """A _fleet.yaml that turns invalid leaves the policy in force as it was."""
        state = FileStateStore.open(tmp_path / "state")
        conductor = _conductor(state, [])
        policy = FleetPolicy(rollout=RolloutPolicy(bake=7))
        conductor.load(policy=PolicyResult(policy), specs={}, revision="r1")
        bad = PolicyResult(None, [Problem("_fleet.yaml", 2, "rollout", "bad")])
        conductor.load(policy=bad, specs={}, revision="r2")
        assert conductor.policy == policy


class TestReverter:
    async def test_a_reverted_desired_state_is_not_in_force_however_recorded(
        self, tmp_path: Path, emulated: Fleet, pool: ClientPool
    ) -> None:
        """A canary whose failed state was recorded in force meanwhile (a re-check found it
        registered while its revert was due) is, once reverted, not in force under that
        state: the next resync sees a change the halted rollout holds, not drift to undo."""
        device = emulated.devices[0]
        spec = spec_for(device, displayName="Broken")
        state = FileStateStore.open(tmp_path / "state")
        conductor = Conductor(
            state=state,
            kick=lambda names: None,
            client_of=lambda s: DeviceClient(url=s.url, pool=pool),
        )
        waves = (Wave("canary", devices=(spec.name,)),)
        policy = RolloutPolicy(waves=waves, max_failures=0, on_failure="revert")
        conductor.load(
            policy=PolicyResult(FleetPolicy(rollout=policy)), specs={spec.name: spec}, revision="r1"
        )
        conductor.begin(spec.name)
        device.set_live(1, displayName="Broken")  # the rollout's PUT
        state.record_in_force(spec.name, spec.fingerprint, "r1")  # taken for healthy meanwhile
        change = Change(1, "displayName", "Good", "Broken")
        failed = Failure("health", "account 1 did not register")
        conductor.observe(Outcome.of(spec, "error", changes=(change,), failure=failed))
        assert conductor.state == "halted"
        conductor.step()  # the tick that sends the reverts due
        await conductor.settle(5.0)
        assert device.accounts[0]["displayName"] == "Good"
        assert state.applied_fingerprint(spec.name) != spec.fingerprint
        assert state.unhealthy_fingerprint(spec.name) == spec.fingerprint
        assert not conductor.may_start(spec).go  # its change waits: the rollout halted

    async def test_a_revert_waits_for_the_devices_turn_and_takes_a_slot(
        self, emulated: Fleet, pool: ClientPool
    ) -> None:
        """While the device's reconcile holds its turn, its revert sends nothing (it raced
        a reconcile's health re-check before, and the failed state was taken as in force);
        with one slot, two devices' reverts go one after the other, not at once."""
        devices = emulated.devices
        specs = {f"dev{d.number}": spec_for(d, displayName="Lobby") for d in devices}
        undo = [{"account": 1, "field": "displayName", "live": "Old", "desired": "Lobby"}]
        for device in devices:
            device.latency = 0.1
        turns, permits = Turns(), Permits(1)
        done: list[str] = []
        reverter = Reverter(
            client_of=lambda s: DeviceClient(url=s.url, pool=pool),
            undo_of=lambda name: (specs[name], undo),
            calls=lambda: CallsPolicy(wait_for_idle=False),
            revision=lambda: "r1",
            done=lambda name, changes: done.append(name),
            retry=RetryPolicy(attempts=1),
            turn=turns.of,
            slot=lambda: permits,
        )
        async with turns.of("dev1"):  # dev1's reconcile and health check under way
            reverter.start(["dev1", "dev2"])
            await asyncio.sleep(0.3)
            assert [e.method for e in devices[0].journal] == []
            assert done == ["dev2"]
        while reverter.busy:
            await asyncio.sleep(0.01)
        assert done == ["dev2", "dev1"]
        assert devices[0].accounts[0]["displayName"] == "Old"
        for device in devices:
            device.clear_journal()
        reverter.start(["dev1", "dev2"])  # no turn held: only the one slot orders them
        while reverter.busy:
            await asyncio.sleep(0.01)
        one, two = sorted(
            (e for d in devices for e in d.journal if e.method == "PUT"), key=lambda e: e.started
        )
        assert one.finished <= two.started  # one slot: one revert PUT at a time

    async def test_a_revert_failing_the_same_way_is_said_once_and_tried_on(
        self, emulated: Fleet, pool: ClientPool
    ) -> None:
        """A revert PUT that keeps failing alike: one apply.failed and one history entry, not
        one per try; a new failure is said again; when it goes out, apply.reverted."""
        device = emulated.devices[0]
        spec = spec_for(device, displayName="Lobby")
        undo = [{"account": 1, "field": "displayName", "live": "Old", "desired": "Lobby"}]
        failures: list[str] = []
        done: list[str] = []
        now = [0.0]
        reverter = Reverter(
            client_of=lambda s: DeviceClient(url=s.url, pool=pool),
            undo_of=lambda name: (spec, undo),
            calls=lambda: CallsPolicy(wait_for_idle=False),
            revision=lambda: "r1",
            done=lambda name, changes: done.append(name),
            failed=lambda name, changes, error: failures.append(error),
            retry=RetryPolicy(attempts=1),
            clock=lambda: now[0],
        )

        async def attempt() -> None:
            reverter.start(["dev1"])
            while reverter.busy:
                await asyncio.sleep(0.01)
            now[0] += REVERT_RETRY

        device.inject(kind="status", status=503, method="PUT", count=3)
        with capture_logs() as logs:
            await attempt()
            await attempt()
            device.clear_faults()
            device.inject(kind="reject", code=12, method="PUT", count=1)
            await attempt()
            await attempt()
        said = [e for e in logs if e["event"] == "apply.failed"]
        assert len(failures) == len(said) == 2
        assert "HTTP 503" in failures[0] and "code 12" in failures[1]
        assert done == ["dev1"] and device.accounts[0]["displayName"] == "Old"
        assert [e["event"] for e in logs].count("apply.reverted") == 1


class TestLock:
    def test_second_holder_is_refused_naming_the_pid(self, tmp_path: Path) -> None:
        """The lock file holds the PID; a second acquire fails naming it; release frees it."""
        held = StateLock.acquire(tmp_path / "state")
        assert (tmp_path / "state" / LOCK_FILE).read_text().strip() == str(os.getpid())
        with pytest.raises(StateDirLocked, match=f"PID {os.getpid()}"):
            StateLock.acquire(tmp_path / "state")
        held.release()
        with StateLock.acquire(tmp_path / "state"):
            pass
