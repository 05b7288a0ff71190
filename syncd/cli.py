"""Command-line parsing only: each command is a call into the library."""

from __future__ import annotations

import argparse
import gc
import os
import sys
import traceback
from collections.abc import Sequence
from dataclasses import fields
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from syncd import __version__
from syncd.command_errors import errors_as_json, report_error
from syncd.gctune import collector_paused, pace_collector, spare_exit

if TYPE_CHECKING:
    from syncd.export import ExportRequest

__all__ = ["main"]

_SETTING_FLAGS = (
    ("--state-dir", str, "state directory (password records, applied fingerprints)"),
    ("--resync-interval", float, "seconds between resyncs of a device (jittered ±10%%)"),
    ("--concurrency", int, "devices in flight at once"),
    ("--request-timeout", float, "seconds to wait for a device's answer"),
    ("--connect-timeout", float, "seconds to wait for a device to accept a connection"),
    ("--log-format", str, "json or console (default: console on a terminal, else json)"),
    ("--log-level", str, "debug, info, warning or error"),
    ("--metrics-address", str, "HOST:PORT to serve Prometheus metrics and /healthz on"),
    (
        "--socket",
        str,
        "the daemon's control socket (default: $RUNTIME_DIRECTORY/syncd.sock under systemd, "
        "else STATE_DIR/syncd.sock)",
    ),
    ("--cluster-endpoints", str, "etcd endpoints http(s)://HOST:PORT,...; unset: standalone"),
    ("--cluster-name", str, "key prefix in etcd, the same on every node (default syncd)"),
    ("--node-name", str, "this node's name in the cluster (default: the host name)"),
    ("--lease-ttl", float, "seconds until a silent node's devices move (default 10)"),
    ("--cluster-ca-file", str, "CA certificate of etcd (https endpoints)"),
    ("--cluster-cert-file", str, "client certificate for etcd (mutual TLS)"),
    ("--cluster-key-file", str, "client key for etcd (mutual TLS)"),
    ("--cluster-username", str, "etcd user"),
    ("--cluster-password-file", str, "file holding the etcd user's password"),
    ("--password-key-file", str, "key of the password records (cluster: same on every node)"),
)

#: Settings only the daemon uses: the one-shot commands refuse them rather than ignore them.
_DAEMON_ONLY_FLAGS = ("--resync-interval", "--metrics-address")
_ONE_SHOT_COMMANDS = ("validate", "plan", "apply", "export")


def _requested_format(argv: Sequence[str]) -> str | None:
    """The log format asked for on the command line or in the environment: json, console, None."""
    found = os.environ.get("SYNCD_LOG_FORMAT")
    for i, arg in enumerate(argv):
        if arg == "--log-format" and i + 1 < len(argv):
            found = argv[i + 1]
        elif arg.startswith("--log-format="):
            found = arg.split("=", 1)[1]
    return found if found in ("json", "console") else None


class _Parser(argparse.ArgumentParser):
    """Usage errors as one JSON line when log events are JSON (stderr not a terminal)."""

    #: The command line being parsed (for a --log-format on it).
    argv: Sequence[str] = ()

    def error(self, message: str) -> NoReturn:
        status = _usage_status(self.argv)
        fmt = _requested_format(self.argv)
        if errors_as_json(sys.stderr, fmt=fmt):
            report_error(message, event="command.usage", fmt="json")
            self.exit(status)
        self.print_usage(sys.stderr)
        self.exit(status, f"{self.prog}: error: {message}\n")


def _usage_status(argv: Sequence[str]) -> int:
    """2 for a bad command line, as is usual; 1 for ``plan``, whose 2 means "changes pending"
    (SPEC 5: 1 any error), so a CI job never reads a typo as a change."""
    words = [arg for arg in argv if not arg.startswith("-")]
    return 1 if words[:1] == ["plan"] else 2


def _check_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """A one-shot command given a daemon-only setting is a usage error naming the flag."""
    if args.command not in _ONE_SHOT_COMMANDS:
        return
    for flag in _DAEMON_ONLY_FLAGS:
        if getattr(args, flag[2:].replace("-", "_"), None) is not None:
            parser.error(
                f"syncd {args.command} does not take {flag}: it is a setting of the daemon "
                "(syncd run)"
            )


def _common(*, daemon_flags: bool) -> _Parser:
    """The flags every command takes; a one-shot command's help leaves out the daemon's
    own settings (given anyway, they are refused by name, not ignored)."""
    common = _Parser(add_help=False)
    # Paths stay strings here: the settings refuse an empty one, which Path would make ".".
    common.add_argument("--desired", metavar="DIR", help="desired-state directory")
    common.add_argument(
        "--device",
        action="append",
        default=[],
        metavar="NAME",
        help="limit to this device (name or glob; repeatable)",
    )
    common.add_argument("--config", metavar="PATH", help="TOML settings file")
    for flag, kind, text in _SETTING_FLAGS:
        shown = daemon_flags or flag not in _DAEMON_ONLY_FLAGS
        common.add_argument(flag, type=kind, help=text if shown else argparse.SUPPRESS)
    return common


