"""TLS for device connections: one context per setting, and the "is this port TLS?" probe."""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl

import httpx

from syncd.model import TlsSpec

__all__ = ["NOT_TLS_REASONS", "speaks_tls", "tls_context"]

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
    """The shared context for ``tls``; a caFile changed on disk is read again."""
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
        ctx.load_verify_locations(cafile=tls.ca_file)
    return ctx


async def speaks_tls(url: httpx.URL, timeout: float) -> bool:
    """Whether ``url``'s port completes a TLS handshake (certificate unchecked).

    Asked only after a plain-HTTP request failed without an answer, which is
    how a TLS-only port treats one.
    """
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        async with asyncio.timeout(min(timeout, _TLS_PROBE_SECONDS)):
            _, writer = await asyncio.open_connection(url.host, url.port or 80, ssl=ctx)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True
