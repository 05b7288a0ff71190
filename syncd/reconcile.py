"""One device, once: GET live -> diff -> PUT (enforce) -> GET to verify; and many at once.

What a reconcile will need besides the config is read alongside it, not after
it: the device's serial number, when a managed password's record is bound to
it and it is not known yet; and its calls, when a PUT is likely (the desired
state is not the one last applied, and the gate would ask now). Over a
network each is a round trip fewer in a row: a rollout's device takes three
(config and calls, PUT, GET) instead of four. Not while the device's last read
failed, nor before it has taken its credentials once (a Digest device's first
challenge, a password it may refuse): those requests go one at a time.

Each request is retried within a bounded budget when its failure may pass
(see :mod:`syncd.retrying`). Rejections and auth failures are not retried
here; the caller (the daemon's worker) decides when to try the device again.
Every step logs the SPEC's events (:mod:`syncd.events`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable, Hashable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

from syncd import events
from syncd.client import (
    REJECT_CODES,
    AuthError,
    ClientPool,
    DeviceClient,
    DeviceError,
    RejectedError,
    TransportError,
)
from syncd.devices_view import difference_key
from syncd.diff import Change, DiffError, Plan, diff
from syncd.history import HistoryEntry, Result, append_entry, history_changes
from syncd.logs import get_logger
from syncd.model import DeviceSpec, Mode
from syncd.outcome import Failure, Outcome
from syncd.passwords_due import PasswordsDue
from syncd.retrying import RetryPolicy, measured, with_retries
from syncd.slots import PassSlots
from syncd.state import StateError, StateStore

if TYPE_CHECKING:  # prometheus-client is imported only where metrics are served
    from syncd.gate import Calls, PutGate
    from syncd.metrics import Metrics
    from syncd.sharing import Sharing

__all__ = ["HistorySink", "Reconciler", "reconcile_many"]

T = TypeVar("T")
#: The live accounts, as ``GET /api/phone/config`` lists them.
Live = list[dict[str, Any]]


class HistorySink(Protocol):
    """Where each PUT is recorded (:class:`syncd.history.HistoryLog`); OSError when it cannot be."""

    def append(self, entry: HistoryEntry) -> None: ...


class ReconcileWatch(Protocol):
    """The daemon's memory of each device, consulted so a lasting condition is logged once.

    ``first`` says whether to log the event ``topic`` (``unreachable``, ``auth``,
    ``apply-failed``, ``observe``, ``suspend``, ``held``) about ``key`` now, and
    ``logged_key`` what it was last logged about while that lasts; ``changing``
    hears that a PUT starts.
    """

    def first(self, device: str, topic: str, key: Hashable) -> bool: ...
    def logged_key(self, device: str, topic: str) -> Hashable | None: ...
    def changing(self, device: str) -> None: ...


class Reconciler:
    """Reconciles devices one at a time each; share one across a fleet."""

    def __init__(
        self,
        *,
        pool: ClientPool,
        state: StateStore,
        retry: RetryPolicy | None = None,
        metrics: Metrics | None = None,
        history: HistorySink | None = None,
        watch: ReconcileWatch | None = None,
        sharing: Sharing | None = None,
        gate: PutGate | None = None,
        wave_of: Callable[[str], str | None] | None = None,
        unanswered: Callable[[str], None] | None = None,
        stopping: asyncio.Event | None = None,
        rejections_stand: bool = False,
    ) -> None:
        #: The daemon's rule (SPEC section 6): a PUT the device rejected (codes 11-13) is
        #: not sent again until its desired state changes or an operator asks; the device
        #: is still read. A one-shot ``syncd apply`` is an operator asking: it sends it.
        self._rejections_stand = rejections_stand
        #: Devices whose standing rejection an operator set aside (a SIGHUP, a resume).
        self._asked_again: set[str] = set()
        #: Set when the daemon stops: a PUT not started yet is not started (SPEC section 6).
        self._stopping = stopping
        #: Cluster mode: a PUT only with the device's ownership key, bounded by the lease.
        self._sharing = sharing
        self._metrics = metrics
        self._history = history
        self._watch = watch
        #: Asked right before every PUT whether it may start now (rollout, windows, calls).
        self._gate = gate
        #: The rollout wave of a device, for the history entry of a failed PUT.
        self._wave_of = wave_of
        #: Hears that a device's first read went unanswered (its retries follow): a
        #: rollout wave settles it as unreachable then, not after the whole ladder.
        self._unanswered = unanswered
        self._pool = pool
        self._state = state
        self._retry = retry or RetryPolicy()
        self._clients: dict[str, tuple[DeviceSpec, DeviceClient]] = {}
        self._passwords = PasswordsDue(state)
        #: Devices whose last read failed: one attempt per request until they answer again.
        self._unreachable: set[str] = set()
        self.log = get_logger()

    def client(self, spec: DeviceSpec) -> DeviceClient:
        """A client per device, kept while its address and credentials stay the same."""
        cached = self._clients.get(spec.name)
        if cached is not None:
            old, client = cached
            if (old.url, old.auth, old.tls) == (spec.url, spec.auth, spec.tls):
                return client
        client = DeviceClient(url=spec.url, pool=self._pool, auth=spec.auth, tls=spec.tls)
        self._clients[spec.name] = (spec, client)
        return client

    def retune(self, *, pool: ClientPool, retry: RetryPolicy) -> None:
        """New settings (SIGHUP): the next requests use ``pool`` (its timeouts) and ``retry``.

        A request in flight ends on the pool it began on.
        """
        if pool is not self._pool:
            self._pool = pool
            self._clients.clear()
        self._retry = retry

    def ask_again(self, name: str) -> None:
        """An operator asks for the device's PUT again: a rejection of its desired state
        does not hold it back at its next reconcile."""
        self._asked_again.add(name)

    def forget(self, name: str) -> None:
        self._asked_again.discard(name)
        self._clients.pop(name, None)
        self._passwords.forget(name)
        self._unreachable.discard(name)

    def failed_health(self, spec: DeviceSpec) -> bool:
        """Whether ``spec``'s desired state failed its health check on the device (then a
        lost registration is syncd's own doing, not a factory reset)."""
        return self._state.unhealthy_fingerprint(spec.name) == spec.fingerprint

    def resend_password(self, device: str, account: int, *, reason: str) -> None:
        """Send this account's managed password at the device's next reconcile, whatever the record.

        ``password.resent`` (with ``reason``) is logged once the PUT carrying it succeeds.
        """
        self._passwords.resend(device, account, reason=reason)

    def _first(self, device: str, topic: str, key: Hashable) -> bool:
        return self._watch is None or self._watch.first(device, topic, key)

    def _append(self, entry: HistoryEntry) -> None:
        if entry.trigger == "change" and entry.wave is None and self._wave_of is not None:
            entry = replace(entry, wave=self._wave_of(entry.device))
        append_entry(self._history.append if self._history else None, entry, self.log)

    async def _with_retries(
        self,
        spec: DeviceSpec,
        what: str,
        call: Callable[[], Awaitable[T]],
        revision: str | None = None,
        first_failed: Callable[[BaseException], None] | None = None,
    ) -> T:
        policy = self._retry.known_unreachable(spec.name in self._unreachable)
        return await with_retries(
            call,
            device=spec.name,
            request=what,
            policy=policy,
            metrics=self._metrics,
            revision=revision,
            failed_before=self._failed_before(spec.name, revision) if what == "PUT" else (),
            first_failed=first_failed,
        )

    def _failed_before(self, device: str, revision: str | None) -> tuple[tuple[str, str], ...]:
        """The failure (kind, message) this device's PUT of ``revision`` last ended in, if
        that lasts: its retries are no news (``apply.retrying`` at debug)."""
        key = self._watch.logged_key(device, "apply-failed") if self._watch else None
        if isinstance(key, tuple) and key[0] == revision:
            return (key[1:],)
        return ()

    def _apply_failed_again(self, device: str, revision: str | None, kind: str, error: str) -> bool:
        """Whether this PUT failure is the one logged last time (and less than an hour ago)."""
        return not self._first(device, "apply-failed", (revision, kind, error))

    async def reconcile(
        self, spec: DeviceSpec, *, apply: bool, revision: str | None = None
    ) -> Outcome:
        """Bring one device to ``spec`` (when ``apply`` and mode is enforce), or report.

        ``revision`` is the desired revision ``spec`` belongs to: it goes on the
        events, into the history, and is recorded once the device is in sync.
        """
        if spec.mode is Mode.SUSPEND:
            if self._first(spec.name, "suspend", revision or spec.fingerprint):
                events.reconcile_skipped(self.log.bind(device=spec.name), reason="mode is suspend")
            return Outcome.of(spec, "skipped")
        client = self.client(spec)
        # Only to a device that answers and takes its credentials: one that does not is
        # asked once at a time (a wrong password is not tried twice as often).
        early = client.credentials_taken and spec.name not in self._unreachable
        passwords = None
        if early and self._passwords.reads_serial(spec):
            passwords = asyncio.ensure_future(self._passwords.due(spec, client))
        calls = None
        if early and apply and self._put_likely(spec):
            calls = asyncio.ensure_future(
                measured(client.call_status, request="GET", metrics=self._metrics)
            )
        try:
            return await self._reconcile(spec, client, apply, revision, passwords, calls)
        finally:
            _drop(passwords)
            _drop(calls)

    def _put_likely(self, spec: DeviceSpec) -> bool:
        """Whether a PUT will probably follow the GET, and ask the gate for calls first."""
        return (
            self._gate is not None
            and spec.mode is Mode.ENFORCE
            and self._state.applied_fingerprint(spec.name) != spec.fingerprint
            and self._gate.reads_calls(spec)
            and not (self._rejections_stand and self._state.rejection(spec.name, spec.fingerprint))
        )

    def _rejected(self, spec: DeviceSpec) -> Outcome | None:
        """The device's rejection of this desired state's PUT, while it stands: the outcome
        without a PUT (said once per daemon; ``apply.failed`` said it when it happened)."""
        if not self._rejections_stand:
            return None
        if spec.name in self._asked_again:
            self._asked_again.discard(spec.name)
            return None
        found = self._state.rejection(spec.name, spec.fingerprint)
        if found is None:
            return None
        code, error = found
        if self._first(spec.name, "rejected", spec.fingerprint):
            reason = (
                f"the device rejected the PUT of this desired state ({error}); it is not "
                "sent again until the desired state changes, a SIGHUP or syncd rollout resume"
            )
            events.reconcile_skipped(self.log.bind(device=spec.name), reason=reason)
        failure = Failure.from_error(RejectedError(error, code=code))
        return Outcome.of(spec, "error", failure=failure)  # no PUT: none counted

    def _note_rejection(self, spec: DeviceSpec, exc: DeviceError) -> None:
        """Keep a rejection (codes 11-13) of this desired state's PUT in the state."""
        if not isinstance(exc, RejectedError) or exc.code not in REJECT_CODES:
            return
        self._first(spec.name, "rejected", spec.fingerprint)  # apply.failed says it now
        try:
            self._state.record_rejection(spec.name, spec.fingerprint, code=exc.code, error=str(exc))
        except StateError as failed:
            events.state_write_failed(self.log.bind(device=spec.name), error=str(failed))

    async def _reconcile(
        self,
        spec: DeviceSpec,
        client: DeviceClient,
        apply: bool,
        revision: str | None,
        passwords: Awaitable[tuple[str, set[int]]] | None,
        calls: Calls | None,
    ) -> Outcome:
        live = await self._read_live(spec, client)
        if isinstance(live, Outcome):
            return live
        target, due = await (
            passwords if passwords is not None else self._passwords.due(spec, client)
        )
        try:
            plan = diff(spec.accounts, live, passwords_due=due)
        except DiffError as exc:
            # plan reports it in its output; it applies nothing, so no apply.failed. Said
            # once, not at every resync, until the device or its desired accounts change.
            if apply and self._first(spec.name, "missing-account", str(exc)):
                log = self.log.bind(device=spec.name)
                events.apply_failed(log, error=str(exc), kind="device", revision=revision)
            return Outcome.of(spec, "error", failure=Failure("device", str(exc)))
        void = self._sharing.void_read(spec.name) if self._sharing is not None else None
        if void is not None:  # a read from before a pause: nothing said or kept from it
            if self._first(spec.name, "held", void):
                log = self.log.bind(device=spec.name)
                events.reconcile_skipped(log, reason=void, changes=len(plan.changes))
            return Outcome.of(spec, "skipped", elsewhere=True)
        if plan.empty:
            if self._state.unhealthy_fingerprint(spec.name) != spec.fingerprint:
                self._record_in_force(spec, revision)  # else the health check says (after)
            return Outcome.of(spec, "in_sync")
        drift = self._announce(spec, plan, revision)
        if not apply or spec.mode is not Mode.ENFORCE:
            return Outcome.of(spec, "changes", changes=plan.changes, drift=drift)
        rejected = self._rejected(spec)
        if rejected is not None:
            return rejected
        if self._gate is not None:
            try:
                read = functools.partial(self._with_retries, spec)
                wait = await self._gate(spec, plan, drift, client, read=read, calls=calls)
            except DeviceError as exc:  # the call status could not be read
                return self._unreadable(spec, exc)
            if wait is not None:
                return Outcome.of(
                    spec,
                    "waiting",
                    changes=plan.changes,
                    drift=drift,
                    waiting=wait.reason,
                    retry_after=wait.retry_after,
                )
        return await self._apply(_Put(spec, client, plan, drift, revision), target)

    async def _read_live(self, spec: DeviceSpec, client: DeviceClient) -> Live | Outcome:
        """The device's accounts, or the error outcome when it cannot be read (logged once)."""
        unanswered = self._unanswered
        first_failed = None
        if unanswered is not None:

            def first_failed(exc: BaseException) -> None:
                if isinstance(exc, TransportError):
                    unanswered(spec.name)

        try:
            live = await self._with_retries(
                spec, "GET", client.get_accounts, first_failed=first_failed
            )
        except DeviceError as exc:
            self._passwords.unreachable(spec.name)
            return self._unreadable(spec, exc)
        self._unreachable.discard(spec.name)
        return live

    def _unreadable(self, spec: DeviceSpec, exc: DeviceError) -> Outcome:
        """A read failed, its retries too: the error outcome (logged once)."""
        self._unreachable.add(spec.name)
        log = self.log.bind(device=spec.name)
        if isinstance(exc, AuthError):
            if self._first(spec.name, "auth", exc.code):
                events.auth_failed(log, error=str(exc), code=exc.code)
        elif self._first(spec.name, "unreachable", exc.kind):
            events.device_unreachable(log, error=str(exc), code=exc.code, kind=exc.kind)
        return Outcome.of(spec, "error", failure=Failure.from_error(exc))

    def _announce(self, spec: DeviceSpec, plan: Plan, revision: str | None) -> bool:
        """Log a difference found (once, in observe mode, until it changes); whether it is drift."""
        drift = bool(plan.readable_changes) and (
            self._state.applied_fingerprint(spec.name) == spec.fingerprint
        )
        fields = [c.as_dict() for c in plan.changes]
        # A lasting difference is news once, until it goes away or changes: in observe
        # mode, and in enforce mode while its PUT waits (a wave, a window, a call).
        topic = "observe" if spec.mode is Mode.OBSERVE else "difference"
        news = self._first(spec.name, topic, (drift, difference_key(plan.changes)))
        log = self.log.bind(device=spec.name)
        if news and drift:
            events.drift_detected(log, fields=fields, revision=revision)
        elif news:
            events.change_pending(log, fields=fields, revision=revision)
        if spec.mode is Mode.OBSERVE and news:
            events.reconcile_skipped(log, reason="mode is observe", changes=len(plan.changes))
        return drift

    async def _apply(self, put: _Put, target: str) -> Outcome:
        """PUT the plan, record the passwords it set, and verify that it took."""
        failed = await self._put(put)
        if failed is not None:
            return failed
        self._passwords.sent(put.spec, target, put.plan)
        return await self._verify(put)

    async def _put(self, put: _Put) -> Outcome | None:
        """The PUT itself (in cluster mode with the ownership key); the outcome if it failed."""
        spec, plan = put.spec, put.plan
        log = self.log.bind(device=spec.name)
        if self._stopping is not None and self._stopping.is_set():
            reason = "the daemon is stopping"  # its read was in flight at the signal
            events.reconcile_skipped(log, reason=reason, changes=len(plan.changes))
            return put.outcome("changes")
        refused = await self._sharing.may_put(spec.name) if self._sharing is not None else None
        if refused is not None:
            if self._first(spec.name, "held", refused):  # once, until the device is in sync
                events.reconcile_skipped(log, reason=refused, changes=len(plan.changes))
            return put.outcome("changes")
        body = plan.put_body()
        if self._watch is not None:
            self._watch.changing(spec.name)
        window = self._sharing.put_window() if self._sharing else contextlib.nullcontext()
        try:
            async with window:
                await self._with_retries(
                    spec, "PUT", lambda: put.client.put_accounts(body), put.revision
                )
        except TimeoutError:  # the cluster lease could end before the PUT: stopped here
            exc = TransportError(f"{spec.url}: PUT cut short, this node's cluster lease ends")
            events.apply_failed(log, error=str(exc), kind=exc.kind, revision=put.revision)
            return put.outcome("error", failure=Failure.from_error(exc))
        except AuthError as exc:
            # A user that may read but not write (code 10), or credentials changed
            # since the GET: the same news as a refused read, once and then hourly,
            # not an apply.failed and a history entry at every backoff step.
            if self._first(spec.name, "auth", exc.code):
                events.auth_failed(log, error=str(exc), code=exc.code)
                self._append(put.entry("failed", error=str(exc)))
            return put.outcome("error", failure=Failure.from_error(exc))
        except DeviceError as exc:
            events.apply_failed(
                log,
                error=str(exc),
                code=exc.code,
                param=exc.param,
                description=exc.description,
                kind=exc.kind,
                revision=put.revision,
                again=self._apply_failed_again(spec.name, put.revision, exc.kind, str(exc)),
            )
            self._append(put.entry("failed", error=str(exc)))
            self._note_rejection(spec, exc)
            return put.outcome("error", failure=Failure.from_error(exc))
        return None

    async def _verify(self, put: _Put) -> Outcome:
        """Read the device again: the PUT is applied only when nothing of it is left to do."""
        spec = put.spec
        try:
            live = await self._with_retries(spec, "GET", put.client.get_accounts)
            left = diff(spec.accounts, live).readable_changes
        except (DeviceError, DiffError) as exc:
            return self._unverified(put, f"could not verify: {exc}")
        if left:
            names = ", ".join(f"account {c.account} {c.field}" for c in left)
            message = f"the device accepted the PUT but did not take: {names}"
            return self._unverified(put, message, left)
        self._record_in_force(spec, put.revision, changed_at=datetime.now(UTC))
        fields = [c.as_dict() for c in put.plan.changes]
        events.apply_succeeded(
            self.log.bind(device=spec.name), fields=fields, revision=put.revision
        )
        entry = put.entry("succeeded")
        if self._gate is not None:  # its owner checks health first, then writes the entry
            return put.outcome("applied", put=entry)
        self._append(entry)
        return put.outcome("applied")

    def _unverified(self, put: _Put, message: str, left: tuple[Change, ...] = ()) -> Outcome:
        """A PUT that was accepted but is not (or cannot be shown to be) in force."""
        log = self.log.bind(device=put.spec.name)
        fields = [c.as_dict() for c in left]
        again = self._apply_failed_again(put.spec.name, put.revision, "verify", message)
        events.apply_failed(
            log, error=message, kind="verify", fields=fields, revision=put.revision, again=again
        )
        self._append(put.entry("failed", error=message))
        return put.outcome("error", failure=Failure("verify", message))

    def _record_in_force(
        self, spec: DeviceSpec, revision: str | None = None, *, changed_at: datetime | None = None
    ) -> None:
        try:
            self._state.record_in_force(
                spec.name, spec.fingerprint, revision, changed_at=changed_at
            )
        except StateError as exc:
            events.state_write_failed(self.log.bind(device=spec.name), error=str(exc))


