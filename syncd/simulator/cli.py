"""``syncd simulate``: serve an emulated fleet until SIGTERM/SIGINT (SPEC section 8).

Prints ``device N: URL`` per device on stdout once every port listens, so a
script can wait for the lines and then point syncd at the URLs. Start-up
failures (a port in use, an unusable certificate directory, too few file
descriptors) are one sentence on stderr and exit status 1. The soft limit of
open files is raised to the hard limit first: each device is a listening
socket, and 10,000 devices need 10,000 of them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import get_args

from syncd.simulator.auth import AuthMethod
from syncd.simulator.device import DEFAULT_PBX
from syncd.simulator.fields import ACCOUNT_COUNTS, Firmware
from syncd.simulator.fleet import Fleet, FleetError

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run ``syncd simulate`` with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.port and args.port + args.devices - 1 > 65535:
        parser.error(f"--port {args.port} leaves no room for {args.devices} devices below 65536")
    if args.cert_dir is not None and not args.tls:
        parser.error("--cert-dir keeps the TLS certificate, so it needs --tls")
    if args.dual_challenge and args.auth == "none":
        parser.error("--dual-challenge needs --auth basic or digest")
    _raise_open_file_limit()
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(_serve(args))
    except FleetError as exc:
        print(f"syncd simulate: {exc}.", file=sys.stderr)
        return 1
    return 0


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop where it is installed (as syncd runs): 10,000 devices' connections cost
    the emulator a sixth less CPU, which it would take from the syncd it stands in
    front of on a shared machine; the standard loop everywhere else."""
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


async def _serve(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    # Every option's name is the Fleet keyword it sets.
    fleet = Fleet(**(vars(args) | {"pbx": args.pbx or list(DEFAULT_PBX)}))
    async with fleet:
        sys.stdout.write("".join(f"device {d.number}: {d.url}\n" for d in fleet.devices))
        sys.stdout.flush()
        if fleet.cert_path is not None:
            print(f"certificate: {fleet.cert_path}", file=sys.stderr, flush=True)
        await stop.wait()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="syncd simulate",
        description="Serve emulated 2N IP intercoms on loopback until SIGTERM/SIGINT. "
        "Prints 'device N: URL' per device once all listen. Each device also has admin "
        "endpoints under /_emulator/ (state, faults, journal, nonces, call, registration; "
        "see the syncd.simulator module documentation).",
    )
    _listening_options(parser)
    _access_options(parser)
    _device_options(parser)
    _digest_options(parser)
    return parser


def _listening_options(parser: argparse.ArgumentParser) -> None:
    """How many devices, where they listen, and over what."""
    parser.add_argument(
        "--devices", type=_positive, default=2, metavar="N", help="number of devices (default 2)"
    )
    parser.add_argument(
        "--port",
        type=_port,
        default=8080,
        metavar="FIRST",
        help="port of device 1; device n listens on FIRST+n-1 (default 8080; "
        "0 gives each device an ephemeral port)",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    parser.add_argument(
        "--tls", action="store_true", help="serve HTTPS with a generated self-signed certificate"
    )
    parser.add_argument(
        "--cert-dir",
        metavar="DIR",
        help="keep the certificate (cert.pem, key.pem) in DIR and reuse it",
    )


def _access_options(parser: argparse.ArgumentParser) -> None:
    """How the device API authenticates, and its full-rights user."""
    parser.add_argument(
        "--auth",
        choices=get_args(AuthMethod),
        default="none",
        help="authentication of the device API (default none)",
    )
    parser.add_argument("--username", default="admin", help="API user name (default admin)")
    parser.add_argument("--password", default="secret", help="API password (default secret)")


def _device_options(parser: argparse.ArgumentParser) -> None:
    """What each device is like: firmware, accounts, PBX, registration and answer delays."""
    parser.add_argument(
        "--firmware",
        choices=get_args(Firmware),
        default="string",
        help="typing of ports and answerMode in answers; integer firmware also reports "
        "a read-only accountType (default string)",
    )
    parser.add_argument(
        "--accounts",
        type=int,
        choices=ACCOUNT_COUNTS,
        default=2,
        help="SIP accounts per device: 2, or 4 (account 4 is a local account that "
        "never registers) (default 2)",
    )
    parser.add_argument(
        "--pbx",
        action="append",
        metavar="HOST",
        help="a PBX host name accounts can register with (repeatable; default "
        f"{DEFAULT_PBX[0]}); an account registers when it is enabled with registration "
        "enabled, a password set, and its registrarAddress (else domain) is one of them",
    )
    parser.add_argument(
        "--register-delay",
        type=_seconds,
        default=1.0,
        metavar="SECONDS",
        help="time an account takes to register after its SIP settings change (default 1)",
    )
    parser.add_argument(
        "--latency",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="delay of every device-API answer, as over a real network (default 0)",
    )


def _digest_options(parser: argparse.ArgumentParser) -> None:
    """Firmware quirks of authentication: nonces that go stale, a double challenge."""
    parser.add_argument(
        "--nonce-uses",
        type=_count,
        default=0,
        metavar="K",
        help="requests each Digest nonce is accepted for; the next one gets 401 "
        "stale=true with a new nonce (default 0: unlimited)",
    )
    parser.add_argument(
        "--dual-challenge",
        action="store_true",
        help="send two WWW-Authenticate headers (Basic, then Digest) with every 401 "
        "and accept either method, as some firmware does",
    )


def _positive(text: str) -> int:
    return _integer(text, low=1, high=None, expected="a whole number of at least 1")


def _count(text: str) -> int:
    return _integer(text, low=0, high=None, expected="a whole number of at least 0")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds >= 0")
    return value


def _port(text: str) -> int:
    return _integer(text, low=0, high=65535, expected="a TCP port, 0..65535")


def _integer(text: str, *, low: int, high: int | None, expected: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if value < low or (high is not None and value > high):
        raise argparse.ArgumentTypeError(f"{text!r} is not {expected}")
    return value


def _raise_open_file_limit() -> None:
    """Lift the soft open-file limit to the hard one: each device is a listening socket."""
    try:
        import resource
    except ImportError:  # not on Unix; the platform's default has to do
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = _kernel_file_limit()
    if soft != resource.RLIM_INFINITY and soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(
                resource.RLIMIT_NOFILE, (hard, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
            )


def _kernel_file_limit() -> int:
    """The most files a process may open when its hard limit is "unlimited" (Linux: nr_open)."""
    try:
        return int(Path("/proc/sys/fs/nr_open").read_text())
    except (OSError, ValueError):
        return 1 << 20
