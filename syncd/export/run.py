"""``syncd export``: read live devices and write the desired state that matches them.

One device (``--url``) is printed to stdout; with ``--output DIR`` it is written
to ``DIR/NAME.yaml``, and with ``--from-list FILE`` every device listed there
(``NAME URL`` a line) is read concurrently and written to its own file. A file
that already exists is never overwritten. The YAML itself is rendered by
:mod:`syncd.export.render`.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from syncd import events, loop
from syncd.client import AuthError, ClientPool, DeviceClient, DeviceError, TlsError
from syncd.commands import EXIT_ERROR, EXIT_OK
from syncd.export.render import render_document
from syncd.export.request import Access, ExportError, ExportRequest, Target
from syncd.export.targets import targets
from syncd.logs import get_logger
from syncd.model import AuthMethod, AuthSpec, TlsSpec
from syncd.retrying import RetryPolicy, with_retries
from syncd.secrets import SecretError, SecretRef, resolve_secret
from syncd.settings import Settings

__all__ = ["export_command", "write_new_file"]


def export_command(request: ExportRequest, settings: Settings) -> int:
    """Run ``syncd export``; return the exit status (0 all exported, 1 any failure)."""
    report: list[str] = []
    try:
        access = _access(request)
        chosen = targets(request, report=report)
    except ExportError as exc:
        for problem in report:
            _fail(problem)
        _fail(str(exc))
        return EXIT_ERROR
    if request.output is None:
        (target,) = chosen
        try:
            text = loop.run(_export_one(target, access, settings))
        except ExportError as exc:
            _fail(str(exc))
            return EXIT_ERROR
        sys.stdout.write(text)
        sys.stdout.flush()
        return EXIT_OK
    return _export_tree(chosen, access, settings, request.output)


def _fail(message: str) -> None:
    print(f"syncd: error: {message}", file=sys.stderr, flush=True)


def _access(request: ExportRequest) -> Access:
    """Credentials (the password read now) and TLS settings; the flags are already checked."""
    ref: tuple[str, str] | None = None
    password = None
    try:
        if request.password_env is not None:
            ref = ("env", request.password_env)
        elif request.password_file is not None:
            ref = ("file", os.path.abspath(request.password_file))
        if ref is not None:
            password = resolve_secret(
                SecretRef(ref[0], name=ref[1]), environ=os.environ, base_dir=Path.cwd()
            )
    except SecretError as exc:
        flag = "--password-env" if request.password_env is not None else "--password-file"
        raise ExportError(f"cannot read the API password ({flag}): {exc}") from None
    username = None if request.auth is AuthMethod.NONE else request.username
    auth = AuthSpec(method=request.auth, username=username, password=password)
    ca_file: str | None = None
    if request.ca_file is not None:
        ca_file = os.path.abspath(request.ca_file)
        if not os.path.isfile(ca_file):
            raise ExportError(f"--ca-file {request.ca_file} does not exist or is not a file")
    if request.insecure:
        error = "--insecure: certificates and host names are not checked"
        events.export_tls_unverified(get_logger(), error=error)
    tls = TlsSpec(verify=not request.insecure, ca_file=ca_file)
    return Access(auth=auth, tls=tls, password_ref=ref)


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
        events.export_no_identity(get_logger().bind(device=target.who), error=str(exc))
        info = None
    return accounts, info


def _render(
    target: Target, access: Access, accounts: list[dict[str, Any]], info: dict[str, Any] | None
) -> str:
    text, notes = render_document(
        url=target.url, name=target.name, access=access, accounts=accounts, info=info
    )
    log = get_logger().bind(device=target.who)
    for note in notes:
        events.export_field_skipped(log, error=note)
    return text


async def _export_one(target: Target, access: Access, settings: Settings) -> str:
    async with ClientPool(
        timeout=settings.request_timeout, connect_timeout=settings.connect_timeout
    ) as pool:
        accounts, info = await _read(target, access, settings, pool)
    text = _render(target, access, accounts, info)
    log = get_logger().bind(device=target.who)
    events.export_read(log, url=target.url, accounts=len(accounts))
    return text


# --------------------------------------------------------------- tree export


def _export_tree(
    chosen: Sequence[Target], access: Access, settings: Settings, output: Path
) -> int:
    failures: dict[str, str] = {}
    pending: list[Target] = []
    for target in chosen:
        assert target.path is not None
        if target.path.exists() or target.path.is_symlink():
            failures[target.who] = f"{target.path} already exists; not overwritten"
        else:
            pending.append(target)
    written = loop.run(_export_many(pending, access, settings, failures))
    for target in chosen:
        if target.who in failures:
            _fail(f"{target.who}: {failures[target.who]}")
    for path in written:
        print(f"wrote {path}")
    print(
        f"{len(written)} of {len(chosen)} device(s) exported to {output}"
        + (f"; {len(failures)} failed" if failures else "")
    )
    return EXIT_ERROR if failures else EXIT_OK


async def _export_many(
    chosen: Sequence[Target], access: Access, settings: Settings, failures: dict[str, str]
) -> list[Path]:
    gate = asyncio.Semaphore(settings.concurrency)
    written: list[Path | None] = [None] * len(chosen)

    async with ClientPool(
        timeout=settings.request_timeout, connect_timeout=settings.connect_timeout
    ) as pool:

        async def one(i: int, target: Target) -> None:
            async with gate:
                try:
                    accounts, info = await _read(target, access, settings, pool)
                except ExportError as exc:
                    failures[target.who] = str(exc)
                    return
            problem = _write(target, _render(target, access, accounts, info))
            if problem is not None:
                failures[target.who] = problem
            else:
                written[i] = target.path

        await asyncio.gather(*(one(i, t) for i, t in enumerate(chosen)))
    return [p for p in written if p is not None]


def _write(target: Target, text: str) -> str | None:
    """Write one device's file; what went wrong, or None."""
    assert target.path is not None
    try:
        write_new_file(target.path, text)
    except FileExistsError:
        return f"{target.path} already exists; not overwritten"
    except OSError as exc:
        return f"cannot write {target.path}: {exc.strerror or exc}"
    log = get_logger().bind(device=target.who)
    events.export_written(log, url=target.url, file=str(target.path))
    return None


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
