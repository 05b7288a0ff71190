"""``syncd apply``'s pass: when a device waiting for its wave may give up (in-process)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from syncd.client import ClientPool
from syncd.foreground import ApplyPass
from syncd.history import HistoryLog
from syncd.settings import load_settings
from syncd.state import FileStateStore


@pytest.fixture
async def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A pass over devices a, b and c, its rollout running a wave that is not done."""
    settings = load_settings(state_dir=tmp_path / "state", desired_dir=tmp_path)
    async with ClientPool(timeout=1.0, connect_timeout=1.0) as pool:
        state = FileStateStore.open(settings.state_dir)
        history = HistoryLog.in_state_dir(settings.state_dir)
        run = ApplyPass(
            settings,
            pool=pool,
            state=state,
            history=history,
            devices=["a", "b", "c"],
            revision="r1",
            ignore_windows=False,
            on_done=None,
        )
        monkeypatch.setattr(type(run.conductor), "state", property(lambda self: "running"))
        monkeypatch.setattr(run.conductor, "wave_done", lambda: False)
        yield run


class TestWaitingForAWave:
    async def test_a_kicked_device_moves_before_its_task_wakes(self, run: ApplyPass) -> None:
        """Kicked devices count as moving at their kick: a device of a later wave whose
        wait times out before they wake does not end its pass as stuck (it did, 2 runs
        in 26 of a 300-device apply, leaving a device of the next wave without its PUT)."""
        run._moving -= 1  # c is still being reconciled; a and b wait for their wave
        waits = {name: asyncio.create_task(run._wave_started(name)) for name in "ab"}
        await asyncio.sleep(0)
        run._kick(["a"])  # a's wave starts; its task has not woken yet
        assert not run._stuck()
        run._moving -= 1  # c's pass ends: a alone moves the rollout on
        assert not run._stuck()
        assert await waits["a"] is True
        run._moving -= 1  # a's pass ends with no wave left to start for b
        assert await asyncio.wait_for(waits["b"], 2) is False

    async def test_a_device_kicked_during_its_reconcile_does_not_wait(self, run: ApplyPass) -> None:
        """A kick that came while the device's reconcile ran is not lost."""
        run._kick(["a"])
        assert await asyncio.wait_for(run._wave_started("a"), 1) is True
