"""Fault injection: make a device misbehave for its next N device-API requests.

A client's retry, timeout and error handling can only be tested against a
device that fails on cue. A :class:`Fault` says how (an HTTP error status, a
delay, a dropped connection, a connection that hangs, a malformed body, or a
``success: false`` rejection), for how many requests (or until cleared), and
optionally for which HTTP method and which path only. Faults queue up per
device and are consumed in order; admin requests (``/_emulator/...``) never
consume them.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Final, Literal, get_args

__all__ = ["FAULT_KINDS", "Fault", "FaultKind", "FaultQueue"]

FaultKind = Literal["status", "delay", "drop", "hang", "malformed", "reject"]
FAULT_KINDS: Final[tuple[str, ...]] = get_args(FaultKind)

#: The methods a fault may be limited to (any case): what a client of the device API sends.
_METHODS: Final = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")

DEFAULT_MALFORMED_BODY: Final = '{"success": true, "result": {"accounts": [{"account": 1, '


@dataclass(frozen=True)
class Fault:
    """One injected misbehaviour.

    ``status``: answer with HTTP ``status`` and ``body`` (default: the reason
    phrase as text/plain; a ``body`` that is JSON is sent as application/json).
    ``delay``: wait ``delay`` seconds, then answer normally. ``drop``: close
    the connection without answering. ``hang``: accept the request and never
    answer, as a powered-down site behind a router looks, until the device's
    faults are cleared (then the connection is closed unanswered) or the
    fleet stops. ``malformed``: HTTP 200 with a body that is not JSON
    (``body`` overrides it). ``reject``: ``success: false`` with
    ``code``/``param``/``description``, applying nothing.

    ``count``: how many requests the fault applies to (at least 1); ``None``
    (JSON ``null``) means every matching request until the faults are cleared.
    ``method`` (e.g. ``PUT``) and ``path`` (exact, e.g. ``/api/phone/status``)
    limit the requests that match; ``None`` matches all.
    """

    kind: FaultKind
    count: int | None = 1
    method: str | None = None
    path: str | None = None
    status: int = 503
    body: str | None = None
    delay: float = 1.0
    code: int = 14
    param: str = ""
    description: str | None = None

    def __post_init__(self) -> None:
        problems = [
            ("kind", self.kind in FAULT_KINDS, f"one of {', '.join(FAULT_KINDS)}"),
            (
                "count",
                self.count is None or (_is_int(self.count) and self.count >= 1),
                "an integer >= 1, or null for unlimited",
            ),
            (
                "method",
                self.method is None
                or (isinstance(self.method, str) and self.method.upper() in _METHODS),
                f"one of {', '.join(_METHODS)} or null",
            ),
            ("path", self.path is None or _is_path(self.path), "a path starting with / or null"),
            ("status", _is_int(self.status) and 100 <= self.status <= 599, "an HTTP status"),
            ("body", _is_optional_str(self.body), "a string or null"),
            ("delay", _is_seconds(self.delay), "a finite number of seconds >= 0"),
            ("code", _is_int(self.code), "an integer"),
            ("param", isinstance(self.param, str), "a string"),
            ("description", _is_optional_str(self.description), "a string or null"),
        ]
        for name, ok, expected in problems:
            if not ok:
                raise ValueError(f"fault {name} must be {expected}, not {getattr(self, name)!r}")
        if self.method is not None:
            object.__setattr__(self, "method", self.method.upper())

    @classmethod
    def from_json(cls, spec: object) -> Fault:
        """A fault from its JSON form (the admin endpoint's body); ``ValueError`` if wrong."""
        if not isinstance(spec, dict) or "kind" not in spec:
            raise ValueError('a fault is a JSON object with at least "kind"')
        unknown = set(spec) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown fault keys: {', '.join(sorted(unknown))}")
        return cls(**spec)

    def applies_to(self, method: str, path: str | None = None) -> bool:
        """Whether a request with this HTTP method (and path, if given) consumes the fault."""
        return (self.method is None or self.method == method) and (
            self.path is None or path is None or self.path == path
        )

    def to_json(self) -> dict[str, Any]:
        """The JSON form, as the admin endpoint lists it."""
        return asdict(self)

    @property
    def body_is_json(self) -> bool:
        """Whether ``body`` parses as JSON, so it is labelled application/json."""
        if self.body is None:
            return False
        try:
            json.loads(self.body)
        except ValueError:
            return False
        return True


class FaultQueue:
    """The pending faults of one device, consumed first-matching-first.

    Not thread-safe by itself: the owning device guards it with its lock.
    """

    def __init__(self) -> None:
        self._pending: list[Fault] = []

    def add(self, fault: Fault) -> None:
        """Queue ``fault`` behind the ones already pending."""
        self._pending.append(fault)

    def take(self, method: str, path: str | None = None) -> Fault | None:
        """Consume one request's worth of the first fault matching ``method`` and ``path``."""
        for index, fault in enumerate(self._pending):
            if fault.applies_to(method, path):
                if fault.count == 1:
                    del self._pending[index]
                elif fault.count is not None:
                    self._pending[index] = replace(fault, count=fault.count - 1)
                return fault
        return None

    def __bool__(self) -> bool:
        return bool(self._pending)

    def pending(self) -> list[Fault]:
        """The faults still queued, each with its remaining count."""
        return list(self._pending)

    def clear(self) -> None:
        """Drop every pending fault."""
        self._pending.clear()


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_path(value: object) -> bool:
    return isinstance(value, str) and value.startswith("/")


def _is_optional_str(value: object) -> bool:
    return value is None or isinstance(value, str)


def _is_seconds(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )
