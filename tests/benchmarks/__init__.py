"""Performance benchmark of syncd against ``syncd simulate``; see :mod:`tests.benchmarks.fleet`."""
