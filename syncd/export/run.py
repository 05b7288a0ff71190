"""``syncd export``: read live devices and write the desired state that matches them.

One device (``--url``) is printed to stdout; with ``--output DIR`` it is written
to ``DIR/NAME.yaml``, and with ``--from-list FILE`` every device listed there
(``NAME URL`` a line) is read concurrently and written to its own file. Then
the values every exported device shares (API access, mode, and account fields
alike on all) go to ``DIR/_defaults.yaml`` and each device file keeps only its
own, unless ``--no-factor-defaults`` (or ``DIR`` already holds desired files,
which a new defaults file would change). A file that already exists is never
overwritten. The YAML itself is rendered by
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

from syncd import export_events, loop
from syncd.client import AuthError, ClientPool, DeviceClient, DeviceError, TlsError
from syncd.command_errors import report_error
from syncd.commands import EXIT_ERROR, EXIT_OK
from syncd.desired.names import DEFAULTS_FILE, SUFFIXES
from syncd.export.render import (
    Document,
    defaults_text,
    document_text,
    read_document,
    shared_values,
)
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
        _check_output(request.output)
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
    factor = request.from_list is not None and request.factor_defaults
    return _export_tree(chosen, access, settings, request.output, factor=factor)


def _fail(message: str) -> None:
    report_error(message)


def _check_output(output: Path | None) -> None:
    """An ExportError when ``--output`` names something other than a directory (or nothing yet)."""
    if output is not None and (output.exists() or output.is_symlink()) and not output.is_dir():
        raise ExportError(f"--output {output} is a file, not a directory")


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
        export_events.export_tls_unverified(get_logger(), error=error)
    tls = TlsSpec(verify=not request.insecure, ca_file=ca_file)
    return Access(auth=auth, tls=tls, password_ref=ref)


# ------------------------------------------------------------- reading devices


#: How the client says which method the desired state names (syncd.http_auth.method_mismatch).
_DESIRED_NAMES = "the desired state names {}"


def _explain(exc: DeviceError, access: Access) -> str:
    """The client's sentence, plus what the operator can do about it."""
    message = exc.message
    if isinstance(exc, TlsError) and "caFile" not in message and "certificate" in message:
        hint = "trust its certificate with --ca-file PATH"
        if access.tls.ca_file:
            hint = f"{access.tls.ca_file} does not vouch for it; check --ca-file"
        return f"{message}; {hint}, or skip the check with --insecure"
    if isinstance(exc, AuthError):
        # The client's words are for a desired file; here the method is the --auth flag.
        method = access.auth.method.value
        message = message.replace(_DESIRED_NAMES.format(method), f"--auth {method} was given")
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
        export_events.export_no_identity(get_logger().bind(device=target.who), error=str(exc))
        info = None
    return accounts, info


def _document(
    target: Target, access: Access, accounts: list[dict[str, Any]], info: dict[str, Any] | None
) -> Document:
    document, notes = read_document(
        url=target.url, name=target.name, access=access, accounts=accounts, info=info
    )
    log = get_logger().bind(device=target.who)
    for note in notes:
        export_events.export_field_skipped(log, error=note)
    return document


def _render(
    target: Target, access: Access, accounts: list[dict[str, Any]], info: dict[str, Any] | None
) -> str:
    return document_text(_document(target, access, accounts, info))


async def _export_one(target: Target, access: Access, settings: Settings) -> str:
    async with ClientPool(
        timeout=settings.request_timeout, connect_timeout=settings.connect_timeout
    ) as pool:
        accounts, info = await _read(target, access, settings, pool)
    text = _render(target, access, accounts, info)
    log = get_logger().bind(device=target.who)
    export_events.export_read(log, url=target.url, accounts=len(accounts))
    return text


# --------------------------------------------------------------- tree export


def _export_tree(
    chosen: Sequence[Target], access: Access, settings: Settings, output: Path, *, factor: bool
) -> int:
    failures: dict[str, str] = {}
    pending: list[Target] = []
    for target in chosen:
        assert target.path is not None
        if target.path.exists() or target.path.is_symlink():
            failures[target.who] = f"{target.path} already exists; not overwritten"
        else:
            pending.append(target)
    if factor:
        reason = _cannot_factor(output)
        if reason is not None:
            export_events.export_defaults_not_factored(get_logger(), error=reason)
            factor = False
    documents = loop.run(_read_many(pending, access, settings, failures))
    shared = None
    if factor and len(documents) > 1:
        shared = _write_defaults(output, [d for _, d in documents])
    written: list[Path] = []
    for target, document in documents:
        problem = _write(target, document_text(document, shared))
        if problem is not None:
            failures[target.who] = problem
        elif target.path is not None:
            written.append(target.path)
    for target in chosen:
        if target.who in failures:
            _fail(f"{target.who}: {failures[target.who]}")
    if shared is not None:
        print(f"wrote {output / DEFAULTS_FILE} (the values all {len(documents)} devices share)")
    for path in written:
        print(f"wrote {path}")
    print(
        f"{len(written)} of {len(chosen)} device(s) exported to {output}"
        + (f"; {len(failures)} failed" if failures else "")
    )
    return EXIT_ERROR if failures else EXIT_OK


def _cannot_factor(output: Path) -> str | None:
    """Why ``DIR/_defaults.yaml`` must not be written, or None.

    A defaults file merges under every device file below it: one already there,
    or device files already there, would change other devices' desired state.
    """
    if not output.exists():
        return None
    for path in output.rglob("*"):
        rel = path.relative_to(output).parts
        if path.name.endswith(SUFFIXES) and not any(p.startswith(".") for p in rel):
            return (
                f"{path} already exists, and a {DEFAULTS_FILE} in {output} would apply to it: "
                "each device file holds all its values instead"
            )
    return None


def _write_defaults(output: Path, documents: list[Document]) -> dict[int, dict[str, str]] | None:
    """Write ``DIR/_defaults.yaml``; the values it holds, or None if it could not be written."""
    shared = {n: dict(fields) for n, fields in shared_values(documents).items()}
    path = output / DEFAULTS_FILE
    try:
        write_new_file(path, defaults_text(documents, shared))
    except OSError as exc:
        reason = "it already exists" if isinstance(exc, FileExistsError) else exc.strerror
        error = f"cannot write {path}: {reason}; each device file holds all its values"
        export_events.export_defaults_not_factored(get_logger(), error=error)
        return None
    export_events.export_defaults_written(get_logger(), file=str(path), devices=len(documents))
    return shared


async def _read_many(
    chosen: Sequence[Target], access: Access, settings: Settings, failures: dict[str, str]
) -> list[tuple[Target, Document]]:
    """Every device read (concurrently), in list order; failures go to ``failures``."""
    gate = asyncio.Semaphore(settings.concurrency)
    read: list[tuple[Target, Document] | None] = [None] * len(chosen)

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
            read[i] = (target, _document(target, access, accounts, info))

        await asyncio.gather(*(one(i, t) for i, t in enumerate(chosen)))
    return [r for r in read if r is not None]


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
    export_events.export_written(log, url=target.url, file=str(target.path))
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
