"""A fleet of emulated intercoms served from one event loop.

One listening socket per device port, each connection starting with
:class:`~syncd.simulator.front_door.FrontDoor` (plain reads answered there)
and handed to one aiohttp application for anything else: a thousand devices
cost a thousand listening sockets and nothing else until requests arrive.
Sockets are bound here rather than by aiohttp so that a port in use fails the
start with a sentence naming the port, and so that ``port=0`` (each device on
its own ephemeral port, for tests) is known before the devices are built.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import math
import shutil
import socket
import ssl
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Final, get_args

from aiohttp import web

from syncd.simulator.auth import AuthMethod, AuthPolicy, User
from syncd.simulator.certificate import certificate_hosts, ensure_certificate, server_context
from syncd.simulator.device import DEFAULT_PBX, EmulatedDevice
from syncd.simulator.fields import Firmware, account_numbers
from syncd.simulator.front_door import FrontDoor
from syncd.simulator.server import build_app

__all__ = ["Fleet", "FleetError"]

_SHUTDOWN_SECONDS: Final = 1.0
_BACKLOG: Final = 128


class FleetError(Exception):
    """The fleet cannot start; the message is one sentence for an operator."""


class Fleet:
    """``devices`` emulated intercoms on ``host``, each on its own port with its own state.

    ``port=0`` gives every device an ephemeral port; otherwise device ``n``
    listens on ``port + n - 1``. ``auth``, ``username``/``password`` (full
    rights) and the optional ``monitor_username``/``monitor_password`` (GET
    only; PUT answers code 10) apply to every device. ``tls`` serves HTTPS only,
    with a self-signed certificate kept in ``cert_dir`` (reused if there) or in
    a temporary directory removed on close. Use as ``async with Fleet(...) as
    fleet`` or call :meth:`start` and :meth:`close`.

    ``accounts`` (2 or 4) is how many SIP accounts each device has. An account
    registers ``register_delay`` seconds after its settings make it eligible
    with a registrar among the ``pbx`` host names. ``latency`` delays every
    device-API answer. ``nonce_uses`` (0: unlimited) is how many requests a
    Digest nonce serves before it is stale; ``dual_challenge`` sends Basic and
    Digest challenges and accepts both methods.
    """

    def __init__(
        self,
        *,
        devices: int = 2,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: bool = False,
        cert_dir: str | Path | None = None,
        auth: AuthMethod = "none",
        username: str = "admin",
        password: str = "secret",
        firmware: Firmware = "string",
        monitor_username: str | None = None,
        monitor_password: str | None = None,
        nonce_lifetime: float = 300.0,
        journal_limit: int = 1000,
        accounts: int = 2,
        pbx: Sequence[str] = DEFAULT_PBX,
        register_delay: float = 1.0,
        latency: float = 0.0,
        nonce_uses: int = 0,
        dual_challenge: bool = False,
    ) -> None:
        _check_ports(port, devices=devices)
        _check_behaviour(
            auth=auth,
            firmware=firmware,
            pbx=pbx,
            delays={"register_delay": register_delay, "latency": latency},
            nonce_uses=nonce_uses,
            dual_challenge=dual_challenge,
        )
        self.count = devices
        self.host = host
        self.port = port
        self.tls = tls
        self.firmware: Firmware = firmware
        self.auth = AuthPolicy(
            method=auth,
            users=_users(username, password, monitor_username, monitor_password),
            nonce_lifetime=nonce_lifetime,
            nonce_uses=nonce_uses,
            dual_challenge=dual_challenge,
        )
        self.journal_limit = journal_limit
        self.account_numbers = account_numbers(accounts)
        self.pbx = frozenset(host.lower() for host in pbx)
        self.register_delay = float(register_delay)
        self.latency = float(latency)
        self.devices: list[EmulatedDevice] = []
        self.cert_path: Path | None = None
        self.key_path: Path | None = None
        self._cert_dir = Path(cert_dir) if cert_dir is not None else None
        self._temporary_dir: Path | None = None
        self._runner: web.AppRunner | None = None
        self._servers: list[asyncio.AbstractServer] = []
        self._doors: set[FrontDoor] = set()

    def __repr__(self) -> str:
        return f"<Fleet {self.count} devices on {self.host} ({self.firmware} firmware)>"

    def device(self, number: int) -> EmulatedDevice:
        """Device ``number``, counted from 1 as the CLI prints them."""
        if not 1 <= number <= len(self.devices):
            raise IndexError(f"no device {number} in a fleet of {len(self.devices)}")
        return self.devices[number - 1]

    async def __aenter__(self) -> Fleet:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Bind every port and start serving; raise :class:`FleetError` if that fails."""
        if self._runner is not None:
            raise RuntimeError("the fleet is already running")
        context = self._tls_context() if self.tls else None
        sockets = _listen_all(self.host, first=self.port, count=self.count)
        scheme = "https" if self.tls else "http"
        url_host = f"[{self.host}]" if ":" in self.host else self.host
        self.devices = []
        for number, sock in enumerate(sockets, start=1):
            port = sock.getsockname()[1]
            self.devices.append(
                EmulatedDevice(
                    number=number,
                    url=f"{scheme}://{url_host}:{port}",
                    port=port,
                    firmware=self.firmware,
                    auth=self.auth,
                    journal_limit=self.journal_limit,
                    account_numbers=self.account_numbers,
                    pbx=self.pbx,
                    register_delay=self.register_delay,
                    latency=self.latency,
                )
            )
        app = build_app({device.port: device for device in self.devices})
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=_SHUTDOWN_SECONDS)
        await runner.setup()
        self._runner = runner
        hand_over = runner.server
        assert hand_over is not None
        loop = asyncio.get_running_loop()
        started = 0
        try:
            for device, sock in zip(self.devices, sockets, strict=True):
                door = functools.partial(FrontDoor, device, hand_over, self._doors)
                self._servers.append(
                    await loop.create_server(door, sock=sock, ssl=context, backlog=_BACKLOG)
                )
                started += 1
        except BaseException:
            for sock in sockets[started:]:
                sock.close()
            await self.close()
            raise

    async def close(self) -> None:
        """Stop serving (in-flight requests get a second to finish) and free the ports."""
        runner, self._runner = self._runner, None
        servers, self._servers = self._servers, []
        for server in servers:
            server.close()
        for door in list(self._doors):
            door.close()
        for device in self.devices:
            device.release_hanging()
        if runner is not None:
            await runner.cleanup()
        if self._temporary_dir is not None:
            shutil.rmtree(self._temporary_dir, ignore_errors=True)
            self._temporary_dir = None

    def _tls_context(self) -> ssl.SSLContext:
        directory = self._cert_dir
        if directory is None:
            directory = self._temporary_dir = Path(tempfile.mkdtemp(prefix="syncd-simulator-"))
        try:
            self.cert_path, self.key_path = ensure_certificate(
                directory, hosts=certificate_hosts(self.host)
            )
            return server_context(self.cert_path, self.key_path)
        except (OSError, ssl.SSLError) as exc:
            raise FleetError(f"cannot use a TLS certificate in {directory}: {exc}") from exc


