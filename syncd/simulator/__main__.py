"""``python -m syncd.simulator``: the same as ``syncd simulate``."""

from __future__ import annotations

from syncd.simulator.cli import main

raise SystemExit(main())
