"""A device known unreachable is tried once per reconcile until it answers again (issue 17)."""

from __future__ import annotations

from syncd.client import ClientPool
from syncd.gate import Gate
from syncd.policy import FleetPolicy
from syncd.reconcile import Reconciler
from syncd.retrying import RetryPolicy
from syncd.simulator import Fleet
from syncd.state import FileStateStore
from tests.reconcile.test_reconcile import spec_for

CONFIG, CALLS = "/api/phone/config", "/api/call/status"


class TestKnownUnreachable:
    async def test_one_attempt_while_unreachable_the_full_ladder_once_it_answered(
        self, emulated: Fleet, reconciler: Reconciler
    ) -> None:
        """The first failed read uses every attempt; the next reconciles try once; after it answers, a failure is retried again."""
        device = emulated.devices[0]
        spec = spec_for(device, displayName="Lobby")
        device.inject(kind="status", status=503, count=None)
        first = await reconciler.reconcile(spec, apply=True)
        assert first.status == "error" and len(device.journal) == 2  # the reconciler's 2 attempts
        device.clear_journal()
        for _ in range(3):
            again = await reconciler.reconcile(spec, apply=True)
            assert again.status == "error"
        assert len(device.journal) == 3  # one attempt each
        device.clear_faults()
        device.clear_journal()
        back = await reconciler.reconcile(spec, apply=True)
        assert back.status == "applied"
        device.inject(kind="status", status=503, count=1)
        device.clear_journal()
        retried = await reconciler.reconcile(spec, apply=True)
        assert retried.status == "in_sync"  # the 503 was retried within the pass
        assert [e.status for e in device.journal] == [503, 200]

    async def test_an_unreachable_device_does_not_cost_the_others_their_retries(
        self, emulated: Fleet, reconciler: Reconciler
    ) -> None:
        """Only the device that failed is tried once; another device's passing fault is still retried."""
        dark, other = emulated.devices
        dark.inject(kind="status", status=503, count=None)
        await reconciler.reconcile(spec_for(dark, displayName="A"), apply=True)
        other.inject(kind="status", status=503, count=1)
        outcome = await reconciler.reconcile(spec_for(other, displayName="B"), apply=True)
        assert outcome.status == "applied"

    async def test_forgetting_a_device_forgets_that_it_was_unreachable(
        self, emulated: Fleet, reconciler: Reconciler
    ) -> None:
        """A device removed and added again starts with the full retry ladder."""
        device = emulated.devices[0]
        spec = spec_for(device, displayName="Lobby")
        device.inject(kind="status", status=503, count=None)
        await reconciler.reconcile(spec, apply=True)
        reconciler.forget(spec.name)
        device.clear_journal()
        await reconciler.reconcile(spec, apply=True)
        assert len(device.journal) == 2

    async def test_no_early_read_to_a_device_known_unreachable(
        self, emulated: Fleet, state_store: FileStateStore
    ) -> None:
        """A change's call status goes out alongside the config read, but not while the
        device's last read failed: it is asked for its config alone, and once it answers
        the next change reads both together again."""
        device = emulated.devices[0]
        device.latency = 0.05
        async with ClientPool(timeout=5.0) as pool:
            reconciler = Reconciler(
                pool=pool,
                state=state_store,
                retry=RetryPolicy(attempts=2, initial=0.01, maximum=0.02),
                gate=Gate(policy=FleetPolicy),
            )
            device.inject(kind="status", status=503, path=CONFIG, count=None)
            first = await reconciler.reconcile(spec_for(device, displayName="A"), apply=True)
            assert first.status == "error"
            assert {e.path for e in device.journal} == {CONFIG, CALLS}  # it went early once
            device.clear_journal()
            again = await reconciler.reconcile(spec_for(device, displayName="A"), apply=True)
            assert again.status == "error"
            assert [e.path for e in device.journal] == [CONFIG]  # known unreachable: alone
            device.clear_faults()
            device.clear_journal()
            back = await reconciler.reconcile(spec_for(device, displayName="A"), apply=True)
            assert back.status == "applied"
            get, calls = device.journal[0], device.journal[1]
            assert (get.path, calls.path) == (CONFIG, CALLS) and calls.started >= get.finished
            device.clear_journal()
            changed = await reconciler.reconcile(spec_for(device, displayName="B"), apply=True)
            assert changed.status == "applied"
            get, calls = (next(e for e in device.journal if e.path == p) for p in (CONFIG, CALLS))
            assert calls.started < get.finished and get.started < calls.finished  # together