def _check_ports(first: int, *, devices: int) -> None:
    if devices < 1:
        raise ValueError("a fleet needs at least one device")
    if not 0 <= first <= 65535 or (first and first + devices - 1 > 65535):
        raise ValueError(f"ports {first}..{first + devices - 1} are not all valid TCP ports")


def _check_behaviour(
    *,
    auth: str,
    firmware: str,
    pbx: Sequence[str],
    delays: dict[str, float],
    nonce_uses: int,
    dual_challenge: bool,
) -> None:
    """Refuse what no device could be: an unknown method or firmware, a bad delay or count."""
    if auth not in get_args(AuthMethod):
        raise ValueError(f"auth must be none, basic or digest, not {auth!r}")
    if firmware not in get_args(Firmware):
        raise ValueError(f"firmware must be string or integer, not {firmware!r}")
    if isinstance(pbx, str):
        raise ValueError("pbx is a list of host names, not one string")
    for name, seconds in delays.items():
        if not (isinstance(seconds, int | float) and 0 <= seconds < math.inf):
            raise ValueError(f"{name} must be a number of seconds >= 0, not {seconds!r}")
    if not isinstance(nonce_uses, int) or nonce_uses < 0:
        raise ValueError(f"nonce_uses must be an integer >= 0, not {nonce_uses!r}")
    if dual_challenge and auth == "none":
        raise ValueError("dual_challenge needs auth basic or digest")


def _users(
    username: str, password: str, monitor_username: str | None, monitor_password: str | None
) -> dict[str, User]:
    """The full-rights user, and the monitoring one (GET only) if there is one."""
    users = {username: User(password=password, may_manage=True)}
    if monitor_username is not None:
        users[monitor_username] = User(password=monitor_password or "", may_manage=False)
    return users


def _listen_all(host: str, *, first: int, count: int) -> list[socket.socket]:
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, first, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise FleetError(f"cannot resolve host {host!r}: {exc.strerror}") from None
    sockets: list[socket.socket] = []
    try:
        for number in range(1, count + 1):
            port = first + number - 1 if first else 0
            try:
                sock = socket.socket(family, kind, proto)
                sockets.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((address[0], port, *address[2:]))
            except OSError as exc:
                raise FleetError(_bind_failure(exc, host=host, port=port, number=number)) from None
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _bind_failure(exc: OSError, *, host: str, port: int, number: int) -> str:
    if exc.errno == errno.EADDRINUSE:
        where = f"port {port} on {host} (device {number}) is already in use"
        ephemeral = _ephemeral_ports()
        if ephemeral is not None and ephemeral[0] <= port <= ephemeral[1]:
            # Outgoing connections take these ports, and keep them a minute after closing.
            low, high = ephemeral
            return (
                f"{where}, maybe by an outgoing connection: ports {low}-{high} are the "
                f"system's ephemeral range; choose a port below {low}"
            )
        return f"{where}; choose another port"
    if exc.errno == errno.EMFILE:
        return (
            f"ran out of file descriptors at device {number} (each device is a listening "
            "socket); raise the open-file limit (ulimit -n) or emulate fewer devices"
        )
    return f"cannot listen on {host} port {port} (device {number}): {exc.strerror or exc}"


def _ephemeral_ports() -> tuple[int, int] | None:
    """The range the system picks outgoing connections' local ports from (Linux), if known."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as fh:
            low, high = (int(part) for part in fh.read().split())
    except (OSError, ValueError):
        return None
    return low, high
