"""Which wave of a rollout each device belongs to.

Each device joins the first wave that matches it: device-name globs
(``fnmatchcase``), a ``percent`` of the devices no earlier wave took (rounded
up, at least one), or, with no selector, every device left. A percent wave
takes the devices that come first in one fixed order, the SHA-256 of the
device name, so it is the same set every time and barely moves as the fleet
grows or shrinks. Devices no wave matches go last, into :data:`UNMATCHED_WAVE`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from fnmatch import fnmatchcase

from syncd.policy import UNMATCHED_WAVE, Wave

__all__ = ["DEFAULT_WAVE", "assign_waves", "hash_rank", "wave_order"]

#: The one wave of a policy without waves.
DEFAULT_WAVE = "all"


def hash_rank(device: str) -> tuple[bytes, str]:
    """The key percent waves sort devices by: stable across runs, hosts and fleets."""
    return hashlib.sha256(device.encode("utf-8", "surrogatepass")).digest(), device


def wave_order(waves: Sequence[Wave]) -> tuple[str, ...]:
    """Every wave name a device can be given, in rollout order (the implicit ones too)."""
    if not waves:
        return (DEFAULT_WAVE,)
    names = tuple(w.name for w in waves)
    if waves[-1].devices is None and waves[-1].percent is None:
        return names
    return (*names, UNMATCHED_WAVE)


def assign_waves(devices: Iterable[str], waves: Sequence[Wave]) -> dict[str, str]:
    """Device name -> wave name, for every device; pass the whole fleet, not a subset.

    A percent wave's share is of the devices left, so assigning a subset (say,
    only the devices a commit changes) would pick a different share.
    """
    left = sorted(set(devices), key=hash_rank)
    if not waves:
        return dict.fromkeys(left, DEFAULT_WAVE)
    out: dict[str, str] = {}
    for wave in waves:
        if wave.devices is not None:
            globs = wave.devices
            taken = [d for d in left if any(fnmatchcase(d, g) for g in globs)]
        elif wave.percent is not None:
            taken = left[: -(-len(left) * wave.percent // 100)]  # rounded up
        else:
            taken = left
        out.update(dict.fromkeys(taken, wave.name))
        chosen = set(taken)
        left = [d for d in left if d not in chosen]
    out.update(dict.fromkeys(left, UNMATCHED_WAVE))
    return out
