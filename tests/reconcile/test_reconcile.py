"""One reconcile of one device, against the in-process emulator: GET, diff, one minimal PUT, verify."""

from __future__ import annotations

import contextlib

from pydantic import SecretStr
from structlog.testing import capture_logs

from syncd.client import ClientPool
from syncd.devices_view import DeviceView
from syncd.fleet_view import FleetView
from syncd.model import AccountSpec, AuthMethod, AuthSpec, DeviceSpec, Mode
from syncd.reconcile import Reconciler, reconcile_many
from syncd.simulator import EmulatedDevice, Fleet
from syncd.state import FileStateStore


def spec_for(
    device: EmulatedDevice,
    *,
    mode: Mode = Mode.ENFORCE,
    password: str | None = None,
    **fields: bool | str | int,
) -> DeviceSpec:
    """A spec managing account 1's ``fields`` (and password) on ``device``."""
    account = AccountSpec(1, fields, SecretStr(password) if password is not None else None)
    return DeviceSpec(
        name=f"dev{device.number}",
        file=f"dev{device.number}.yaml",
        url=device.url,
        auth=AuthSpec(AuthMethod.NONE),
        mode=mode,
        accounts={1: account},
    )


def puts(device: EmulatedDevice) -> list[object]:
    return [e.blob for e in device.journal if e.method == "PUT"]


