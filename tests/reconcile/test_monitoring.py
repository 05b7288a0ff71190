"""Registration monitoring: a lost registration is a factory reset only if syncd did not cause it."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from pydantic import SecretStr

from syncd.client import ClientPool
from syncd.devices_view import DeviceView
from syncd.model import AccountSpec, AuthMethod, AuthSpec, DeviceSpec, Mode
from syncd.monitoring import RegistrationMonitor
from syncd.outcome import Outcome
from syncd.reconcile import Reconciler
from syncd.simulator import Fleet
from syncd.state import FileStateStore
from tests.rollouts.helpers import BAD, GOOD, PBX


def sip_spec(url: str) -> DeviceSpec:
    """dev1 with account 1 registering at the emulator's PBX under a managed password."""
    fields = {"enabled": True, "registrationEnabled": True, "domain": GOOD}
    return DeviceSpec(
        name="dev1",
        file="dev1.yaml",
        url=url,
        auth=AuthSpec(AuthMethod.NONE),
        mode=Mode.ENFORCE,
        accounts={1: AccountSpec(1, fields, SecretStr("sip-secret"))},
    )


def watched(
    pool: ClientPool, state: FileStateStore, now: list[float], kicked: list[str]
) -> tuple[Reconciler, RegistrationMonitor]:
    """A reconciler and its registration monitor over ``state`` (resync 2 s, clock ``now[0]``);
    the devices it wants reconciled again go to ``kicked``."""
    reconciler = Reconciler(pool=pool, state=state)
    monitor = RegistrationMonitor(
        reconciler=reconciler,
        state=state,
        resync_interval=2.0,
        kick=kicked.append,
        clock=lambda: now[0],
    )
    return reconciler, monitor


async def test_no_password_resend_for_a_registration_a_failed_rollout_lost(tmp_path) -> None:
    """The device registered with syncd's password, then a desired state that failed its
    health check took it off the PBX: resyncs finding it so resend no password."""
    async with Fleet(devices=1, pbx=PBX, register_delay=0.05) as fleet, ClientPool() as pool:
        device = fleet.devices[0]
        good = sip_spec(device.url)
        fields = dict(good.accounts[1].fields)
        state = FileStateStore.open(tmp_path / "state")
        kicked: list[str] = []
        now = [1000.0]
        reconciler, monitor = watched(pool, state, now, kicked)
        view = DeviceView(good)
        assert (await reconciler.reconcile(good, apply=True)).status == "applied"
        for _ in range(50):
            if device.registered(1):
                break
            await asyncio.sleep(0.05)
        await monitor.check(good, Outcome.of(good, "in_sync"), view)  # registered: proof
        bad_account = AccountSpec(1, {**fields, "domain": BAD}, SecretStr("sip-secret"))
        bad = replace(good, accounts={1: bad_account})
        assert (await reconciler.reconcile(bad, apply=True)).status == "applied"
        state.record_unhealthy("dev1", bad.fingerprint, restored=good.fingerprint)
        for _ in range(3):  # resyncs find the device equal to the failed state, unregistered
            now[0] += 5.0
            await monitor.check(bad, Outcome.of(bad, "in_sync"), view)
        assert kicked == []


async def _registered(fleet: Fleet) -> None:
    for _ in range(100):
        if fleet.devices[0].registered(1):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the account did not register")


async def _after_restart(tmp_path, *, seen_registered: bool) -> list[str]:
    """Apply, (see the account registered), stop; the device is reset; a new daemon's
    monitor over the same state reads it: the devices it asks a password resend for."""
    async with Fleet(devices=1, pbx=PBX, register_delay=0.05) as fleet, ClientPool() as pool:
        device = fleet.devices[0]
        spec = sip_spec(device.url)
        now, kicked = [1000.0], []
        reconciler, monitor = watched(pool, FileStateStore.open(tmp_path / "state"), now, kicked)
        assert (await reconciler.reconcile(spec, apply=True)).status == "applied"
        await _registered(fleet)
        if seen_registered:
            await monitor.check(spec, Outcome.of(spec, "in_sync"), DeviceView(spec))
        device.factory_reset()  # while no daemon runs
        reconciler, monitor = watched(pool, FileStateStore.open(tmp_path / "state"), now, kicked)
        view = DeviceView(spec)
        outcome = await reconciler.reconcile(spec, apply=True)  # the reset's drift put back
        assert outcome.status == "applied" and "password" not in str(device.journal[-2:])
        await monitor.check(spec, outcome, view)
        for _ in range(3):
            now[0] += 5.0
            await monitor.check(spec, Outcome.of(spec, "in_sync"), view)
        assert "sip-secret" not in (tmp_path / "state" / "devices.jsonl").read_text()
        return kicked


async def test_a_device_reset_while_the_daemon_was_down_gets_its_password_again(
    tmp_path,
) -> None:
    """The account registered under syncd's password before a restart (kept in the state);
    reset while no daemon ran, it stays unregistered: the new daemon resends its password."""
    assert await _after_restart(tmp_path, seen_registered=True) == ["dev1"]


async def test_no_resend_after_a_restart_for_an_account_never_seen_registered(tmp_path) -> None:
    """Without the proof that the account registered under this desired account, a lasting
    loss of registration may be a bad setting: no resend."""
    assert await _after_restart(tmp_path, seen_registered=False) == []
