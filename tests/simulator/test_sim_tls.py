"""HTTPS with the fleet's self-signed certificate, checked by httpx and curl."""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from syncd.simulator import Fleet, FleetError


def strict_context(cafile: Path) -> ssl.SSLContext:
    """A client context trusting only ``cafile``, with Python 3.13's strict X.509 checks."""
    context = ssl.create_default_context(cafile=str(cafile))
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    return context


async def curl_status(*args: str) -> int:
    process = await asyncio.create_subprocess_exec(
        "curl", "-sS", "-o", "/dev/null", "--max-time", "10", *args,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    return await process.wait()


class TestTls:
    async def test_verified_with_the_certificate(self, tmp_path: Path) -> None:
        """With the cert from cert_dir as trust anchor, strict verification succeeds."""
        async with Fleet(devices=2, tls=True, cert_dir=tmp_path) as fleet:
            assert fleet.cert_path == tmp_path / "cert.pem"
            assert (tmp_path / "key.pem").is_file()
            async with httpx.AsyncClient(verify=strict_context(fleet.cert_path)) as client:
                for device in fleet.devices:
                    assert device.url.startswith("https://127.0.0.1:")
                    response = await client.get(f"{device.url}/api/phone/config")
                    assert response.json()["success"] is True

    async def test_localhost_name_is_covered(self, tmp_path: Path) -> None:
        """https://localhost:PORT verifies too (the certificate names localhost)."""
        async with Fleet(devices=1, tls=True, cert_dir=tmp_path) as fleet:
            assert fleet.cert_path is not None
            url = f"https://localhost:{fleet.devices[0].port}/api/system/info"
            async with httpx.AsyncClient(verify=strict_context(fleet.cert_path)) as client:
                assert (await client.get(url)).status_code == 200

    async def test_unverified_without_the_certificate(self) -> None:
        """A client trusting only the system store refuses the self-signed certificate."""
        async with Fleet(devices=1, tls=True) as fleet, httpx.AsyncClient() as client:
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await client.get(f"{fleet.devices[0].url}/api/phone/config")

    async def test_https_only(self) -> None:
        """A TLS device does not answer plain HTTP."""
        async with Fleet(devices=1, tls=True) as fleet, httpx.AsyncClient() as client:
            plain = f"http://127.0.0.1:{fleet.devices[0].port}/api/phone/config"
            with pytest.raises(httpx.TransportError):
                await client.get(plain)

    async def test_curl_cacert(self, tmp_path: Path) -> None:
        """curl --cacert cert.pem accepts the device; plain curl rejects it (exit 60)."""
        async with Fleet(devices=1, tls=True, cert_dir=tmp_path) as fleet:
            url = f"{fleet.devices[0].url}/api/phone/config"
            assert await curl_status("--cacert", str(tmp_path / "cert.pem"), url) == 0
            assert await curl_status(url) == 60

    async def test_certificate_is_reused_across_restarts(self, tmp_path: Path) -> None:
        """A second fleet on the same cert_dir serves the same certificate."""
        async with Fleet(devices=1, tls=True, cert_dir=tmp_path):
            first = (tmp_path / "cert.pem").read_bytes()
        async with Fleet(devices=1, tls=True, cert_dir=tmp_path) as fleet:
            assert (tmp_path / "cert.pem").read_bytes() == first
            assert fleet.cert_path is not None
            async with httpx.AsyncClient(verify=strict_context(fleet.cert_path)) as client:
                response = await client.get(f"{fleet.devices[0].url}/api/system/info")
                assert response.status_code == 200

    async def test_certificate_shape(self, tmp_path: Path) -> None:
        """The certificate is its own CA with key identifiers, naming loopback and localhost."""
        async with Fleet(devices=1, tls=True, cert_dir=tmp_path):
            pass
        certificate = x509.load_pem_x509_certificate((tmp_path / "cert.pem").read_bytes())
        assert certificate.issuer == certificate.subject
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
        assert constraints.value.ca is True
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
        assert usage.key_cert_sign and usage.digital_signature
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert set(names.get_values_for_type(x509.IPAddress)) == {
            ipaddress.ip_address("127.0.0.1"),
            ipaddress.ip_address("::1"),
        }
        assert names.get_values_for_type(x509.DNSName) == ["localhost"]
        subject_key = certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        authority_key = certificate.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
        assert authority_key.value.key_identifier == subject_key.value.digest
        assert (tmp_path / "key.pem").stat().st_mode & 0o077 == 0

    async def test_temporary_certificate_is_removed_on_close(self) -> None:
        """Without cert_dir the certificate lives only while the fleet runs."""
        async with Fleet(devices=1, tls=True) as fleet:
            assert fleet.cert_path is not None
            path = fleet.cert_path
            assert path.is_file()
        assert not path.exists()

    async def test_listening_host_is_in_the_certificate(self, tmp_path: Path) -> None:
        """A fleet on another address (127.0.0.2) verifies under that address too."""
        async with Fleet(devices=1, host="127.0.0.2", tls=True, cert_dir=tmp_path) as fleet:
            assert fleet.cert_path is not None
            device = fleet.devices[0]
            assert device.url == f"https://127.0.0.2:{device.port}"
            async with httpx.AsyncClient(verify=strict_context(fleet.cert_path)) as client:
                assert (await client.get(f"{device.url}/api/system/info")).status_code == 200

    async def test_unusable_cert_dir(self, tmp_path: Path) -> None:
        """A cert_dir that cannot hold the files fails the start with a FleetError naming it."""
        blocker = tmp_path / "not-a-dir"
        blocker.write_text("")
        with pytest.raises(FleetError, match="not-a-dir"):
            async with Fleet(devices=1, tls=True, cert_dir=blocker):
                pass
