"""How files in the desired tree are named, and how devices are chosen by name."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable

from syncd.desired.result import Problem

__all__ = [
    "DEFAULTS_FILE",
    "FLEET_FILE",
    "SUFFIXES",
    "fleet_file_problem",
    "is_defaults",
    "name_from_path",
    "select_devices",
    "unmatched_patterns",
]

DEFAULTS_FILE = "_defaults.yaml"
#: The fleet policy (waves, health, windows, calls): read only at the root, never a device.
FLEET_FILE = "_fleet.yaml"
SUFFIXES = (".yaml", ".yml")


def name_from_path(rel: str) -> str:
    """A device's default name: its file's path under the desired dir, without the suffix."""
    for suffix in SUFFIXES:
        if rel.endswith(suffix):
            return rel[: -len(suffix)]
    return rel


def is_defaults(rel: str) -> bool:
    """Whether ``rel`` names a defaults file (in any folder)."""
    return rel.rsplit("/", 1)[-1] == DEFAULTS_FILE


def fleet_file_problem(rel_path: str) -> Problem | None:
    """The error for a ``_fleet.yaml`` found at ``rel_path`` anywhere but the root."""
    if rel_path.rsplit("/", 1)[-1] == FLEET_FILE and rel_path != FLEET_FILE:
        return Problem(rel_path, 1, "", f"{FLEET_FILE} is only read at the root of the desired dir")
    return None


def select_devices(names: Iterable[str], patterns: Iterable[str]) -> set[str]:
    """Names matching any pattern (exact name or shell glob such as ``site-a/*``)."""
    chosen: set[str] = set()
    names = list(names)
    for pattern in patterns:
        chosen.update(n for n in names if n == pattern or fnmatch.fnmatchcase(n, pattern))
    return chosen


def unmatched_patterns(
    patterns: Iterable[str], devices: Iterable[str], invalid_files: Iterable[str]
) -> list[str]:
    """The ``--device`` patterns naming no device of the tree (an invalid file's counts)."""
    names = [*devices, *(name_from_path(f) for f in invalid_files)]
    return [p for p in patterns if not select_devices(names, [p])]
