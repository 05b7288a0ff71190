"""``syncd export``: read live devices, write desired-state YAML that matches them.

:mod:`~syncd.export.request` holds the typed request the CLI builds,
:mod:`~syncd.export.targets` which devices and files, :mod:`~syncd.export.render`
the YAML (pure), :mod:`~syncd.export.run` the reading and writing.
"""

from __future__ import annotations

from syncd.export.render import PASSWORD_HINT, yaml_string
from syncd.export.request import ExportError, ExportRequest
from syncd.export.run import export_command, write_new_file

__all__ = [
    "PASSWORD_HINT",
    "ExportError",
    "ExportRequest",
    "export_command",
    "write_new_file",
    "yaml_string",
]
