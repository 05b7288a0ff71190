"""Emulated 2N IP intercoms: a fleet of fake devices on loopback, for trying and testing syncd.

Each device listens on its own port with its own state and implements the
device API of SPEC section 1: ``GET``/``PUT /api/phone/config`` (all-or-nothing
validation, passwords write-only), ``GET /api/phone/status`` (SIP
registration), ``GET /api/call/status`` (active calls), ``GET
/api/system/info``, the ``success: false`` error envelope, Basic or Digest
authentication (with expiring nonces and ``stale=true``; optionally nonces
good for K requests only, and Basic-plus-Digest challenges), optional HTTPS
with a generated self-signed certificate, and string- or integer-typed
firmware (the integer firmware also reports a read-only ``accountType``:
``general``, or ``local`` for account 4). A device has 2 accounts, or 4 as
newer firmware does; a PUT or ``?account=`` naming another is code 12. The
emulator is an independent implementation of the device: it imports nothing
from the rest of syncd.

The PBX: an account registers ``register_delay`` seconds after its settings
make it eligible (enabled, ``registrationEnabled``, a password set, and its
registrar, ``registrarAddress`` else ``domain``, one of the ``pbx`` names,
case-insensitively; never the ``local`` account 4). Any change of a SIP
setting (``enabled``, ``sipNumber``, ``authId``, ``password`` (every write
of it), ``domain``, ``domainPort``, ``proxyAddress``, ``proxyPort``,
``registrationEnabled``, ``registrarAddress``, ``registrarPort``), by PUT,
drift or factory reset, unregisters the account at once; it registers anew
after the delay with a ``registerTime`` (Unix seconds) strictly greater than
its previous one. ``displayName`` and ``answerMode`` changes keep the
registration. Nothing runs per device: registration is worked out from
timestamps when read.

Python API (what tests use)::

    async with Fleet(devices=3, auth="digest", firmware="integer", accounts=4,
                     pbx=["pbx.example.com"], register_delay=1.0, latency=0.0,
                     nonce_uses=0, dual_challenge=False) as fleet:
        dev = fleet.devices[0]                  # or fleet.device(1)
        dev.url, dev.port, dev.number, dev.account_numbers
        dev.accounts                            # as GET config reports them now
        dev.passwords                           # {1: "...", 2: None}
        dev.status(), dev.status(1)             # as GET phone/status reports them
        dev.registered(1)                       # bool
        dev.set_live(1, displayName="x")        # drift
        dev.fail_registration(1, fail=True)     # the PBX refuses account 1 (False: lift)
        dev.start_call(direction="incoming", state="connected")  # -> the session
        dev.end_calls(), dev.calls
        dev.latency = 0.5                       # this device answers slowly from now on
        dev.inject(kind="status", status=503, count=2)
        dev.inject(kind="reject", code=12, param="domainPort", method="PUT")
        dev.inject(kind="reject", code=10, path="/api/phone/status", count=None)
        dev.inject(kind="hang", count=None)     # until dev.clear_faults()
        dev.journal, dev.clear_journal(), dev.clear_faults(), dev.expire_nonces()

    with run_fleet_in_thread(devices=3) as fleet:   # for synchronous tests
        ...                                         # FleetOptions: Fleet's keywords

Fault kinds (each for the next ``count`` device-API requests, ``count=None``
(JSON ``null``) for every request until the faults are cleared;
optionally of one ``method`` and/or one exact ``path`` only): ``status`` (HTTP
``status`` with a short ``body``), ``delay`` (answer normally after ``delay``
seconds), ``drop`` (close the connection unanswered), ``hang`` (accept the
request and never answer until the faults are cleared, then close it
unanswered, or the fleet stops), ``malformed`` (HTTP 200, body not JSON),
``reject`` (``success: false`` with ``code``, ``param``; nothing applied).

``latency`` delays every device-API answer (not the admin endpoints).

Journal entries (:class:`JournalEntry`) record each device-API request:
``time``, ``method``, ``path``, ``query``, ``content_type``, ``body_format``,
``blob_text``, ``blob``, ``status``, ``code``, ``fault``, ``user_agent``,
``peer`` (the client's address:port, one per connection), and
``started``/``finished`` (``time.time()`` when the request arrived and when its
answer was complete, state changes done), so tests can check that two
clients' PUT windows on one device never overlap.

Admin endpoints, on every device's own port, without authentication, never
journaled, never delayed and never consuming faults (errors: HTTP 400
``{"error": ...}``):

- ``GET /_emulator/state``: identity, accounts as GET reports them, passwords,
  ``status`` (as phone status reports it) and ``calls``.
- ``PUT`` or ``POST /_emulator/state`` with ``{"accounts": [{"account": 1, ...}]}``:
  drift; the same value rules as the device's PUT, all-or-nothing.
- ``DELETE /_emulator/state``: factory reset.
- ``GET /_emulator/faults``: pending faults; ``POST`` a fault object
  (``{"kind": "status", "status": 503, "count": 2, "method": "PUT", "path":
  "/api/phone/config"}``, keys as :class:`Fault`); ``DELETE`` cancels them all
  and releases hanging requests.
- ``GET /_emulator/journal``: received device-API requests; ``DELETE`` clears it.
- ``DELETE /_emulator/nonces``: expire every Digest nonce issued so far.
- ``POST /_emulator/call`` with optional ``{"direction": "incoming"|"outgoing",
  "state": "connecting"|"ringing"|"connected"}`` (default incoming,
  connected): start a call, answered with its session (HTTP 201);
  ``DELETE /_emulator/call`` ends every call; ``GET`` lists them.
- ``POST /_emulator/registration`` with ``{"account": N, "fail": true|false}``:
  make the account's registration fail (it unregisters and stays so) or lift
  that (it registers after the delay, with a new ``registerTime``); answers the
  account's phone status.
- ``PUT /_emulator/latency`` with ``{"seconds": S}``: this device's answer delay
  from now on; add ``"scope": "process"`` for every device of this emulator
  process (answers ``{"seconds": S, "devices": N}``); ``GET`` reads it.

Command line: ``syncd simulate`` / ``python -m syncd.simulator`` with
``--devices N``, ``--port FIRST``, ``--host``, ``--tls``, ``--cert-dir DIR``,
``--auth none|basic|digest``, ``--username``, ``--password``, ``--firmware
string|integer``, ``--accounts 2|4``, ``--pbx HOST`` (repeatable),
``--register-delay SECONDS``, ``--latency SECONDS``, ``--nonce-uses K``,
``--dual-challenge`` (see :mod:`syncd.simulator.cli`). One process serves
10,000 devices (it raises its open-file soft limit to the hard limit).
"""

from __future__ import annotations

from syncd.simulator.calls import Session
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
    "Session",
    "run_fleet_in_thread",
]
