"""HTTP authentication against 2N firmware: Basic, and Digest as firmware does it.

httpx's ``DigestAuth`` already keeps the last challenge (so a device is not
challenged on every request), picks the ``Digest`` one among several
``WWW-Authenticate`` headers, and answers one 401 with the fresh challenge.
Firmware that rotates its nonces can answer that retry ``stale=true`` again
(two requests sharing one nonce, the nonce used up by the other), and
``stale=true`` says the credentials were right: :class:`~syncd.http_digest.FirmwareDigestAuth`
answers each such challenge once more, a bounded number of times, so a
rotating nonce never surfaces as an authentication failure.

:func:`method_mismatch` reads a final 401 for the other way a device and a
desired state can disagree: the device offers no challenge of the method the
desired state names.

httpx (and the ``urllib.request`` its Digest flow parses with) is imported
with :mod:`syncd.http_digest`, when a device file names Digest credentials: a
fleet without them never loads either (unless an answer is a 401 or
compressed, whose headers and body httpx's model reads).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from syncd.model import AuthMethod, AuthSpec

if TYPE_CHECKING:
    import httpx

    from syncd.http_digest import FirmwareDigestAuth

__all__ = [
    "challenge_schemes",
    "digest_auth",
    "has_credentials",
    "method_mismatch",
    "missing_credentials",
]

_SCHEME_NAMES = {"basic": "Basic", "digest": "Digest"}


def challenge_schemes(headers: httpx.Headers) -> list[str]:
    """The schemes of an answer's ``WWW-Authenticate`` challenges, lower-case, in order."""
    schemes = []
    for header in headers.get_list("www-authenticate"):
        scheme = header.strip().partition(" ")[0].lower()
        if scheme:
            schemes.append(scheme)
    return schemes


def method_mismatch(method: AuthMethod, headers: httpx.Headers) -> str | None:
    """Why a final 401 means the device wants another method than ``method``, if it does.

    Only a device that names its methods and names none of ``method``'s
    disagrees with the desired state; a 401 that offers ``method`` is a
    refusal of the credentials.
    """
    offered = challenge_schemes(headers)
    if not offered or method.value in offered:
        return None
    asked = " or ".join(_SCHEME_NAMES.get(s, s) for s in dict.fromkeys(offered))
    return f"the device asked for {asked} authentication but the desired state names {method.value}"


def missing_credentials(headers: httpx.Headers) -> str:
    """Why a 401 fails a device whose desired state gives no credentials (no ``auth:``)."""
    asked = " or ".join(_SCHEME_NAMES.get(s, s) for s in dict.fromkeys(challenge_schemes(headers)))
    what = f"{asked} authentication" if asked else "credentials"
    return (
        f"the device asks for {what} and the desired state gives none: "
        "write device.auth with its method, username and password"
    )


def has_credentials(auth: AuthSpec) -> bool:
    """Whether ``auth`` names a username or a password (a file without ``auth:`` names neither)."""
    return auth.username is not None or auth.password is not None


def digest_auth(auth: AuthSpec) -> FirmwareDigestAuth | None:
    """httpx's Digest flow for ``auth``, if it names Digest; one per device, to keep its nonce."""
    if auth.method is not AuthMethod.DIGEST or not has_credentials(auth):
        return None  # no credentials: a challenge is answered with a sentence, not an empty name
    from syncd.http_digest import FirmwareDigestAuth

    username = auth.username or ""
    password = auth.password.get_secret_value() if auth.password else ""
    return FirmwareDigestAuth(username, password)
