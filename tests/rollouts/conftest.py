"""Rollout tests reuse the end-to-end fixtures: emulated fleets in threads, syncd as a subprocess."""

from __future__ import annotations

from tests.e2e.conftest import daemon, sim

__all__ = ["daemon", "sim"]
