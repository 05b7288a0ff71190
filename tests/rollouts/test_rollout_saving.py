"""How often the saved rollout document is rewritten (syncd/rollout_saving.py)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import structlog

from syncd.rollout_saving import SAVE_EVERY, SAVE_SHARE, RolloutSaver
from syncd.rollout_values import DeviceStatus
from syncd.saved_rollout import SavedRollout


class _Store:
    """Records what the saver writes; a document write takes ``cost`` seconds of real time."""

    def __init__(self, cost: float) -> None:
        self.cost = cost
        self.writes: list[str] = []

    def save_rollout(self, doc: Mapping[str, Any]) -> None:
        time.sleep(self.cost)
        self.writes.append("document")

    def append_rollout(self, entry: Mapping[str, Any]) -> None:
        self.writes.append("journal")


def _saver(cost: float) -> tuple[RolloutSaver, _Store, list[float]]:
    store, now = _Store(cost), [0.0]
    saver = RolloutSaver(
        store,  # type: ignore[arg-type]  # the two writes the saver makes
        SavedRollout(),
        clock=lambda: now[0],
        log=structlog.get_logger(),
    )
    return saver, store, now


def test_a_quick_document_is_written_again_after_save_every() -> None:
    saver, store, now = _saver(cost=0.0)
    saver.note("a", DeviceStatus.ACTIVE)  # the first write of a process: the document
    now[0] = SAVE_EVERY / 2
    saver.note("b", DeviceStatus.ACTIVE)
    now[0] = SAVE_EVERY
    saver.note("c", DeviceStatus.ACTIVE)
    assert store.writes == ["document", "journal", "document"]


def test_a_slow_document_waits_so_writing_it_takes_at_most_its_share_of_the_time() -> None:
    """A document of a large fleet (tens of ms to write) is not rewritten every second:
    the journal carries the devices meanwhile."""
    cost = 0.08  # waits cost / SAVE_SHARE = 1.6 s
    saver, store, now = _saver(cost=cost)
    saver.note("a", DeviceStatus.ACTIVE)
    now[0] = SAVE_EVERY
    saver.note("b", DeviceStatus.ACTIVE)
    saver.due()
    now[0] = 10 * cost / SAVE_SHARE  # long after, however slow the sleep was
    saver.due()
    assert store.writes == ["document", "journal", "document"]
