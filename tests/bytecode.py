"""Compile syncd's modules once, as ``pip install .`` does, where nothing else would.

The suite and the benchmarks start syncd as a subprocess hundreds of times
(the daemon, a command, the emulator). In an editable install under
``PYTHONDONTWRITEBYTECODE`` (the quick start's on a machine that sets it) no
process may write bytecode, so every one of those starts compiled syncd's
modules again, a cost an installed syncd never pays: about 0.3 s of CPU each
on a slow day, a quarter of the suite's time; 0.13 s of an empty ``syncd
apply``'s 0.43 s on a fast one. Compiled once, into the ``__pycache__`` folders Git ignores, they
start as an installed syncd does. A checkout that may not be written to stays
as it is (``quiet=2``: a file that cannot be written is no error here).
"""

from __future__ import annotations

import compileall
import sys
from pathlib import Path

__all__ = ["compile_syncd"]

SYNCD_PACKAGE = Path(__file__).resolve().parents[1] / "syncd"


def compile_syncd() -> None:
    """Write syncd's bytecode where this process may not (``PYTHONDONTWRITEBYTECODE``)."""
    if sys.dont_write_bytecode:
        compileall.compile_dir(SYNCD_PACKAGE, quiet=2)
