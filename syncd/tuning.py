"""The daemon's parts its live settings shape: the client pool, the request lanes, the timing.

Built from the settings at start, and again (those a change concerns) when a
SIGHUP puts new live settings in force (see :mod:`syncd.settings_change`). A
pool replaced by new timeouts stays open for the requests in flight on it,
until :meth:`Tuning.aclose` at stop.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from syncd.client import ClientPool
from syncd.permits import Permits
from syncd.settings import Settings
from syncd.slots import Lanes
from syncd.worker import Timing

__all__ = ["Tuning"]


def _pool(settings: Settings, node: str | None) -> ClientPool:
    return ClientPool(
        timeout=settings.request_timeout, connect_timeout=settings.connect_timeout, node=node
    )


@dataclass
class Tuning:
    """The pool, lanes and timing in force; ``gate`` bounds the devices in flight."""

    gate: Permits
    node: str | None
    pool: ClientPool
    lanes: Lanes
    timing: Timing
    #: Pools replaced by new timeouts: requests in flight end on them; closed at stop.
    retired: list[ClientPool] = field(default_factory=list)

    @classmethod
    def of(cls, settings: Settings, *, gate: Permits, node: str | None) -> Tuning:
        """The parts as ``settings`` shape them."""
        return cls(
            gate=gate,
            node=node,
            pool=_pool(settings, node),
            lanes=Lanes.for_daemon(gate, request_timeout=settings.request_timeout),
            timing=Timing(settings.resync_interval, settings.max_backoff),
        )

    def retune(self, settings: Settings, changed: Collection[str]) -> None:
        """Put ``changed`` settings in force: a new pool and lanes for new timeouts."""
        if {"request_timeout", "connect_timeout"} & set(changed):
            self.retired.append(self.pool)
            self.pool = _pool(settings, self.node)
            self.lanes = Lanes.for_daemon(self.gate, request_timeout=settings.request_timeout)
        self.timing = Timing(settings.resync_interval, settings.max_backoff)

    async def aclose(self) -> None:
        """Close every pool, the retired ones first."""
        for pool in (*self.retired, self.pool):
            await pool.aclose()
