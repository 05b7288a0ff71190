"""How files in the desired tree are named, and how devices are chosen by name."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable

from syncd.desired.result import Problem

__all__ = [
    "DEFAULTS_FILE",
    "FLEET_FILE",
    "SUFFIXES",
    "fleet_file_problem",
    "is_defaults",
    "name_from_path",
    "path_name_problem",
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


#: The characters a device name cannot carry (the text rule of syncd.desired.schema):
#: the C0 controls (a newline among them), DEL and the C1 controls.
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f]")
#: What a name that is not UTF-8 holds once decoded (Python's surrogate escapes).
_UNDECODED = re.compile("[\udc80-\udcff]")


def _shown_path(rel: str) -> str:
    """``rel`` as one printable line: bytes that are not UTF-8 and control characters
    escaped (``bad\\xffname.yaml``, ``a\\nb.yaml``); any other name as it is."""
    if _UNDECODED.search(rel):
        rel = rel.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return _CONTROLS.sub(lambda m: repr(m.group())[1:-1], rel)


def path_name_problem(rel: str, *, folder: bool = False) -> Problem | None:
    """The error for a file (or ``folder``) at ``rel`` whose own name a device name cannot
    carry: not UTF-8, or holding a control character (a newline would split output lines)."""
    name = rel.rsplit("/", 1)[-1]
    what = "folder" if folder else "file"
    if _UNDECODED.search(name):
        message = f"the {what} name is not UTF-8; rename it"
    elif _CONTROLS.search(name):
        message = (
            f"the {what} name holds a control character, which a device name cannot carry;"
            " rename it"
        )
    else:
        return None
    if folder:
        message += " (the files in it are not read)"
    return Problem(_shown_path(rel), None, "", message)


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
