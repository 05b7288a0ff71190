"""How the cluster's state store encodes its etcd values: compact JSON objects.

Decoding forgives: a value that is not a JSON object (or, for a device's
document, does not name its ``device``) reads as absent, so one damaged key
never stops a node from loading the rest.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = ["decode", "device_doc", "device_record", "encode"]


def encode(value: Mapping[str, Any]) -> bytes:
    """``value`` as compact JSON with sorted keys."""
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def decode(value: bytes | None) -> dict[str, Any] | None:
    """The JSON object in ``value``; None when there is none (deleted, damaged, not an object)."""
    if value is None:
        return None
    try:
        decoded = json.loads(value)
    except ValueError:
        return None
    return decoded if isinstance(decoded, dict) else None


def device_doc(value: bytes | None) -> dict[str, Any] | None:
    """A status or a report: a JSON object naming its ``device`` (None when it does not)."""
    doc = decode(value)
    return doc if doc is not None and isinstance(doc.get("device"), str) else None


def device_record(value: bytes | None) -> dict[str, Any] | None:
    """A device's records (a damaged ``passwords`` or ``targets`` reads as empty)."""
    record = decode(value)
    if record is None or not isinstance(record.get("device"), str):
        return None
    for key in ("passwords", "targets"):
        if not isinstance(record.get(key), dict):
            record[key] = {}  # damaged: as if never applied
    return record
