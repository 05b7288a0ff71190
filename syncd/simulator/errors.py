"""The 2N error envelope: numbered error codes and the JSON that carries them.

A device answers a failed call with ``{"success": false, "error": {...}}``; the
code numbers are part of the contract (SPEC section 1), so they live in one table.
Raising :class:`ApiError` anywhere in request handling produces that envelope.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DESCRIPTIONS", "ApiError", "AuthRequired", "envelope"]

DESCRIPTIONS: dict[int, str] = {
    1: "function not supported",
    2: "invalid path",
    3: "invalid method",
    4: "function disabled",
    5: "function licensed",
    7: "HTTPS required",
    8: "invalid authentication method",
    9: "authorisation required",
    10: "insufficient privileges",
    11: "missing mandatory parameter",
    12: "invalid parameter value",
    13: "parameter data too big",
    14: "unspecified processing error",
    15: "no data available",
}


class ApiError(Exception):
    """A call the device refuses; becomes the ``success: false`` envelope."""

    def __init__(self, code: int, param: str = "", *, description: str | None = None) -> None:
        self.code = code
        self.param = param
        self.description = description or DESCRIPTIONS.get(code, "error")
        super().__init__(f"code {code} {param!r}: {self.description}")


class AuthRequired(ApiError):
    """Code 8 or 9: answered with HTTP 401 and a fresh ``WWW-Authenticate`` challenge.

    ``stale`` marks a Digest answer whose credentials were right but whose nonce
    had expired, so a client may retry at once without asking its user.
    """

    def __init__(self, code: int = 9, *, stale: bool = False) -> None:
        super().__init__(code)
        self.stale = stale


def envelope(error: ApiError) -> dict[str, Any]:
    """The JSON body a device sends for ``error``."""
    return {
        "success": False,
        "error": {"code": error.code, "param": error.param, "description": error.description},
    }
