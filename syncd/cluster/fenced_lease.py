"""A node's lease in etcd, kept alive, and trusted only as long as it is sure to live.

Fencing. The lease is renewed every third of its TTL. The node trusts its
lease only until ``last renewal sent + 2/3 TTL``: a renewal that fails, or is
late, makes it own nothing at once (``healthy`` False), well before etcd can
have expired the lease and handed its devices to others. It rejoins by
itself when etcd answers again (the same lease if it is still alive, else a
new one), first asking for a new auth token when a user is configured: a
restarted etcd has forgotten every token it gave.

What joining and a renewal mean for the rest of the node (registering, the
members and leader) is the node's (:class:`syncd.cluster.node.ClusterNode`):
it passes them in as ``join`` and ``after_renewal``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable, Collection

from syncd import events
from syncd.cluster.connection import (
    TRANSIENT_ERRORS,
    EtcdConnection,
    describe_failure,
    stale_token,
)
from syncd.cluster.lease import grant_lease, renew_lease, revoke_lease
from syncd.cluster.lease_memory import LeaseMemory
from syncd.cluster.membership import DuplicateNodeError
from syncd.logs import get_logger

__all__ = ["FencedLease"]

_log = logging.getLogger(__name__)

#: Share of the lease TTL after the last renewal during which the node trusts its lease.
TRUST_SHARE = 2 / 3


class FencedLease:
    """One node's lease, its renewal loop and its fence; see the module docstring.

    ``notify`` is called whenever availability or health change; ``lost``
    when the lease is found gone or replaced (nothing is held under a new one);
    ``join`` (re)registers the node under ``id``; ``after_renewal`` follows
    each successful renewal.
    """

    def __init__(
        self,
        connection: EtcdConnection,
        *,
        node_name: str,
        lease_ttl: float,
        memory: LeaseMemory,
        clock: Callable[[], float],
        notify: Callable[[], None],
        lost: Callable[[], None],
        join: Callable[[], Awaitable[None]],
        after_renewal: Callable[[], Awaitable[None]],
    ) -> None:
        self.connection = connection
        self.node_name = node_name
        self.lease_ttl = lease_ttl
        #: Leases granted and not known to have ended, this run's and earlier runs'.
        self.memory = memory
        self.id: int | None = None
        self.joined = False
        self.available = False
        #: etcd did not answer: authenticate before the next request (a restart forgets tokens).
        self.token_due = False
        self._clock = clock
        self._notify = notify
        self._lost = lost
        self._join = join
        self._after_renewal = after_renewal
        self._granted_ttl = float(max(1, math.ceil(lease_ttl)))
        self._trusted_until = -math.inf
        self._stopping = False
        self._problem: str | None = None  # the refusal last logged (cluster.unavailable)
        self._task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"FencedLease({self.node_name!r}, id={self.id!r})"

    @property
    def healthy(self) -> bool:
        """Joined, and the lease renewed recently enough to be trusted (fencing)."""
        return self.joined and self._clock() < self._trusted_until

    @property
    def remaining(self) -> float:
        """Seconds the lease is sure to live in etcd (0 when not healthy)."""
        if not self.healthy:
            return 0.0
        last_sent = self._trusted_until - self._granted_ttl * TRUST_SHARE
        return max(0.0, last_sent + self._granted_ttl - self._clock())

    def set_available(self, available: bool) -> None:
        if available != self.available:
            self.available = available
            self._notify()

    def failed(self) -> None:
        """Fence at once: own nothing until a renewal succeeds again."""
        was = self.healthy
        self._trusted_until = -math.inf
        self.set_available(False)
        if was:
            _log.debug("cluster lease not renewed; owning no device until etcd answers")
            self._notify()

    def _renewed(self, sent_at: float) -> None:
        was = self.healthy
        self._trusted_until = sent_at + self._granted_ttl * TRUST_SHARE
        self.set_available(True)
        if not was and self.healthy:
            self._notify()

    # ---------------------------------------------------------------- the lease

    async def take(self) -> None:
        """Keep the lease if it is still alive, else grant a new one (owning nothing yet)."""
        if self.id is not None:
            sent = self._clock()
            if await self._keepalive(self.id) > 0:
                self._renewed(sent)
                return
            self.id = None
            self._lost()
        self.joined = False
        sent = self._clock()
        self.id, self._granted_ttl = await grant_lease(self.connection, self.lease_ttl)
        self.memory.remember(self.id)
        self._lost()
        self._renewed(sent)

    async def end_former(self, former: Collection[int]) -> None:
        """Revoke this node's earlier leases: their ownership and leader keys go with them.

        Before the node claims anything: a stale leader key of its own would keep
        every node from campaigning, a stale ownership key this node from its devices.
        """
        for lease in sorted(former):
            await revoke_lease(self.connection, lease)
            self.memory.forget([lease])

    async def revoke(self) -> None:
        """Revoke the lease (every key bound to it goes); remembered if etcd does not answer."""
        lease, self.id = self.id, None
        if lease is not None:
            try:
                await revoke_lease(self.connection, lease)
            except TRANSIENT_ERRORS:
                pass  # remembered: the next run takes its registration back
            else:
                self.memory.forget([lease])

    async def _keepalive(self, lease: int) -> float:
        """One renewal; the TTL etcd grants (0 or less: the lease is gone)."""
        return await renew_lease(self.connection, lease, wait=max(0.5, self._granted_ttl / 3))

    # ---------------------------------------------------------------- renewing

    def start(self, name: str) -> None:
        """Start the renewal loop (``name``: the task's)."""
        self._task = asyncio.create_task(self._run(), name=name)

    async def halt(self) -> None:
        """End the renewal loop (the lease is left as it is)."""
        self._stopping = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        """Renew every third of the TTL; on failure fence, then rejoin when etcd answers.

        etcd forgets its tokens when it restarts: after etcd did not answer, and
        whenever it refuses a request for its token, the node authenticates again
        before anything else. A refused token fences nothing (the lease is fine).
        """
        retry = min(0.5, self._granted_ttl / 4)
        while not self._stopping:
            authenticated = False  # asked for a token in this turn (then no second at once)
            try:
                if self.token_due or self.connection.token_refused.is_set():
                    authenticated = True
                    await self.connection.authenticate()
                    self.token_due = False
                if not self.joined or self.id is None:
                    await self._join()
                last_sent = self._trusted_until - self._granted_ttl * TRUST_SHARE
                if await self._pause(last_sent + self._granted_ttl / 3 - self._clock()):
                    continue  # etcd refused our token: a new one first
                sent = self._clock()
                ttl = await self._keepalive(self.id) if self.id else 0.0
                if ttl <= 0:
                    _log.debug("cluster lease expired; rejoining with a new lease")
                    self.joined = False
                    self.id = None
                    self.failed()
                    continue
                self._renewed(sent)
                self._problem = None
                await self._after_renewal()
            except asyncio.CancelledError:
                raise
            except DuplicateNodeError as exc:
                self.joined = False
                self.failed()
                self._report_problem(str(exc))
                await asyncio.sleep(self._granted_ttl)
            except TRANSIENT_ERRORS as exc:
                self.joined = self.joined and self.id is not None
                if stale_token(exc, self.connection.access) and not authenticated:
                    _log.debug("etcd refused the token; authenticating again")
                    self.token_due = True
                    continue
                self.token_due = True
                self.failed()
                problem = describe_failure(exc, self.connection.access)
                if problem is not None:
                    self._report_problem(problem)
                _log.debug("cluster renewal failed: %s", type(exc).__name__)
                await asyncio.sleep(retry)

    async def _pause(self, delay: float) -> bool:
        """Wait ``delay`` seconds; True, sooner, when etcd refused a request for its token."""
        refused = self.connection.token_refused
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, delay)):
                await refused.wait()
        return refused.is_set()

    def _report_problem(self, problem: str) -> None:
        """Log ``cluster.unavailable`` for a refusal, once until it changes or etcd answers."""
        if problem != self._problem:
            self._problem = problem
            events.cluster_unavailable(get_logger(), node=self.node_name, error=problem)
