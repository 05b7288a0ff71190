"""Admin endpoints under ``/_emulator/``: drive a device from outside its own API.

A test that runs syncd as a subprocess against ``syncd simulate`` in another
process cannot call Python methods; these endpoints expose the same controls
(state and drift, faults, journal, nonces, calls, registration failures, latency) over
plain HTTP on each device's own port. They need no authentication, are not
journaled and never consume faults, so using them does not disturb what is
being tested. Errors are HTTP 400 with ``{"error": "..."}`` (404 for a path that is no
admin endpoint, 405 for a method an endpoint does not take, with the same body).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from syncd.simulator.blob import parse_updates
from syncd.simulator.device import EmulatedDevice
from syncd.simulator.errors import ApiError
from syncd.simulator.faults import Fault
from syncd.simulator.ports import DEVICES_BY_PORT, device_of

__all__ = ["PREFIX", "add_admin_routes", "state_json"]

PREFIX = "/_emulator"


def state_json(device: EmulatedDevice) -> dict[str, Any]:
    """A device's identity and live state, passwords included."""
    return {
        "device": device.number,
        "url": device.url,
        "identity": device.identity,
        "accounts": device.accounts,
        "passwords": {str(n): password for n, password in device.passwords.items()},
        "status": device.status(),
        "calls": device.calls,
    }


async def get_state(request: web.Request) -> web.Response:
    """``GET /_emulator/state``: accounts as GET reports them, plus passwords."""
    return web.json_response(state_json(device_of(request)))


async def put_state(request: web.Request) -> web.Response:
    """``PUT|POST /_emulator/state`` with ``{"accounts": [...]}``: drift, by PUT rules."""
    device = device_of(request)
    document = await _json_body(request)
    try:
        updates = parse_updates(document, firmware=device.firmware, accounts=device.account_numbers)
    except ApiError as exc:
        raise _bad_request(f"{exc.param}: {exc.description}") from None
    device.apply(updates)
    return web.json_response(state_json(device))


async def delete_state(request: web.Request) -> web.Response:
    """``DELETE /_emulator/state``: factory reset."""
    device = device_of(request)
    device.factory_reset()
    return web.json_response(state_json(device))


async def get_faults(request: web.Request) -> web.Response:
    """``GET /_emulator/faults``: pending faults with their remaining counts."""
    return web.json_response([fault.to_json() for fault in device_of(request).faults])


async def post_fault(request: web.Request) -> web.Response:
    """``POST /_emulator/faults`` with a fault object (``kind``, ``count``, ...)."""
    device = device_of(request)
    try:
        fault = Fault.from_json(await _json_body(request))
    except (TypeError, ValueError) as exc:
        raise _bad_request(str(exc)) from None
    device.add_fault(fault)
    return web.json_response(fault.to_json(), status=201)


async def delete_faults(request: web.Request) -> web.Response:
    """``DELETE /_emulator/faults``: cancel every pending fault."""
    device_of(request).clear_faults()
    return web.json_response([])


async def get_journal(request: web.Request) -> web.Response:
    """``GET /_emulator/journal``: received device-API requests, oldest first."""
    return web.json_response([entry.to_json() for entry in device_of(request).journal])


async def delete_journal(request: web.Request) -> web.Response:
    """``DELETE /_emulator/journal``: forget the journal."""
    device_of(request).clear_journal()
    return web.json_response([])


async def delete_nonces(request: web.Request) -> web.Response:
    """``DELETE /_emulator/nonces``: expire every Digest nonce issued so far."""
    device_of(request).expire_nonces()
    return web.json_response({"expired": True})


async def get_calls(request: web.Request) -> web.Response:
    """``GET /_emulator/call``: the active calls."""
    return web.json_response(device_of(request).calls)


async def post_call(request: web.Request) -> web.Response:
    """``POST /_emulator/call`` [``{"direction": ..., "state": ...}``]: start a call."""
    device = device_of(request)
    spec = await _json_body(request, empty={})
    if not isinstance(spec, dict) or set(spec) - {"direction", "state"}:
        raise _bad_request('a call is {"direction": "incoming"|"outgoing", "state": ...}')
    try:
        session = device.start_call(
            direction=spec.get("direction", "incoming"), state=spec.get("state", "connected")
        )
    except ValueError as exc:
        raise _bad_request(str(exc)) from None
    return web.json_response(session, status=201)


