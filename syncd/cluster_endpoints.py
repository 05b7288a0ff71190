"""``cluster_endpoints``, read: comma-separated ``http(s)://HOST:PORT`` etcd endpoints.

Apart from :mod:`syncd.cluster` (whose import brings in gRPC), so the settings can check
the value as they load, naming where it came from, before gRPC is configured.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

from syncd.secrets import hide_credentials

__all__ = ["parse_endpoints"]


def parse_endpoints(text: str | Sequence[str]) -> tuple[str, ...]:
    """Comma-separated ``http(s)://HOST:PORT`` endpoints; ValueError in one sentence."""
    items = text.split(",") if isinstance(text, str) else list(text)
    endpoints = tuple(item.strip().rstrip("/") for item in items if item.strip())
    if not endpoints:
        raise ValueError("cluster_endpoints names no endpoint")
    schemes = set()
    for endpoint in endpoints:
        parts = urlsplit(endpoint)
        try:
            port = parts.port
        except ValueError:
            port = None
        if parts.scheme not in ("http", "https") or not parts.hostname or port is None:
            raise ValueError(f"cluster_endpoints: {_shown(endpoint)} is not http(s)://HOST:PORT")
        if parts.path or parts.query or parts.username:
            raise ValueError(f"cluster_endpoints: {_shown(endpoint)} is not http(s)://HOST:PORT")
        schemes.add(parts.scheme)
    if len(schemes) > 1:
        raise ValueError("cluster_endpoints mixes http:// and https:// endpoints")
    return endpoints


def _shown(endpoint: str) -> str:
    return repr(hide_credentials(endpoint))
