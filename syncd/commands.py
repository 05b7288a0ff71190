"""The one-shot commands: validate, plan, apply. Each returns its exit status."""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from syncd.desired import (
    DesiredState,
    Loader,
    Problem,
    Resolved,
    name_from_path,
    resolve_desired,
    rollout_specs,
    select_devices,
    unmatched_patterns,
)
from syncd.desired.ca_files import ca_file_problems
from syncd.desired.fleet import load_policy
from syncd.desired.names import FLEET_FILE, is_defaults
from syncd.gctune import collector_paused

if TYPE_CHECKING:
    from syncd.cluster.snapshot import StateSnapshot
    from syncd.outcome import Outcome
    from syncd.policy import PolicyResult
    from syncd.settings import Settings
    from syncd.state import FileStateStore

# Only what ``validate`` needs is imported above: it is run over whole trees in CI
# and at every commit, and the HTTP stack, the rollout machinery and structlog
# were a fifth of its time (issue 15). Each other command imports its own.

__all__ = [
    "EXIT_ERROR",
    "EXIT_OK",
    "CommandError",
    "apply",
    "check_local_state_dir",
    "plan",
    "state_dir_missing",
    "validate",
]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CHANGES = 2


class CommandError(Exception):
    """A user-caused failure of a command: one sentence, exit status 1."""


def state_dir_missing(state_dir: Path, socket: Path | None = None) -> str:
    """Why an operator command does nothing on a missing state dir (``socket``: the daemon's
    it asked first, which did not answer)."""
    asked = f"no daemon answers on {socket} and " if socket is not None else ""
    return (
        f"{asked}there is no state directory {state_dir}; "
        "pass --config (or --state-dir) naming the daemon's"
    )


def check_local_state_dir(state_dir: Path, socket: Path) -> None:
    """A CommandError when the state dir is the working directory's default and missing.

    An operator command run from a shell without the daemon's settings must not
    start a state dir of its own and report success on it; one named on purpose
    (``--state-dir``, to pause before a first start) is used as given.
    """
    from syncd.settings import LOCAL_STATE_DIR

    if state_dir == LOCAL_STATE_DIR and not state_dir.is_dir():
        raise CommandError(state_dir_missing(state_dir, socket))


def load_tree(desired_dir: Path, *, log_problems: bool = True) -> DesiredState:
    """Load the desired tree, logging each problem; a missing dir is a CommandError."""
    if not desired_dir.is_dir():
        raise CommandError(f"desired dir {desired_dir} does not exist or is not a directory")
    if not os.access(desired_dir, os.R_OK | os.X_OK):
        raise CommandError(f"desired dir {desired_dir} is not readable")
    desired = Loader(desired_dir, spread=True).load()
    if not log_problems:
        return desired
    from syncd import events
    from syncd.logs import get_logger

    log = get_logger()
    for problem in desired.problems:
        # desired.invalid names the device whose file it is, as the daemon's does.
        mine = problem.file in desired.invalid_files
        events.desired_problem(log, problem, device=name_from_path(problem.file) if mine else None)
    return desired


def load_resolved(
    settings: Settings, devices: Sequence[str], *, policy_warnings: bool = True
) -> tuple[DesiredState, Resolved, PolicyResult, str]:
    """``plan``'s and ``apply``'s load: the tree, its devices as specs, ``_fleet.yaml``, and
    the revision (``desired.loaded`` carries it, as every event about the desired state does).

    ``policy_warnings`` False leaves ``_fleet.yaml``'s warnings to the rollout, which says
    them as the daemon's does (``apply``); its errors are said here, where a command stops.
    """
    from syncd import events
    from syncd.logs import get_logger
    from syncd.policy import policy_material
    from syncd.revision import desired_revision, revision_material

    desired = load_tree(settings.desired_dir)
    _check_filter(desired, devices)
    resolved = resolve_desired(desired, environ=os.environ, only=devices)
    policy = load_policy(settings.desired_dir)
    # The tree's revision, whatever --device selects: every valid device counts (the
    # fingerprint holds no secret, so the devices not resolved here hash as they are),
    # and the policy, as the daemon counts it.
    in_tree = {n: s for n, s in desired.devices.items() if n not in resolved.broken}
    material = revision_material(in_tree) + policy_material(
        policy.policy, invalid=bool(policy.errors)
    )
    revision = desired_revision(settings.desired_dir, material)
    log = get_logger()
    for problem in resolved.problems[len(desired.problems) :]:  # secrets that did not resolve
        events.desired_problem(log, problem)
    for problem in policy.problems:
        if policy_warnings or not problem.warning:
            events.desired_problem(log, problem)
    # Counted as the daemon counts them: devices that can be acted on, and those that cannot.
    events.desired_loaded(
        log, devices=len(resolved.specs), invalid=len(resolved.broken), revision=revision
    )
    # Kept to the command's end: a pass's collections need not walk it again (at
    # 10,000 devices, some 55,000 objects that a middle-generation collection walked).
    gc.freeze()
    return desired, resolved, policy, revision