async def delete_calls(request: web.Request) -> web.Response:
    """``DELETE /_emulator/call``: end every call."""
    device_of(request).end_calls()
    return web.json_response([])


async def post_registration(request: web.Request) -> web.Response:
    """``POST /_emulator/registration`` with ``{"account": N, "fail": BOOL}``."""
    device = device_of(request)
    spec = await _json_body(request)
    if not isinstance(spec, dict) or set(spec) - {"account", "fail"} or "account" not in spec:
        raise _bad_request('expected {"account": N, "fail": true|false}')
    account, fail = spec["account"], spec.get("fail", True)
    if not isinstance(account, int) or isinstance(account, bool) or not isinstance(fail, bool):
        raise _bad_request('"account" must be an integer and "fail" a boolean')
    try:
        device.fail_registration(account, fail=fail)
    except ValueError as exc:
        raise _bad_request(str(exc)) from None
    (status,) = device.status(account)
    return web.json_response(status)


async def get_latency(request: web.Request) -> web.Response:
    """``GET /_emulator/latency``: ``{"seconds": S}``, this device's answer delay."""
    return web.json_response({"seconds": device_of(request).latency})


async def put_latency(request: web.Request) -> web.Response:
    """``PUT /_emulator/latency`` with ``{"seconds": S}``: this device's answer delay from
    now on; with ``"scope": "process"``, every device this emulator process serves (one
    call turns a whole benchmark fleet fast or slow between two passes)."""
    spec = await _json_body(request)
    seconds = spec.get("seconds") if isinstance(spec, dict) else None
    if (
        not isinstance(spec, dict)
        or set(spec) - {"seconds", "scope"}
        or isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not 0 <= seconds <= 3600
        or spec.get("scope", "device") not in ("device", "process")
    ):
        raise _bad_request(
            'expected {"seconds": S} with S from 0 to 3600, and optionally "scope": "process"'
        )
    if spec.get("scope") == "process":
        devices = list(request.app[DEVICES_BY_PORT].values())
    else:
        devices = [device_of(request)]
    for device in devices:
        device.latency = float(seconds)
    return web.json_response({"seconds": float(seconds), "devices": len(devices)})


def add_admin_routes(router: web.UrlDispatcher) -> None:
    """Register the admin endpoints."""
    router.add_get(f"{PREFIX}/state", get_state, allow_head=False)
    router.add_put(f"{PREFIX}/state", put_state)
    router.add_post(f"{PREFIX}/state", put_state)
    router.add_delete(f"{PREFIX}/state", delete_state)
    router.add_get(f"{PREFIX}/faults", get_faults, allow_head=False)
    router.add_post(f"{PREFIX}/faults", post_fault)
    router.add_delete(f"{PREFIX}/faults", delete_faults)
    router.add_get(f"{PREFIX}/journal", get_journal, allow_head=False)
    router.add_delete(f"{PREFIX}/journal", delete_journal)
    router.add_delete(f"{PREFIX}/nonces", delete_nonces)
    router.add_get(f"{PREFIX}/call", get_calls, allow_head=False)
    router.add_post(f"{PREFIX}/call", post_call)
    router.add_delete(f"{PREFIX}/call", delete_calls)
    router.add_post(f"{PREFIX}/registration", post_registration)
    router.add_get(f"{PREFIX}/latency", get_latency, allow_head=False)
    router.add_put(f"{PREFIX}/latency", put_latency)
    router.add_route("*", PREFIX + "{tail:(/.*)?}", no_such_endpoint)


async def no_such_endpoint(request: web.Request) -> web.Response:
    """Any other admin path or method: 404 or 405, with the JSON error body of the others."""
    known = {
        r.canonical for r in request.app.router.resources() if r.canonical.startswith(PREFIX + "/")
    }
    if request.path in known:
        message, status = f"{request.method} is not allowed on {request.path}", 405
    else:
        message, status = f"no admin endpoint {request.path}", 404
    return web.json_response({"error": message}, status=status)


async def _json_body(request: web.Request, *, empty: Any = None) -> Any:
    raw = await request.read()
    if empty is not None and not raw.strip():
        return empty
    try:
        return json.loads(raw)
    except ValueError:
        raise _bad_request("the body must be JSON") from None


def _bad_request(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=json.dumps({"error": message}), content_type="application/json")
