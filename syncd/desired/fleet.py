"""Read ``_fleet.yaml`` from the root of the desired dir (the I/O around :mod:`syncd.policy`).

The file is checked like a device file (see :func:`syncd.policy_schema.policy_from_doc`);
this module only finds it, refuses a link that leads out of the tree, and
reads it with the same limits as any desired file.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from syncd.desired.names import FLEET_FILE
from syncd.desired.result import FileFailed, Problem
from syncd.desired.tree import read_doc
from syncd.policy import PolicyResult

__all__ = ["load_policy"]


def load_policy(root: Path, *, devices: Collection[str] | None = None) -> PolicyResult:
    """Read and check ``ROOT/_fleet.yaml``; ``policy`` is None when absent or invalid.

    ``devices``: the tree's device names, to warn of a wave glob matching none.
    """
    path = root / FLEET_FILE
    try:
        size = path.stat().st_size
        inside = path.resolve(strict=True).is_relative_to(root.resolve())
    except FileNotFoundError:
        return PolicyResult(None)
    except (OSError, RuntimeError) as exc:
        reason = getattr(exc, "strerror", None) or "broken or looping symbolic link"
        return PolicyResult(None, [Problem(FLEET_FILE, 1, "", f"cannot read: {reason}")])
    if not inside:
        message = "symbolic link points outside the desired dir"
        return PolicyResult(None, [Problem(FLEET_FILE, 1, "", message)])
    if path.is_dir():
        message = f"cannot read: is a directory; {FLEET_FILE} must be a file"
        return PolicyResult(None, [Problem(FLEET_FILE, 1, "", message)])
    try:
        doc = read_doc(path, FLEET_FILE, size)
    except FileFailed as failed:
        return PolicyResult(None, list(failed.problems))
    # Imported here: a tree without _fleet.yaml (most) spares ``validate`` building its schema.
    from syncd.policy_schema import policy_from_doc

    return policy_from_doc(doc, devices=devices)
