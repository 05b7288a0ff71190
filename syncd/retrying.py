"""The one retry rule of syncd, shared by reconcile and export.

A request is retried, within a bounded number of attempts with exponential
backoff and jitter, when its failure may pass: transport errors, timeouts,
HTTP 5xx, code 14 (unspecified processing error), and a first 401 (a Digest
nonce gone stale between two requests). A failed certificate check, a
rejection and refused credentials are not retried: doing the same again
cannot help.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING, Protocol, TypeVar

from syncd import events
from syncd.client import AuthError, DeviceError, TlsError, TransportError
from syncd.logs import get_logger

if TYPE_CHECKING:  # prometheus-client is imported only where metrics are served
    from tenacity import RetryCallState

    from syncd.metrics import Metrics

__all__ = ["PACING", "Pacing", "RetryPolicy", "measured", "with_retries"]

T = TypeVar("T")


class Pacing(Protocol):
    """How one reconcile's attempts hold the daemon's concurrency (:class:`syncd.slots.Slot`)."""

    def attempt(self) -> AbstractAsyncContextManager[None]:
        """Around each attempt of a request."""

    async def wait(self, delay: float) -> None:
        """Between two attempts: wait ``delay`` seconds."""


#: The pacing of the reconcile running in this task: the daemon's worker sets
#: it, so that a device holds no slot while it waits between attempts or on a
#: device that does not answer. None (one-shot commands, export): attempts
#: just run, and retries just sleep.
PACING: ContextVar[Pacing | None] = ContextVar("PACING", default=None)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3
    initial: float = 0.2
    maximum: float = 2.0

    def known_unreachable(self, unreachable: bool) -> RetryPolicy:
        """The policy for a device whose last read failed: one attempt, no retry ladder.

        A dark device would otherwise hold its concurrency slot through every
        attempt (``attempts`` request timeouts plus the waits) at every resync;
        one attempt is enough to see whether it answers again.
        """
        return replace(self, attempts=1) if unreachable and self.attempts > 1 else self


def may_pass(exc: BaseException, attempt: int) -> bool:
    """Whether ``exc``, met on try number ``attempt``, is worth another try."""
    if isinstance(exc, TlsError):
        return False
    if isinstance(exc, TransportError):
        return True
    if isinstance(exc, AuthError):
        return exc.status == 401 and attempt == 1
    return isinstance(exc, DeviceError) and exc.code == 14


def _writes(request: str) -> bool:
    """Whether ``request`` ("PUT", "GET /api/...") changes the device."""
    method = request.split(maxsplit=1)[0].upper() if request.strip() else ""
    return method in {"PUT", "POST", "DELETE", "PATCH"}


def _kind(exc: BaseException | None) -> str:
    """The kind of a failure, for telling a failure met again from a new one."""
    kind = getattr(exc, "kind", None)
    return kind if isinstance(kind, str) else type(exc).__name__


class _RetryIfMayPass:
    """tenacity's view of :func:`may_pass`; ``done`` attempts happened before tenacity's first."""

    def __init__(self, done: int = 0) -> None:
        self.done = done

    def __call__(self, retry_state: RetryCallState) -> bool:
        outcome = retry_state.outcome
        if outcome is None or not outcome.failed:
            return False
        exc = outcome.exception()
        return exc is not None and may_pass(exc, self.done + retry_state.attempt_number)


class _ExponentialJitter:
    """Waits 2, 4, 8 ... times ``initial``, plus up to ``initial`` of jitter, capped at ``maximum``.

    The sequence continues the first wait of :func:`with_retries` (``initial``
    plus jitter). Written out rather than tenacity's ``wait_exponential_jitter``,
    whose parameters changed between tenacity releases.
    """

    def __init__(self, policy: RetryPolicy) -> None:
        self._policy = policy

    def __call__(self, retry_state: RetryCallState) -> float:
        policy = self._policy
        grown: float = policy.initial * 2 * 2 ** (retry_state.attempt_number - 1)
        return max(0.0, min(grown + random.uniform(0, policy.initial), policy.maximum))


async def with_retries(
    call: Callable[[], Awaitable[T]],
    *,
    device: str,
    request: str,
    policy: RetryPolicy,
    metrics: Metrics | None = None,
    revision: str | None = None,
    failed_before: Iterable[tuple[str, str]] = (),
    first_failed: Callable[[BaseException], None] | None = None,
) -> T:
    """Await ``call()`` under the retry rule; log the retry before each wait.

    A write (``request`` a PUT) logs ``apply.retrying`` at warning for the
    first retry of a failure and at debug for the retries of the same failure
    after it, or of one in ``failed_before`` (kind and message: the failure an
    earlier pass's retries of this PUT ended in). The caller logs
    ``apply.failed`` if they all fail. ``first_failed`` hears the first try's
    failure when the retries follow (a rollout settles a dark device then). A read logs
    ``request.retrying``, at debug: a read retried is routine, and one that
    keeps failing ends in ``device.unreachable``.
    """
    pacing = PACING.get()
    attempt = partial(_attempt, call, pacing=pacing, request=request, metrics=metrics)
    # Most requests succeed at once: make the first try without building a
    # retry controller (measurably cheaper across a fleet), and hand only the
    # remaining attempts to tenacity, its waits continuing the same sequence.
    try:
        return await attempt()
    except Exception as exc:
        if policy.attempts <= 1 or not may_pass(exc, 1):
            raise
        if first_failed is not None:
            first_failed(exc)
        delay = min(policy.maximum, policy.initial + random.uniform(0, policy.initial))
        log_retry = _RetryLog(  # rarely needed
            device=device, request=request, metrics=metrics, revision=revision, seen=failed_before
        )
        log_retry(1, delay, exc)
    wait = pacing.wait if pacing is not None else asyncio.sleep
    await wait(delay)
    return await _retry(attempt, policy=policy, wait=wait, log_retry=log_retry)


async def _attempt(
    call: Callable[[], Awaitable[T]],
    *,
    pacing: Pacing | None,
    request: str,
    metrics: Metrics | None,
) -> T:
    """One try, inside the pacing's hold on the concurrency (if any)."""
    if pacing is None:
        return await measured(call, request=request, metrics=metrics)
    async with pacing.attempt():
        return await measured(call, request=request, metrics=metrics)


async def measured(call: Callable[[], Awaitable[T]], *, request: str, metrics: Metrics | None) -> T:
    """One try, its duration observed in the request-seconds metric (no retry, no pacing)."""
    if metrics is None:
        return await call()
    started = time.perf_counter()
    try:
        return await call()
    finally:
        elapsed = time.perf_counter() - started
        metrics.request_seconds.labels(request.lower()).observe(elapsed)


class _RetryLog:
    """Counts and logs each retry; a write's failure met again is logged at debug."""

    def __init__(
        self,
        *,
        device: str,
        request: str,
        metrics: Metrics | None,
        revision: str | None = None,
        seen: Iterable[tuple[str, str]] = (),
    ) -> None:
        self._log = get_logger().bind(device=device)
        self._revision = revision
        self._request = request
        self._writes = _writes(request)
        self._metrics = metrics
        self._seen: set[tuple[str, str]] = set(seen)

    def __call__(self, attempt: int, delay: float, exc: BaseException | None) -> None:
        if self._metrics is not None:
            self._metrics.retries.inc()
        error, delay = str(exc), round(delay, 3)
        log, request = self._log, self._request
        if not self._writes:
            events.request_retrying(log, request=request, attempt=attempt, delay=delay, error=error)
            return
        failure = (_kind(exc), error)
        repeated = failure in self._seen
        self._seen.add(failure)
        events.apply_retrying(
            log,
            request=request,
            attempt=attempt,
            delay=delay,
            error=error,
            revision=self._revision,
            repeated=repeated,
        )


async def _retry(
    attempt: Callable[[], Awaitable[T]],
    *,
    policy: RetryPolicy,
    wait: Callable[[float], Awaitable[None]],
    log_retry: _RetryLog,
) -> T:
    """The attempts after the first, under tenacity (its waits continue the first one's).

    tenacity is imported here: most passes retry nothing, and a command that does
    not need it starts a hundredth of a second sooner.
    """
    from tenacity import AsyncRetrying, stop_after_attempt

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        delay = state.next_action.sleep if state.next_action else 0.0
        log_retry(state.attempt_number + 1, delay, exc)

    retrying = AsyncRetrying(
        sleep=wait,
        stop=stop_after_attempt(policy.attempts - 1),
        wait=_ExponentialJitter(policy),
        retry=_RetryIfMayPass(done=1),
        before_sleep=before_sleep,
        reraise=True,
    )
    result: T = await retrying(attempt)
    return result