class TestReconcile:
    async def test_in_sync_device_gets_no_put(
        self, emulated: Fleet, reconciler: Reconciler
    ) -> None:
        """A device already holding the desired values is in_sync, and no PUT is sent."""
        device = emulated.devices[0]
        device.set_live(1, displayName="Lobby")
        outcome = await reconciler.reconcile(spec_for(device, displayName="Lobby"), apply=True)
        assert outcome.status == "in_sync" and outcome.changes == ()
        assert puts(device) == []

    async def test_plan_only_never_puts(self, emulated: Fleet, reconciler: Reconciler) -> None:
        """With apply=False a difference is reported as changes, and the device is untouched."""
        device = emulated.devices[0]
        outcome = await reconciler.reconcile(spec_for(device, displayName="Lobby"), apply=False)
        assert outcome.status == "changes"
        assert [(c.account, c.field, c.desired) for c in outcome.changes] == [
            (1, "displayName", "Lobby")
        ]
        assert puts(device) == [] and device.accounts[0]["displayName"] == ""

    async def test_apply_puts_only_changed_fields_and_verifies(
        self, emulated: Fleet, reconciler: Reconciler, state_store: FileStateStore
    ) -> None:
        """One PUT holds account 1 with only its changed fields; the device then holds them."""
        device = emulated.devices[0]
        device.set_live(1, sipNumber="4001")
        spec = spec_for(device, displayName="Lobby", sipNumber="4001", domainPort=5060)
        outcome = await reconciler.reconcile(spec, apply=True)
        assert outcome.status == "applied" and not outcome.drift
        assert puts(device) == [
            {"accounts": [{"account": 1, "displayName": "Lobby", "domainPort": "5060"}]}
        ]
        assert device.accounts[0]["displayName"] == "Lobby"
        assert state_store.applied_fingerprint(spec.name) == spec.fingerprint
        again = await reconciler.reconcile(spec, apply=True)
        assert again.status == "in_sync" and len(puts(device)) == 1

    async def test_change_behind_syncds_back_is_drift(
        self, emulated: Fleet, reconciler: Reconciler
    ) -> None:
        """A difference under a desired state already applied is drift, and is put back."""
        device = emulated.devices[0]
        spec = spec_for(device, displayName="Lobby")
        assert (await reconciler.reconcile(spec, apply=True)).status == "applied"
        device.set_live(1, displayName="Hacked")
        outcome = await reconciler.reconcile(spec, apply=True)
        assert outcome.status == "applied" and outcome.drift
        assert device.accounts[0]["displayName"] == "Lobby"

    async def test_password_is_sent_once(self, emulated: Fleet, reconciler: Reconciler) -> None:
        """A managed password goes to the device once; the next pass is in sync without sending it."""
        device = emulated.devices[0]
        spec = spec_for(device, password="s3cret-pw")
        first = await reconciler.reconcile(spec, apply=True)
        assert first.status == "applied" and device.passwords[1] == "s3cret-pw"
        second = await reconciler.reconcile(spec, apply=True)
        assert second.status == "in_sync" and len(puts(device)) == 1

    async def test_rejected_put_is_a_failure_with_the_device_code(
        self, emulated: Fleet, reconciler: Reconciler
    ) -> None:
        """A PUT the device rejects (code 12) fails with kind rejected, code and param; nothing changes."""
        device = emulated.devices[0]
        device.inject(kind="reject", code=12, param="displayName", method="PUT")
        outcome = await reconciler.reconcile(spec_for(device, displayName="Lobby"), apply=True)
        assert outcome.status == "error" and outcome.failure is not None
        assert outcome.failure.kind == "rejected"
        assert outcome.failure.error is not None and outcome.failure.error.code == 12
        assert outcome.failure.error.param == "displayName"
        assert device.accounts[0]["displayName"] == ""

    async def test_observe_reports_and_suspend_skips(
        self, emulated: Fleet, reconciler: Reconciler
    ) -> None:
        """observe finds the difference without a PUT; suspend sends no request at all."""
        observed, suspended = emulated.devices
        outcome = await reconciler.reconcile(
            spec_for(observed, mode=Mode.OBSERVE, displayName="Lobby"), apply=True
        )
        assert outcome.status == "changes" and puts(observed) == []
        skipped = await reconciler.reconcile(
            spec_for(suspended, mode=Mode.SUSPEND, displayName="Lobby"), apply=True
        )
        assert skipped.status == "skipped" and suspended.journal == []

    async def test_unreachable_device_fails_as_transport(
        self, reconciler: Reconciler, emulated: Fleet
    ) -> None:
        """A device that does not answer is an error of kind transport, after bounded retries."""
        device = emulated.devices[0]
        spec = spec_for(device, displayName="Lobby")
        await emulated.close()
        outcome = await reconciler.reconcile(spec, apply=True)
        assert outcome.status == "error" and outcome.failure is not None
        assert outcome.failure.kind == "transport"

    async def test_reconcile_many_keeps_order_and_reports_each(
        self, emulated: Fleet, reconciler: Reconciler
    ) -> None:
        """reconcile_many returns one outcome per spec in the given order and calls on_done for each."""
        specs = [spec_for(d, displayName=f"Door {d.number}") for d in reversed(emulated.devices)]
        done: list[str] = []
        outcomes = await reconcile_many(
            reconciler, specs, apply=True, concurrency=1, on_done=lambda o: done.append(o.device)
        )
        assert [o.device for o in outcomes] == [s.name for s in specs]
        assert all(o.status == "applied" for o in outcomes) and sorted(done) == sorted(
            s.name for s in specs
        )


async def test_history_names_the_wave_of_a_change_and_none_for_a_drift(tmp_path) -> None:
    """A failed rollout PUT's entry names its wave, as the accepted ones do; a drift
    correction is not part of a rollout and names none (SPEC 9, 10)."""
    from datetime import UTC, datetime

    from syncd.client import ClientPool
    from syncd.history import HistoryEntry
    from syncd.retrying import RetryPolicy
    from syncd.rollout_history import RolloutHistory

    entries: list[HistoryEntry] = []

    class Sink:
        def append(self, entry: HistoryEntry) -> None:
            entries.append(entry)

    async with Fleet(devices=1) as fleet, ClientPool() as pool:
        device = fleet.devices[0]
        device.inject(kind="status", status=503, method="PUT", count=None)
        reconciler = Reconciler(
            pool=pool,
            state=FileStateStore.open(tmp_path / "state"),
            retry=RetryPolicy(attempts=1),
            history=Sink(),
            wave_of=lambda name: "canary",
        )
        failed = await reconciler.reconcile(spec_for(device, displayName="Door"), apply=True)
    assert failed.status == "error"
    assert [(e.trigger, e.result, e.wave) for e in entries] == [("change", "failed", "canary")]
    rollout = RolloutHistory(
        history=Sink(),
        metrics=None,
        wall=lambda: datetime.now(UTC),
        wave_of=lambda n: "canary",
        log=None,
    )
    for trigger in ("change", "drift"):
        accepted = HistoryEntry(
            time=datetime.now(UTC), device="dev1", revision="r", trigger=trigger,
            result="succeeded", changes=[],
        )  # fmt: skip
        rollout.put_checked(accepted, failed)
    assert [(e.trigger, e.wave) for e in entries[1:]] == [("change", "canary"), ("drift", None)]


