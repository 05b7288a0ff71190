"""One reconcile over real HTTP against 4-account and 2-account devices."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr
from structlog.testing import capture_logs

from syncd.client import ClientPool
from syncd.devices_view import DeviceView
from syncd.fleet_view import FleetView
from syncd.model import AccountSpec, AuthMethod, AuthSpec, DeviceSpec
from syncd.reconcile import Reconciler
from syncd.simulator import Fleet
from syncd.state.files import FileStateStore
from tests.client.firmware import Firmware

NO_AUTH = AuthSpec(method=AuthMethod.NONE)


def _spec(url: str, accounts: dict[int, AccountSpec]) -> DeviceSpec:
    return DeviceSpec(name="gate", file="gate.yaml", url=url, auth=NO_AUTH, accounts=accounts)


class TestFourAccounts:
    async def test_account_3_is_managed_without_sending_account_type(self, tmp_path: Path):
        """Account 3 of a 4-account device converges; the PUT holds only its changed fields."""
        accounts = {3: AccountSpec(3, {"displayName": "Gate", "domainPort": 5062})}
        async with Firmware(accounts=4) as dev, ClientPool() as pool:
            reconciler = Reconciler(pool=pool, state=FileStateStore.open(tmp_path))
            spec = _spec(dev.url, accounts)
            outcome = await reconciler.reconcile(spec, apply=True)
            again = await reconciler.reconcile(spec, apply=True)
        assert (outcome.status, again.status) == ("applied", "in_sync")
        assert dev.puts == [
            {"accounts": [{"account": 3, "displayName": "Gate", "domainPort": 5062}]}
        ]
        assert dev.live[3]["displayName"] == "Gate" and dev.live[3]["accountType"] == "general"

    async def test_local_account_4_takes_a_password(self, tmp_path: Path):
        """Account 4 takes its password once, with no accountType beside it."""
        spec_accounts = {4: AccountSpec(4, {"enabled": True}, SecretStr("sip-4"))}
        async with Firmware(accounts=4) as dev, ClientPool() as pool:
            reconciler = Reconciler(pool=pool, state=FileStateStore.open(tmp_path))
            outcome = await reconciler.reconcile(_spec(dev.url, spec_accounts), apply=True)
        assert outcome.status == "applied"
        assert dev.puts == [{"accounts": [{"account": 4, "enabled": True, "password": "sip-4"}]}]


class TestTwoAccounts:
    async def test_desired_account_3_is_a_device_error_and_no_put(self, tmp_path: Path):
        """A 2-account device asked for account 3 fails as kind device naming it; nothing is sent."""
        accounts = {
            1: AccountSpec(1, {"displayName": "Door"}),
            3: AccountSpec(3, {"displayName": "Gate"}, SecretStr("sip-3")),
        }
        async with Fleet(devices=1) as fleet, ClientPool() as pool:
            reconciler = Reconciler(pool=pool, state=FileStateStore.open(tmp_path))
            dev = fleet.devices[0]
            with capture_logs() as planned:
                seen = await reconciler.reconcile(_spec(dev.url, accounts), apply=False)
            with capture_logs() as logs:
                outcome = await reconciler.reconcile(
                    _spec(dev.url, accounts), apply=True, revision="r1"
                )
            journal = list(dev.journal)
        (failed,) = [e for e in logs if e["event"] == "apply.failed"]
        assert (failed["kind"], failed["revision"]) == ("device", "r1")
        # plan (apply=False) reports it as the device's error, not as a failed apply.
        assert seen.status == "error" and not [e for e in planned if e["event"] == "apply.failed"]
        assert (
            outcome.status == "error"
            and outcome.failure is not None
            and outcome.failure.kind == "device"
        )
        assert (
            outcome.failure.message == "the device has no SIP account 3 (it reports accounts 1, 2)"
        )
        assert [e.method for e in journal if e.method != "GET"] == []
        assert dev.accounts[0]["displayName"] != "Door"

    async def test_a_missing_account_is_said_once_until_the_device_or_desired_state_changes(
        self, tmp_path: Path
    ):
        """The daemon's resyncs log apply.failed for it once, not every time; asked for another
        missing account, or after the device was in sync in between, it is news again."""
        three = {3: AccountSpec(3, {"displayName": "Gate"})}
        four = {4: AccountSpec(4, {"displayName": "Gate"})}
        async with Fleet(devices=1) as fleet, ClientPool() as pool:
            url = fleet.devices[0].url
            view = FleetView(node="n1", devices={"gate": DeviceView(_spec(url, three))})
            reconciler = Reconciler(pool=pool, state=FileStateStore.open(tmp_path), watch=view)

            async def resync(accounts: dict[int, AccountSpec]) -> None:
                outcome = await reconciler.reconcile(_spec(url, accounts), apply=True)
                view.devices["gate"].observe(outcome, 0.0, revision=None)

            with capture_logs() as logs:
                for accounts in (three, three, three, four, four):
                    await resync(accounts)
                await resync({1: AccountSpec(1, {"displayName": "Door"})})  # in sync: over
                await resync(three)
        failed = [e["error"] for e in logs if e["event"] == "apply.failed"]
        assert [m.split(" (")[0] for m in failed] == [
            "the device has no SIP account 3",
            "the device has no SIP account 4",
            "the device has no SIP account 3",
        ]
