"""TLS for device connections: one context per setting, and the "is this port TLS?" probe.

A ``caFile`` that cannot serve is one plain sentence (``cannot load caFile
PATH: it does not exist``), the same at request time (:class:`TlsError`) and
in ``syncd validate`` (:func:`ca_file_problem`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import stat

from syncd.device_errors import TlsError
from syncd.model import TlsSpec

__all__ = ["NOT_TLS_REASONS", "ca_file_problem", "speaks_tls", "tls_context"]

#: OpenSSL's reasons for a TLS handshake answered by something that is not TLS.
NOT_TLS_REASONS = frozenset(
    {"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG", "UNKNOWN_PROTOCOL"}
)
#: How long the check "does this port speak TLS?" may take, after a plain-HTTP failure.
_TLS_PROBE_SECONDS = 2.0

#: TLS contexts by (verify, caFile, the caFile's mtime and size): loading the
#: system's CA bundle costs 20-100 ms, once per process rather than per pool.
_CONTEXTS: dict[tuple[bool, str | None, tuple[int, int] | None], ssl.SSLContext] = {}


def tls_context(tls: TlsSpec) -> ssl.SSLContext:
    """The shared context for ``tls``; a caFile changed on disk is read again.

    Raises :class:`TlsError` (``cannot load caFile PATH: it ...``) when the caFile
    cannot serve.
    """
    signature = None
    if tls.ca_file:
        with contextlib.suppress(OSError):
            st = os.stat(tls.ca_file)
            signature = (st.st_mtime_ns, st.st_size)
    key = (tls.verify, tls.ca_file, signature)
    ctx = _CONTEXTS.get(key)
    if ctx is None:
        ctx = _CONTEXTS[key] = _new_tls_context(tls)
    return ctx


def _new_tls_context(tls: TlsSpec) -> ssl.SSLContext:
    if not tls.verify:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    ctx = ssl.create_default_context()
    if tls.ca_file:
        try:
            ctx.load_verify_locations(cafile=tls.ca_file)
        except OSError as exc:  # ssl.SSLError too
            problem = ca_file_problem(tls.ca_file) or _load_problem(exc)
            raise TlsError(f"cannot load caFile {tls.ca_file}: it {problem}") from None
    return ctx


def ca_file_problem(path: str) -> str | None:
    """Why ``path`` cannot serve as a caFile, to follow "it" (``does not exist``), or None.

    Reads the file: it must be a readable regular file holding a PEM certificate.
    """
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return "does not exist"
    except OSError as exc:
        return _load_problem(exc)
    if stat.S_ISDIR(st.st_mode):
        return "is a directory"
    if not stat.S_ISREG(st.st_mode):
        return "is not a regular file"
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        ctx.load_verify_locations(cafile=path)
    except OSError as exc:
        return _load_problem(exc)
    return None


def _load_problem(exc: OSError) -> str:
    """What a failed load of a caFile says, in plain words."""
    if isinstance(exc, ssl.SSLError):
        if exc.reason == "NO_CERTIFICATE_OR_CRL_FOUND":
            return "holds no PEM certificate"
        return "holds a damaged PEM certificate"
    if isinstance(exc, FileNotFoundError | NotADirectoryError):
        return "does not exist"
    if isinstance(exc, IsADirectoryError):
        return "is a directory"
    return f"cannot be read ({exc.strerror or exc})"


async def speaks_tls(host: str, port: int, timeout: float) -> bool:
    """Whether ``host``'s ``port`` completes a TLS handshake (certificate unchecked).

    Asked only after a plain-HTTP request failed without an answer, which is
    how a TLS-only port treats one.
    """
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        async with asyncio.timeout(min(timeout, _TLS_PROBE_SECONDS)):
            _, writer = await asyncio.open_connection(host, port, ssl=ctx)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True
