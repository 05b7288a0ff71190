"""The rollout in force on the driving node: each step applied, each outcome settled.

A step of the state machine (:mod:`syncd.rollout`) is put in force here: its
events logged, the document saved (:mod:`syncd.rollout_saving`) at once, as a
journal line or soon, the halted metric set, and the devices of a wave that
starts kicked. A load starts a new rollout when the revision or the set of
pending changes is new; an outcome or a finished revert settles its device.
:class:`syncd.conductor.Conductor` decides when; this is what it then does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from structlog.typing import FilteringBoundLogger as Log

from syncd import events
from syncd.model import DeviceSpec, Mode
from syncd.policy_in_force import PolicyInForce
from syncd.rollout import record, recovers, reverted, start
from syncd.rollout_events import log_rollout_events
from syncd.rollout_saving import RolloutSaver
from syncd.rollout_values import FINAL, DeviceStatus, Result, Step
from syncd.saved_rollout import SavedRollout

if TYPE_CHECKING:
    from syncd.metrics import Metrics

__all__ = ["RolloutInForce"]


class RolloutInForce:
    """The saved rollout and what changes it: one per conductor, shared with its saver."""

    def __init__(
        self,
        *,
        saved: SavedRollout,
        saver: RolloutSaver,
        policy: PolicyInForce,
        kick: Callable[[Iterable[str]], None],
        clock: Callable[[], float],
        log: Log,
        metrics: Metrics | None,
    ) -> None:
        self._saved = saved
        self._saver = saver
        self._policy = policy
        self._kick = kick
        self._clock = clock
        self._log = log
        self._metrics = metrics

    def start_pending(
        self,
        revision: str,
        specs: Mapping[str, DeviceSpec[Any]],
        fleet: set[str],
        applied: Callable[[str], str | None],
        *,
        same_revision: bool = False,
    ) -> bool:
        """The driver's part of a load: a new rollout if the pending changes are new.

        ``applied`` gives a device's fingerprint last applied. True when a new
        rollout started (what the last one had under way is forgotten).
        ``same_revision``: a new revision with the same pending changes keeps the
        rollout (what differs is an invalid ``_fleet.yaml``, which changes nothing).
        """
        pending = {
            name: spec.fingerprint
            for name, spec in specs.items()
            if spec.mode is Mode.ENFORCE and applied(name) != spec.fingerprint
        }
        current = self._saved.rollout
        if (
            current is None
            or (current.revision != revision and not same_revision)
            or any(self._saved.fingerprints.get(d) != fp for d, fp in pending.items())
        ):
            if current is None and not pending:
                return False
            self._saved.fingerprints = pending
            self._saved.undo = {}
            chosen = self._policy.waves_of(pending)
            policy = self._policy.policy
            self.apply(start(revision, chosen, self._policy.wave_order(), policy))
            return True
        for name in list(current.status):  # devices gone, or no longer enforced
            spec = specs.get(name)
            if spec is None and name in fleet:
                continue  # in the tree, unusable for now: its place in the rollout is kept
            rollout = self._saved.rollout
            if rollout is not None and (spec is None or spec.mode is not Mode.ENFORCE):
                self.apply(record(rollout, name, "in_sync", self._clock()), urgent=False)
        return False

    def settle(self, device: str, result: Result, undo: list[dict[str, Any]] | None) -> None:
        """The driver settles ``device``'s outcome in the rollout."""
        rollout = self._saved.rollout
        if rollout is None or device not in rollout.status:
            return
        index = rollout.wave_of(device)
        if result != "in_sync" and index is not None and index > rollout.wave:
            return  # its wave has not started: neither settled nor failed by the rollout
        if rollout.status[device] in FINAL and not recovers(rollout, device, result):
            return  # settled already: a later outcome changes nothing, its undo least of all
        if undo is not None:
            self._saved.undo[device] = undo
        else:
            self._saved.undo.pop(device, None)  # its PUT is not in force: nothing to give back
        step = record(rollout, device, result, self._clock(), paused=self._saved.paused)
        self.apply(step, urgent=result == "failed", device=device)

    def settle_revert(self, device: str) -> None:
        """The driver settles a finished revert: the device is reverted, its undo forgotten."""
        self._saved.undo.pop(device, None)
        if self._saved.rollout is not None:
            self._saved.rollout = reverted(self._saved.rollout, device)
            self._saver.now()

    def apply(self, step: Step, *, urgent: bool = True, device: str | None = None) -> None:
        """``step`` in force: saved at once if ``urgent`` or with events; a health verdict
        (``device`` healthy) as a journal line; anything else soon."""
        changed = step.rollout is not self._saved.rollout
        self._saved.rollout = step.rollout
        said = step.events
        if self._saved.paused and any(e.name == "rollout.wave" for e in said):
            said = tuple(e for e in said if e.name != "rollout.wave")
            self._saved.held_wave = True  # said at the resume, saved with the step
        elif any(e.name == "rollout.wave" for e in said):
            self._saved.held_wave = False
        log_rollout_events(self._log, said, step.rollout)
        if step.events or (changed and urgent):
            self._saver.now()
        elif changed and device and step.rollout.status.get(device) is DeviceStatus.HEALTHY:
            self._saver.note(device, DeviceStatus.HEALTHY)
        elif changed:
            self._saver.soon()
        self.set_halted_metric()
        if any(e.name == "rollout.wave" for e in step.events):
            self.kick_wave()

    def announce_held_wave(self, revision: str | None) -> None:
        """At resume: ``rollout.wave`` for the wave that began while paused, now it starts."""
        held = self._saved.take_held_wave()
        if held is not None:
            events.rollout_wave(self._log, wave=held[0], devices=held[1], revision=revision)
            self._saver.now()

    def kick_wave(self) -> None:
        """The devices of the current wave look again at once."""
        rollout = self._saved.rollout
        if rollout is None or not rollout.waves:
            return
        self._kick(rollout.waves[rollout.wave][1])

    def set_halted_metric(self) -> None:
        if self._metrics is not None:
            self._metrics.rollout_halted.set(1 if self._saved.halted else 0)
