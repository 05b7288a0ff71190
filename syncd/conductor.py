"""The shell around the rollout state machine (:mod:`syncd.rollout`): feeds it, does what it says.

On each load it works out the devices whose desired state differs from the
one last applied (enforce mode), assigns waves over the whole fleet, and
starts a rollout when the revision or that set changes (a newer revision
supersedes a running or halted one). It answers the gate (may this device
start?), hears each outcome (healthy, in sync, failed, unreachable), ticks on
a timer so a bake ends, kicks the devices of a wave when it starts
(:mod:`syncd.rollout_in_force`), reverts failed devices when the rollout halts
with ``onFailure: revert`` (:mod:`syncd.rollout_reverts`), and saves the
rollout (:mod:`syncd.rollout_saving`), so a SIGKILL loses nothing that
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
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from syncd import events
from syncd.client import DeviceClient
from syncd.health import Health
from syncd.health_checks import HealthChecks
from syncd.logs import get_logger
from syncd.model import DeviceSpec
from syncd.outcome import Outcome
from syncd.pending_put import PendingPut
from syncd.policy import FleetPolicy, PolicyResult
from syncd.policy_in_force import PolicyInForce
from syncd.retrying import RetryPolicy
from syncd.reverting import SlotFor
from syncd.rollout import abandoned, begin, may_start, progress, restarted, tick
from syncd.rollout_control import PAUSE, RESUME, Control
from syncd.rollout_history import RolloutHistory
from syncd.rollout_in_force import RolloutInForce
from syncd.rollout_relay import Relay
from syncd.rollout_results import result_of, undo_of
from syncd.rollout_reverts import RolloutReverts
from syncd.rollout_role import NotDriving, Role
from syncd.rollout_saving import RolloutSaver, read_saved
from syncd.rollout_values import Decision, DeviceStatus, Rollout, RolloutState, Step, WaitReason
from syncd.state import StateError, StateStore
from syncd.status import RolloutSummary, WindowStatus
from syncd.turns import Turns
from syncd.windows import WindowState

if TYPE_CHECKING:
    from syncd.metrics import Metrics
    from syncd.reconcile import HistorySink

__all__ = ["Conductor"]

#: Seconds between two ticks of the rollout (bake, windows, reverts).
TICK = 0.5

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
        ask_again: Kick | None = None,
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
        changing: Callable[[str], None] = lambda device: None,
        changed: Callable[[str], None] = lambda device: None,
        revert_slot: SlotFor | None = None,
    ) -> None:
        self._state = state
        #: Each device's turn: its reconcile and health check, or its revert (syncd.turns).
        self.turns = Turns()
        #: Cluster: whether this node drives the rollout (:mod:`syncd.rollout_role`).
        self._role_of = Role(state=state, drives=drives, owns=owns, relay=relay)
        #: The revision last loaded (None before the first load).
        self._loaded: str | None = None
        self._kick = kick
        #: Resume's kick: the operator asks again, a device's rejection does not hold.
        self._ask_again = ask_again or kick
        self._clock = clock
        self._tick_interval = tick_interval
        self.log = get_logger()
        self._wall = wall
        self._policy = PolicyInForce(log=self.log, wall=wall)
        self._records = RolloutHistory(
            history=history, metrics=metrics, wall=wall, wave_of=self.wave_of, log=self.log
        )
        self.health = health or Health(policy=lambda: self.policy, state=state)
        self._saved = read_saved(state, self.log)
        self._saver = RolloutSaver(state, self._saved, clock=clock, log=self.log)
        self._in_force = RolloutInForce(
            saved=self._saved,
            saver=self._saver,
            policy=self._policy,
            kick=kick,
            clock=clock,
            log=self.log,
            metrics=metrics,
        )
        self._checks = self._restart(client_of=client_of, changing=changing)
        self._specs: dict[str, DeviceSpec] = {}
        #: The devices whose pending changes make a rollout (``_specs`` unless told).
        self._rollout_specs: Mapping[str, DeviceSpec[Any]] = self._specs
        #: Every device of the tree at the last load (``specs`` and the unusable ones).
        self._fleet: set[str] = set()
        self._window_open = True
        self._reverts = RolloutReverts(
            saved=self._saved,
            in_force=self._in_force,
            role=self._role_of,
            records=self._records,
            specs=lambda: self._specs,
            client_of=client_of,
            calls=lambda: self.policy.calls,
            retry=retry or RetryPolicy(),
            clock=clock,
            changed=self._reverted,
            turn=self.turns.of,
            slot=revert_slot,
        )
        #: Hears that a revert changed a device, once the state says so (the daemon's view).
        self._changed = changed
        self._in_force.set_halted_metric()

    def _restart(self, *, client_of: ClientOf, changing: Callable[[str], None]) -> HealthChecks:
        """The health checks, with the devices whose PUT or check a restart cut short
        (checked again when in sync); the saved rollout goes on as restarted."""
        rollout = self._saved.rollout
        checks = HealthChecks(
            health=self.health,
            state=self._state,
            records=self._records,
            client_of=client_of,
            revision=lambda: self.revision,
            recheck=(d for d, s in (rollout.status.items() if rollout else ()) if s == "active"),
            changing=changing,
        )
        self._saved.rollout = restarted(rollout) if rollout is not None else None
        return checks

    def retune(self, retry: RetryPolicy) -> None:
        """New settings (SIGHUP): the retries of the next reverts."""
        self._reverts.retune(retry)

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
        Any other change waits while ``_fleet.yaml`` is invalid and no valid
        policy is known (it would go out without the rollout the file asks for).
        Without ``_fleet.yaml`` nothing waits but for a pause. A cluster node that
        does not drive waits until the driver has the rollout of its revision.
        """
        rollout, paused = self.rollout, self.paused
        invalid = self._policy.invalid
        if invalid is not None and self._state.applied_fingerprint(spec.name) != spec.fingerprint:
            return Decision(False, WaitReason.POLICY, detail=str(invalid))
        if (
            not self._policy.fleet_file  # without it: one wave, failed devices tried again
            or self._state.applied_fingerprint(spec.name) == spec.fingerprint
        ):
            return Decision(False, WaitReason.PAUSED) if paused else Decision(True)
        if not self._driving and (rollout is None or rollout.revision != self._loaded):
            return Decision(False, WaitReason.WAVE)
        if rollout is None:
            return Decision(False, WaitReason.PAUSED) if paused else Decision(True)
        carried = self._saved.fingerprints.get(spec.name)
        if carried is not None and carried != spec.fingerprint:
            # A reconcile that began before a reload: its plan is of a desired state the
            # rollout no longer carries (a superseded revision's values must not go out).
            return Decision(False, WaitReason.WAVE)
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
        rollout_specs: Mapping[str, DeviceSpec[Any]] | None = None,
    ) -> None:
        """A (re)load: the policy in force, and a new rollout if the pending changes are new.

        ``fleet`` names every device of the tree when ``specs`` is a subset (some
        not selected, or unusable now: an invalid file, a secret that does not
        resolve): the waves are assigned over all, and a device of the rollout
        that is still in the tree keeps its place in it. ``rollout_specs``: the
        devices whose changes make the rollout, when more than ``specs`` (``apply
        --device`` acts on a few, but the rollout is the tree's: its canary
        first). A node that does not drive the rollout starts none: it follows
        the driver's.
        """
        self._loaded = revision
        self._fleet = set(fleet) | set(specs)
        self._policy.use(policy, self._fleet)
        self._specs = dict(specs)
        self._rollout_specs = self._specs if rollout_specs is None else rollout_specs
        if self._role():
            self._start_pending(revision)

    def _start_pending(self, revision: str) -> None:
        """The driver's part of a load: a new rollout if the pending changes are new."""
        if self._policy.invalid is not None:
            return  # no policy to roll out under; the saved rollout stays as it is
        fleet = self._fleet
        keep = self._policy.file_invalid  # a commit that broke it is no new desired state
        specs = self._rollout_specs
        if self._in_force.start_pending(revision, specs, fleet, self._proven, same_revision=keep):
            self._checks.forget()

    def _proven(self, device: str) -> str | None:
        """The fingerprint last applied to ``device`` and past its health check.

        A PUT whose check is under way is applied (verified) but not proven: a new
        revision loaded meanwhile keeps that device in its rollout, in its wave, so a
        canary still being checked is not left out and the later waves wait for it.
        """
        applied = self._state.applied_fingerprint(device)
        pending = PendingPut.from_doc(self._state.pending_put(device))
        if applied is not None and pending is not None and pending.fingerprint == applied:
            return pending.before
        return applied

    def revision_material(self, policy: PolicyResult) -> str:
        """What the ``tree:`` revision hashes of ``_fleet.yaml`` when ``policy`` is loaded next
        (the policy that will be in force: the last valid one while the file is invalid)."""
        return self._policy.material(policy)

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
        return await self._checks.after(spec, outcome)

    def unanswered(self, device: str) -> None:
        """``device``'s first read went unanswered (its retries follow): in a wave that has
        started, a device not yet begun is settled as unreachable now (issue 17), so a dark
        device holds its wave for one attempt, not the whole retry ladder. Its later
        outcome still counts (an unreachable device may start when it answers)."""
        rollout = self.rollout
        if rollout is None or rollout.status.get(device) is not DeviceStatus.PENDING:
            return
        index = rollout.wave_of(device)
        if index is None or index > rollout.wave:
            return
        if self._driving:
            self._in_force.settle(device, "unreachable", None)
        else:
            self._role_of.report(device, rollout.revision, "unreachable", None)

    def observe(self, outcome: Outcome) -> None:
        """An outcome of any device: settle it in the rollout, count it, maybe halt."""
        failure = outcome.failure
        if failure is not None and failure.kind == "health":
            self._records.unhealthy()
        rollout, result = self.rollout, result_of(outcome)
        if rollout is None or outcome.device not in rollout.status:
            return
        carried = self._saved.fingerprints.get(outcome.device)
        if carried is not None and outcome.fingerprint not in (None, carried):
            return  # begun before a reload, under a desired state this rollout does not carry
        if result is None:
            if self._driving:  # e.g. begun, then another node took the device first
                self._in_force.apply(Step(abandoned(rollout, outcome.device)))
            return
        undo = undo_of(outcome)
        if self._driving:
            self._in_force.settle(outcome.device, result, undo)
        else:
            self._role_of.report(outcome.device, rollout.revision, result, undo)

    # ------------------------------------------------------------ roles

    @property
    def _driving(self) -> bool:
        """Whether this node drove the rollout when last asked (at each load and tick).

        Per device only this is read: a follower's document is taken at each tick
        (it is O(devices)), and a node taking over starts from it there, so none of
        its devices starts before the rollout of its revision is in force.
        """
        return self._role_of.driving

    def _reverted(self, device: str) -> None:
        """A revert PUT changed ``device``: its last change, and the revision before the
        reverted PUT in force again, kept in the state (for ``apply`` as for the daemon).

        The desired state whose values were taken back is not in force, whatever was
        recorded meanwhile (a re-check that found the device registered while its
        revert was due): else the next resync would see the reverted values as drift
        from it and send them again.
        """
        try:
            self._state.record_changed(device, self._wall())
        except StateError as exc:
            events.state_write_failed(self.log.bind(device=device), error=str(exc))
        spec = self._specs.get(device)
        if spec is not None and self._state.applied_fingerprint(device) == spec.fingerprint:
            self.health.mark_unhealthy(spec, None)
        self._changed(device)

    def _role(self) -> bool:
        """Whether this node drives the rollout now (a follower takes the driver's document)."""
        turn = self._role_of.now(self._saved)
        if turn.retried:  # the driver's resume: this node's devices are asked again too
            self._ask_again(turn.retried)
        if turn.moved:
            self._in_force.kick_wave()
        if not turn.driving or turn.took_over:
            self._in_force.set_halted_metric()
        if turn.took_over and self._loaded is not None:
            self._start_pending(self._loaded)  # what the last driver had not started yet
        return turn.driving

    def _read_reports(self) -> None:
        """The driver settles what followers reported about their devices."""
        for report in self._role_of.fresh_reports(self.revision):
            if report.said == "reverted":
                self._in_force.settle_revert(report.device)
            else:
                self._in_force.settle(report.device, report.said, report.undo)

    # --------------------------------------------------------------- timer

    async def run(self, stopping: asyncio.Event) -> None:
        """Tick until ``stopping``: bakes end, windows open, reverts go out."""
        while not stopping.is_set():
            self.step()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self._tick_interval)
        self._reverts.cancel()
        if self._role_of.driving:
            self._saver.flush()

    async def settle(self, timeout: float) -> None:
        """Wait (at most ``timeout`` seconds) until no revert is due or under way."""
        await self._reverts.settle(timeout)

    def step(self) -> None:
        """One tick."""
        if not self._role():
            self._watch_window()
            self._reverts.start()
            return
        self._read_reports()
        self._saver.due()
        rollout = self.rollout
        if rollout is not None and rollout.state is RolloutState.RUNNING:
            stepped = tick(rollout, self._clock(), paused=self.paused)
            if stepped.rollout != rollout:
                self._in_force.apply(stepped)
        self._watch_window()
        self._reverts.start()

    def _watch_window(self) -> None:
        """When the windows open again, devices that waited for them look again at once."""
        is_open = self._policy.windows_open()
        if is_open and not self._window_open and self.rollout is not None:
            self._kick(d for d, s in self.rollout.status.items() if s == "pending")
        self._window_open = is_open

    # ------------------------------------------------------------ control

    def pause(self) -> str:
        """``syncd rollout pause``: no new device starts (a PUT in flight finishes)."""
        return PAUSE.done if self._control(PAUSE) else PAUSE.nothing

    def resume(self) -> str:
        """``syncd rollout resume``: unpause, and continue a halted rollout from zero failures."""
        if not self._control(RESUME):
            return RESUME.nothing
        self._in_force.announce_held_wave(self.revision)
        if self.rollout is not None:
            status = self.rollout.status.items()
            self._ask_again(d for d, s in status if s in ("pending", "unreachable"))
        return RESUME.done

    def _control(self, control: Control) -> bool:
        if not self._role():
            raise NotDriving()
        if not control.change(self._saved):
            return False
        self._saver.now()
        self._in_force.set_halted_metric()
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
            wave=self._saved.wave,
            failed=tuple(rollout.failed) if rollout is not None else (),
        )

    def window_status(self) -> WindowStatus:
        window = self.window()
        return WindowStatus(open=window.open, next_open=window.next_open)

    def summary(self) -> dict[str, Any]:
        """The rollout for ``syncd status``: state, wave, failed devices, progress per wave."""
        return self._saved.summary()
