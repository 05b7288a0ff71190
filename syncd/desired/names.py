"""How files in the desired tree are named, and how devices are chosen by name."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable

__all__ = ["DEFAULTS_FILE", "SUFFIXES", "is_defaults", "name_from_path", "select_devices"]

DEFAULTS_FILE = "_defaults.yaml"
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


def select_devices(names: Iterable[str], patterns: Iterable[str]) -> set[str]:
    """Names matching any pattern (exact name or shell glob such as ``site-a/*``)."""
    chosen: set[str] = set()
    names = list(names)
    for pattern in patterns:
        chosen.update(n for n in names if n == pattern or fnmatch.fnmatchcase(n, pattern))
    return chosen
