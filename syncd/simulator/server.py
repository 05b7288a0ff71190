"""The one aiohttp application that serves every device of a fleet.

Routes are shared; the handlers find their device by the local port (see
:mod:`syncd.simulator.ports`). Methods are checked by the endpoints rather than
the router, so a wrong method gets the device's code 3 instead of HTTP 405.
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from syncd.simulator.admin_api import add_admin_routes
from syncd.simulator.device import EmulatedDevice
from syncd.simulator.device_api import (
    call_status,
    device_endpoint,
    invalid_path,
    phone_config,
    phone_status,
    system_info,
)
from syncd.simulator.ports import DEVICES_BY_PORT
from syncd.simulator.request_body import MAX_REQUEST_BYTES

__all__ = ["build_app"]


def build_app(devices_by_port: Mapping[int, EmulatedDevice]) -> web.Application:
    """The application for a fleet whose devices listen on the keys of ``devices_by_port``."""
    app = web.Application(client_max_size=MAX_REQUEST_BYTES)
    app[DEVICES_BY_PORT] = devices_by_port
    router = app.router
    router.add_route("*", "/api/phone/config", device_endpoint(phone_config))
    router.add_route("*", "/api/phone/status", device_endpoint(phone_status))
    router.add_route("*", "/api/call/status", device_endpoint(call_status))
    router.add_route("*", "/api/system/info", device_endpoint(system_info))
    router.add_route("*", "/api", device_endpoint(invalid_path))
    router.add_route("*", "/api/{tail:.*}", device_endpoint(invalid_path))
    add_admin_routes(router)
    return app
