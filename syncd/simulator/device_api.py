"""The device API: ``/api/phone/config``, ``/api/phone/status``, ``/api/call/status``,
``/api/system/info`` and every other ``/api`` path.

Each endpoint is a plain function from a :class:`Call` to the ``result`` of a
successful answer (or ``None`` for a bare ``{"success": true}``), raising
:class:`ApiError` to refuse. :func:`device_endpoint` wraps one in what every
device request goes through, in this order: read the blob, consume a fault,
wait the device's latency, answer (method, then authorisation, then
parameters), record in the journal. Faults come before authorisation on
purpose: a device that is down fails an unauthenticated probe too.
"""

from __future__ import annotations

import asyncio
import http
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web
from multidict import CIMultiDict

from syncd.simulator.auth import Privilege, authorize, challenges
from syncd.simulator.blob import BLOB, AccountUpdate, account_range, parse_updates
from syncd.simulator.device import EmulatedDevice
from syncd.simulator.errors import ApiError, AuthRequired, envelope
from syncd.simulator.faults import DEFAULT_MALFORMED_BODY, Fault
from syncd.simulator.journal import JournalEntry
from syncd.simulator.ports import device_of
from syncd.simulator.request_body import ReceivedBody, receive_body

__all__ = [
    "DEVICE_ENDPOINTS",
    "Answer",
    "Call",
    "answer",
    "call_status",
    "device_endpoint",
    "invalid_path",
    "phone_config",
    "phone_status",
    "system_info",
]

Result = dict[str, Any] | None
Endpoint = Callable[["Call"], Result]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Call:
    """What an endpoint needs to know about one request."""

    device: EmulatedDevice
    method: str
    uri: str
    query: Mapping[str, str]
    authorization: str | None
    body: ReceivedBody

    def require(self, privilege: Privilege) -> None:
        """Raise unless the request's credentials grant ``privilege``."""
        authorize(
            policy=self.device.auth,
            nonces=self.device.nonces,
            header=self.authorization,
            method=self.method,
            uri=self.uri,
            privilege=privilege,
        )


def phone_config(call: Call) -> Result:
    """``GET`` reads one or both accounts (never a password); ``PUT`` applies a blob."""
    if call.method == "GET":
        call.require("monitoring")
        return {"accounts": call.device.read(_account_param(call))}
    if call.method == "PUT":
        call.require("management")
        call.device.apply(_blob_updates(call))
        return None
    raise ApiError(3)


def phone_status(call: Call) -> Result:
    """``GET``: SIP registration of one account or all."""
    if call.method != "GET":
        raise ApiError(3)
    call.require("monitoring")
    return {"accounts": call.device.status(_account_param(call))}


def call_status(call: Call) -> Result:
    """``GET``: the active calls (``sessions`` is empty when idle)."""
    if call.method != "GET":
        raise ApiError(3)
    call.require("monitoring")
    return {"sessions": call.device.calls}


def system_info(call: Call) -> Result:
    """The device's identity; no privilege needed."""
    if call.method != "GET":
        raise ApiError(3)
    return dict(call.device.identity)


def invalid_path(call: Call) -> Result:
    """Any other path under ``/api``."""
    raise ApiError(2)


def _account_param(call: Call) -> int | None:
    value = call.query.get("account")
    if value is None:
        return None
    numbers = call.device.account_numbers
    if value not in {str(n) for n in numbers}:
        raise ApiError(12, "account", description=f"account must be {account_range(numbers)}")
    return int(value)


def _blob_updates(call: Call) -> list[AccountUpdate]:
    body = call.body
    if body.format == "other":  # neither multipart nor JSON (SPEC 1: code 14)
        raise ApiError(14, description="Unsupported Content-Type")
    if body.too_big:
        raise ApiError(13, BLOB)
    if body.text is None:
        raise ApiError(11, BLOB)
    if not body.is_json:
        raise ApiError(12, BLOB, description="not valid JSON")
    return parse_updates(
        body.document, firmware=call.device.firmware, accounts=call.device.account_numbers
    )


DEVICE_ENDPOINTS: Final[Mapping[str, Endpoint]] = {
    "/api/phone/config": phone_config,
    "/api/phone/status": phone_status,
    "/api/call/status": call_status,
    "/api/system/info": system_info,
}
"""The device API's own paths; any other path under ``/api`` is :func:`invalid_path`."""