def _check_filter(desired: DesiredState, devices: Sequence[str]) -> None:
    unmatched = unmatched_patterns(devices, desired.devices, desired.invalid_files)
    if unmatched:
        raise CommandError(f"no device matches --device {unmatched[0]}")


def validate(*, desired_dir: Path, devices: Sequence[str], resolve_secrets: bool) -> int:
    """Offline check of the tree; secret references resolved only when asked.

    The problems are the result, on stdout (``syncd validate desired >
    report.txt`` keeps them): one ``FILE:LINE: field: message`` line each
    (warnings too, marked), then a one-line verdict.
    """
    with collector_paused():
        # A one-shot check: what it builds lives until it exits, so the collector would
        # only walk it (a tenth of validating 10,000 files); exit frees it all at once.
        return _validate(desired_dir, devices, resolve_secrets)


def _validate(desired_dir: Path, devices: Sequence[str], resolve_secrets: bool) -> int:
    desired = load_tree(desired_dir, log_problems=False)
    _check_filter(desired, devices)
    problems = desired.problems
    if resolve_secrets:
        problems = resolve_desired(desired, environ=os.environ, only=devices).problems
    problems = [*problems, *ca_file_problems(desired, host_files=resolve_secrets)]
    if devices:
        problems = [p for p in problems if _concerns(p, desired, devices)]
    # Invalid files name devices too: a wave glob matching only them is no typo.
    names = [*desired.devices, *(name_from_path(f) for f in desired.invalid_files)]
    problems = [*problems, *load_policy(desired_dir, devices=names).problems]
    errors = [p for p in problems if not p.warning]
    for problem in problems:
        print(f"warning: {problem}" if problem.warning else str(problem))
    if errors:
        print(f"{len(errors)} problem(s) in {desired_dir}")
        return EXIT_ERROR
    chosen = select_devices(desired.devices, devices) if devices else desired.devices
    print(f"{desired_dir}: {len(chosen)} device(s) valid")
    return EXIT_OK


def _concerns(problem: Problem, desired: DesiredState, devices: Sequence[str]) -> bool:
    """Whether a problem is in a file that the devices chosen by --device are built from."""
    if is_defaults(problem.file):
        return True
    if select_devices([name_from_path(problem.file)], devices):
        return True
    chosen = select_devices(desired.devices, devices)
    return any(problem.file in desired.devices[name].sources for name in chosen)


#: A due password on a plan made without any password record: it may well be in place.
NO_RECORD = "(no record)"


async def _pass(
    settings: Settings, devices: Sequence[str], *, state: FileStateStore | StateSnapshot
) -> tuple[list[Outcome], dict[str, str], PolicyResult]:
    """``plan``'s read of every device: nothing is changed, on the devices or in the state."""
    from syncd.client import ClientPool
    from syncd.progress import Progress
    from syncd.reconcile import Reconciler, reconcile_many
    from syncd.retrying import RetryPolicy

    _, resolved, policy, revision = load_resolved(settings, devices)
    async with ClientPool(
        timeout=settings.request_timeout, connect_timeout=settings.connect_timeout
    ) as pool:
        reconciler = Reconciler(
            pool=pool, state=state, retry=RetryPolicy(attempts=settings.retry_attempts)
        )
        progress = Progress(len(resolved.specs))
        try:
            outcomes = await reconcile_many(
                reconciler,
                resolved.specs.values(),
                apply=False,
                concurrency=settings.concurrency,
                on_done=progress.advance,
                revision=revision,
            )
        finally:
            progress.close()
    return outcomes, resolved.broken, policy


def plan(settings: Settings, *, devices: Sequence[str], as_json: bool) -> int:
    """Print what would change; read-only: the state dir is never created or written, and
    in a cluster (SPEC 11) the records are the ones the nodes keep in etcd, read once.

    An invalid ``_fleet.yaml`` is an error (exit 1, as ``apply`` refuses): the plan is
    printed, its problems are in ``--json``, and stderr names the first one.
    """
    from syncd import events, loop
    from syncd.cluster_refusals import check_not_node_dir
    from syncd.command_errors import report_error
    from syncd.logs import get_logger
    from syncd.outcome import Tally
    from syncd.report import plan_json, plan_text, rollout_facts

    check_not_node_dir(settings)  # its records are in etcd: the dir's would mislead
    state = _plan_state(settings)
    outcomes, broken, policy = loop.run(_pass(settings, devices, state=state))
    shown = outcomes  # the text marks a due password "(no record)" when there are none
    if not state.has_password_records():
        shown = [_unrecorded(o) for o in outcomes]
        if any(c.desired == NO_RECORD for o in shown for c in o.changes):
            if settings.cluster_endpoints:
                events.passwords_unrecorded(get_logger(), cluster=settings.cluster_name)
            else:
                events.passwords_unrecorded(get_logger(), state_dir=str(settings.state_dir))
    if as_json:
        # SPEC 5's machine form: a due password is "(will be set)"; the warning says why.
        facts = rollout_facts(policy.policy)
        sys.stdout.write(plan_json(outcomes, broken, invalid=policy.errors, **facts))
    else:
        sys.stdout.write(plan_text(shown, broken))
    tally = Tally.of(outcomes, broken=len(broken))
    if policy.errors:
        sys.stdout.flush()
        report_error(_policy_refused(policy, "first: no rollout can start until it is valid"))
        return EXIT_ERROR
    if tally.errors:
        return EXIT_ERROR
    if tally.changes:
        return EXIT_CHANGES
    return EXIT_OK


