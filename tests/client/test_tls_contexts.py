"""TLS contexts are built once per setting and process, and again when the caFile changes."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from syncd.model import TlsSpec
from syncd.simulator.certificate import ensure_certificate
from syncd.tls import tls_context


def test_one_context_per_setting_shared_by_every_pool(tmp_path: Path):
    """The same caFile gives the same context; verify off or another file gives another."""
    cert, _ = ensure_certificate(tmp_path, hosts=["127.0.0.1"])
    spec = TlsSpec(ca_file=str(cert))
    assert tls_context(spec) is tls_context(TlsSpec(ca_file=str(cert)))
    assert tls_context(TlsSpec(verify=False)) is not tls_context(spec)
    assert tls_context(TlsSpec()) is not tls_context(spec)


def test_a_replaced_ca_file_is_read_again(tmp_path: Path):
    """A caFile rewritten with another certificate yields a new context that trusts it."""
    first, _ = ensure_certificate(tmp_path / "a", hosts=["127.0.0.1"])
    other, _ = ensure_certificate(tmp_path / "b", hosts=["127.0.0.1"])
    ca = tmp_path / "ca.pem"
    shutil.copy(first, ca)
    before = tls_context(TlsSpec(ca_file=str(ca)))
    shutil.copy(other, ca)
    os.utime(ca, ns=(1, 1))  # a different mtime even within the clock's resolution
    after = tls_context(TlsSpec(ca_file=str(ca)))
    assert after is not before
    subjects = [c["serialNumber"] for c in after.get_ca_certs() if "serialNumber" in c]
    assert subjects and subjects != [
        c["serialNumber"] for c in before.get_ca_certs() if "serialNumber" in c
    ]
