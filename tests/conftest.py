"""Fixtures shared by every test folder: an in-process emulated fleet, a state store, a reconciler."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import settings

from syncd.client import ClientPool
from syncd.reconcile import Reconciler
from syncd.retrying import RetryPolicy
from syncd.simulator import Fleet
from syncd.state import FileStateStore
from tests.bytecode import compile_syncd

# No wall-clock deadline for a property's example: these machines are shared and their
# speed varies twofold (a 200 ms deadline failed a pure hashing test on a busy run).
settings.register_profile("syncd", deadline=None)
settings.load_profile("syncd")


def pytest_sessionstart(session: pytest.Session) -> None:
    """syncd's modules compiled once, in the xdist controller (:mod:`tests.bytecode`)."""
    if not hasattr(session.config, "workerinput"):
        compile_syncd()


@pytest.fixture
async def emulated() -> AsyncIterator[Fleet]:
    """Two string-firmware intercoms without API authentication, in this process."""
    async with Fleet(devices=2) as running:
        yield running


@pytest.fixture
def state_store(tmp_path: Path) -> FileStateStore:
    """A fresh state directory's store."""
    return FileStateStore.open(tmp_path / "state")


@pytest.fixture
async def reconciler(state_store: FileStateStore) -> AsyncIterator[Reconciler]:
    """A reconciler on its own connection pool, with quick retries (2 attempts, short waits)."""
    async with ClientPool(timeout=5.0) as pool:
        yield Reconciler(
            pool=pool,
            state=state_store,
            retry=RetryPolicy(attempts=2, initial=0.01, maximum=0.02),
        )
