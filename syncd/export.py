"""``syncd export``: read live devices and write the desired state that matches them.

One device (``--url``) is printed to stdout; with ``--output DIR`` it is written
to ``DIR/NAME.yaml``, and with ``--from-list FILE`` every device listed there
(``NAME URL`` a line) is read concurrently and written to its own file. A file
that already exists is never overwritten.

The YAML is generated here, small and deterministic: text fields are always
double-quoted (so ``"4001"`` and ``"0123"`` stay strings), ports are integers
with ``""`` for the default port, ``answerMode`` an integer, booleans YAML
booleans. Passwords are write-only on the device, so none is exported: the API
password appears as the reference it was given by (``{env: VAR}`` or
``{file: PATH}``), and each account carries a comment on how to add one.
Live fields syncd does not manage (``accountType`` of newer firmware) are left out.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from syncd import __version__, loop
from syncd.client import (
    AuthError,
    ClientPool,
    DeviceClient,
    DeviceError,
    TlsError,
)
from syncd.diff import normalise_live_account
from syncd.fleet import select_devices
from syncd.logs import get_logger
from syncd.model import (
    ACCOUNT_FIELDS,
    ACCOUNT_NUMBERS,
    AuthMethod,
    AuthSpec,
    FieldKind,
    TlsSpec,
    normalise_live,
)
from syncd.retrying import RetryPolicy, with_retries
from syncd.schema import MAX_TEXT, text_problem
from syncd.secrets import SecretError, SecretRef, resolve_secret
from syncd.settings import Settings

__all__ = ["ExportError", "export_command", "render_document"]

T = TypeVar("T")

EXIT_OK = 0
EXIT_ERROR = 1

#: The longest text the desired-state format accepts (see syncd.desired).
SUFFIXES = (".yaml", ".yml")
#: Live keys handled apart from the managed fields (a password is never exported).
_KEYS = frozenset({"account", "password"})
PASSWORD_HINT = (
    "# password: {env: NAME} | {file: PATH} | {credential: NAME}  (write-only; not exported)"
)


class ExportError(Exception):
    """A user-caused failure of an export: one sentence naming what is wrong."""


@dataclass(frozen=True)
class Access:
    """How to reach the devices, and how the exported file should say so."""

    auth: AuthSpec
    tls: TlsSpec
    #: The password as the desired state should reference it: ("env", VAR) or ("file", PATH).
    password_ref: tuple[str, str] | None = None


@dataclass(frozen=True)
class Target:
    """One device to export."""

    url: str
    #: ``device.name`` to write, or None to leave the name to the file's path.
    name: str | None = None
    #: Where to write the YAML; None prints it to stdout.
    path: Path | None = None
    #: What messages call the device (its list name, or its URL).
    label: str = ""

    @property
    def who(self) -> str:
        return self.label or self.url


# ------------------------------------------------------------------ command


def export_command(args: argparse.Namespace, settings: Settings) -> int:
    """Run ``syncd export``; return the exit status (0 all exported, 1 any failure)."""
    try:
        access = _access(args)
        targets = _targets(args)
    except ExportError as exc:
        _fail(str(exc))
        return EXIT_ERROR
    if args.output is None:
        (target,) = targets
        try:
            text = loop.run(_export_one(target, access, settings))
        except ExportError as exc:
            _fail(str(exc))
            return EXIT_ERROR
        sys.stdout.write(text)
        sys.stdout.flush()
        return EXIT_OK
    return _export_tree(targets, access, settings, args.output)


def _fail(message: str) -> None:
    print(f"syncd: error: {message}", file=sys.stderr, flush=True)


def _access(args: argparse.Namespace) -> Access:
    method = AuthMethod(args.auth)
    password_env: str | None = args.password_env
    password_file: Path | None = args.password_file
    if method is AuthMethod.NONE:
        if args.username is not None or password_env is not None or password_file is not None:
            raise ExportError("--auth none takes no --username, --password-env or --password-file")
        auth = AuthSpec(method=method)
        ref = None
    else:
        if not args.username:
            raise ExportError(
                f"--auth {method} needs --username "
                "(use --auth none for a device without API authentication)"
            )
        _check_text("--username", args.username)
        ref = None
        password = None
        try:
            if password_env is not None:
                if not password_env.strip():
                    raise ExportError("--password-env needs the name of an environment variable")
                ref = ("env", password_env)
                password = resolve_secret(
                    SecretRef("env", name=password_env), environ=os.environ, base_dir=Path.cwd()
                )
            elif password_file is not None:
                absolute = os.path.abspath(password_file)
                ref = ("file", absolute)
                password = resolve_secret(
                    SecretRef("file", name=absolute), environ=os.environ, base_dir=Path.cwd()
                )
        except SecretError as exc:
            flag = "--password-env" if password_env is not None else "--password-file"
            raise ExportError(f"cannot read the API password ({flag}): {exc}") from None
        auth = AuthSpec(method=method, username=args.username, password=password)
    ca_file: str | None = None
    if args.ca_file is not None:
        ca_file = os.path.abspath(args.ca_file)
        if not os.path.isfile(ca_file):
            raise ExportError(f"--ca-file {args.ca_file} does not exist or is not a file")
    tls = TlsSpec(verify=not args.insecure, ca_file=ca_file)
    if args.insecure:
        get_logger().warning(
            "export.tls_unverified",
            error="--insecure: certificates and host names are not checked",
        )
    return Access(auth=auth, tls=tls, password_ref=ref)


def _targets(args: argparse.Namespace) -> list[Target]:
    output: Path | None = args.output
    if args.from_list is not None:
        if output is None:
            raise ExportError("--from-list needs --output DIR to write the files to")
        if args.name is not None:
            raise ExportError("--name names one device; with --from-list the list names them")
        targets = read_device_list(args.from_list, output)
        if args.device:
            wanted = select_devices([t.label for t in targets], args.device)
            for pattern in args.device:
                if not select_devices([t.label for t in targets], [pattern]):
                    raise ExportError(f"no device in {args.from_list} matches --device {pattern}")
            targets = [t for t in targets if t.label in wanted]
        return targets
    url = normalise_url(args.url, what=f"--url {args.url}")
    name: str | None = args.name
    if name is not None:
        _check_text("--name", name)
    if output is None:
        return [Target(url=url, name=name)]
    file_name = name if name is not None else name_from_url(url)
    rel = check_device_name(file_name, what=f"--name {name}" if name else "the name from --url")
    explicit = rel if name is not None else None
    return [Target(url=url, name=explicit, path=output / f"{rel}.yaml", label=rel)]


def _check_text(flag: str, value: str) -> None:
    if text_problem(value) is not None:
        raise ExportError(
            f"{flag} must be at most {MAX_TEXT} characters without control characters"
        )


# -------------------------------------------------------- names, URLs, lists


def normalise_url(raw: str, *, what: str) -> str:
    """``scheme://host[:port]`` as the desired-state format wants it, or ExportError."""
    parts = urlsplit(raw.strip())
    if parts.scheme not in ("http", "https"):
        raise ExportError(f"{what}: the URL must start with http:// or https://")
    if "@" in parts.netloc:
        raise ExportError(f"{what}: the URL must not hold credentials; use --username")
    try:
        parts.port  # noqa: B018 - validates the port
    except ValueError:
        raise ExportError(f"{what}: the URL has an invalid port") from None
    if not parts.hostname:
        raise ExportError(f"{what}: the URL has no host name")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ExportError(f"{what}: the URL must be just scheme, host and optional port")
    return f"{parts.scheme}://{parts.netloc}"


