"""Which device a request reached: the one listening on the connection's local port.

The whole fleet is one aiohttp application behind one runner, with one site
per device port; the local port of the connection is the cheapest reliable way
to tell the devices apart (the ``Host`` header is the client's to choose).
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from syncd.simulator.device import EmulatedDevice

__all__ = ["DEVICES_BY_PORT", "device_of"]

DEVICES_BY_PORT: web.AppKey[Mapping[int, EmulatedDevice]] = web.AppKey("devices_by_port")


def device_of(request: web.Request) -> EmulatedDevice:
    """The device whose port ``request`` arrived on."""
    transport = request.transport
    sockname = transport.get_extra_info("sockname") if transport is not None else None
    if sockname is None:
        raise ConnectionResetError("the client went away before its request was handled")
    return request.app[DEVICES_BY_PORT][sockname[1]]
