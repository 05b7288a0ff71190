"""Device names in a log line or a sentence: each of them up to a bound, then a count.

A wave of 10,000 devices named in one JSON line is ~230 KB. journald cuts a
line longer than its ``LineMax`` (48 KiB by default) into several records,
none of them valid JSON, so the alert rules that read the event never see
it; on a terminal it scrolls the rest away. A list of names therefore holds
at most :data:`LISTED` of them, in their order, and says how many it left
out; ``syncd status`` shows every device.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["LISTED", "first_names", "in_words"]

#: Names a log field or a sentence lists before it counts the rest (~2.5 KB of JSON).
LISTED = 100


def first_names(names: Iterable[str], limit: int = LISTED) -> tuple[list[str], int]:
    """The first ``limit`` of ``names``, and how many more there are."""
    listed = list(names)
    return listed[:limit], max(0, len(listed) - limit)


def in_words(names: Iterable[str], limit: int = LISTED) -> str:
    """``a, b, c`` — or ``a, b and 9,998 more`` past ``limit`` names."""
    shown, more = first_names(names, limit)
    return ", ".join(shown) + (f" and {more:,} more" if more else "")
