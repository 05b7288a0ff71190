"""The rollout state machine: waves in order, bake, failure budget, halt, revert, resume, persistence."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.policy import FleetPolicy, OnFailure, RolloutPolicy
from syncd.rollout import (
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
from syncd.rollout_values import (
    Decision,
    DeviceStatus,
    Event,
    Result,
    Rollout,
    RolloutState,
    Step,
    WaitReason,
    WaveProgress,
)
from syncd.saved_rollout import rollout_from_doc, rollout_to_doc

REV = "r1"
THREE = {"c1": "canary", "e1": "early", "e2": "early", "r1": "rest", "r2": "rest", "r3": "rest"}
ORDER = ("canary", "early", "rest")


def policy(
    *, bake: float = 0.0, max_failures: int | str | None = None, on_failure: OnFailure = "halt"
) -> FleetPolicy:
    return FleetPolicy(rollout=RolloutPolicy((), bake, max_failures, on_failure))


def started(
    pending: Mapping[str, str] = THREE, order: Sequence[str] = ORDER, **kwargs: object
) -> Rollout:
    return start(REV, pending, order, policy(**kwargs)).rollout  # type: ignore[arg-type]


def run(rollout: Rollout, device: str, result: Result, now: float = 0.0) -> Step:
    """Start ``device`` (it must be allowed to) and record its outcome."""
    assert may_start(rollout, device, paused=False).go, (device, rollout)
    return record(begin(rollout, device), device, result, now)


def names(step: Step) -> list[str]:
    return [e.name for e in step.events]


class TestStart:
    def test_started_lists_waves_with_counts_then_first_wave_starts(self) -> None:
        """start logs rollout.started (revision, each wave's name and device count), then rollout.wave."""
        step = start(REV, THREE, ORDER, policy())
        assert step.events == (
            Event(
                "rollout.started",
                {
                    "revision": REV,
                    "waves": [
                        {"name": "canary", "devices": 1},
                        {"name": "early", "devices": 2},
                        {"name": "rest", "devices": 3},
                    ],
                },
            ),
            Event("rollout.wave", {"revision": REV, "wave": "canary", "devices": 1}),
        )
        assert step.rollout.state is RolloutState.RUNNING
        assert set(step.rollout.status.values()) == {DeviceStatus.PENDING}

    def test_waves_without_pending_devices_are_skipped(self) -> None:
        """A wave with no device to change is not part of the rollout at all."""
        rollout = started({"a": "canary", "b": "rest"})
        assert [name for name, _ in rollout.waves] == ["canary", "rest"]
        step = run(rollout, "a", "healthy")
        assert step.events[-1].fields["wave"] == "rest"

    def test_nothing_pending_is_completed_silently(self) -> None:
        """With no pending device the rollout is completed at once and logs nothing."""
        step = start(REV, {}, ORDER, policy())
        assert step.rollout.state is RolloutState.COMPLETED and step.events == ()

    def test_wave_missing_from_the_order_runs_last(self) -> None:
        """A device whose wave the order does not name still rolls out, after the named waves."""
        rollout = started({"a": "canary", "b": "mystery"})
        assert [name for name, _ in rollout.waves] == ["canary", "mystery"]

    def test_share_of_failures_is_resolved_for_the_rollouts_size(self) -> None:
        """maxFailures "50%" of six pending devices tolerates three."""
        assert started(max_failures="50%").max_failures == 3


class TestValues:
    def test_a_rollout_does_not_follow_the_callers_dict(self) -> None:
        """The statuses a rollout is built from are its own: the caller changing its dict later changes nothing."""
        given_status = {"a": DeviceStatus.PENDING, "b": DeviceStatus.PENDING}
        rollout = Rollout(revision=REV, waves=(("all", ("a", "b")),), status=given_status)
        given_status["a"] = DeviceStatus.FAILED
        assert rollout.status["a"] is DeviceStatus.PENDING and rollout.failed == ()

    def test_a_step_leaves_the_rollout_it_was_given_as_it_was(self) -> None:
        """``begin`` answers a new rollout; the old one still says pending, and neither can be changed in place."""
        before = started(THREE)
        after = begin(before, "c1")
        assert before.status["c1"] is DeviceStatus.PENDING
        assert after.status["c1"] is DeviceStatus.ACTIVE
        assert {d: s for d, s in after.status.items() if d != "c1"} == {
            d: s for d, s in before.status.items() if d != "c1"
        }
        with pytest.raises(TypeError):
            after.status["c1"] = DeviceStatus.FAILED  # type: ignore[index]


class TestMayStart:
    def test_current_wave_goes_later_waves_wait_for_theirs(self) -> None:
        """A device of the current wave may start; one of a later wave waits, naming its wave."""
        rollout = started()
        assert may_start(rollout, "c1", paused=False) == Decision(True)
        assert may_start(rollout, "e1", paused=False) == Decision(False, WaitReason.WAVE, "early")

    def test_device_outside_the_rollout_is_not_held(self) -> None:
        """A device not in the rollout (a drift correction, say) is not held by it."""
        assert may_start(started(), "elsewhere", paused=True) == Decision(True)

    def test_pause_holds_every_device(self) -> None:
        """While paused no device starts, even of the current wave."""
        assert may_start(started(), "c1", paused=True) == Decision(False, WaitReason.PAUSED)

    def test_active_and_done_devices_do_not_start_again(self) -> None:
        """A device under way, or with an outcome, does not start again."""
        rollout = begin(started(), "c1")
        assert may_start(rollout, "c1", paused=False) == Decision(False, WaitReason.ACTIVE)
        rollout = record(rollout, "c1", "healthy", 0.0).rollout
        assert may_start(rollout, "c1", paused=False) == Decision(False, WaitReason.DONE)


class TestWaves:
    def test_waves_run_in_order_each_after_the_previous_settled(self) -> None:
        """Each wave starts only once every device of the one before has its outcome."""
        rollout = started()
        step = run(rollout, "c1", "healthy")
        assert names(step) == ["rollout.wave"] and step.events[0].fields["wave"] == "early"
        step = run(step.rollout, "e1", "in_sync")
        assert step.events == () and step.rollout.current_wave == "early"
        assert may_start(step.rollout, "r1", paused=False).reason is WaitReason.WAVE
        step = run(step.rollout, "e2", "healthy")
        assert step.events[0].fields == {"revision": REV, "wave": "rest", "devices": 3}

    def test_last_wave_done_completes_without_bake(self) -> None:
        """When the last wave is done the rollout completes at once, naming devices and failures."""
        rollout = started({"a": "canary", "b": "canary"}, bake=600.0)
        rollout = run(rollout, "a", "failed").rollout
        step = run(rollout, "b", "healthy", now=1.0)
        assert step.events == (
            Event("rollout.completed", {"revision": REV, "devices": 2, "failed": ["a"]}),
        )
        assert step.rollout.state is RolloutState.COMPLETED

    def test_outcome_for_a_later_wave_device_is_kept(self) -> None:
        """A later wave's device found in sync early counts, and its wave may then be done at once."""
        rollout = record(started(), "e1", "in_sync", 0.0).rollout
        rollout = record(rollout, "e2", "in_sync", 0.0).rollout
        step = run(rollout, "c1", "healthy")
        assert [e.fields["wave"] for e in step.events] == ["early", "rest"]


class TestBake:
    def test_next_wave_waits_for_bake_and_not_longer(self) -> None:
        """With bake 60 the next wave starts at the first tick 60 s after the wave was done."""
        rollout = run(started(bake=60.0), "c1", "healthy", now=100.0).rollout
        assert rollout.current_wave == "canary" and rollout.bake_started == 100.0
        assert tick(rollout, 159.9).events == ()
        step = tick(rollout, 160.0)
        assert names(step) == ["rollout.wave"] and step.rollout.current_wave == "early"
        assert may_start(step.rollout, "e1", paused=False).go

    def test_new_failure_in_the_wave_restarts_the_bake(self) -> None:
        """A device of the baking wave failing (back from unreachable) starts the bake over."""
        rollout = started({"a": "canary", "b": "canary", "z": "rest"}, bake=60.0)
        rollout = run(rollout, "a", "healthy", now=0.0).rollout
        rollout = run(rollout, "b", "unreachable", now=10.0).rollout
        assert rollout.bake_started == 10.0
        rollout = begin(rollout, "b")  # it answers again
        rollout = record(rollout, "b", "failed", 40.0).rollout
        assert tick(rollout, 99.0).events == ()
        assert names(tick(rollout, 100.0)) == ["rollout.wave"]

    def test_an_unreachable_device_tried_again_does_not_hold_the_bake(self) -> None:
        """Its PUT tried at every resync (and failing as unreachable again) neither restarts
        the bake nor keeps the wave from handing over: the rollout does not stall on it."""
        rollout = started({"a": "canary", "b": "canary", "z": "rest"}, bake=60.0)
        rollout = run(rollout, "a", "healthy", now=0.0).rollout
        rollout = run(rollout, "b", "unreachable", now=10.0).rollout
        for now in (20.0, 40.0, 60.0):
            rollout = begin(rollout, "b")
            assert tick(rollout, now).events == ()
            rollout = record(rollout, "b", "unreachable", now + 5).rollout
        rollout = begin(rollout, "b")  # under way again when the bake is over
        step = tick(rollout, 70.0)
        assert names(step) == ["rollout.wave"] and step.rollout.current_wave == "rest"
        assert str(step.rollout.status["b"]) == "unreachable"

    def test_pause_holds_the_next_wave_but_not_the_clock(self) -> None:
        """Paused, a baked wave does not hand over; unpaused, it does at once."""
        rollout = run(started(bake=5.0), "c1", "healthy", now=0.0).rollout
        assert tick(rollout, 100.0, paused=True).events == ()
        assert names(tick(rollout, 100.0, paused=False)) == ["rollout.wave"]

    def test_record_while_paused_does_not_start_the_next_wave(self) -> None:
        """An outcome arriving during a pause (a PUT in flight) settles but starts no wave."""
        rollout = begin(started(), "c1")
        step = record(rollout, "c1", "healthy", 0.0, paused=True)
        assert step.events == () and step.rollout.current_wave == "canary"


class TestFailureBudget:
    def test_max_failures_zero_halts_at_the_first_failure(self) -> None:
        """maxFailures 0: the first failure halts, logging its wave and the failed devices."""
        step = run(started({"a": "canary", "b": "canary"}, max_failures=0), "a", "failed")
        assert step.rollout.state is RolloutState.HALTED
        assert step.events == (
            Event("rollout.halted", {"revision": REV, "wave": "canary", "failed": ["a"]}),
        )
        assert may_start(step.rollout, "b", paused=False) == Decision(False, WaitReason.HALTED)

    def test_halts_only_when_failures_exceed_the_limit(self) -> None:
        """maxFailures 1 tolerates one failure and halts at the second."""
        rollout = started({"a": "w", "b": "w", "c": "w"}, ("w",), max_failures=1)
        step = run(rollout, "a", "failed")
        assert step.rollout.state is RolloutState.RUNNING and step.events == ()
        step = run(step.rollout, "b", "failed")
        assert step.rollout.state is RolloutState.HALTED
        assert step.events[0].fields["failed"] == ["a", "b"]

    def test_share_limit_halts_past_its_share(self) -> None:
        """maxFailures "50%" of four devices tolerates two failures; the third halts."""
        rollout = started({d: "w" for d in "abcd"}, ("w",), max_failures="50%")
        for device in "ab":
            rollout = run(rollout, device, "failed").rollout
        assert rollout.state is RolloutState.RUNNING
        assert run(rollout, "c", "failed").rollout.state is RolloutState.HALTED

    def test_no_limit_never_halts(self) -> None:
        """Without maxFailures every device may fail and the rollout still completes."""
        rollout = started({"a": "w", "b": "w"}, ("w",))
        rollout = run(rollout, "a", "failed").rollout
        step = run(rollout, "b", "failed")
        assert step.rollout.state is RolloutState.COMPLETED
        assert step.events[0].fields["failed"] == ["a", "b"]

    def test_unreachable_settles_the_wave_without_failing(self) -> None:
        """An unreachable device is no failure: the wave goes on, and it may start again later."""
        rollout = started({"a": "canary", "b": "rest"}, max_failures=0)
        step = run(rollout, "a", "unreachable")
        assert step.rollout.failures == 0 and step.rollout.current_wave == "rest"
        assert may_start(step.rollout, "a", paused=False).go
        rollout = run(step.rollout, "b", "healthy").rollout
        assert rollout.state is RolloutState.COMPLETED
        assert may_start(rollout, "a", paused=False).go  # it gets its change when it answers
        assert run(rollout, "a", "healthy").rollout.status["a"] is DeviceStatus.HEALTHY


class TestRevert:
    def test_revert_policy_returns_every_failed_device_at_the_halt(self) -> None:
        """onFailure revert: the halt returns the tolerated and the halting failures to revert."""
        rollout = started(
            {"a": "w", "b": "w", "c": "w"}, ("w",), max_failures=1, on_failure="revert"
        )
        step = run(rollout, "a", "failed")
        assert step.revert == ()  # tolerated: no halt, no revert yet
        step = run(step.rollout, "b", "failed")
        assert step.revert == ("a", "b") == reverts_due(step.rollout)

    def test_halt_policy_reverts_nothing(self) -> None:
        """onFailure halt: a halt returns no device to revert."""
        step = run(started({"a": "w"}, ("w",), max_failures=0), "a", "failed")
        assert step.rollout.state is RolloutState.HALTED
        assert step.revert == () == reverts_due(step.rollout)

    def test_device_failing_after_the_halt_is_reverted_too(self) -> None:
        """A PUT in flight at the halt that then fails is reverted (with revert), not counted twice."""
        rollout = started({"a": "w", "b": "w"}, ("w",), max_failures=0, on_failure="revert")
        rollout = begin(begin(rollout, "a"), "b")
        step = record(rollout, "a", "failed", 0.0)
        step = record(step.rollout, "b", "failed", 1.0)
        assert step.revert == ("b",) and step.events == ()

    def test_reverted_devices_are_not_due_again(self) -> None:
        """Once marked reverted a device is no longer due, and still counts as failed."""
        step = run(started({"a": "w"}, ("w",), max_failures=0, on_failure="revert"), "a", "failed")
        rollout = reverted(step.rollout, "a")
        assert reverts_due(rollout) == () and rollout.failed == ("a",)
        assert rollout.status["a"] is DeviceStatus.REVERTED


class TestResume:
    def test_resume_continues_with_devices_not_done_and_counts_from_zero(self) -> None:
        """Resumed, pending devices go on, failed ones stay done, and the budget starts over."""
        rollout = started({"a": "w", "b": "w", "c": "w"}, ("w",), max_failures=0)
        rollout = run(rollout, "a", "failed").rollout
        rollout = resume(rollout)
        assert rollout.state is RolloutState.RUNNING and rollout.failures == 0
        assert may_start(rollout, "a", paused=False).reason is WaitReason.DONE
        step = run(rollout, "b", "failed")
        assert step.rollout.state is RolloutState.HALTED  # maxFailures 0 again, from zero
        assert step.events[0].fields["failed"] == ["a", "b"]

    def test_a_failed_device_found_healthy_later_is_no_failure_unless_reverted(self) -> None:
        """A device that failed, then is sound under the same desired state (its accounts
        registered at last), leaves the failed list (``rollout.completed`` named healthy
        devices as failed); under ``onFailure: revert`` it stays failed (its revert is due)."""
        for on_failure, failed in (("halt", []), ("revert", ["a"])):
            rollout = started({"a": "w", "b": "w"}, ("w",), on_failure=on_failure)
            rollout = run(rollout, "a", "failed").rollout
            rollout = record(rollout, "a", "healthy", 1.0).rollout
            assert list(rollout.failed) == failed
            step = run(rollout, "b", "healthy")
            assert step.rollout.state is RolloutState.COMPLETED
            assert step.events[-1].fields["failed"] == failed
            assert record(step.rollout, "a", "failed", 2.0).rollout is step.rollout

    def test_resume_of_a_halted_done_wave_bakes_then_moves_on(self) -> None:
        """A wave halted when its last device failed moves on after the bake once resumed."""
        rollout = started({"a": "canary", "b": "rest"}, bake=30.0, max_failures=0)
        rollout = resume(run(rollout, "a", "failed", now=0.0).rollout)
        assert tick(rollout, 100.0).events == ()  # the bake starts at this tick
        assert names(tick(tick(rollout, 100.0).rollout, 130.0)) == ["rollout.wave"]

    def test_resume_leaves_a_running_rollout_alone(self) -> None:
        """Resuming a rollout that is not halted changes nothing (the failures count stays)."""
        rollout = run(started({"a": "w", "b": "w"}, ("w",)), "a", "failed").rollout
        assert resume(rollout) == rollout


class TestIgnoredOutcomes:
    def test_second_outcome_for_a_done_device_changes_nothing(self) -> None:
        """An outcome for a device that already has a final one is ignored."""
        rollout = run(started(), "c1", "healthy").rollout
        assert record(rollout, "c1", "failed", 1.0) == Step(rollout)

    def test_outcome_for_an_unknown_device_changes_nothing(self) -> None:
        """An outcome for a device not in the rollout is ignored."""
        rollout = started()
        assert record(rollout, "nobody", "failed", 1.0) == Step(rollout)


class TestPersistence:
    def test_round_trip_through_json_at_every_stage(self) -> None:
        """rollout_to_doc -> JSON -> rollout_from_doc gives back an equal rollout, running, baking, halted or done."""
        stages = [started(bake=9.5, max_failures=1, on_failure="revert")]
        stages.append(begin(stages[-1], "c1"))
        stages.append(record(stages[-1], "c1", "healthy", 12.25).rollout)
        stages.append(record(stages[-1], "e1", "unreachable", 13.0).rollout)
        halted = stages[-1]
        for device in ("e2", "r1"):
            halted = record(halted, device, "failed", 14.0).rollout
        stages += [halted, reverted(halted, "e2"), start(REV, {}, ORDER, policy()).rollout]
        for rollout in stages:
            doc = json.loads(json.dumps(rollout_to_doc(rollout)))
            assert rollout_from_doc(doc) == rollout

    @pytest.mark.parametrize(
        "doc",
        [
            {},
            [],
            {"revision": "r", "waves": "x"},
            {**rollout_to_doc(started()), "state": "exploded"},
            {**rollout_to_doc(started()), "status": {"c1": "pending"}},
            {**rollout_to_doc(started()), "wave": 7},
        ],
    )
    def test_damaged_doc_is_a_value_error(self, doc: object) -> None:
        """A saved rollout that is not one raises ValueError (never a KeyError or TypeError)."""
        with pytest.raises(ValueError, match="not a saved rollout"):
            rollout_from_doc(doc)  # type: ignore[arg-type]

    def test_restart_reruns_devices_under_way_but_not_finished_ones(self) -> None:
        """After a restart a device that was under way starts again; a settled one never does."""
        rollout = run(
            started({"a": "w", "b": "w", "c": "w"}, ("w",), bake=5.0), "a", "healthy"
        ).rollout
        rollout = begin(rollout, "b")
        back = restarted(rollout_from_doc(json.loads(json.dumps(rollout_to_doc(rollout)))))
        assert back.status["b"] is DeviceStatus.PENDING and back.bake_started is None
        assert may_start(back, "b", paused=False).go
        assert may_start(back, "a", paused=False).reason is WaitReason.DONE

    def test_progress_counts_per_wave(self) -> None:
        """progress shows each wave's size, settled and failed counts and where it stands."""
        rollout = run(started(), "c1", "failed").rollout
        rollout = run(rollout, "e1", "healthy").rollout
        assert progress(rollout) == (
            WaveProgress("canary", 1, 1, 1, "done"),
            WaveProgress("early", 2, 1, 0, "running"),
            WaveProgress("rest", 3, 0, 0, "waiting"),
        )


# ----------------------------------------------------------------- property

results = st.sampled_from(["healthy", "in_sync", "failed", "unreachable"])


@settings(max_examples=150)
@given(
    pending=st.dictionaries(
        st.sampled_from([f"d{i}" for i in range(10)]), st.sampled_from(["w0", "w1", "w2", "w3"])
    ),
    outcomes=st.dictionaries(
        st.sampled_from([f"d{i}" for i in range(10)]), st.lists(results, max_size=3)
    ),
    bake=st.sampled_from([0.0, 1.0, 2.5]),
    max_failures=st.sampled_from([None, 0, 1, "50%"]),
)
def test_completed_rollout_visited_waves_in_order(
    pending: dict[str, str],
    outcomes: dict[str, list[Result]],
    bake: float,
    max_failures: int | str | None,
) -> None:
    """Driven with any outcomes (resuming each halt), a rollout completes having started each
    wave once, in order, each only after every device of the waves before it had settled."""
    step = start(
        REV, pending, ("w0", "w1", "w2", "w3"), policy(bake=bake, max_failures=max_failures)
    )
    rollout, log = step.rollout, list(step.events)
    left = {d: list(outcomes.get(d, [])) for d in pending}
    unsettled = (DeviceStatus.PENDING, DeviceStatus.ACTIVE)

    def take(step: Step) -> Rollout:
        fresh = rollout_from_doc(rollout_to_doc(step.rollout))  # worked out anew
        assert step.rollout.unsettled == fresh.unsettled, "the carried counts drifted"
        assert step.rollout.wave_index == fresh.wave_index
        for event in step.events:
            if event.name == "rollout.wave":
                earlier = [d for _, ds in step.rollout.waves[: step.rollout.wave] for d in ds]
                assert all(step.rollout.status[d] not in unsettled for d in earlier)
        log.extend(step.events)
        return step.rollout

    now = 0.0
    for _ in range(200):
        if rollout.state is RolloutState.COMPLETED:
            break
        for device in sorted(rollout.status):
            if may_start(rollout, device, paused=False).go:
                index = rollout.wave_of(device)
                assert index is not None and index <= rollout.wave
                result: Result = left[device].pop(0) if left[device] else "healthy"
                rollout = take(record(begin(rollout, device), device, result, now))
        now += 1.0
        rollout = take(tick(rollout, now))
        if rollout.state is RolloutState.HALTED:
            rollout = resume(rollout)
    if not pending:
        assert log == [] and rollout.state is RolloutState.COMPLETED
        return
    assert rollout.state is RolloutState.COMPLETED
    waves_started = [e.fields["wave"] for e in log if e.name == "rollout.wave"]
    assert waves_started == [name for name, _ in rollout.waves]
    assert waves_started == sorted(set(pending.values()))
    assert [e.name for e in log].count("rollout.completed") == 1
    assert log[-1].name == "rollout.completed"


def test_a_pause_shows_also_when_the_last_rollout_completed() -> None:
    """Paused after a completed rollout, the state is ``paused`` (the next one waits for a
    resume); resumed, it is ``completed`` again. Without a rollout: ``paused`` / ``none``."""
    from syncd.saved_rollout import SavedRollout

    completed = start(REV, {}, ORDER, policy()).rollout
    saved = SavedRollout(rollout=completed)
    assert saved.state == "completed"
    assert saved.pause() and saved.state == "paused"
    assert saved.resume() and saved.state == "completed"
    empty = SavedRollout()
    assert empty.state == "none" and empty.pause() and empty.state == "paused"


def test_resume_tries_the_failed_devices_of_a_completed_rollout_again() -> None:
    """A completed rollout with a failure: retry_failed makes the device pending, runs from
    its wave with failures from zero, keeps the others done; else it changes nothing."""
    from syncd.rollout import retry_failed

    rollout = started({"a": "canary", "b": "rest", "c": "rest"})
    rollout = run(rollout, "a", "healthy").rollout
    rollout = run(rollout, "b", "failed").rollout
    completed = run(rollout, "c", "healthy").rollout
    assert completed.state is RolloutState.COMPLETED and completed.failed == ("b",)
    again = retry_failed(completed)
    assert again.state is RolloutState.RUNNING and again.current_wave == "rest"
    assert again.failures == 0 and again.failed == ()
    assert may_start(again, "b", paused=False).go and not may_start(again, "a", paused=False).go
    done = run(again, "b", "healthy").rollout
    assert done.state is RolloutState.COMPLETED and done.failed == ()
    assert retry_failed(done) == done and retry_failed(rollout) == rollout
