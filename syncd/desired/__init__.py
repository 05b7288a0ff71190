"""The desired state: a tree of YAML files, read into one :class:`DeviceSpec` per device.

:mod:`~syncd.desired.tree` finds and reads the files and caches them (the I/O);
:mod:`~syncd.desired.yamldoc`, :mod:`~syncd.desired.merge`,
:mod:`~syncd.desired.schema`, :mod:`~syncd.desired.locate` and
:mod:`~syncd.desired.build` are pure; :mod:`~syncd.desired.resolve` resolves
secret references into the specs syncd acts on.
"""

from __future__ import annotations

from syncd.desired.names import (
    DEFAULTS_FILE,
    SUFFIXES,
    name_from_path,
    select_devices,
    unmatched_patterns,
)
from syncd.desired.resolve import (
    DeviceSecretError,
    Resolved,
    resolve_desired,
    resolve_device,
    rollout_specs,
)
from syncd.desired.result import DesiredState, Problem
from syncd.desired.tree import MAX_FILE_BYTES, Loader, load_desired

__all__ = [
    "DEFAULTS_FILE",
    "MAX_FILE_BYTES",
    "SUFFIXES",
    "DesiredState",
    "DeviceSecretError",
    "Loader",
    "Problem",
    "Resolved",
    "load_desired",
    "name_from_path",
    "resolve_desired",
    "resolve_device",
    "rollout_specs",
    "select_devices",
    "unmatched_patterns",
]
