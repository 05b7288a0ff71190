"""HTTP authentication of the device API: none, Basic, or Digest (RFC 7616, MD5, qop=auth).

Digest is the 2N default and the one with a failure mode clients must survive: a
nonce that expired between two requests. The device then answers 401 with
``stale=true`` although the credentials were right, and a client should retry
with the new nonce instead of reporting bad credentials. :class:`NonceStore`
keeps each device's nonces so tests can expire them on demand.

The ``Authorization`` header is split with the stdlib's ``parse_http_list`` and
``parse_keqv_list`` rather than by hand. Nonce counts are not checked for
replay: clients that pipeline requests on one nonce may legitimately send them
out of order, and this emulator guards nothing worth replaying.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal
from urllib.request import parse_http_list, parse_keqv_list

from syncd.simulator.errors import ApiError, AuthRequired

__all__ = ["AuthMethod", "AuthPolicy", "NonceStore", "Privilege", "User", "authorize", "challenge"]

AuthMethod = Literal["none", "basic", "digest"]
Privilege = Literal["monitoring", "management"]

_DIGEST_KEYS: Final = frozenset(
    {"username", "realm", "nonce", "uri", "response", "qop", "nc", "cnonce"}
)
_NONCE_PRUNE_AT: Final = 1024
_NONCE_KEEP_AT_MOST: Final = 8192


@dataclass(frozen=True)
class User:
    """An API user; ``may_manage`` grants "Phone/Calls - Management" (PUT) besides monitoring."""

    password: str = field(repr=False)
    may_manage: bool = True


@dataclass(frozen=True)
class AuthPolicy:
    """How every device of a fleet authenticates its phone service."""

    method: AuthMethod = "none"
    users: Mapping[str, User] = field(default_factory=dict)
    realm: str = "HTTP API"
    nonce_lifetime: float = 300.0


class NonceStore:
    """The Digest nonces one device has issued and until when each is fresh.

    Thread-safe, because tests call :meth:`expire_all` from outside the event loop.
    """

    def __init__(self, *, lifetime: float) -> None:
        self.lifetime = lifetime
        self.opaque = secrets.token_hex(8)
        self._expiry: dict[str, float] = {}
        self._lock = threading.Lock()

    def issue(self) -> str:
        """A new nonce, fresh for ``lifetime`` seconds."""
        nonce = secrets.token_hex(16)
        now = time.monotonic()
        with self._lock:
            if len(self._expiry) >= _NONCE_PRUNE_AT:
                self._expiry = {n: t for n, t in self._expiry.items() if t > now}
                while len(self._expiry) >= _NONCE_KEEP_AT_MOST:
                    del self._expiry[next(iter(self._expiry))]
            self._expiry[nonce] = now + self.lifetime
        return nonce

    def is_fresh(self, nonce: str) -> bool:
        """Whether ``nonce`` was issued here and has not expired."""
        with self._lock:
            expiry = self._expiry.get(nonce)
        return expiry is not None and expiry > time.monotonic()

    def expire_all(self) -> None:
        """Forget every nonce, so the next Digest request is answered ``stale=true``."""
        with self._lock:
            self._expiry.clear()


def challenge(*, policy: AuthPolicy, nonces: NonceStore, stale: bool) -> str:
    """The ``WWW-Authenticate`` value sent with a 401."""
    if policy.method == "basic":
        return f'Basic realm="{policy.realm}"'
    value = (
        f'Digest realm="{policy.realm}", qop="auth", nonce="{nonces.issue()}", '
        f'opaque="{nonces.opaque}", algorithm=MD5'
    )
    return value + ", stale=true" if stale else value


def authorize(
    *,
    policy: AuthPolicy,
    nonces: NonceStore,
    header: str | None,
    method: str,
    uri: str,
    privilege: Privilege,
) -> None:
    """Raise unless the ``Authorization`` header grants ``privilege`` for this request."""
    if policy.method == "none":
        return
    if header is None:
        raise AuthRequired(9)
    scheme, _, credentials = header.strip().partition(" ")
    if scheme.lower() != policy.method:
        raise AuthRequired(8)
    if policy.method == "basic":
        user = _basic_user(policy, credentials)
    else:
        user = _digest_user(policy, nonces=nonces, credentials=credentials, method=method, uri=uri)
    if privilege == "management" and not user.may_manage:
        raise ApiError(10)


def _basic_user(policy: AuthPolicy, credentials: str) -> User:
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise AuthRequired(9) from None
    name, _, password = decoded.partition(":")
    user = policy.users.get(name)
    if user is None or not hmac.compare_digest(user.password.encode(), password.encode()):
        raise AuthRequired(9)
    return user


def _digest_user(
    policy: AuthPolicy, *, nonces: NonceStore, credentials: str, method: str, uri: str
) -> User:
    try:
        params = parse_keqv_list(parse_http_list(credentials))
    except ValueError:
        raise AuthRequired(9) from None
    if (
        not params.keys() >= _DIGEST_KEYS
        or params["realm"] != policy.realm
        or params.get("opaque") != nonces.opaque
        or params["qop"] != "auth"
        or params.get("algorithm", "MD5").upper() != "MD5"
        or params["uri"] != uri
    ):
        raise AuthRequired(9)
    user = policy.users.get(params["username"])
    if user is None:
        raise AuthRequired(9)
    ha1 = _md5(f"{params['username']}:{policy.realm}:{user.password}")
    ha2 = _md5(f"{method}:{params['uri']}")
    expected = _md5(f"{ha1}:{params['nonce']}:{params['nc']}:{params['cnonce']}:auth:{ha2}")
    if not hmac.compare_digest(expected.encode(), params["response"].lower().encode()):
        raise AuthRequired(9)
    if not nonces.is_fresh(params["nonce"]):
        raise AuthRequired(9, stale=True)
    return user


def _md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()
