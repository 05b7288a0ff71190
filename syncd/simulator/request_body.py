"""Reading the ``blob-json`` parameter out of a request, however it travelled.

The manual sends ``blob-`` parameters as a ``multipart/form-data`` part; some
firmware also takes the JSON as a raw ``application/json`` body. Both arrive
here and leave as one :class:`ReceivedBody`, read once and parsed once, which
the journal records and the PUT handler validates. The multipart part is read
in chunks and abandoned past the size limit, so an oversized upload costs
little.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import BodyPartReader, web

from syncd.simulator.blob import BLOB, MAX_BLOB_BYTES
from syncd.simulator.journal import BodyFormat

__all__ = ["ReceivedBody", "receive_body"]

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


async def receive_body(request: web.Request) -> ReceivedBody:
    """Read and parse the ``blob-json`` parameter of ``request``, if it has one."""
    if not request.body_exists:
        return NO_BODY
    # The media type alone (aiohttp's content_type parses the parameters through
    # the email package: most of the emulator's CPU for a PUT; multipart() still
    # reads the boundary itself).
    content_type = request.headers.get("Content-Type", "").partition(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        body_format: BodyFormat = "multipart"
        try:
            raw = await _multipart_blob(request)
        except ValueError:
            raw = None
    elif content_type == "application/json":
        body_format = "json"
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return ReceivedBody(format=body_format, too_big=True)
    else:
        return ReceivedBody(format="other")
    if raw is None:
        return ReceivedBody(format=body_format)
    if len(raw) > MAX_BLOB_BYTES:
        return ReceivedBody(format=body_format, too_big=True)
    text = raw.decode("utf-8", errors="replace")
    document = _parse_json(raw)
    if document is _NOT_JSON:
        return ReceivedBody(format=body_format, text=text)
    return ReceivedBody(format=body_format, text=text, document=document, is_json=True)


async def _multipart_blob(request: web.Request) -> bytes | None:
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if isinstance(part, BodyPartReader) and part.name == BLOB:
            data = bytearray()
            while not part.at_eof():
                data += await part.read_chunk()
                if len(data) > MAX_BLOB_BYTES:
                    return bytes(data)
            return bytes(part.decode(data))
    return None


def _parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return _NOT_JSON
