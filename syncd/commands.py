"""The one-shot commands: validate, plan, apply. Each returns its exit status."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from syncd import events, loop
from syncd.client import ClientPool
from syncd.desired import (
    DesiredState,
    Loader,
    Problem,
    name_from_path,
    resolve_desired,
    select_devices,
)
from syncd.desired.names import is_defaults
from syncd.logs import get_logger
from syncd.outcome import Outcome, Tally
from syncd.progress import Progress
from syncd.reconcile import Reconciler, reconcile_many
from syncd.report import plan_json, plan_text
from syncd.retrying import RetryPolicy
from syncd.settings import Settings
from syncd.state import FileStateStore

__all__ = [
    "EXIT_ERROR",
    "EXIT_OK",
    "CommandError",
    "apply",
    "plan",
    "validate",
]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CHANGES = 2


class CommandError(Exception):
    """A user-caused failure of a command: one sentence, exit status 1."""


def load_tree(desired_dir: Path, *, log_problems: bool = True) -> DesiredState:
    """Load the desired tree, logging each problem; a missing dir is a CommandError."""
    if not desired_dir.is_dir():
        raise CommandError(f"desired dir {desired_dir} does not exist or is not a directory")
    if not os.access(desired_dir, os.R_OK | os.X_OK):
        raise CommandError(f"desired dir {desired_dir} is not readable")
    desired = Loader(desired_dir).load()
    if not log_problems:
        return desired
    log = get_logger()
    for problem in desired.problems:
        events.desired_problem(log, problem)
    events.desired_loaded(log, devices=len(desired.devices), invalid=len(desired.invalid_files))
    return desired


def _check_filter(desired: DesiredState, devices: Sequence[str]) -> None:
    names = list(desired.devices) + [name_from_path(f) for f in desired.invalid_files]
    for pattern in devices:
        if not select_devices(names, [pattern]):
            raise CommandError(f"no device matches --device {pattern}")


def validate(*, desired_dir: Path, devices: Sequence[str], resolve_secrets: bool) -> int:
    """Offline check of the tree; secret references resolved only when asked.

    The problems are the result: one ``FILE:LINE: field: message`` line each on
    stderr (warnings too, marked), a one-line verdict on stdout when valid.
    """
    desired = load_tree(desired_dir, log_problems=False)
    _check_filter(desired, devices)
    problems = desired.problems
    if resolve_secrets:
        problems = resolve_desired(desired, environ=os.environ, only=devices).problems
    if devices:
        problems = [p for p in problems if _concerns(p, desired, devices)]
    errors = [p for p in problems if not p.warning]
    for problem in problems:
        print(f"warning: {problem}" if problem.warning else str(problem), file=sys.stderr)
    if errors:
        print(f"{len(errors)} problem(s) in {desired_dir}", file=sys.stderr)
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


async def _pass(
    settings: Settings, devices: Sequence[str], *, apply: bool
) -> tuple[list[Outcome], dict[str, str]]:
    desired = load_tree(settings.desired_dir)
    _check_filter(desired, devices)
    resolved = resolve_desired(desired, environ=os.environ, only=devices)
    state = FileStateStore.open(settings.state_dir)
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
                apply=apply,
                concurrency=settings.concurrency,
                on_done=progress.advance,
            )
        finally:
            progress.close()
    return outcomes, resolved.broken


def plan(settings: Settings, *, devices: Sequence[str], as_json: bool) -> int:
    outcomes, broken = loop.run(_pass(settings, devices, apply=False))
    sys.stdout.write(plan_json(outcomes, broken) if as_json else plan_text(outcomes, broken))
    tally = Tally.of(outcomes, broken=len(broken))
    if tally.errors:
        return EXIT_ERROR
    if tally.changes:
        return EXIT_CHANGES
    return EXIT_OK


def apply(settings: Settings, *, devices: Sequence[str]) -> int:
    outcomes, broken = loop.run(_pass(settings, devices, apply=True))
    for o in outcomes:
        if o.failure is not None:
            print(f"{o.device}: {o.failure.message}", file=sys.stderr)
    for name, problem in sorted(broken.items()):
        print(f"{name}: {problem}", file=sys.stderr)
    tally = Tally.of(outcomes, broken=len(broken))
    print(
        f"{tally.devices} devices: {tally.applied} changed, "
        f"{tally.in_sync} already in sync, "
        f"{tally.changes} observed with differences, "
        f"{tally.errors} failed, "
        f"{tally.skipped} skipped"
    )
    return EXIT_ERROR if tally.errors else EXIT_OK
