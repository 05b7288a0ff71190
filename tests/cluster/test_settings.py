"""Cluster settings: standalone when unset, one-sentence errors naming the setting, TLS and auth."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from syncd.cluster.connection import ClusterError, EtcdAccess, EtcdConnection
from syncd.cluster.settings import ClusterConfig, cluster_config, open_cluster
from tests.cluster.conftest import _binary
from tests.etcd_server import EtcdServer


def settings(tmp_path: Path, **values: Any) -> SimpleNamespace:
    key = tmp_path / "password-key"
    key.write_text("0123456789abcdef0123456789abcdef\n")
    base: dict[str, Any] = {"cluster_endpoints": "http://127.0.0.1:2379", "password_key_file": key}
    return SimpleNamespace(**(base | values))


def problem(tmp_path: Path, **values: Any) -> str:
    with pytest.raises(ClusterError) as raised:
        cluster_config(settings(tmp_path, **values))
    message = str(raised.value)
    assert "\n" not in message
    return message


class TestClusterConfig:
    def test_unset_endpoints_is_standalone(self, tmp_path: Path) -> None:
        """Without cluster_endpoints there is no cluster configuration at all."""
        assert cluster_config(SimpleNamespace()) is None
        assert cluster_config(settings(tmp_path, cluster_endpoints=None)) is None

    def test_defaults(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """cluster_name defaults to syncd, node_name to the host name, lease_ttl to 10 s."""
        monkeypatch.setattr("socket.gethostname", lambda: "mgmt-1")
        config = cluster_config(settings(tmp_path, cluster_endpoints="http://a:1, http://b:2"))
        assert isinstance(config, ClusterConfig)
        assert (config.cluster_name, config.node_name, config.lease_ttl) == (
            "syncd",
            "mgmt-1",
            10.0,
        )
        assert config.access.endpoints == ("http://a:1", "http://b:2")
        assert "0123456789abcdef" not in repr(config)

    @pytest.mark.parametrize(
        ("values", "setting"),
        [
            ({"cluster_endpoints": "etcd:2379"}, "cluster_endpoints"),
            ({"cluster_endpoints": "http://a:1,https://b:2"}, "cluster_endpoints"),
            ({"node_name": "a/b"}, "node_name"),
            ({"cluster_name": ""}, "cluster_name"),
            ({"lease_ttl": 1}, "lease_ttl"),
            ({"password_key_file": None}, "password_key_file"),
            ({"password_key_file": Path("/nonexistent/key")}, "password_key_file"),
            ({"cluster_username": "syncd"}, "cluster_password_file"),
            ({"cluster_password_file": Path("/etc/hostname")}, "cluster_username"),
        ],
    )
    def test_errors_name_the_setting(
        self, tmp_path: Path, values: dict[str, Any], setting: str
    ) -> None:
        """Each wrong cluster setting is one sentence naming it."""
        assert setting in problem(tmp_path, **values)

    @pytest.mark.parametrize(
        ("flag", "env", "source"),
        [("foo", None, "flag --cluster-endpoints"), (None, "ftp://x:1", "SYNCD_CLUSTER_ENDPOINTS")],
    )
    def test_bad_endpoints_name_where_they_came_from(
        self, monkeypatch: pytest.MonkeyPatch, flag: str | None, env: str | None, source: str
    ) -> None:
        """A malformed cluster_endpoints is refused as the settings load, naming its source;
        a blank one is standalone, as unset."""
        from syncd.settings import SettingsError, load_settings

        if env is not None:
            monkeypatch.setenv("SYNCD_CLUSTER_ENDPOINTS", env)
        with pytest.raises(SettingsError) as raised:
            load_settings(None, cluster_endpoints=flag)
        assert f"cluster_endpoints ({source})" in str(raised.value)
        assert "is not http(s)://HOST:PORT" in str(raised.value)
        monkeypatch.setenv("SYNCD_CLUSTER_ENDPOINTS", " ")
        assert cluster_config(load_settings(None)) is None
        with pytest.raises(SettingsError) as raised:
            load_settings(None, cluster_endpoints="http://{x}")
        assert "'http://{x}' is not" in str(raised.value)  # shown as written

    def test_short_password_key_refused(self, tmp_path: Path) -> None:
        """A password key shorter than 16 bytes is refused, naming password_key_file."""
        short = tmp_path / "short"
        short.write_text("abc")
        assert "password_key_file" in problem(tmp_path, password_key_file=short)

    def test_credentials_from_systemd(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The etcd password and the password key come from $CREDENTIALS_DIRECTORY when no file is set."""
        credentials = tmp_path / "creds"
        credentials.mkdir()
        (credentials / "syncd-etcd-password").write_text("etcd-pass\n")
        (credentials / "syncd-password-key").write_text("k" * 32)
        monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
        config = cluster_config(
            SimpleNamespace(cluster_endpoints="http://127.0.0.1:1", cluster_username="syncd")
        )
        assert config is not None and config.password_key == b"k" * 32
        assert config.access.password is not None
        assert config.access.password.get_secret_value() == "etcd-pass"
        assert "etcd-pass" not in repr(config)

    def test_https_needs_ca(self, tmp_path: Path) -> None:
        """https endpoints without cluster_ca_file are refused, naming it."""
        config = cluster_config(settings(tmp_path, cluster_endpoints="https://127.0.0.1:1"))
        assert config is not None
        with pytest.raises(ClusterError, match="cluster_ca_file"):
            EtcdConnection(config.access)


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, issuer_key = issuer or (name, key)
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def make_ca(directory: Path, name: str) -> tuple[Path, x509.Name, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _certificate(name, key, None, ca=True)
    return (
        _pem(directory / f"{name}.pem", cert.public_bytes(serialization.Encoding.PEM)),
        cert.subject,
        key,
    )


@pytest.fixture(scope="module")
def tls_etcd(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """An etcd serving https with a certificate of a test CA; yields (server, CA file, another CA file)."""
    directory = tmp_path_factory.mktemp("tls")
    ca_file, ca_name, ca_key = make_ca(directory, "test-ca")
    other_ca, _, _ = make_ca(directory, "other-ca")
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _certificate("127.0.0.1", key, (ca_name, ca_key), ca=False)
    cert_file = _pem(directory / "server.pem", cert.public_bytes(serialization.Encoding.PEM))
    key_file = _pem(
        directory / "server.key",
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    server = EtcdServer(_binary(), directory / "etcd", tls=(cert_file, key_file))
    server.start()
    yield server, ca_file, other_ca
    server.stop()


class TestOpenCluster:
    async def test_tls_with_right_ca_joins(
        self, tls_etcd: Any, tmp_path: Path, cluster_name: str
    ) -> None:
        """Over https with the CA of etcd's certificate the node joins and the store loads."""
        server, ca_file, _ = tls_etcd
        config = cluster_config(
            settings(
                tmp_path,
                cluster_endpoints=server.endpoint,
                cluster_ca_file=ca_file,
                cluster_name=cluster_name,
                node_name="n1",
                lease_ttl=2,
            )
        )
        assert config is not None
        node, store = await open_cluster(config)
        try:
            assert node.healthy and node.members == {"n1"}
            await store.wait_loaded()
        finally:
            await store.close(timeout=1)
            await node.stop()
            await node.connection.close()

    async def test_wrong_ca_is_a_start_error(self, tls_etcd: Any, tmp_path: Path) -> None:
        """A CA that did not sign etcd's certificate stops start-up with a sentence naming cluster_ca_file."""
        server, _, other_ca = tls_etcd
        config = cluster_config(
            settings(
                tmp_path, cluster_endpoints=server.endpoint, cluster_ca_file=other_ca, lease_ttl=2
            )
        )
        assert config is not None
        with pytest.raises(ClusterError, match="cluster_ca_file"):
            await open_cluster(config)

    async def test_wrong_password_is_a_start_error(
        self, own_etcd: EtcdServer, tmp_path: Path
    ) -> None:
        """etcd with auth enabled refuses a wrong password, or no user: a start error naming the user settings, without the password."""
        admin = EtcdConnection(EtcdAccess((own_etcd.endpoint,)))
        client = await admin.open()
        assert client.auth is not None
        await client.auth.user_add("root", "root-Pass-1")
        await client.auth.user_grant_role("root", "root")
        await client.auth.auth_enable()
        await admin.close()
        wrong = tmp_path / "etcd-password"
        wrong.write_text("not-the-Password\n")
        config = cluster_config(
            settings(
                tmp_path,
                cluster_endpoints=own_etcd.endpoint,
                cluster_username="root",
                cluster_password_file=wrong,
                lease_ttl=2,
            )
        )
        assert config is not None
        with pytest.raises(
            ClusterError, match="cluster_username and cluster_password_file"
        ) as raised:
            await open_cluster(config)
        assert "not-the-Password" not in str(raised.value)
        anonymous = cluster_config(
            settings(tmp_path, cluster_endpoints=own_etcd.endpoint, lease_ttl=2)
        )
        assert anonymous is not None
        with pytest.raises(ClusterError, match="etcd requires a user: set cluster_username"):
            await open_cluster(anonymous)
        right = tmp_path / "right"
        right.write_text("root-Pass-1")
        config = cluster_config(
            settings(
                tmp_path,
                cluster_endpoints=own_etcd.endpoint,
                cluster_username="root",
                cluster_password_file=right,
                lease_ttl=2,
                node_name="n1",
            )
        )
        assert config is not None
        node, store = await open_cluster(config)
        try:
            assert node.healthy
            store.record_fingerprint("d", "fp")
            await store.flush()
        finally:
            await store.close(timeout=1)
            await node.stop()
            await node.connection.close()