def _parser() -> argparse.ArgumentParser:
    common = _common(daemon_flags=True)
    one_shot = _common(daemon_flags=False)
    parser = _Parser(
        prog="syncd",
        description="Keep the SIP accounts of 2N IP intercoms equal to a tree of YAML files.",
    )
    parser.add_argument("--version", action="version", version=f"syncd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("validate", parents=[one_shot], help="check the desired state offline")
    p.add_argument("dir", nargs="?", metavar="DIR", help="same as --desired DIR")
    p.add_argument(
        "--resolve-secrets",
        action="store_true",
        help="also check that every secret reference resolves",
    )

    p = sub.add_parser("plan", parents=[one_shot], help="show what would change on each device")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = sub.add_parser("apply", parents=[one_shot], help="one reconcile pass over all devices")
    p.add_argument(
        "--ignore-windows",
        action="store_true",
        help="apply outside the maintenance windows of _fleet.yaml (an emergency; logged)",
    )
    sub.add_parser("run", parents=[common], help="the daemon: keep devices converged")
    p = sub.add_parser("rollout", parents=[common], help="pause or resume the rollout")
    p.add_argument("action", choices=["pause", "resume"])

    _add_export(sub, one_shot)
    _add_fleet(sub, common)
    sub.add_parser("simulate", add_help=False, help="run emulated intercoms on loopback")
    return parser


def _add_fleet(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("status", parents=[common], help="the fleet as the running daemon sees it")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p = sub.add_parser("history", parents=[common], help="what syncd changed on the devices")
    p.add_argument("--since", metavar="DURATION", help="only the last DURATION (90, 5m, 2h, 1d)")
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p = sub.add_parser("passwords", help="SIP passwords syncd manages")
    action = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    q = action.add_parser(
        "resend", parents=[common], help="send a device's passwords again (after a factory reset)"
    )
    q.add_argument("name", metavar="NAME", help="the device")


def _add_export(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("export", parents=[common], help="print desired-state YAML for a device")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--url", help="device URL, e.g. https://192.0.2.10")
    source.add_argument(
        "--from-list",
        type=Path,
        metavar="FILE",
        help="export every device listed in FILE, one 'NAME URL' a line (needs --output)",
    )
    p.add_argument(
        "--output",
        type=Path,
        metavar="DIR",
        help="write DIR/NAME.yaml instead of printing; never overwrites a file",
    )
    p.add_argument(
        "--no-factor-defaults",
        dest="factor_defaults",
        action="store_false",
        help="with --from-list: keep every value in each device's file "
        "(default: values all devices share go to DIR/_defaults.yaml)",
    )
    p.add_argument("--auth", choices=["digest", "basic", "none"], default="digest")
    p.add_argument("--username")
    secret = p.add_mutually_exclusive_group()
    secret.add_argument("--password-env", metavar="VAR", help="read the API password from $VAR")
    secret.add_argument(
        "--password-file", type=Path, metavar="PATH", help="read the API password from a file"
    )
    p.add_argument("--ca-file", type=Path, metavar="PATH", help="extra CA certificate to trust")
    p.add_argument("--insecure", action="store_true", help="do not verify the certificate")
    p.add_argument("--name", help="device name to write (default: from the URL)")


def _settings(args: argparse.Namespace) -> Any:
    from syncd.settings import load_settings

    desired = args.desired if getattr(args, "dir", None) is None else args.dir
    flags = {flag[2:].replace("-", "_"): None for flag, _, _ in _SETTING_FLAGS}
    return load_settings(
        args.config, desired_dir=desired, **{name: getattr(args, name) for name in flags}
    )


def _warn_unknown_variables() -> None:
    """Once, at start: each SYNCD_* environment variable that names no setting."""
    from syncd.daemon_events import settings_unknown_variable
    from syncd.logs import get_logger
    from syncd.settings import unknown_environment

    for variable, message in unknown_environment().items():
        settings_unknown_variable(get_logger(), variable=variable, message=message)


def _dispatch(args: argparse.Namespace) -> int:
    with collector_paused():  # the modules and the settings: made once, kept to the end
        from syncd import commands
        from syncd.logs import configure_logging

        settings = _settings(args)
    gc.freeze()  # what start-up made stays: later collections need not walk it again
    # `run` logs to stdout (journald); every other command keeps stdout for its result.
    stream = sys.stdout if args.command == "run" else sys.stderr
    configure_logging(level=settings.log_level, fmt=settings.log_format, stream=stream)
    _warn_unknown_variables()
    if settings.log_level != "debug":
        # gRPC's core (under the etcd client) writes a failed TLS handshake to stderr beside
        # syncd's one sentence; it reads this once, when first imported (after this).
        os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    if args.command == "validate":
        return commands.validate(
            desired_dir=settings.desired_dir,
            devices=args.device,
            resolve_secrets=args.resolve_secrets,
        )
    if args.command == "plan":
        return commands.plan(settings, devices=args.device, as_json=args.json)
    if args.command == "apply":
        return commands.apply(settings, devices=args.device, ignore_windows=args.ignore_windows)
    if args.command == "rollout":
        from syncd.fleet_commands import rollout_command

        return rollout_command(settings, action=args.action)
    if args.command == "run":
        from syncd.daemon_entry import run_daemon

        # SIGHUP reads the settings again: the same flags, environment and file.
        return run_daemon(settings, devices=args.device, reread=partial(_settings, args))
    if args.command in ("status", "history", "passwords"):
        from syncd import fleet_commands

        if args.command == "status":
            return fleet_commands.status_command(settings, as_json=args.json, devices=args.device)
        if args.command == "history":
            return fleet_commands.history_command(
                settings, devices=args.device, since=args.since, as_json=args.json
            )
        return fleet_commands.resend_command(settings, device=args.name)
    if args.command == "export":
        from syncd.export import export_command

        return export_command(_export_request(args), settings)
    raise AssertionError(args.command)


def _export_request(args: argparse.Namespace) -> ExportRequest:
    """The export flags, checked against each other, as a typed request."""
    from syncd.desired.schema import MAX_TEXT, text_problem
    from syncd.export import ExportError, ExportRequest
    from syncd.model import AuthMethod

    def check_text(flag: str, value: str) -> None:
        if text_problem(value) is not None:
            raise ExportError(
                f"{flag} must be at most {MAX_TEXT} characters without control characters"
            )

    method = AuthMethod(args.auth)
    if method is AuthMethod.NONE:
        given = (args.username, args.password_env, args.password_file)
        if any(flag is not None for flag in given):
            raise ExportError("--auth none takes no --username, --password-env or --password-file")
    elif not args.username:
        raise ExportError(
            f"--auth {method} needs --username "
            "(use --auth none for a device without API authentication)"
        )
    else:
        check_text("--username", args.username)
    if args.password_env is not None and not args.password_env.strip():
        raise ExportError("--password-env needs the name of an environment variable")
    if args.from_list is not None and args.output is None:
        raise ExportError("--from-list needs --output DIR to write the files to")
    if args.from_list is not None and args.name is not None:
        raise ExportError("--name names one device; with --from-list the list names them")
    if args.name is not None:
        check_text("--name", args.name)
    flags: dict[str, Any] = {
        f.name: getattr(args, f.name) for f in fields(ExportRequest) if hasattr(args, f.name)
    }
    flags.update(devices=tuple(args.device), auth=method)
    return ExportRequest(**flags)


def main(argv: Sequence[str] | None = None) -> int:
    program = argv is None  # the process is syncd, and ends when this returns
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["simulate"]:
        try:
            from syncd.simulator.cli import main as simulate
        except ImportError as exc:
            report_error(
                f"the emulator needs extra packages ({exc.name} is missing); "
                "install them with: pip install 'syncd[simulator]'",
                fmt=_requested_format(argv),
            )
            return 1
        return simulate(argv[1:])
    _Parser.argv = argv
    parser = _parser()
    args = parser.parse_args(argv)
    _check_flags(parser, args)
    debug = args.log_level == "debug"
    pace_collector()
    try:
        status = _dispatch(args)
        sys.stdout.flush()  # a reader gone shows here, not in the interpreter's last flush
        if program:
            spare_exit()
        return status
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The result's reader went away (`syncd plan | head -1`): end quietly, as a
        # Unix filter does, with 1 (the result was not delivered).
        from syncd.streams import silence

        silence(sys.stdout)
        return 1
    except Exception as exc:
        from syncd.logs import configured_format

        # The format logging was configured with; before that, what was asked for.
        fmt = None if configured_format() is not None else _requested_format(argv)
        if _is_sentence(exc):
            report_error(str(exc), fmt=fmt)
        else:
            report_error(
                f"unexpected {type(exc).__name__}: {exc} (run with --log-level debug for details)",
                fmt=fmt,
            )
        if debug:
            traceback.print_exc()
        return 1


#: The errors whose message is the sentence for the user, by module and class.
_SENTENCES = (
    ("syncd.commands", "CommandError"),
    ("syncd.export.request", "ExportError"),
    ("syncd.settings", "SettingsError"),
    ("syncd.state", "StateError"),
)


def _is_sentence(exc: Exception) -> bool:
    """Whether ``exc`` is one of :data:`_SENTENCES`.

    Only a loaded module can have raised its error: importing the others here
    would cost a command that failed early (``syncd status`` with no daemon)
    a third of a second of imports.
    """
    for module, name in _SENTENCES:
        loaded = sys.modules.get(module)
        if loaded is not None and isinstance(exc, getattr(loaded, name)):
            return True
    return False
