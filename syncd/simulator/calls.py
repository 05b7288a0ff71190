"""The calls a device is in, as ``GET /api/call/status`` lists them.

Calls are started and ended by tests and the demo (admin endpoints or Python
methods); nothing on the device API starts one. Not thread-safe by itself: the
owning device guards it with its lock.
"""

from __future__ import annotations

from typing import Final, Literal, TypedDict, cast, get_args

__all__ = ["CALL_STATES", "DIRECTIONS", "CallDirection", "CallState", "CallTable", "Session"]

CallDirection = Literal["incoming", "outgoing"]
CallState = Literal["connecting", "ringing", "connected"]
DIRECTIONS: Final[tuple[str, ...]] = get_args(CallDirection)
CALL_STATES: Final[tuple[str, ...]] = get_args(CallState)


class Session(TypedDict):
    """One entry of ``sessions``."""

    session: int
    direction: CallDirection
    state: CallState


class CallTable:
    """Active calls, numbered from 1 per device in the order they started."""

    __slots__ = ("_next", "_sessions")

    def __init__(self) -> None:
        self._sessions: list[Session] = []
        self._next = 1

    def start(self, *, direction: str, state: str) -> Session:
        """A new active call; ``ValueError`` for an unknown direction or state."""
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}, not {direction!r}")
        if state not in CALL_STATES:
            raise ValueError(f"state must be one of {', '.join(CALL_STATES)}, not {state!r}")
        session = Session(
            session=self._next,
            direction=cast(CallDirection, direction),
            state=cast(CallState, state),
        )
        self._next += 1
        self._sessions.append(session)
        return Session(**session)

    def end_all(self) -> int:
        """End every call; return how many there were."""
        ended = len(self._sessions)
        self._sessions.clear()
        return ended

    def sessions(self) -> list[Session]:
        """The active calls, copies."""
        return [Session(**s) for s in self._sessions]
