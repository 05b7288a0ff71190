"""Which live node owns a device: rendezvous (highest-random-weight) hashing.

Every node computes the same answer from the same member set, with no
coordination: the owner of a device is the member with the highest weight
``blake2b(member, device)``. Adding a node moves to it only the devices it now
wins (about 1/n of them); losing a node moves only the devices it owned.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection

__all__ = ["owner_of", "weight"]


def weight(member: str, device: str) -> int:
    """A stable 64-bit weight of one (member, device) pair, the same on every host."""
    digest = hashlib.blake2b(digest_size=8)
    digest.update(member.encode())
    digest.update(b"\0")
    digest.update(device.encode())
    return int.from_bytes(digest.digest(), "big")


def owner_of(device: str, members: Collection[str]) -> str | None:
    """The member owning ``device``; None when there is no member.

    Ties (astronomically rare) go to the greater member name, so the answer
    never depends on the order of ``members``.
    """
    if not members:
        return None
    return max(members, key=lambda member: (weight(member, device), member))
