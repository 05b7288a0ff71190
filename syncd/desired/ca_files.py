"""Check the caFiles the desired state names, for ``syncd validate`` (reads files).

A device's ``tls.caFile`` (relative paths are under the desired dir) must be a
readable file holding a PEM certificate, or every request to the device fails.
A problem is reported where ``caFile`` is written (the device file or the
``_defaults.yaml`` it comes from), once per place. An absolute path that does
not exist is a file of the management host, which CI does not have: it is
checked only when asked (``--resolve-secrets``), as secrets are.
"""

from __future__ import annotations

import os
from pathlib import Path

from syncd.desired.locate import locate
from syncd.desired.result import DesiredState, FileFailed, Problem
from syncd.desired.tree import read_doc
from syncd.desired.yamldoc import YamlMap
from syncd.model import DeviceSpec
from syncd.secrets import SecretRef
from syncd.tls import ca_file_problem

__all__ = ["ca_file_problems"]

_KEY = ("device", "tls", "caFile")


def ca_file_problems(desired: DesiredState, *, host_files: bool) -> list[Problem]:
    """A problem for each place naming a caFile that cannot serve; ``host_files``: an
    absolute caFile missing here is a problem too (else it may be on another host)."""
    verdicts: dict[str, str | None] = {}
    problems: list[Problem] = []
    for spec in desired.devices.values():
        written = spec.tls.ca_file
        if not spec.tls.verify or not written:
            continue  # with verify off the caFile is not used
        path = os.path.join(desired.root, written)
        if not host_files and os.path.isabs(written) and not os.path.lexists(path):
            continue
        if path not in verdicts:
            verdicts[path] = ca_file_problem(path)
        problem = verdicts[path]
        if problem is not None:
            file, line = _written_at(desired.root, spec)
            problems.append(Problem(file, line, ".".join(_KEY), f"{written} {problem}"))
    return list(dict.fromkeys(problems))


def _written_at(root: Path, spec: DeviceSpec[SecretRef]) -> tuple[str, int]:
    """The file and line of the ``caFile`` in force: the device file's, else the nearest
    ``_defaults.yaml``'s (read again: only for a device whose caFile cannot serve)."""
    for source in reversed(spec.sources):
        path = root / source
        try:
            doc = read_doc(path, source, path.stat().st_size)
        except (FileFailed, OSError):
            continue
        node = doc
        for key in _KEY:
            node = node.get(key) if isinstance(node, YamlMap) else None
        if node is not None:
            pos, _ = locate(doc, _KEY, source)
            return pos.file, pos.line
    return spec.file, 1
