"""HTTP authentication against 2N firmware: Basic, and Digest as firmware does it.

httpx's ``DigestAuth`` already keeps the last challenge (so a device is not
challenged on every request), picks the ``Digest`` one among several
``WWW-Authenticate`` headers, and answers one 401 with the fresh challenge.
Firmware that rotates its nonces can answer that retry ``stale=true`` again
(two requests sharing one nonce, the nonce used up by the other), and
``stale=true`` says the credentials were right: :class:`FirmwareDigestAuth`
answers each such challenge once more, a bounded number of times, so a
rotating nonce never surfaces as an authentication failure.

:func:`method_mismatch` reads a final 401 for the other way a device and a
desired state can disagree: the device offers no challenge of the method the
desired state names.
"""

from __future__ import annotations

from collections.abc import Generator
from urllib.request import parse_http_list

import httpx

from syncd.model import AuthMethod, AuthSpec

__all__ = [
    "FirmwareDigestAuth",
    "challenge_schemes",
    "digest_auth",
    "has_credentials",
    "method_mismatch",
    "missing_credentials",
]

_SCHEME_NAMES = {"basic": "Basic", "digest": "Digest"}


class FirmwareDigestAuth(httpx.DigestAuth):
    """Digest that answers every ``stale=true`` challenge with its fresh nonce.

    The first 401 of a request is answered as httpx does (the cached nonce may
    have expired without the device saying ``stale``); after that only a
    ``stale=true`` challenge is answered, at most ``stale_answers`` times, so a
    wrong password still costs a bounded number of round trips.
    """

    stale_answers = 3

    @property
    def challenged(self) -> bool:
        """Whether a challenge is kept, so the next request carries credentials up front."""
        return self._last_challenge is not None

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        flow = super().auth_flow(request)
        response = yield next(flow)
        try:
            retry = flow.send(response)
        except StopIteration:
            return
        response = yield retry
        for _ in range(self.stale_answers):
            header = _stale_digest_challenge(response)
            if header is None:
                return
            # Private to httpx, but stable since its first DigestAuth: the parsed
            # challenge and the nonce count that goes with it.
            self._last_challenge = self._parse_challenge(request, response, header)
            self._nonce_count = 1
            request.headers["Authorization"] = self._build_auth_header(
                request, self._last_challenge
            )
            response = yield request


def _stale_digest_challenge(response: httpx.Response) -> str | None:
    if response.status_code != 401:
        return None
    for header in response.headers.get_list("www-authenticate"):
        scheme, _, params = header.strip().partition(" ")
        if scheme.lower() == "digest" and _is_stale(params):
            return header
    return None


def _is_stale(params: str) -> bool:
    for item in parse_http_list(params):
        key, _, value = item.strip().partition("=")
        if key.strip().lower() == "stale":
            return value.strip().strip('"').lower() == "true"
    return False


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
    username = auth.username or ""
    password = auth.password.get_secret_value() if auth.password else ""
    return FirmwareDigestAuth(username, password)