@dataclass(frozen=True)
class Answer:
    """What a device answers, whichever server writes it: a JSON document, or text.

    ``code`` is the device error code of a ``success: false`` answer (for the
    journal); ``headers`` are extra ones (a 401's ``WWW-Authenticate`` challenges).
    """

    status: int = 200
    document: Any = None
    text: str | None = None
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()
    code: int | None = None


def answer(endpoint: Endpoint, call: Call) -> Answer:
    """``endpoint``'s answer to ``call``: its result, or the envelope of its refusal."""
    try:
        result = endpoint(call)
    except ApiError as error:
        return refusal(error, device=call.device)
    return Answer(
        document={"success": True} if result is None else {"success": True, "result": result}
    )


def refusal(error: ApiError, *, device: EmulatedDevice) -> Answer:
    """The envelope of ``error``; codes 8 and 9 as HTTP 401 with the device's challenges."""
    if not isinstance(error, AuthRequired) and error.code != 9:
        return Answer(document=envelope(error), code=error.code)
    stale = isinstance(error, AuthRequired) and error.stale
    headers = tuple(
        ("WWW-Authenticate", value)
        for value in challenges(policy=device.auth, nonces=device.nonces, stale=stale)
    )
    return Answer(status=401, document=envelope(error), headers=headers, code=error.code)


def device_endpoint(endpoint: Endpoint) -> Handler:
    """The aiohttp handler serving ``endpoint`` for whichever device was reached."""

    async def handle(request: web.Request) -> web.StreamResponse:
        device = device_of(request)
        received_at = time.time()
        body = await receive_body(request)
        fault = device.take_fault(request.method, request.path)
        if device.latency > 0:
            await asyncio.sleep(device.latency)
        if fault is not None and fault.kind == "delay":
            await asyncio.sleep(fault.delay)
        if fault is not None and fault.kind == "hang":
            await device.hang()
        if fault is not None and fault.kind in ("drop", "hang"):
            if request.transport is not None:
                request.transport.close()
            response, code = web.Response(), None
        else:
            call = Call(
                device=device,
                method=request.method,
                uri=request.raw_path,
                query=request.query,
                authorization=request.headers.get("Authorization"),
                body=body,
            )
            given = (
                answer(endpoint, call)
                if fault is None or fault.kind == "delay"
                else _misbehave(fault, device=device)
            )
            response, code = _response(given), given.code
        dropped = fault is not None and fault.kind in ("drop", "hang")
        device.record(
            JournalEntry(
                time=received_at,
                method=request.method,
                path=request.path,
                query=dict(request.query),
                content_type=request.headers.get("Content-Type", ""),
                body_format=body.format,
                blob_text=body.text,
                blob=body.document,
                status=None if dropped else response.status,
                code=code,
                fault=None if fault is None else fault.kind,
                user_agent=request.headers.get("User-Agent", ""),
                peer=f"{request.remote}:{_peer_port(request)}",
                started=received_at,
                finished=time.time(),
            )
        )
        return response

    return handle


def _peer_port(request: web.Request) -> int | None:
    peer = request.transport.get_extra_info("peername") if request.transport else None
    return peer[1] if isinstance(peer, tuple) and len(peer) >= 2 else None


def _response(given: Answer) -> web.Response:
    headers = CIMultiDict(given.headers)
    if given.text is not None:
        return web.Response(
            status=given.status, text=given.text, content_type=given.content_type, headers=headers
        )
    return web.json_response(given.document, status=given.status, headers=headers)


def _misbehave(fault: Fault, *, device: EmulatedDevice) -> Answer:
    if fault.kind == "malformed":
        body = DEFAULT_MALFORMED_BODY if fault.body is None else fault.body
        return Answer(text=body)
    if fault.kind == "status":
        reason = _reason(fault.status)
        body = f"{fault.status} {reason}" if fault.body is None else fault.body
        content_type = "application/json" if fault.body_is_json else "text/plain"
        return Answer(status=fault.status, text=body, content_type=content_type)
    error = ApiError(fault.code, fault.param, description=fault.description)
    return refusal(error, device=device)


def _reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"