def name_from_url(url: str) -> str:
    """A file name for a device known only by URL: its host, and its port if given."""
    parts = urlsplit(url)
    host = (parts.hostname or "device").replace(":", "-")
    return f"{host}-{parts.port}" if parts.port is not None else host


def check_device_name(name: str, *, what: str) -> str:
    """A device name usable as a path under the output dir (``site-a/lobby``), or ExportError.

    A trailing ``.yaml`` is dropped. Parts starting with ``.`` would be ignored by
    the loader and ``..`` would leave the tree, so both are refused.
    """
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    parts = name.split("/")
    if not name or any(p in ("", ".", "..") for p in parts):
        raise ExportError(f"{what}: '{name}' is not a relative path of names such as site-a/lobby")
    if any(p.startswith(".") for p in parts):
        raise ExportError(f"{what}: '{name}' has a part starting with '.', which syncd ignores")
    if parts[-1] == "_defaults":
        raise ExportError(f"{what}: '_defaults' is the name of the defaults file")
    if "\\" in name or text_problem(name) is not None:
        raise ExportError(f"{what}: '{name}' contains characters not allowed in a device name")
    return name


def read_device_list(path: Path, output: Path) -> list[Target]:
    """Parse ``NAME URL`` lines (blank lines and ``#`` comments ignored) into targets.

    Every problem of the file is reported at once, each as ``FILE:LINE: ...``;
    a list with any problem exports nothing.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ExportError(f"device list {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not UTF-8 text"
        raise ExportError(f"cannot read device list {path}: {reason}") from None
    targets: list[Target] = []
    problems: list[str] = []
    names: dict[str, int] = {}
    urls: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        words = line.split()
        comment = next((i for i, w in enumerate(words) if w.startswith("#")), len(words))
        words = words[:comment]
        if not words:
            continue
        where = f"{path}:{number}"
        if len(words) != 2:
            problems.append(f"{where}: expected 'NAME URL', found {len(words)} word(s)")
            continue
        try:
            name = check_device_name(words[0], what=where)
            url = normalise_url(words[1], what=f"{where}: {words[1]}")
        except ExportError as exc:
            problems.append(str(exc))
            continue
        if name in names:
            problems.append(f"{where}: device {name} is already listed on line {names[name]}")
            continue
        if url in urls:
            problems.append(f"{where}: {url} is already listed on line {urls[url]}")
            continue
        names[name] = urls[url] = number
        targets.append(Target(url=url, path=output / f"{name}.yaml", label=name))
    if problems:
        for problem in problems[:-1]:
            _fail(problem)
        raise ExportError(problems[-1])
    if not targets:
        raise ExportError(f"device list {path} names no device")
    return targets


# ------------------------------------------------------------- reading devices


def _explain(exc: DeviceError, access: Access) -> str:
    """The client's sentence, plus what the operator can do about it."""
    message = exc.message
    if isinstance(exc, TlsError) and "caFile" not in message:
        hint = "trust its certificate with --ca-file PATH"
        if access.tls.ca_file:
            hint = f"{access.tls.ca_file} does not vouch for it; check --ca-file"
        return f"{message}; {hint}, or skip the check with --insecure"
    if isinstance(exc, AuthError):
        if access.auth.method is AuthMethod.NONE:
            return f"{message}; the device wants credentials: give --auth and --username"
        return f"{message}; check --auth, --username and the password"
    return message


