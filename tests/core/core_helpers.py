"""Plain helpers for the core tests (fixtures built on them live in conftest.py)."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from pathlib import Path

from syncd.desired import DesiredState, Problem

#: A minimal valid device file body, for trees that need a good neighbour.
GOOD = """\
device:
  url: https://192.0.2.10
accounts:
  - account: 1
    displayName: Lobby door
"""


def write_tree(root: Path, files: Mapping[str, str | bytes]) -> Path:
    """Write ``files`` (relative path -> text, dedented, or raw bytes) under ``root``."""
    for rel, body in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(body, bytes):
            path.write_bytes(body)
        else:
            path.write_text(textwrap.dedent(body), encoding="utf-8")
    return root


def device(url: str = "https://192.0.2.10", extra: str = "", accounts: str = "") -> str:
    """A device file: line 1 ``device:``, line 2 ``url:``, then ``extra`` under device:.

    ``accounts`` lines go under a top-level ``accounts:`` written after them.
    """
    body = f"device:\n  url: {url}\n"
    body += textwrap.indent(textwrap.dedent(extra), "  ") if extra else ""
    if accounts:
        body += "accounts:\n" + textwrap.indent(textwrap.dedent(accounts), "  ")
    return body


def only_error(state: DesiredState) -> Problem:
    """The single error in ``state``; fails the test when there are none or several."""
    errors = state.errors
    assert len(errors) == 1, [str(p) for p in errors]
    return errors[0]
