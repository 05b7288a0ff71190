"""Digest as 2N firmware does it: httpx's flow, answering every ``stale=true`` challenge.

Imported when a device file names Digest credentials
(:func:`syncd.http_auth.digest_auth`): httpx and ``urllib.request`` are a
tenth of a second of start-up that a fleet without them never pays.
"""

from __future__ import annotations

from collections.abc import Generator
from urllib.request import parse_http_list

import httpx

__all__ = ["FirmwareDigestAuth"]


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
