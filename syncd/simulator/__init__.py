"""Emulated 2N IP intercoms: a fleet of fake devices on loopback, for trying and testing syncd.

Each device listens on its own port with its own state and implements the
device API of SPEC section 1: ``GET``/``PUT /api/phone/config`` (all-or-nothing
validation, passwords write-only), ``GET /api/system/info``, the
``success: false`` error envelope, Basic or Digest authentication (with
expiring nonces and ``stale=true``), optional HTTPS with a generated
self-signed certificate, and string- or integer-typed firmware (the integer
firmware also reports a read-only ``accountType``, as newer firmware adds
fields). The emulator is an independent implementation of the device: it
imports nothing from the rest of syncd.

Python API (what tests use)::

    async with Fleet(devices=3, auth="digest", firmware="integer") as fleet:
        dev = fleet.devices[0]                  # or fleet.device(1)
        dev.url, dev.port, dev.number
        dev.accounts                            # as GET reports them now
        dev.passwords                           # {1: "...", 2: None}
        dev.set_live(1, displayName="x")        # drift
        dev.inject(kind="status", status=503, count=2)
        dev.inject(kind="reject", code=12, param="domainPort", method="PUT")
        dev.journal, dev.clear_journal(), dev.clear_faults(), dev.expire_nonces()

    with run_fleet_in_thread(devices=3) as fleet:   # for synchronous tests
        ...

Fault kinds (each for the next ``count`` device-API requests, optionally of
one ``method`` only): ``status`` (HTTP ``status`` with a short ``body``),
``delay`` (answer normally after ``delay`` seconds), ``drop`` (close the
connection unanswered), ``malformed`` (HTTP 200, body not JSON), ``reject``
(``success: false`` with ``code``, ``param``; nothing applied).

Admin endpoints, on every device's own port, without authentication, never
journaled and never consuming faults (errors: HTTP 400 ``{"error": ...}``):

- ``GET /_emulator/state``: identity, accounts as GET reports them, passwords.
- ``PUT`` or ``POST /_emulator/state`` with ``{"accounts": [{"account": 1, ...}]}``:
  drift; the same value rules as the device's PUT, all-or-nothing.
- ``DELETE /_emulator/state``: factory reset.
- ``GET /_emulator/faults``: pending faults; ``POST`` a fault object
  (``{"kind": "status", "status": 503, "count": 2, "method": "PUT"}``, keys as
  :class:`Fault`); ``DELETE`` cancels them all.
- ``GET /_emulator/journal``: received device-API requests; ``DELETE`` clears it.
- ``DELETE /_emulator/nonces``: expire every Digest nonce issued so far.

Command line: ``syncd simulate`` / ``python -m syncd.simulator`` (see
:mod:`syncd.simulator.cli`).
"""

from __future__ import annotations

from syncd.simulator.device import EmulatedDevice
from syncd.simulator.faults import Fault, FaultKind
from syncd.simulator.fleet import Fleet, FleetError
from syncd.simulator.journal import JournalEntry
from syncd.simulator.threaded import FleetOptions, run_fleet_in_thread

__all__ = [
    "EmulatedDevice",
    "Fault",
    "FaultKind",
    "Fleet",
    "FleetError",
    "FleetOptions",
    "JournalEntry",
    "run_fleet_in_thread",
]
