"""From a loaded desired tree to device specs, and reconciling many devices at once."""

from __future__ import annotations

import asyncio
import fnmatch
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from syncd.desired import (
    DesiredState,
    DeviceEntry,
    DeviceSecretError,
    Problem,
    resolve_device,
)
from syncd.model import DeviceSpec
from syncd.reconcile import Outcome, Reconciler

__all__ = ["Fleet", "build_fleet", "reconcile_many", "select_devices"]


@dataclass
class Fleet:
    """The devices syncd can act on now, and why the others cannot be."""

    specs: dict[str, DeviceSpec] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    #: Device name -> problem text, for devices that were found but are unusable.
    broken: dict[str, str] = field(default_factory=dict)


def select_devices(names: Iterable[str], patterns: Iterable[str]) -> set[str]:
    """Names matching any pattern (exact name or shell glob such as ``site-a/*``)."""
    chosen: set[str] = set()
    names = list(names)
    for pattern in patterns:
        chosen.update(n for n in names if n == pattern or fnmatch.fnmatchcase(n, pattern))
    return chosen


def build_fleet(
    desired: DesiredState,
    *,
    environ: Mapping[str, str],
    only: Iterable[str] = (),
) -> Fleet:
    """Resolve secrets of each valid device (optionally only some); collect problems."""
    fleet = Fleet(problems=list(desired.problems))
    patterns = list(only)
    entries: Mapping[str, DeviceEntry] = desired.devices
    if patterns:
        wanted = select_devices(entries, patterns)
        entries = {n: e for n, e in entries.items() if n in wanted}
    for name, entry in entries.items():
        try:
            fleet.specs[name] = resolve_device(entry, environ=environ, base_dir=desired.root)
        except DeviceSecretError as exc:
            fleet.problems.extend(exc.problems)
            fleet.broken[name] = str(exc)
    for rel in sorted(desired.invalid_files):
        stem = rel.rsplit(".", 1)[0]
        if patterns and not select_devices([stem], patterns):
            continue
        mine = [p for p in desired.errors if p.file == rel] or desired.errors
        fleet.broken.setdefault(stem, str(mine[0]) if mine else f"{rel} is invalid")
    return fleet


async def reconcile_many(
    reconciler: Reconciler,
    specs: Iterable[DeviceSpec],
    *,
    apply: bool,
    concurrency: int,
    on_done: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    """Reconcile devices concurrently, at most ``concurrency`` in flight; keep order."""
    gate = asyncio.Semaphore(concurrency)

    async def one(spec: DeviceSpec) -> Outcome:
        async with gate:
            outcome = await reconciler.reconcile(spec, apply=apply)
        if on_done is not None:
            on_done(outcome)
        return outcome

    return list(await asyncio.gather(*(one(s) for s in specs)))
