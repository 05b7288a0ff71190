"""The journal: what a device received on its API, and what it answered.

Tests of a client need to see the requests themselves: that a PUT carried only
the changed fields, that a password was sent once and only once, that the blob
travelled as multipart. Entries keep the blob exactly as received, password
included; this is a test tool and the passwords are test values.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

__all__ = ["BodyFormat", "JournalEntry"]

BodyFormat = Literal["none", "multipart", "json", "other"]


@dataclass(frozen=True)
class JournalEntry:
    """One device-API request.

    ``content_type`` is the Content-Type header as sent ("" if none);
    ``body_format`` says how the blob travelled (``multipart`` part, raw
    ``json`` body, ``other`` content, or ``none``); ``blob`` is the parsed JSON
    of the ``blob-json`` parameter, ``None`` when absent or not JSON, and
    ``blob_text`` its text. ``status`` is the HTTP status answered (``None``
    when the connection was dropped), ``code`` the error code of a
    ``success: false`` answer, and ``fault`` the kind of fault injected, if any.
    ``user_agent`` is the User-Agent header ("" if none); ``peer`` the
    client's address and port, the same for requests on one connection. ``started`` is when
    the request arrived (``time.time()``, the same as ``time``) and
    ``finished`` when its answer was complete and about to be sent, after
    any latency, delay and state change: two requests whose windows
    ``[started, finished]`` do not overlap were handled one after the other.
    """

    time: float
    method: str
    path: str
    query: dict[str, str]
    content_type: str
    body_format: BodyFormat
    blob_text: str | None
    blob: Any
    status: int | None
    code: int | None
    fault: str | None
    user_agent: str = ""
    peer: str = ""
    started: float = 0.0
    finished: float = 0.0

    @property
    def multipart(self) -> bool:
        """Whether the blob came as a ``multipart/form-data`` part."""
        return self.body_format == "multipart"

    def to_json(self) -> dict[str, Any]:
        """The JSON form, as the admin endpoint lists it."""
        return asdict(self)
