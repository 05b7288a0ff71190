"""The one-shot commands: validate, plan, apply. Each returns its exit status."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from syncd import loop
from syncd.client import ClientPool
from syncd.desired import DEFAULTS_FILE, DesiredState, Loader, Problem
from syncd.fleet import build_fleet, reconcile_many, select_devices
from syncd.logs import get_logger
from syncd.progress import Progress
from syncd.reconcile import Outcome, Reconciler
from syncd.report import plan_json, plan_text
from syncd.retrying import RetryPolicy
from syncd.settings import Settings
from syncd.state import StateStore

__all__ = ["EXIT_CHANGES", "EXIT_ERROR", "EXIT_OK", "apply", "plan", "validate"]

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
        if problem.warning:
            log.warning("desired.warning", file=problem.file, line=problem.line, error=str(problem))
        else:
            log.error("desired.invalid", file=problem.file, line=problem.line, error=str(problem))
    log.info("desired.loaded", devices=len(desired.devices), invalid=len(desired.invalid_files))
    return desired


def _check_filter(desired: DesiredState, devices: Sequence[str]) -> None:
    names = list(desired.devices) + [f.rsplit(".", 1)[0] for f in desired.invalid_files]
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
        problems = build_fleet(desired, environ=os.environ, only=devices).problems
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
    if problem.file.rsplit("/", 1)[-1] == DEFAULTS_FILE:
        return True
    if select_devices([problem.file.rsplit(".", 1)[0]], devices):
        return True
    chosen = select_devices(desired.devices, devices)
    return any(problem.file in desired.devices[name].sources for name in chosen)


async def _pass(
    settings: Settings, devices: Sequence[str], *, apply: bool
) -> tuple[list[Outcome], dict[str, str]]:
    desired = load_tree(settings.desired_dir)
    _check_filter(desired, devices)
    fleet = build_fleet(desired, environ=os.environ, only=devices)
    state = StateStore.open(settings.state_dir)
    async with ClientPool(timeout=settings.request_timeout) as pool:
        reconciler = Reconciler(
            pool=pool, state=state, retry=RetryPolicy(attempts=settings.retry_attempts)
        )
        progress = Progress(len(fleet.specs))
        try:
            outcomes = await reconcile_many(
                reconciler,
                fleet.specs.values(),
                apply=apply,
                concurrency=settings.concurrency,
                on_done=progress.advance,
            )
        finally:
            progress.close()
    return outcomes, fleet.broken


def plan(settings: Settings, *, devices: Sequence[str], as_json: bool) -> int:
    outcomes, broken = loop.run(_pass(settings, devices, apply=False))
    sys.stdout.write(plan_json(outcomes, broken) if as_json else plan_text(outcomes, broken))
    if broken or any(o.status == "error" for o in outcomes):
        return EXIT_ERROR
    if any(o.status == "changes" for o in outcomes):
        return EXIT_CHANGES
    return EXIT_OK


def apply(settings: Settings, *, devices: Sequence[str]) -> int:
    outcomes, broken = loop.run(_pass(settings, devices, apply=True))
    applied = sum(o.status == "applied" for o in outcomes)
    failed = [o for o in outcomes if o.status == "error"]
    for o in failed:
        print(f"{o.device}: {o.error_message}", file=sys.stderr)
    for name, problem in sorted(broken.items()):
        print(f"{name}: {problem}", file=sys.stderr)
    print(
        f"{len(outcomes) + len(broken)} devices: {applied} changed, "
        f"{sum(o.status == 'in_sync' for o in outcomes)} already in sync, "
        f"{sum(o.status == 'changes' for o in outcomes)} observed with differences, "
        f"{len(failed) + len(broken)} failed, "
        f"{sum(o.status == 'skipped' for o in outcomes)} skipped"
    )
    return EXIT_ERROR if failed or broken else EXIT_OK
