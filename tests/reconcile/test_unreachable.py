"""A device known unreachable is tried once per reconcile until it answers again (issue 17)."""

from __future__ import annotations

from syncd.reconcile import Reconciler
from syncd.simulator import Fleet
from tests.reconcile.test_reconcile import spec_for


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