async def _read(
    target: Target, access: Access, settings: Settings, pool: ClientPool
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    client = DeviceClient(url=target.url, pool=pool, auth=access.auth, tls=access.tls)
    try:
        policy = RetryPolicy(attempts=settings.retry_attempts)
        accounts = await with_retries(
            client.get_accounts, device=target.who, request="GET", policy=policy
        )
    except DeviceError as exc:
        raise ExportError(_explain(exc, access)) from None
    try:
        info: dict[str, Any] | None = await client.system_info()
    except DeviceError as exc:  # identity is a courtesy comment; the export does not need it
        get_logger().debug("export.no_identity", device=target.who, error=str(exc))
        info = None
    return accounts, info


async def _export_one(target: Target, access: Access, settings: Settings) -> str:
    async with ClientPool(timeout=settings.request_timeout) as pool:
        accounts, info = await _read(target, access, settings, pool)
    text, notes = render_document(
        url=target.url, name=target.name, access=access, accounts=accounts, info=info
    )
    log = get_logger()
    for note in notes:
        log.warning("export.field_skipped", device=target.who, error=note)
    log.info("export.read", device=target.who, url=target.url, accounts=len(accounts))
    return text


# --------------------------------------------------------------- tree export


def _export_tree(
    targets: Sequence[Target], access: Access, settings: Settings, output: Path
) -> int:
    failures: dict[str, str] = {}
    pending: list[Target] = []
    for target in targets:
        assert target.path is not None
        if target.path.exists() or target.path.is_symlink():
            failures[target.who] = f"{target.path} already exists; not overwritten"
        else:
            pending.append(target)
    written = loop.run(_export_many(pending, access, settings, failures))
    for target in targets:
        if target.who in failures:
            _fail(f"{target.who}: {failures[target.who]}")
    for path in written:
        print(f"wrote {path}")
    print(
        f"{len(written)} of {len(targets)} device(s) exported to {output}"
        + (f"; {len(failures)} failed" if failures else "")
    )
    return EXIT_ERROR if failures else EXIT_OK


async def _export_many(
    targets: Sequence[Target], access: Access, settings: Settings, failures: dict[str, str]
) -> list[Path]:
    gate = asyncio.Semaphore(settings.concurrency)
    written: list[Path | None] = [None] * len(targets)
    log = get_logger()

    async with ClientPool(timeout=settings.request_timeout) as pool:

        async def one(i: int, target: Target) -> None:
            assert target.path is not None
            async with gate:
                try:
                    accounts, info = await _read(target, access, settings, pool)
                except ExportError as exc:
                    failures[target.who] = str(exc)
                    return
            text, notes = render_document(
                url=target.url, name=target.name, access=access, accounts=accounts, info=info
            )
            for note in notes:
                log.warning("export.field_skipped", device=target.who, error=note)
            try:
                write_new_file(target.path, text)
            except FileExistsError:
                failures[target.who] = f"{target.path} already exists; not overwritten"
                return
            except OSError as exc:
                failures[target.who] = f"cannot write {target.path}: {exc.strerror or exc}"
                return
            log.info("export.written", device=target.who, url=target.url, file=str(target.path))
            written[i] = target.path

        await asyncio.gather(*(one(i, t) for i, t in enumerate(targets)))
    return [p for p in written if p is not None]


def write_new_file(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically; raise FileExistsError rather than replace a file.

    The text goes to a hidden temporary file (which the loader ignores) that is
    then hard-linked into place, which fails if ``path`` appeared meanwhile.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.link(tmp, path)
    finally:
        os.unlink(tmp)


# ------------------------------------------------------------------ rendering


def _printable(ch: str) -> bool:
    """Characters that may stand unescaped in a double-quoted YAML scalar.

    YAML's printable set, minus the characters PyYAML reads as line breaks
    (U+0085, U+2028, U+2029) and the byte-order mark.
    """
    code = ord(ch)
    return (
        0x20 <= code <= 0x7E
        or (0xA0 <= code <= 0xD7FF and code not in (0x2028, 0x2029))
        or (0xE000 <= code <= 0xFFFD and code != 0xFEFF)
        or code >= 0x10000
    )


def yaml_string(text: str) -> str:
    """``text`` as a double-quoted YAML scalar that reads back as exactly ``text``."""
    out = ['"']
    for ch in text:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif _printable(ch):
            out.append(ch)
        elif ord(ch) <= 0xFF:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(f"\\u{ord(ch):04x}")
    out.append('"')
    return "".join(out)


def _comment(text: str) -> str:
    """Text safe to put after ``#``: one line, printable."""
    return "".join(c if c.isprintable() else "?" for c in text)


def render_value(kind: FieldKind, value: Any) -> str | None:
    """A live value as desired-state YAML that compares equal to it, or None if none can."""
    if kind is FieldKind.BOOL:
        return ("true" if value else "false") if isinstance(value, bool) else None
    if kind is FieldKind.TEXT:
        return (
            yaml_string(value) if isinstance(value, str) and text_problem(value) is None else None
        )
    number = normalise_live(kind, value)
    if not isinstance(number, int) or isinstance(number, bool) or number < 0:
        return None
    if kind is FieldKind.PORT:
        if number > 65535:
            return None
        return '""' if number == 0 else str(number)
    return str(number)


def render_document(
    *,
    url: str,
    name: str | None,
    access: Access,
    accounts: Sequence[Mapping[str, Any]],
    info: Mapping[str, Any] | None = None,
) -> tuple[str, list[str]]:
    """The desired-state YAML for a device, and notes on live values left out of it."""
    notes: list[str] = []
    lines = [f"# Desired state of {_comment(url)}, exported by syncd {__version__}."]
    if info:
        about = [str(info[k]) for k in ("variant", "deviceName") if isinstance(info.get(k), str)]
        for key, label in (("serialNumber", "serial"), ("swVersion", "firmware")):
            if isinstance(info.get(key), str):
                about.append(f"{label} {info[key]}")
        if about:
            lines.append(f"# {_comment(', '.join(about))}")
    lines += ["device:", f"  url: {yaml_string(url)}"]
    if name is not None:
        lines.append(f"  name: {yaml_string(name)}")
    auth = access.auth
    lines += ["  auth:", f"    method: {auth.method.value}"]
    if auth.method is not AuthMethod.NONE:
        if auth.username is not None:
            lines.append(f"    username: {yaml_string(auth.username)}")
        if access.password_ref is not None:
            source, where = access.password_ref
            lines.append(f"    password: {{{source}: {yaml_string(where)}}}")
    if not access.tls.verify or access.tls.ca_file:
        lines.append("  tls:")
        if not access.tls.verify:
            lines.append("    verify: false")
        if access.tls.ca_file:
            lines.append(f"    caFile: {yaml_string(access.tls.ca_file)}")
    lines.append("  mode: enforce")

    body: list[str] = []
    seen: set[int] = set()
    for index, live in enumerate(accounts):
        number = normalise_live_account(live.get("account"))
        number = number if number in ACCOUNT_NUMBERS else None
        if number is None or number in seen:
            why = "is listed twice" if number in seen else "has no account number 1 to 4"
            notes.append(f"live account #{index + 1} {why}; not exported")
            body.append(f"  # live account #{index + 1} {why}; not exported")
            continue
        seen.add(number)
        body.append(f"  - account: {number}")
        for field, kind in ACCOUNT_FIELDS.items():
            if field not in live:
                continue
            rendered = render_value(kind, live[field])
            if rendered is None:
                note = (
                    f"account {number} {field}: the device reports {_comment(repr(live[field]))}, "
                    "which the desired-state format cannot hold; not exported"
                )
                notes.append(note)
                body.append(f"    # {field}: not exported (device reports an unusable value)")
                continue
            body.append(f"    {field}: {rendered}")
        unmanaged = sorted(k for k in live if k not in ACCOUNT_FIELDS and k not in _KEYS)
        if unmanaged:
            body.append(
                f"    # not managed by syncd, not exported: {_comment(', '.join(unmanaged))}"
            )
        body.append(f"    {PASSWORD_HINT}")
    lines += ["accounts:", *body] if body and seen else ["accounts: []", *body]
    return "\n".join(lines) + "\n", notes