def _policy_refused(policy: PolicyResult, when: str) -> str:
    """The sentence naming ``_fleet.yaml``'s first error (and how many more)."""
    errors = policy.errors
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{errors[0]}{more}; fix {FLEET_FILE} {when}"


def _plan_state(settings: Settings) -> FileStateStore | StateSnapshot:
    """The records a plan judges by, read-only: the cluster's in etcd, else the state dir's."""
    if not settings.cluster_endpoints:
        from syncd.local_state import open_state

        return open_state(settings, readonly=True)
    from syncd.cluster import ClusterError
    from syncd.cluster.reading import read_state_snapshot

    try:
        return read_state_snapshot(settings)
    except ClusterError as exc:
        raise CommandError(str(exc)) from None


def _unrecorded(outcome: Outcome) -> Outcome:
    """The outcome with its due passwords marked ``(no record)`` rather than ``(will be set)``."""
    from syncd.diff import PASSWORD_PLACEHOLDER

    changes = tuple(
        replace(c, desired=NO_RECORD)
        if c.field == "password" and c.desired == PASSWORD_PLACEHOLDER
        else c
        for c in outcome.changes
    )
    return replace(outcome, changes=changes)


def apply(settings: Settings, *, devices: Sequence[str], ignore_windows: bool = False) -> int:
    """One pass; the result (failed devices, a summary) on stdout, log events on stderr."""
    from syncd import loop
    from syncd.command_errors import report_error
    from syncd.lock import StateDirLocked, StateLock, state_lock_error
    from syncd.outcome import Tally, devices_text

    if settings.cluster_endpoints:
        # The cluster's nodes own the devices (SPEC 11); a PUT from outside would race them.
        raise CommandError(
            "syncd apply does not run against a cluster (cluster_endpoints is set): its nodes "
            "own the devices; commit the change and let them roll it out"
        )
    from syncd.cluster_refusals import check_not_node_dir

    check_not_node_dir(settings, changes_devices=True)  # a second writer beside the nodes
    try:
        lock = StateLock.acquire(settings.state_dir)
    except (StateDirLocked, OSError) as exc:
        raise CommandError(state_lock_error(settings.state_dir, exc)) from None
    with lock:
        outcomes, broken, verdict = loop.run(_apply_pass(settings, devices, ignore_windows))
    for o in outcomes:
        if o.failure is not None:
            print(f"{o.device}: {o.failure.message}")
    for name, problem in sorted(broken.items()):
        print(f"{name}: {problem}")
    tally = Tally.of(outcomes, broken=len(broken))
    print(
        f"{devices_text(tally.devices)}: {tally.applied} changed, "
        f"{tally.in_sync} already in sync, "
        f"{tally.changes} observed with differences, "
        f"{tally.errors} failed, "
        f"{tally.skipped} skipped" + (f", {tally.waiting} waiting" if tally.waiting else "")
    )
    if verdict is not None:  # why apply failed beyond its devices: an error (SPEC 5)
        sys.stdout.flush()
        report_error(verdict)
    return EXIT_ERROR if tally.errors or tally.waiting or verdict else EXIT_OK


async def _apply_pass(
    settings: Settings, devices: Sequence[str], ignore_windows: bool
) -> tuple[list[Outcome], dict[str, str], str | None]:
    """``apply``: the rollout in the foreground (waves, health, bake, windows, calls)."""
    from syncd.foreground import rollout_pass
    from syncd.progress import Progress

    desired, resolved, policy, revision = load_resolved(settings, devices, policy_warnings=False)
    if policy.errors:
        raise CommandError(_policy_refused(policy, "before applying"))
    progress = Progress(len(resolved.specs))
    try:
        result = await rollout_pass(
            settings,
            specs=resolved.specs,
            fleet=[*desired.devices, *resolved.broken],
            policy=policy,
            revision=revision,
            ignore_windows=ignore_windows,
            on_done=progress.advance,
            # --device acts on a few; the rollout stays the tree's (its canary first)
            rollout_specs=rollout_specs(desired, resolved) if devices else None,
        )
    finally:
        progress.close()
    return result.outcomes, resolved.broken, result.verdict
