"""HTTP authentication of the device API: none, Basic, or Digest (RFC 7616, MD5, qop=auth).

Digest is the 2N default and the one with a failure mode clients must survive: a
nonce that expired between two requests. The device then answers 401 with
``stale=true`` although the credentials were right, and a client should retry
with the new nonce instead of reporting bad credentials. :class:`NonceStore`
keeps each device's nonces so tests can expire them on demand, and can accept
each nonce for a fixed number of requests only (``nonce_uses``), as firmware
that rotates nonces does: the request after the last use gets ``stale=true``.

Some firmware sends two challenges with every 401, ``Basic`` first, then
``Digest``, and accepts either method (``dual_challenge``).

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

__all__ = [
    "AuthMethod",
    "AuthPolicy",
    "NonceStore",
    "Privilege",
    "User",
    "authorize",
    "challenge",
    "challenges",
]

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
    """How every device of a fleet authenticates its phone service.

    ``nonce_uses``: requests each Digest nonce is accepted for (0: unlimited
    while fresh). ``dual_challenge``: a 401 carries a Basic and a Digest
    challenge, and credentials are accepted by either method.
    """

    method: AuthMethod = "none"
    users: Mapping[str, User] = field(default_factory=dict)
    realm: str = "HTTP API"
    nonce_lifetime: float = 300.0
    nonce_uses: int = 0
    dual_challenge: bool = False

    @property
    def accepted(self) -> frozenset[str]:
        """The ``Authorization`` schemes accepted (lower case)."""
        if self.method == "none":
            return frozenset()
        return frozenset({"basic", "digest"}) if self.dual_challenge else frozenset({self.method})


class NonceStore:
    """The Digest nonces one device has issued and until when each is fresh.

    With ``uses`` > 0 a nonce is good for that many requests, then stale.
    Thread-safe, because tests call :meth:`expire_all` from outside the event loop.
    """

    __slots__ = ("_expiry", "_lock", "_used", "lifetime", "opaque", "uses")

    def __init__(self, *, lifetime: float, uses: int = 0) -> None:
        self.lifetime = lifetime
        self.uses = uses
        self.opaque = secrets.token_hex(8)
        self._expiry: dict[str, float] = {}
        self._used: dict[str, int] = {}
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
                self._used = {n: u for n, u in self._used.items() if n in self._expiry}
            self._expiry[nonce] = now + self.lifetime
        return nonce

    def is_fresh(self, nonce: str) -> bool:
        """Whether ``nonce`` was issued here, has not expired and has uses left."""
        with self._lock:
            expiry = self._expiry.get(nonce)
            used = self._used.get(nonce, 0)
        return (
            expiry is not None
            and expiry > time.monotonic()
            and (self.uses == 0 or used < self.uses)
        )

    def use(self, nonce: str) -> bool:
        """Spend one use of ``nonce`` for a request; ``False`` if it is not fresh."""
        with self._lock:
            expiry = self._expiry.get(nonce)
            if expiry is None or expiry <= time.monotonic():
                return False
            if self.uses == 0:
                return True
            used = self._used.get(nonce, 0)
            if used >= self.uses:
                return False
            self._used[nonce] = used + 1
            return True

    def expire_all(self) -> None:
        """Forget every nonce, so the next Digest request is answered ``stale=true``."""
        with self._lock:
            self._expiry.clear()
            self._used.clear()


def challenges(*, policy: AuthPolicy, nonces: NonceStore, stale: bool) -> list[str]:
    """The ``WWW-Authenticate`` values sent with a 401, in order (none without auth)."""
    if policy.method == "none":
        return []
    if policy.dual_challenge:
        basic = AuthPolicy(method="basic", realm=policy.realm)
        digest = AuthPolicy(method="digest", realm=policy.realm)
        return [
            challenge(policy=basic, nonces=nonces, stale=False),
            challenge(policy=digest, nonces=nonces, stale=stale),
        ]
    return [challenge(policy=policy, nonces=nonces, stale=stale)]


def challenge(*, policy: AuthPolicy, nonces: NonceStore, stale: bool) -> str:
    """The ``WWW-Authenticate`` value of ``policy.method`` sent with a 401."""
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
    scheme = scheme.lower()
    if scheme not in policy.accepted:
        raise AuthRequired(8)
    if scheme == "basic":
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
    if not nonces.use(params["nonce"]):
        raise AuthRequired(9, stale=True)
    return user


def _md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()
