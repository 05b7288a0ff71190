"""syncd: keep the SIP accounts of 2N IP intercoms equal to a Git repo of YAML."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.2.0"
