"""The shell around the rollout state machine (:mod:`syncd.rollout`): feeds it, does what it says.

On each load it works out the devices whose desired state differs from the
one last applied (enforce mode), assigns waves over the whole fleet, and
starts a rollout when the revision or that set changes (a newer revision
supersedes a running or halted one). It answers the gate (may this device
start?), hears each outcome (healthy, in sync, failed, unreachable), ticks on
a timer so a bake ends, kicks the devices of a wave when it starts, reverts
failed devices when the rollout halts with ``onFailure: revert``, and saves
the rollout (:mod:`syncd.rollout_saving`), so a SIGKILL loses nothing that
matters: a restarted process continues at the same wave, never re-runs a
finished wave's health gate, and checks again a device whose PUT was under way.

In a cluster only the node etcd elected drives (:mod:`syncd.rollout_role`):
the others follow the document it writes and report their devices'
outcomes to it (:mod:`syncd.rollout_relay`).

The pause flag lives beside the rollout in the same saved document
(:mod:`syncd.saved_rollout`): it survives restarts and new revisions.
:mod:`syncd.rollout_control` changes it on the state when no daemon runs.

Everything here runs on the event loop; call :meth:`Conductor.pause` and
:meth:`Conductor.resume` from it (the control socket hands them over).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from syncd.client import DeviceClient
from syncd.diff import Change
from syncd.health import Health
from syncd.logs import get_logger
from syncd.model import DeviceSpec, Mode
from syncd.outcome import Outcome
from syncd.policy import FleetPolicy, PolicyResult
from syncd.policy_in_force import PolicyInForce
from syncd.retrying import RetryPolicy
from syncd.reverting import Reverter
from syncd.rollout import (
    abandoned,
    begin,
    may_start,
    progress,
    record,
    restarted,
    reverted,
    reverts_due,
    start,
    tick,
)
from syncd.rollout_control import PAUSE, RESUME, Control
from syncd.rollout_events import log_rollout_events
from syncd.rollout_history import RolloutHistory
from syncd.rollout_relay import Relay
from syncd.rollout_role import NotDriving, Role
from syncd.rollout_saving import RolloutSaver
from syncd.rollout_values import (
    Decision,
    DeviceStatus,
    Result,
    Rollout,
    RolloutState,
    Step,
    WaitReason,
)
from syncd.saved_rollout import SavedRollout
from syncd.state import StateStore
from syncd.status import RolloutSummary, WindowStatus
from syncd.windows import WindowState

if TYPE_CHECKING:
    from syncd.metrics import Metrics
    from syncd.reconcile import HistorySink

__all__ = ["Conductor"]

#: Seconds between two ticks of the rollout (bake, windows, reverts).
TICK = 0.5
#: Failure kinds that fail a device in a rollout; any other error means it did not answer.
_FAILING = frozenset({"rejected", "verify", "health", "device", "api"})
#: Failure kinds after which the rollout's PUT is (or may be) in force: it can be reverted.
_APPLIED = frozenset({"health", "verify"})

Kick = Callable[[Iterable[str]], None]
ClientOf = Callable[[DeviceSpec], DeviceClient]


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
        drives: Callable[[], bool] = lambda: True,
        owns: Callable[[str], bool] = lambda device: True,
        relay: Relay | None = None,
    ) -> None:
        self._state = state
        #: Cluster: whether this node drives the rollout (:mod:`syncd.rollout_role`).
        self._role_of = Role(state=state, drives=drives, owns=owns, relay=relay)
        #: The revision last loaded (None before the first load).
        self._loaded: str | None = None
        self._kick = kick
        self._client_of = client_of
        self._metrics = metrics
        self._retry = retry or RetryPolicy()
        self._clock = clock
        self._tick_interval = tick_interval
        self.log = get_logger()
        self._policy = PolicyInForce(log=self.log, wall=wall)
        self._records = RolloutHistory(
            history=history, metrics=metrics, wall=wall, wave_of=self.wave_of, log=self.log
        )
        self.health = health or Health(policy=lambda: self.policy, state=state)
        self._saved = SavedRollout.of(state.load_rollout())
        self._saver = RolloutSaver(state, self._saved, clock=clock, log=self.log)
        rollout = self._saved.rollout
        #: Devices whose PUT or health check a restart cut short: checked again when in sync.
        self._recheck = {d for d, s in (rollout.status.items() if rollout else ()) if s == "active"}
        self._saved.rollout = restarted(rollout) if rollout is not None else None
        self._specs: dict[str, DeviceSpec] = {}
        #: Every device of the tree at the last load (``specs`` and the unusable ones).
        self._fleet: set[str] = set()
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

    def retune(self, retry: RetryPolicy) -> None:
        """New settings (SIGHUP): the retries of the next reverts."""
        self._retry = retry
        self._reverter.retune(retry)

    # ------------------------------------------------------------ the gate

    @property
    def rollout(self) -> Rollout | None:
        return self._saved.rollout

    @property
    def paused(self) -> bool:
        return self._saved.paused

    @property
    def revision(self) -> str | None:
        return self._saved.revision

    @property
    def policy(self) -> FleetPolicy:
        return self._policy.policy

    def may_start(self, spec: DeviceSpec) -> Decision:
        """Whether the rollout lets ``spec``'s change start now.

        A change under a desired state already applied (a password alone: the
        fingerprint holds none) is not the rollout's: it does not wait for a wave.
        Without ``_fleet.yaml`` nothing waits but for a pause. A cluster node that
        does not drive waits until the driver has the rollout of its revision.
        """
        rollout, paused = self.rollout, self.paused
        if (
            not self._policy.fleet_file  # without it: one wave, failed devices tried again
            or self._state.applied_fingerprint(spec.name) == spec.fingerprint
        ):
            return Decision(False, WaitReason.PAUSED) if paused else Decision(True)
        if not self._driving and (rollout is None or rollout.revision != self._loaded):
            return Decision(False, WaitReason.WAVE)
        if rollout is None:
            return Decision(False, WaitReason.PAUSED) if paused else Decision(True)
        return may_start(rollout, spec.name, paused=paused, active_elsewhere=not self._driving)

    def begin(self, device: str) -> None:
        """``device``'s PUT starts: on disk before it goes out, as one journal line."""
        rollout = self._saved.rollout
        if rollout is not None and self._driving:
            self._saved.rollout = begin(rollout, device)
            if self._saved.rollout is not rollout:
                self._saver.note(device, self._saved.rollout.status[device])

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

        ``fleet`` names every device of the tree when ``specs`` is a subset (some
        not selected, or unusable now: an invalid file, a secret that does not
        resolve): the waves are assigned over all, and a device of the rollout
        that is still in the tree keeps its place in it. A node that does not
        drive the rollout starts none: it follows the driver's.
        """
        self._loaded = revision
        self._fleet = set(fleet) | set(specs)
        self._policy.use(policy, self._fleet)
        self._specs = dict(specs)
        if self._role():
            self._start_pending(revision)

    def _start_pending(self, revision: str) -> None:
        """The driver's part of a load: a new rollout if the pending changes are new."""
        specs = self._specs
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
            or any(self._saved.fingerprints.get(d) != fp for d, fp in pending.items())
        ):
            if current is None and not pending:
                return
            self._saved.fingerprints = pending
            self._saved.undo = {}
            self._recheck = set()
            chosen = self._policy.waves_of(pending)
            self._apply(start(revision, chosen, self._policy.wave_order(), self.policy))
            return
        for name in list(current.status):  # devices gone, or no longer enforced
            spec = specs.get(name)
            if spec is None and name in self._fleet:
                continue  # in the tree, unusable for now: its place in the rollout is kept
            if self.rollout is not None and (spec is None or spec.mode is not Mode.ENFORCE):
                self._apply(record(self.rollout, name, "in_sync", self._clock()), urgent=False)

    def wave_done(self) -> bool:
        """Every device of the current wave has its outcome (the bake may be under way)."""
        if self.rollout is None or not self.rollout.waves:
            return True
        wave = progress(self.rollout)[self.rollout.wave]
        return wave.done == wave.devices

    def wave_of(self, device: str) -> str | None:
        """The device's wave under the policy in force (for status)."""
        return self._policy.wave_of(device)

    def window(self) -> WindowState:
        return self._policy.window()

    # ------------------------------------------------------------ outcomes

    async def after(self, spec: DeviceSpec, outcome: Outcome) -> Outcome:
        """The worker's ``after`` hook: the health check, outside the concurrency gate."""
        if outcome.status == "applied":
            client = self._client_of(spec)
            checked = await self.health.after_put(spec, outcome, client, revision=self.revision)
            self._records.put_checked(outcome.put, checked)
            return checked
        if outcome.status != "in_sync":
            return outcome
        failed = None
        if spec.name in self._recheck:
            self._recheck.discard(spec.name)
            client = self._client_of(spec)
            failed = await self.health.registered(spec, client, revision=self.revision)
        elif self._state.unhealthy_fingerprint(spec.name) == spec.fingerprint:
            client = self._client_of(spec)
            failed = await self.health.still_unhealthy(spec, client, revision=self.revision)
        return outcome if failed is None else Outcome.of(spec, "error", failure=failed)

    def observe(self, outcome: Outcome) -> None:
        """An outcome of any device: settle it in the rollout, count it, maybe halt."""
        failure = outcome.failure
        if failure is not None and failure.kind == "health":
            self._records.unhealthy()
        rollout, result = self.rollout, _result(outcome)
        if rollout is None or outcome.device not in rollout.status:
            return
        if result is None:
            if self._driving:  # e.g. begun, then another node took the device first
                self._apply(Step(abandoned(rollout, outcome.device)))
            return
        undo = None
        if failure is not None and failure.kind in _APPLIED:
            undo = [c.as_dict() for c in outcome.changes if c.field != "password"]
        if self._driving:
            self._settle(outcome.device, result, undo)
        else:
            self._role_of.report(outcome.device, rollout.revision, result, undo)

    def _settle(self, device: str, result: Result, undo: list[dict[str, Any]] | None) -> None:
        """The driver settles ``device``'s outcome in the rollout."""
        rollout = self.rollout
        if rollout is None or device not in rollout.status:
            return
        index = rollout.wave_of(device)
        if result != "in_sync" and index is not None and index > rollout.wave:
            return  # its wave has not started: neither settled nor failed by the rollout
        if undo is not None:
            self._saved.undo[device] = undo
        step = record(rollout, device, result, self._clock(), paused=self.paused)
        self._apply(step, urgent=result == "failed", device=device)

    # ------------------------------------------------------------ roles

    @property
    def _driving(self) -> bool:
        """Whether this node drove the rollout when last asked (at each load and tick).

        Per device only this is read: a follower's document is taken at each tick
        (it is O(devices)), and a node taking over starts from it there, so none of
        its devices starts before the rollout of its revision is in force.
        """
        return self._role_of.driving

    def _role(self) -> bool:
        """Whether this node drives the rollout now (a follower takes the driver's document)."""
        turn = self._role_of.now(self._saved)
        if turn.moved:
            self._kick_wave()
        if not turn.driving or turn.took_over:
            self._set_halted_metric()
        if turn.took_over and self._loaded is not None:
            self._start_pending(self._loaded)  # what the last driver had not started yet
        return turn.driving

    def _read_reports(self) -> None:
        """The driver settles what followers reported about their devices."""
        for report in self._role_of.fresh_reports(self.revision):
            if report.said == "reverted":
                self._settle_revert(report.device)
            else:
                self._settle(report.device, report.said, report.undo)

    # --------------------------------------------------------------- steps

    def _apply(self, step: Step, *, urgent: bool = True, device: str | None = None) -> None:
        """``step`` in force: saved at once if ``urgent`` or with events; a health verdict
        (``device`` healthy) as a journal line; anything else soon."""
        changed = step.rollout is not self._saved.rollout
        self._saved.rollout = step.rollout
        log_rollout_events(self.log, step.events, step.rollout)
        if step.events or (changed and urgent):
            self._saver.now()
        elif changed and device and step.rollout.status.get(device) is DeviceStatus.HEALTHY:
            self._saver.note(device, DeviceStatus.HEALTHY)
        elif changed:
            self._saver.soon()
        self._set_halted_metric()
        if any(e.name == "rollout.wave" for e in step.events):
            self._kick_wave()

    def _kick_wave(self) -> None:
        rollout = self.rollout
        if rollout is None or not rollout.waves:
            return
        self._kick(rollout.waves[rollout.wave][1])

    def _set_halted_metric(self) -> None:
        if self._metrics is not None:
            self._metrics.rollout_halted.set(1 if self._saved.halted else 0)

    # --------------------------------------------------------------- timer

    async def run(self, stopping: asyncio.Event) -> None:
        """Tick until ``stopping``: bakes end, windows open, reverts go out."""
        while not stopping.is_set():
            self.step()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self._tick_interval)
        self._reverter.cancel()
        if self._role_of.driving:
            self._saver.flush()

    async def settle(self, timeout: float) -> None:
        """Wait (at most ``timeout`` seconds) until no revert is due or under way."""
        deadline = self._clock() + timeout
        while self._clock() < deadline:
            if not self._reverter.busy and not (self.rollout and reverts_due(self.rollout)):
                return
            await asyncio.sleep(0.1)

    def step(self) -> None:
        """One tick."""
        if not self._role():
            self._watch_window()
            if self.rollout is not None:
                self._reverter.start(self._role_of.reverts(self.rollout))
            return
        self._read_reports()
        self._saver.due()
        rollout = self.rollout
        if rollout is not None and rollout.state is RolloutState.RUNNING:
            stepped = tick(rollout, self._clock(), paused=self.paused)
            if stepped.rollout != rollout:
                self._apply(stepped)
        self._watch_window()
        if self.rollout is not None:
            self._reverter.start(self._role_of.reverts(self.rollout))

    def _watch_window(self) -> None:
        """When the windows open again, devices that waited for them look again at once."""
        is_open = self._policy.windows_open()
        if is_open and not self._window_open and self.rollout is not None:
            self._kick(d for d, s in self.rollout.status.items() if s == "pending")
        self._window_open = is_open

    # -------------------------------------------------------------- revert

    def _undo_of(self, device: str) -> tuple[DeviceSpec | None, list[dict[str, Any]]]:
        return self._specs.get(device), self._saved.undo.get(device, [])

    def _reverted(self, device: str, changes: Sequence[Change]) -> None:
        """A revert is over: count it, write its history entry, settle the device."""
        if changes:
            self._records.reverted(device, changes, revision=self.revision)
        if self._driving:
            self._settle_revert(device)
        else:
            self._role_of.report_revert(device, self.revision)

    def _settle_revert(self, device: str) -> None:
        self._saved.undo.pop(device, None)
        if self._saved.rollout is not None:
            self._saved.rollout = reverted(self._saved.rollout, device)
            self._saver.now()

    # ------------------------------------------------------------ control

    def pause(self) -> str:
        """``syncd rollout pause``: no new device starts (a PUT in flight finishes)."""
        return PAUSE.done if self._control(PAUSE) else PAUSE.nothing

    def resume(self) -> str:
        """``syncd rollout resume``: unpause, and continue a halted rollout from zero failures."""
        if not self._control(RESUME):
            return RESUME.nothing
        if self.rollout is not None:
            self._kick(d for d, s in self.rollout.status.items() if s in ("pending", "unreachable"))
        return RESUME.done

    def _control(self, control: Control) -> bool:
        if not self._role():
            raise NotDriving()
        if not control.change(self._saved):
            return False
        self._saver.now()
        self._set_halted_metric()
        control.event(self.log, revision=self.revision)
        return True

    @property
    def state(self) -> str:
        """``none``, ``running``, ``paused``, ``halted`` or ``completed``."""
        return self._saved.state

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
        return self._saved.summary()


def _result(outcome: Outcome) -> Result | None:
    """What an outcome means to the rollout (None: nothing, it did not end)."""
    if outcome.status == "applied":
        return "healthy"
    if outcome.status == "in_sync":
        return "in_sync"
    if outcome.status != "error":
        return None
    kind = outcome.failure.kind if outcome.failure is not None else ""
    return "failed" if kind in _FAILING else "unreachable"
