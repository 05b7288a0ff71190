"""What a device's answer means: its ``result``, or the error class that says what to do.

Every failure surfaces as a :class:`DeviceError` whose class says what to do
about it: retry (:class:`TransportError`), wait for the desired state to
change (:class:`RejectedError`), or wait for the credentials to change
(:class:`AuthError`). No message, repr or attribute carries a secret.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = [
    "AUTH_CODES",
    "REJECT_CODES",
    "ApiError",
    "AuthError",
    "DeviceError",
    "RejectedError",
    "TlsError",
    "TransportError",
    "cannot_report",
    "unwrap",
]

#: Codes meaning "these credentials may not do this": back off until they change.
AUTH_CODES = frozenset({8, 9, 10})
#: Codes meaning "this request is wrong": do not repeat it unchanged.
REJECT_CODES = frozenset({11, 12, 13})
#: Codes of a device that cannot report a status (no such function, no privilege).
CANNOT_REPORT_CODES = frozenset({1, 4, 10})

_CODE_NAMES = {
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


class DeviceError(Exception):
    """Something went wrong talking to one device; ``str()`` is one clear sentence."""

    kind = "device"

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        param: str | None = None,
        description: str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.param = param
        self.description = description
        self.status = status

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, code={self.code!r}, param={self.param!r})"


class TransportError(DeviceError):
    """No usable answer: refused, reset, timed out, HTTP 5xx, or a body that is not JSON."""

    kind = "transport"


class TlsError(TransportError):
    """The device's certificate failed verification; retrying will not help."""

    kind = "tls"


class ApiError(DeviceError):
    """The device answered ``success: false``."""

    kind = "api"


class RejectedError(ApiError):
    """The device refused the request itself (codes 11, 12, 13, and others)."""

    kind = "rejected"


class AuthError(ApiError):
    """The credentials were refused or lack a privilege (codes 8, 9, 10)."""

    kind = "auth"


def unwrap(url: str, status: int, content: bytes) -> Any:
    """The ``result`` of a device's answer, or the :class:`DeviceError` it means."""
    if status >= 500:
        raise TransportError(f"{url} answered HTTP {status}", status=status)
    try:
        body = json.loads(content)
    except ValueError:
        if status == 401:
            raise AuthError(
                f"{url} refused the credentials (HTTP 401)", code=9, status=status
            ) from None
        raise TransportError(
            f"{url} answered HTTP {status} with a body that is not JSON", status=status
        ) from None
    if not isinstance(body, dict) or "success" not in body:
        raise TransportError(f"{url} answered JSON without a success flag", status=status)
    if body["success"] is True:
        if status != 200:
            raise TransportError(f"{url} answered HTTP {status}", status=status)
        return body.get("result")
    raw_error = body.get("error")
    error: dict[str, Any] = raw_error if isinstance(raw_error, dict) else {}
    code = error.get("code") if isinstance(error.get("code"), int) else None
    param = error.get("param") if isinstance(error.get("param"), str) else None
    description = error.get("description") if isinstance(error.get("description"), str) else None
    what = description or _CODE_NAMES.get(code or 0) or "request refused"
    message = f"{url} refused the request: {what} (code {code}"
    message += f", param {param})" if param else ")"
    cls = AuthError if (code in AUTH_CODES or status == 401) else RejectedError
    raise cls(message, code=code, param=param, description=description, status=status)


def cannot_report(error: DeviceError) -> bool:
    """The device refused a status read because it cannot give it (codes 1, 4, 10): not a
    transient failure, and no answer to read anything into."""
    return isinstance(error, ApiError) and error.code in CANNOT_REPORT_CODES
