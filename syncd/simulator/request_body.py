"""Reading the ``blob-json`` parameter out of a request body, however it travelled.

The manual sends ``blob-`` parameters as a ``multipart/form-data`` part; some
firmware also takes the JSON as a raw ``application/json`` body. Both arrive
here and leave as one :class:`ReceivedBody`, parsed once, which the journal
records and the PUT handler validates. :func:`read_body` is the whole of it,
for either server that received the bytes (:mod:`syncd.simulator.front_door`
for a body it read itself, :func:`receive_body` for aiohttp's). The multipart
part is found by the ``multipart`` package's push parser: aiohttp's reader
spent ~0.35 ms of this machine's CPU per PUT in ``Content-Disposition``
regular expressions, on a benchmark where the emulator shares two cores with
the syncd it stands in for.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

import multipart
from aiohttp import web

from syncd.simulator.blob import BLOB, MAX_BLOB_BYTES
from syncd.simulator.journal import BodyFormat

__all__ = ["MAX_REQUEST_BYTES", "NO_BODY", "ReceivedBody", "read_body", "receive_body"]

#: The largest request body either server reads; a longer one is "too big" unread.
MAX_REQUEST_BYTES: Final = 1024 * 1024

_NOT_JSON: Final = object()


@dataclass(frozen=True)
class ReceivedBody:
    """The ``blob-json`` parameter of one request.

    ``text`` is ``None`` when the parameter is absent; ``too_big`` when it
    exceeded 64 KiB (then ``text`` is ``None`` too); ``document`` is the parsed
    JSON when ``is_json``.
    """

    format: BodyFormat
    text: str | None = None
    document: Any = None
    is_json: bool = False
    too_big: bool = False


NO_BODY: Final = ReceivedBody(format="none")


def read_body(content_type: str, raw: bytes | None) -> ReceivedBody:
    """The ``blob-json`` parameter of a body ``raw`` sent as ``content_type``.

    ``raw`` is ``None`` for a body over :data:`MAX_REQUEST_BYTES`, left unread.
    """
    media = content_type.partition(";")[0].strip().lower()
    body_format: BodyFormat
    if media == "multipart/form-data":
        body_format = "multipart"
        if raw is not None:
            raw = _multipart_blob(content_type, raw)
            if raw is None:
                return ReceivedBody(format=body_format)
    elif media == "application/json":
        body_format = "json"
    else:
        return ReceivedBody(format="other")
    if raw is None or len(raw) > MAX_BLOB_BYTES:
        return ReceivedBody(format=body_format, too_big=True)
    text = raw.decode("utf-8", errors="replace")
    document = _parse_json(raw)
    if document is _NOT_JSON:
        return ReceivedBody(format=body_format, text=text)
    return ReceivedBody(format=body_format, text=text, document=document, is_json=True)


async def receive_body(request: web.Request) -> ReceivedBody:
    """Read and parse the ``blob-json`` parameter of an aiohttp ``request``, if it has one."""
    if not request.body_exists:
        return NO_BODY
    try:
        raw: bytes | None = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raw = None
    return read_body(request.headers.get("Content-Type", ""), raw)


def _multipart_blob(content_type: str, raw: bytes) -> bytes | None:
    """The ``blob-json`` part of a multipart body; ``None`` when absent or unreadable."""
    boundary = multipart.parse_options_header(content_type)[1].get("boundary")
    if not boundary:
        return None
    found: list[bytes] = []
    name = None
    try:
        # The first complete blob-json part counts, as aiohttp's reader had it:
        # what follows it (even a missing closing boundary) is not read.
        for event in multipart.PushMultipartParser(boundary, len(raw)).parse(raw):
            if isinstance(event, multipart.MultipartSegment):
                name, found = event.name, []
            elif event is None:
                if name == BLOB:
                    return b"".join(found)
            elif name == BLOB:
                found.append(event)
    except multipart.MultipartError:
        return None
    return None


def _parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return _NOT_JSON
