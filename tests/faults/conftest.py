"""Fault-tolerance tests: the e2e fixtures (emulated fleets, ``syncd run`` subprocesses)."""

from tests.e2e.conftest import daemon, sim  # noqa: F401