class HeldElsewhere:
    """A cluster node's sharing whose ownership key another node still holds (until ``let_go``)."""

    def __init__(self) -> None:
        self.held = True

    def void_read(self, device: str) -> str | None:
        return None

    async def may_put(self, device: str) -> str | None:
        return "another cluster node still holds the device" if self.held else None

    def put_window(self) -> contextlib.AbstractAsyncContextManager[None]:
        return contextlib.nullcontext()


class PausedNode(HeldElsewhere):
    """A cluster node whose lease ended while its turn read the device (a paused host)."""

    def void_read(self, device: str) -> str | None:
        return "this node's cluster lease ended or could not be renewed since the device was read"


class TestHeldElsewhere:
    async def test_skip_logged_once_until_in_sync(
        self, emulated: Fleet, state_store: FileStateStore
    ) -> None:
        """A PUT whose key another node holds is skipped at every pass but logged once; again once the device was in sync in between."""
        device = emulated.devices[0]
        spec = spec_for(device, displayName="Held")
        view = FleetView(node="n1", devices={spec.name: DeviceView(spec)})
        sharing = HeldElsewhere()
        with capture_logs() as logs:
            async with ClientPool(timeout=5.0) as pool:
                reconciler = Reconciler(
                    pool=pool,
                    state=state_store,
                    sharing=sharing,  # type: ignore[arg-type]
                    watch=view,
                )
                for _ in range(3):
                    assert (await reconciler.reconcile(spec, apply=True)).status == "changes"
                sharing.held = False
                outcome = await reconciler.reconcile(spec, apply=True)
                assert outcome.status == "applied"
                view.devices[spec.name].observe(outcome, 0.0, revision=None)
                sharing.held = True
                device.set_live(1, displayName="Hacked")
                assert (await reconciler.reconcile(spec, apply=True)).status == "changes"
                assert (await reconciler.reconcile(spec, apply=True)).status == "changes"
        skipped = [e for e in logs if e["event"] == "reconcile.skipped"]
        assert [e["reason"] for e in skipped] == ["another cluster node still holds the device"] * 2

    async def test_a_read_from_before_a_pause_says_and_changes_nothing(
        self, emulated: Fleet, state_store: FileStateStore
    ) -> None:
        """A drift read under a lease that has ended since: no drift.detected, no PUT, no
        state kept; one reconcile.skipped, and the outcome leaves the node's view alone."""
        device = emulated.devices[0]
        spec = spec_for(device, displayName="Wanted")
        with capture_logs() as logs:
            async with ClientPool(timeout=5.0) as pool:
                reconciler = Reconciler(
                    pool=pool,
                    state=state_store,
                    sharing=PausedNode(),  # type: ignore[arg-type]
                )
                outcome = await reconciler.reconcile(spec, apply=True)
        assert outcome.status == "skipped" and outcome.elsewhere
        assert [e["event"] for e in logs] == ["reconcile.skipped"]
        assert "lease ended" in logs[0]["reason"]
        assert [e.method for e in device.journal if e.method == "PUT"] == []
        assert state_store.applied_fingerprint(spec.name) is None