def _drop(task: asyncio.Future[Any] | None) -> None:
    """An early read nobody awaited (the GET failed, or no PUT follows): cancelled if it
    runs, its failure (if it ended in one) taken so that it is not reported as lost."""
    if task is None:
        return
    if not task.done():
        task.cancel()
    elif not task.cancelled():
        task.exception()


@dataclass(frozen=True)
class _Put:
    """One PUT under way: the device, its client, the plan, and why (drift or a change)."""

    spec: DeviceSpec
    client: DeviceClient
    plan: Plan
    drift: bool
    revision: str | None

    def outcome(self, status: Literal["changes", "applied", "error"], **fields: Any) -> Outcome:
        return Outcome.of(self.spec, status, changes=self.plan.changes, drift=self.drift, **fields)

    def entry(self, result: Result, *, error: str | None = None) -> HistoryEntry:
        """Its history entry (the wave is added by the rollout, where there is one)."""
        return HistoryEntry(
            time=datetime.now(UTC),
            device=self.spec.name,
            revision=self.revision or "",
            trigger="drift" if self.drift else "change",
            result=result,
            changes=history_changes(self.plan.changes),
            error=error,
        )


async def reconcile_many(
    reconciler: Reconciler,
    specs: Iterable[DeviceSpec],
    *,
    apply: bool,
    concurrency: int,
    on_done: Callable[[Outcome], None] | None = None,
    revision: str | None = None,
) -> list[Outcome]:
    """Reconcile devices concurrently, at most ``concurrency`` in flight; keep order.

    ``concurrency`` workers take the devices in turn: a task per device would
    start them all (10,000 task starts) before the first request left.
    """
    slots = PassSlots(concurrency)
    todo = list(enumerate(specs))
    outcomes: list[Outcome | None] = [None] * len(todo)
    queue = iter(todo)

    async def worker() -> None:
        for index, spec in queue:
            work = functools.partial(reconciler.reconcile, spec, apply=apply, revision=revision)
            outcome = outcomes[index] = await slots.run(work)
            if on_done is not None:
                on_done(outcome)

    workers: list[asyncio.Task[None]] = []
    try:
        for _ in range(min(concurrency, len(todo))):
            workers.append(asyncio.create_task(worker()))
            await asyncio.sleep(0)  # its first request leaves while the next worker starts
        await asyncio.gather(*workers)
    except BaseException:
        for task in workers:
            task.cancel()
        raise
    return [outcome for outcome in outcomes if outcome is not None]
