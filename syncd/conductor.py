"""The shell around the rollout state machine (:mod:`syncd.rollout`): feeds it, does what it says.

On each load it works out the devices whose desired state differs from the
one last applied (enforce mode), assigns waves over the whole fleet, and
starts a rollout when the revision or that set changes (a newer revision
supersedes a running or halted one). It answers the gate (may this device
start?), hears each outcome (healthy, in sync, failed, unreachable), ticks on
a timer so a bake ends, kicks the devices of a wave when it starts, reverts
failed devices when the rollout halts with ``onFailure: revert``, and saves
the rollout after every step, so a SIGKILL loses nothing: a restarted process
continues at the same wave and never re-runs a finished wave's health gate.

The pause flag lives beside the rollout in the same saved document: it
survives restarts and new revisions. :func:`pause_saved` and
:func:`resume_saved` change it on the state directly when no daemon runs.

Everything here runs on the event loop; call :meth:`Conductor.pause` and
:meth:`Conductor.resume` from it (the control socket hands them over).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from syncd import events
from syncd.client import DeviceClient
from syncd.desired import Problem
from syncd.diff import Change
from syncd.health import Health
from syncd.history import HistoryEntry, history_changes
from syncd.logs import get_logger
from syncd.model import DeviceSpec, Mode
from syncd.outcome import Outcome
from syncd.policy import DEFAULT_POLICY, FleetPolicy, PolicyResult
from syncd.retrying import RetryPolicy
from syncd.reverting import Reverter
from syncd.rollout import (
    Decision,
    Event,
    Result,
    Rollout,
    RolloutState,
    Step,
    WaitReason,
    begin,
    may_start,
    progress,
    record,
    restarted,
    resume,
    reverted,
    reverts_due,
    start,
    tick,
)
from syncd.state import StateError, StateStore
from syncd.status import RolloutSummary, WindowStatus
from syncd.waves import assign_waves, wave_order
from syncd.windows import WindowState, window_state

if TYPE_CHECKING:
    from syncd.metrics import Metrics
    from syncd.reconcile import HistorySink

__all__ = ["Conductor", "pause_saved", "resume_saved"]

#: Seconds between two ticks of the rollout (bake, windows, reverts).
TICK = 0.5
#: Failure kinds that fail a device in a rollout; any other error means it did not answer.
_FAILING = frozenset({"rejected", "verify", "health", "device", "api"})
#: Failure kinds after which the rollout's PUT is (or may be) in force: it can be reverted.
_APPLIED = frozenset({"health", "verify"})

Kick = Callable[[Iterable[str]], None]
ClientOf = Callable[[DeviceSpec], DeviceClient]


@dataclass
class _Saved:
    """The saved document: the rollout, what it was started for, the pause, the undo values."""

    rollout: Rollout | None = None
    #: Device -> the desired fingerprint the rollout carries to it.
    fingerprints: dict[str, str] | None = None
    paused: bool = False
    #: Device -> the rollout PUT's changes (``live`` is the value before it), passwords left out.
    undo: dict[str, list[dict[str, Any]]] | None = None

    def to_doc(self) -> dict[str, Any]:
        return {
            "rollout": self.rollout.to_doc() if self.rollout is not None else None,
            "fingerprints": self.fingerprints or {},
            "paused": self.paused,
            "undo": self.undo or {},
        }

    @classmethod
    def of(cls, doc: Mapping[str, Any] | None) -> _Saved:
        """The saved document, or an empty one when there is none or it is damaged."""
        if not doc:
            return cls()
        try:
            rollout = Rollout.from_doc(doc["rollout"]) if doc.get("rollout") else None
            fingerprints = {str(k): str(v) for k, v in dict(doc.get("fingerprints") or {}).items()}
            undo = {str(k): list(v) for k, v in dict(doc.get("undo") or {}).items()}
            return cls(rollout, fingerprints, bool(doc.get("paused")), undo)
        except (ValueError, TypeError, AttributeError):
            return cls(paused=bool(doc.get("paused")) if isinstance(doc, Mapping) else False)


def pause_saved(state: StateStore) -> str:
    """Pause on the state directly (no daemon runs); the sentence to print."""
    saved = _Saved.of(state.load_rollout())
    if saved.paused:
        return "the rollout was already paused"
    saved.paused = True
    state.save_rollout(saved.to_doc())
    revision = saved.rollout.revision if saved.rollout is not None else None
    events.rollout_paused(get_logger(), revision=revision)
    return "rollout paused: no device starts a change until `syncd rollout resume`"


def resume_saved(state: StateStore) -> str:
    """Resume on the state directly: unpause, and continue a halted rollout."""
    saved = _Saved.of(state.load_rollout())
    halted = saved.rollout is not None and saved.rollout.state is RolloutState.HALTED
    if not (saved.paused or halted):
        return "the rollout was neither paused nor halted"
    saved.paused = False
    if saved.rollout is not None:
        saved.rollout = resume(saved.rollout)
    state.save_rollout(saved.to_doc())
    revision = saved.rollout.revision if saved.rollout is not None else None
    events.rollout_resumed(get_logger(), revision=revision)
    return "rollout resumed"


class Conductor:
    """One per daemon (or ``syncd apply``): the rollout in force and everything around it."""

    def __init__(
        self,
        *,
        state: StateStore,
        kick: Kick,
        client_of: ClientOf,
        history: HistorySink | None = None,
        metrics: Metrics | None = None,
        retry: RetryPolicy | None = None,
        health: Health | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
        tick_interval: float = TICK,
    ) -> None:
        self._state = state
        self._kick = kick
        self._client_of = client_of
        self._history = history
        self._metrics = metrics
        self._retry = retry or RetryPolicy()
        self._clock = clock
        self._wall = wall
        self._tick_interval = tick_interval
        self.log = get_logger()
        self.policy: FleetPolicy = DEFAULT_POLICY
        #: Whether a valid ``_fleet.yaml`` was ever read (an invalid one keeps the last).
        self.fleet_file = False
        self.health = health or Health(policy=lambda: self.policy, state=state)
        saved = _Saved.of(state.load_rollout())
        self.rollout = restarted(saved.rollout) if saved.rollout is not None else None
        self._fingerprints = saved.fingerprints or {}
        self._paused = saved.paused
        self._undo = saved.undo or {}
        #: Devices whose PUT or health check a restart cut short: checked again when in sync.
        self._recheck = {
            d for d, s in (saved.rollout.status.items() if saved.rollout else ()) if s == "active"
        }
        self._specs: dict[str, DeviceSpec] = {}
        self._waves: dict[str, str] = {}
        self._policy_problems: set[Problem] = set()
        self._window_open = True
        self._reverter = Reverter(
            client_of=client_of,
            undo_of=self._undo_of,
            calls=lambda: self.policy.calls,
            revision=lambda: self.revision,
            done=self._reverted,
            retry=self._retry,
            clock=clock,
        )
        self._set_halted_metric()

    # ------------------------------------------------------------ the gate

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def revision(self) -> str | None:
        return self.rollout.revision if self.rollout is not None else None

    def may_start(self, spec: DeviceSpec) -> Decision:
        """Whether the rollout lets ``spec``'s change start now.

        A change under a desired state already applied (a password alone: the
        fingerprint holds none) is not the rollout's: it does not wait for a wave.
        Without ``_fleet.yaml`` nothing waits but for a pause.
        """
        rollout = self.rollout
        if (
            rollout is None
            or not self.fleet_file  # without _fleet.yaml: one wave, failed devices tried again
            or self._state.applied_fingerprint(spec.name) == spec.fingerprint
        ):
            return Decision(False, WaitReason.PAUSED) if self._paused else Decision(True)
        return may_start(rollout, spec.name, paused=self._paused)

    def begin(self, device: str) -> None:
        if self.rollout is not None:
            self.rollout = begin(self.rollout, device)
            self._save()

    # ------------------------------------------------------------- loading

    def load(
        self,
        *,
        policy: PolicyResult,
        specs: Mapping[str, DeviceSpec],
        revision: str,
        fleet: Iterable[str] = (),
    ) -> None:
        """A (re)load: the policy in force, and a new rollout if the pending changes are new.

        ``fleet`` names every device (for wave assignment) when ``specs`` is a subset.
        """
        self._use_policy(policy)
        self._specs = dict(specs)
        names = set(fleet) | set(specs)
        self._waves = assign_waves(names, self.policy.rollout.waves)
        pending = {
            name: spec.fingerprint
            for name, spec in specs.items()
            if spec.mode is Mode.ENFORCE
            and self._state.applied_fingerprint(name) != spec.fingerprint
        }
        current = self.rollout
        if (
            current is None
            or current.revision != revision
            or any(self._fingerprints.get(d) != fp for d, fp in pending.items())
        ):
            if current is None and not pending:
                return
            self._fingerprints = pending
            self._undo = {}
            self._recheck = set()
            order = wave_order(self.policy.rollout.waves)
            chosen = {d: self._waves[d] for d in pending}
            self._apply(start(revision, chosen, order, self.policy))
            return
        for name in list(current.status):  # devices gone, or no longer enforced
            spec = specs.get(name)
            if self.rollout is not None and (spec is None or spec.mode is not Mode.ENFORCE):
                self._apply(record(self.rollout, name, "in_sync", self._clock()))

    def _use_policy(self, result: PolicyResult) -> None:
        """The policy of ``_fleet.yaml``; an invalid one keeps the last valid policy in force."""
        problems = set(result.problems)
        for problem in sorted(problems - self._policy_problems, key=str):
            events.desired_problem(self.log, problem)
        self._policy_problems = problems
        if result.errors:
            return
        self.policy = result.policy if result.policy is not None else DEFAULT_POLICY
        self.fleet_file = result.policy is not None

    def wave_done(self) -> bool:
        """Every device of the current wave has its outcome (the bake may be under way)."""
        if self.rollout is None or not self.rollout.waves:
            return True
        wave = progress(self.rollout)[self.rollout.wave]
        return wave.done == wave.devices

    def wave_of(self, device: str) -> str | None:
        """The device's wave under the policy in force (for status)."""
        return self._waves.get(device)

    def window(self) -> WindowState:
        return window_state(self.policy.windows, self._wall())

    # ------------------------------------------------------------ outcomes

    async def after(self, spec: DeviceSpec, outcome: Outcome) -> Outcome:
        """The worker's ``after`` hook: the health check, outside the concurrency gate."""
        if outcome.status == "applied":
            client = self._client_of(spec)
            checked = await self.health.after_put(spec, outcome, client, revision=self.revision)
            self._finish_put(outcome.put, checked)
            return checked
        if outcome.status == "in_sync" and spec.name in self._recheck:
            self._recheck.discard(spec.name)
            client = self._client_of(spec)
            failed = await self.health.registered(spec, client, revision=self.revision)
            if failed is not None:
                return Outcome.of(spec, "error", failure=failed)
        return outcome

    def observe(self, outcome: Outcome) -> None:
        """An outcome of any device: settle it in the rollout, count it, maybe halt."""
        failure = outcome.failure
        if failure is not None and failure.kind == "health":
            self._unhealthy(outcome)
        rollout = self.rollout
        if rollout is None or outcome.device not in rollout.status:
            return
        result = self._result(outcome)
        if result is None:
            return
        index = rollout.wave_of(outcome.device)
        if result != "in_sync" and index is not None and index > rollout.wave:
            return  # its wave has not started: neither settled nor failed by the rollout
        if failure is not None and failure.kind in _APPLIED:
            self._undo[outcome.device] = [
                c.as_dict() for c in outcome.changes if c.field != "password"
            ]
        self._apply(record(rollout, outcome.device, result, self._clock(), paused=self._paused))

    @staticmethod
    def _result(outcome: Outcome) -> Result | None:
        if outcome.status == "applied":
            return "healthy"
        if outcome.status == "in_sync":
            return "in_sync"
        if outcome.status != "error":
            return None
        kind = outcome.failure.kind if outcome.failure is not None else ""
        return "failed" if kind in _FAILING else "unreachable"

    def _unhealthy(self, outcome: Outcome) -> None:
        if self._metrics is not None:
            self._metrics.applies.labels("unhealthy").inc()

    def _finish_put(self, entry: HistoryEntry | None, checked: Outcome) -> None:
        """Write an accepted PUT's history entry, ``unhealthy`` when its health check failed."""
        if entry is None or self._history is None:
            return
        failure = checked.failure
        if failure is not None and failure.kind == "health":
            entry = replace(entry, result="unhealthy", error=failure.message)
        entry = replace(entry, wave=self.wave_of(entry.device))
        try:
            self._history.append(entry)
        except OSError as exc:
            events.state_write_failed(self.log.bind(device=entry.device), error=str(exc))

    # --------------------------------------------------------------- steps

    def _apply(self, step: Step) -> None:
        self.rollout = step.rollout
        for event in step.events:
            self._log(event)
        self._save()
        self._set_halted_metric()
        if any(e.name == "rollout.wave" for e in step.events):
            self._kick_wave()

    def _kick_wave(self) -> None:
        rollout = self.rollout
        if rollout is None or not rollout.waves:
            return
        self._kick(rollout.waves[rollout.wave][1])

    def _log(self, event: Event) -> None:
        fields = dict(event.fields)
        revision = str(fields.pop("revision", ""))
        if event.name == "rollout.started":
            events.rollout_started(self.log, revision=revision, waves=fields["waves"])
        elif event.name == "rollout.wave":
            wave = str(fields["wave"])
            names = (
                next((ds for n, ds in self.rollout.waves if n == wave), ()) if self.rollout else ()
            )
            events.rollout_wave(self.log, wave=wave, devices=list(names), revision=revision)
        elif event.name == "rollout.halted":
            events.rollout_halted(
                self.log, wave=str(fields["wave"]), failed=fields["failed"], revision=revision
            )
        elif event.name == "rollout.completed":
            events.rollout_completed(
                self.log, devices=fields["devices"], failed=fields["failed"], revision=revision
            )

    def _save(self) -> None:
        saved = _Saved(self.rollout, self._fingerprints, self._paused, self._undo)
        try:
            self._state.save_rollout(saved.to_doc())
        except StateError as exc:
            events.state_write_failed(self.log, error=str(exc))

    def _set_halted_metric(self) -> None:
        if self._metrics is not None:
            halted = self.rollout is not None and self.rollout.state is RolloutState.HALTED
            self._metrics.rollout_halted.set(1 if halted else 0)

    # --------------------------------------------------------------- timer

    async def run(self, stopping: asyncio.Event) -> None:
        """Tick until ``stopping``: bakes end, windows open, reverts go out."""
        while not stopping.is_set():
            self.step()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self._tick_interval)
        self._reverter.cancel()

    async def settle(self, timeout: float) -> None:
        """Wait (at most ``timeout`` seconds) until no revert is due or under way."""
        deadline = self._clock() + timeout
        while self._clock() < deadline:
            if not self._reverter.busy and not (self.rollout and reverts_due(self.rollout)):
                return
            await asyncio.sleep(0.1)

    def step(self) -> None:
        """One tick."""
        rollout = self.rollout
        if rollout is not None and rollout.state is RolloutState.RUNNING:
            stepped = tick(rollout, self._clock(), paused=self._paused)
            if stepped.rollout != rollout:
                self._apply(stepped)
        self._watch_window()
        if self.rollout is not None:
            self._reverter.start(reverts_due(self.rollout))

    def _watch_window(self) -> None:
        """When the windows open again, devices that waited for them look again at once."""
        is_open = not self.policy.windows or self.window().open
        if is_open and not self._window_open and self.rollout is not None:
            self._kick(d for d, s in self.rollout.status.items() if s == "pending")
        self._window_open = is_open

    # -------------------------------------------------------------- revert

    def _undo_of(self, device: str) -> tuple[DeviceSpec | None, list[dict[str, Any]]]:
        return self._specs.get(device), self._undo.get(device, [])

    def _reverted(self, device: str, changes: Sequence[Change]) -> None:
        """A revert is over: count it, write its history entry, settle the device."""
        if changes:
            if self._metrics is not None:
                self._metrics.applies.labels("reverted").inc()
            self._write_history(
                device, "revert", "reverted", history_changes(changes, reverse=True)
            )
        self._undo.pop(device, None)
        if self.rollout is not None:
            self.rollout = reverted(self.rollout, device)
            self._save()

    def _write_history(
        self,
        device: str,
        trigger: Any,
        result: Any,
        changes: Any,
        error: str | None = None,
    ) -> None:
        if self._history is None:
            return
        entry = HistoryEntry(
            time=self._wall(),
            device=device,
            revision=self.revision or "",
            trigger=trigger,
            result=result,
            changes=changes,
            wave=self.wave_of(device),
            error=error,
        )
        try:
            self._history.append(entry)
        except OSError as exc:
            events.state_write_failed(self.log.bind(device=device), error=str(exc))

    # ------------------------------------------------------------ control

    def pause(self) -> str:
        """``syncd rollout pause``: no new device starts (a PUT in flight finishes)."""
        if self._paused:
            return "the rollout was already paused"
        self._paused = True
        self._save()
        events.rollout_paused(self.log, revision=self.revision)
        return "rollout paused: no device starts a change until `syncd rollout resume`"

    def resume(self) -> str:
        """``syncd rollout resume``: unpause, and continue a halted rollout from zero failures."""
        halted = self.rollout is not None and self.rollout.state is RolloutState.HALTED
        if not (self._paused or halted):
            return "the rollout was neither paused nor halted"
        self._paused = False
        if self.rollout is not None:
            self.rollout = resume(self.rollout)
        self._save()
        self._set_halted_metric()
        events.rollout_resumed(self.log, revision=self.revision)
        if self.rollout is not None:
            self._kick(d for d, s in self.rollout.status.items() if s in ("pending", "unreachable"))
        return "rollout resumed"

    @property
    def state(self) -> str:
        """``none``, ``running``, ``paused``, ``halted`` or ``completed``."""
        if self.rollout is None:
            return "paused" if self._paused else "none"
        if self._paused and self.rollout.state is not RolloutState.COMPLETED:
            return "paused"
        return str(self.rollout.state)

    def rollout_status(self) -> RolloutSummary:
        """The rollout as ``syncd status`` shows it (SPEC section 10)."""
        rollout = self.rollout
        return RolloutSummary(
            revision=self.revision,
            state=self.state,  # type: ignore[arg-type]
            wave=rollout.current_wave if rollout is not None else None,
            failed=tuple(rollout.failed) if rollout is not None else (),
        )

    def window_status(self) -> WindowStatus:
        window = self.window()
        return WindowStatus(open=window.open, next_open=window.next_open)

    def summary(self) -> dict[str, Any]:
        """The rollout for ``syncd status``: state, wave, failed devices, progress per wave."""
        rollout = self.rollout
        return {
            "revision": self.revision,
            "state": self.state,
            "wave": rollout.current_wave if rollout is not None else None,
            "failed": list(rollout.failed) if rollout is not None else [],
            "waves": [
                {
                    "name": w.name,
                    "devices": w.devices,
                    "done": w.done,
                    "failed": w.failed,
                    "state": w.state,
                }
                for w in (progress(rollout) if rollout is not None else ())
            ],
        }
