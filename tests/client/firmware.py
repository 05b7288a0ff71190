"""A small 2N device on loopback for firmware behaviour the shared emulator lacks.

Newer firmware as SPEC section 1 describes it: up to 4 accounts with a
read-only ``accountType``, ``/api/phone/status`` and ``/api/call/status``,
Digest nonces used up after ``nonce_uses`` requests (then ``stale=true``),
and optionally two ``WWW-Authenticate`` headers, Basic first. Status bodies
can be replaced verbatim to test malformed answers.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.request import parse_http_list, parse_keqv_list

from aiohttp import web
from multidict import CIMultiDict

REALM = "HTTP API"
MANAGED = (
    "enabled",
    "displayName",
    "sipNumber",
    "domain",
    "domainPort",
    "authId",
    "proxyAddress",
    "proxyPort",
    "registrationEnabled",
    "registrarAddress",
    "registrarPort",
    "answerMode",
)
TYPES = {1: "general", 2: "general", 3: "general", 4: "local"}


@dataclass
class Seen:
    """One request as the device saw it."""

    method: str
    path: str
    query: dict[str, str]
    user_agent: str | None
    scheme: str | None
    status: int = 0
    stale: bool = False


def _account(number: int) -> dict[str, Any]:
    return {
        "account": number,
        "accountType": TYPES[number],
        "enabled": False,
        "displayName": "",
        "sipNumber": "",
        "domain": "",
        "domainPort": 0,
        "authId": "",
        "proxyAddress": "",
        "proxyPort": 0,
        "registrationEnabled": False,
        "registrarAddress": "",
        "registrarPort": 0,
        "answerMode": 0,
    }


def _md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


@dataclass
class Firmware:
    """Integer-typed firmware with ``accounts`` SIP accounts; auth ``none``, ``basic`` or ``digest``."""

    accounts: int = 4
    auth: str = "none"
    username: str = "admin"
    password: str = field(default="", repr=False)
    nonce_uses: int | None = None
    #: How many requests in a row meet ``stale=true`` once a nonce is used up.
    stale_streak: int = 1
    dual_challenge: bool = False
    phone_status_body: str | None = None
    call_status_body: str | None = None
    sessions: list[dict[str, Any]] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    puts: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.live = {n: _account(n) for n in range(1, self.accounts + 1)}
        self._nonces: dict[str, int] = {}
        self._stale_due = 0
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def __aenter__(self) -> Firmware:
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def stale_answers(self) -> int:
        """How many requests were answered 401 ``stale=true``."""
        return sum(s.stale for s in self.seen)

    # ---------------------------------------------------------------- requests

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        header = request.headers.get("Authorization")
        scheme = header.partition(" ")[0].lower() if header else None
        seen = Seen(
            request.method,
            request.path,
            dict(request.query),
            request.headers.get("User-Agent"),
            scheme,
        )
        self.seen.append(seen)
        refusal = self._authorize(request, header)
        response = refusal or await self._answer(request)
        seen.status = response.status
        seen.stale = "stale=true" in ",".join(response.headers.getall("WWW-Authenticate", []))
        return response

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        if request.path == "/api/phone/config" and request.method == "GET":
            wanted = request.query.get("account")
            items = [a for n, a in sorted(self.live.items()) if wanted in (None, str(n))]
            return _ok({"accounts": items})
        if request.path == "/api/phone/config" and request.method == "PUT":
            return await self._put(request)
        if request.path == "/api/phone/status":
            if self.phone_status_body is not None:
                return web.Response(text=self.phone_status_body, content_type="application/json")
            return _ok({"accounts": [self._status(a) for _, a in sorted(self.live.items())]})
        if request.path == "/api/call/status":
            if self.call_status_body is not None:
                return web.Response(text=self.call_status_body, content_type="application/json")
            return _ok({"sessions": self.sessions})
        return _error(2, "", "invalid path")

    async def _put(self, request: web.Request) -> web.Response:
        form = await request.post()
        part = form.get("blob-json")
        raw = part.file.read() if hasattr(part, "file") else part
        blob = json.loads(raw)
        self.puts.append(blob)
        for item in blob["accounts"]:
            if item["account"] not in self.live:
                return _error(12, "account", "no such account")
            if "accountType" in item:
                return _error(12, "accountType", "read-only")
        for item in blob["accounts"]:
            self.live[item["account"]].update({k: v for k, v in item.items() if k in MANAGED})
        return web.json_response({"success": True})

    @staticmethod
    def _status(account: dict[str, Any]) -> dict[str, Any]:
        out = {
            "account": account["account"],
            "accountType": account["accountType"],
            "enabled": account["enabled"],
            "sipNumber": account["sipNumber"],
        }
        if account["accountType"] != "local":
            out["registrationEnabled"] = account["registrationEnabled"]
            out["registered"] = account["registrationEnabled"]
            if account["registrationEnabled"]:
                out["registerTime"] = 1721138562
        return out

    # -------------------------------------------------------------------- auth

    def _authorize(self, request: web.Request, header: str | None) -> web.Response | None:
        if self.auth == "none":
            return None
        if header is None:
            return self._challenge(9)
        scheme, _, credentials = header.partition(" ")
        scheme = scheme.lower()
        accepted = {"basic", "digest"} if self.dual_challenge else {self.auth}
        if scheme not in accepted:
            return self._challenge(8)
        if scheme == "basic":
            name, _, password = base64.b64decode(credentials).decode().partition(":")
            ok = (name, password) == (self.username, self.password)
            return None if ok else self._challenge(9)
        params = parse_keqv_list(parse_http_list(credentials))
        ha1 = _md5(f"{self.username}:{REALM}:{self.password}")
        ha2 = _md5(f"{request.method}:{params['uri']}")
        expected = _md5(f"{ha1}:{params['nonce']}:{params['nc']}:{params['cnonce']}:auth:{ha2}")
        if params["username"] != self.username or params["response"] != expected:
            return self._challenge(9)
        left = self._nonces.get(params["nonce"], 0)
        if left <= 0 or self._stale_due > 0:
            self._stale_due = self.stale_streak - 1 if left <= 0 else self._stale_due - 1
            return self._challenge(9, stale=True)
        self._nonces[params["nonce"]] = left - 1
        return None

    def _challenge(self, code: int, *, stale: bool = False) -> web.Response:
        nonce = secrets.token_hex(8)
        self._nonces[nonce] = self.nonce_uses or 1_000_000
        digest = f'Digest realm="{REALM}", qop="auth", nonce="{nonce}", algorithm=MD5'
        digest += ", stale=true" if stale else ""
        basic = f'Basic realm="{REALM}"'
        headers: CIMultiDict[str] = CIMultiDict()
        if self.dual_challenge or self.auth == "basic":
            headers.add("WWW-Authenticate", basic)
        if self.dual_challenge or self.auth == "digest":
            headers.add("WWW-Authenticate", digest)
        body = {"success": False, "error": {"code": code, "description": "authorisation"}}
        return web.json_response(body, status=401, headers=headers)


def _ok(result: dict[str, Any]) -> web.Response:
    return web.json_response({"success": True, "result": result})


def _error(code: int, param: str, description: str) -> web.Response:
    body = {"success": False, "error": {"code": code, "param": param, "description": description}}
    return web.json_response(body)
