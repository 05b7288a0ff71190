"""The blob-json parameter read out of a body: the pure reader both emulator servers share."""

from __future__ import annotations

import json

import pytest

from syncd.simulator.request_body import MAX_REQUEST_BYTES, read_body

BLOB = json.dumps({"accounts": [{"account": 1, "displayName": "Door 5"}]})
DOCUMENT = json.loads(BLOB)
TYPE = "multipart/form-data; boundary=b0undary"


def multipart(*parts: tuple[str, str], closed: bool = True) -> bytes:
    """A multipart body of ``(name, value)`` parts, each a form-data field."""
    body = "".join(
        f'--b0undary\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in parts
    )
    return (body + ("--b0undary--\r\n" if closed else "")).encode()


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        (TYPE, multipart(("blob-json", BLOB))),
        (TYPE, multipart(("other", "x"), ("blob-json", BLOB), ("after", "y"))),
        ('Multipart/Form-Data; BOUNDARY="b0undary"; charset=utf-8', multipart(("blob-json", BLOB))),
        ("application/json", BLOB.encode()),
        ("Application/JSON; charset=utf-8", BLOB.encode()),
    ],
)
def test_the_blob_is_found(content_type: str, body: bytes) -> None:
    """The blob is found as multipart (any part, any case of the media type) or raw JSON."""
    got = read_body(content_type, body)
    assert (got.text, got.document, got.is_json, got.too_big) == (BLOB, DOCUMENT, True, False)
    assert got.format == ("json" if "json" in content_type.lower() else "multipart")


@pytest.mark.parametrize(
    "body",
    [
        multipart(("other", BLOB)),
        multipart(("blob-json", BLOB), closed=False),
        b"not multipart at all",
        b"",
    ],
)
def test_a_multipart_body_without_a_readable_blob_has_none(body: bytes) -> None:
    """No blob-json part, a part cut short, or garbage: the parameter is absent (code 11)."""
    got = read_body(TYPE, body)
    assert (got.format, got.text, got.too_big) == ("multipart", None, False)


def test_a_multipart_type_without_a_boundary_has_no_blob() -> None:
    got = read_body("multipart/form-data", multipart(("blob-json", BLOB)))
    assert (got.format, got.text) == ("multipart", None)


def test_text_that_is_not_json_is_kept_as_text() -> None:
    got = read_body(TYPE, multipart(("blob-json", "{not json")))
    assert (got.text, got.is_json, got.document) == ("{not json", False, None)


@pytest.mark.parametrize("content_type", [TYPE, "application/json"])
def test_too_big(content_type: str) -> None:
    """A blob over 64 KiB, or a body over the read limit (None), is too big: code 13."""
    big = "x" * (64 * 1024 + 1)
    body = multipart(("blob-json", big)) if content_type == TYPE else big.encode()
    assert read_body(content_type, body).too_big
    assert read_body(content_type, None).too_big
    assert MAX_REQUEST_BYTES > 64 * 1024


def test_another_media_type_is_other_whatever_the_body() -> None:
    assert read_body("text/plain", BLOB.encode()).format == "other"
    assert read_body("", None).format == "other"
