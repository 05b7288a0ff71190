"""One version: the installed package's metadata is built from ``syncd.__version__``.

The User-Agent, ``syncd --version`` and ``daemon.started`` read ``__version__``
(reading the metadata back cost every connection pool a scan of ``sys.path``);
``pyproject.toml`` takes its version from there, so they cannot drift apart.
"""

from __future__ import annotations

from importlib import metadata

import syncd
from syncd.client import user_agent


def test_the_installed_metadata_carries_the_package_version() -> None:
    assert metadata.version("syncd") == syncd.__version__


def test_the_user_agent_names_that_version_and_the_cluster_node() -> None:
    assert user_agent() == f"syncd/{syncd.__version__}"
    assert user_agent("node-b") == f"syncd/{syncd.__version__} (node-b)"
