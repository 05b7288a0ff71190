"""``syncd history`` in a cluster reads the history the nodes keep in etcd (SPEC sections 10, 11).

The entries come from real ``syncd run`` nodes, or are appended through the
daemon's own path (``EtcdHistory`` over ``EtcdStateStore``) when a test needs
entries of a given age; ``syncd history`` always runs as a subprocess.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from syncd.cluster.connection import EtcdAccess, EtcdConnection
from syncd.cluster.history import EtcdHistory
from syncd.cluster.store import EtcdStateStore
from syncd.history import HistoryChange, HistoryEntry
from syncd.simulator import Fleet, run_fleet_in_thread
from tests.cluster.conftest import enable_auth
from tests.cluster.daemons import (
    PASSWORD_KEY,
    SIP_PASSWORD,
    all_labelled,
    desired_tree,
    etcd_keys,
    node_args,
    one_error,
    start_node,
    wait_until,
)
from tests.cluster.test_settings import tls_etcd as tls_etcd
from tests.e2e.conftest import DaemonProcess, syncd
from tests.etcd_server import EtcdServer, free_port

ETCD_PASSWORD = "history-Etcd-Pass-7"


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    with run_fleet_in_thread(devices=4) as running:
        yield running


def entry(device: str, *, ago: timedelta, label: str, password: bool = False) -> HistoryEntry:
    changes = [HistoryChange(1, "displayName", "old", label)]
    if password:
        changes.append(HistoryChange(1, "password", None, SIP_PASSWORD))
    return HistoryEntry(
        time=datetime.now(UTC) - ago,
        device=device,
        revision="tree:0123456789ab",
        trigger="change",
        result="succeeded",
        changes=tuple(changes),
        wave="all",
    )


def append_history(
    endpoint: str,
    cluster: str,
    entries: Sequence[HistoryEntry],
    *,
    user: tuple[str, str] | None = None,
    ca_file: Path | None = None,
) -> None:
    """Append ``entries`` as a node does: ``EtcdHistory.append`` on the shared store."""

    async def write() -> None:
        access = EtcdAccess(
            (endpoint,),
            ca_file=ca_file,
            username=user[0] if user else None,
            password=SecretStr(user[1]) if user else None,
        )
        connection = EtcdConnection(access, timeout=2.0)
        store = EtcdStateStore(
            connection,
            cluster_name=cluster,
            node_name="n1",
            password_key=PASSWORD_KEY.strip().encode(),
        )
        try:
            await connection.authenticate()
            await store.start()
            await store.wait_loaded()
            history = EtcdHistory(store)
            for item in entries:
                history.append(item)
            await store.flush()
        finally:
            await store.close()
            await connection.close()

    asyncio.run(write())


def history(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return syncd("history", "--log-format", "json", *args, env=env, timeout=30)


def shown(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    entries = json.loads(result.stdout)
    assert isinstance(entries, list)
    return entries


class TestClusterHistory:
    def test_history_of_running_nodes_printed_from_etcd(
        self,
        fleet: Fleet,
        etcd: EtcdServer,
        nodes: list[DaemonProcess],
        tmp_path: Path,
        cluster_name: str,
    ) -> None:
        """Two ``syncd run`` nodes change four devices; ``syncd history`` with the nodes' config file prints every change from etcd, text and JSON, oldest first, ``--device`` globs applying; the SIP password shows as (set) only."""
        devices = fleet.devices
        names = desired_tree(tmp_path / "desired", devices, "Hist")
        for node in ("n1", "n2"):
            args = node_args(
                endpoint=etcd.endpoint,
                cluster=cluster_name,
                node=node,
                desired=tmp_path / "desired",
                tmp_path=tmp_path,
            )
            nodes.append(start_node(args))
        wait_until(all_labelled(devices, "Hist"), 30, "the fleet converged")
        prefix = f"/{cluster_name}/history/"
        wait_until(lambda: len(etcd_keys(etcd.endpoint, prefix)) >= 4, 10, "history in etcd")

        config = tmp_path / "syncd.toml"
        config.write_text(
            f'cluster_endpoints = "{etcd.endpoint}"\n'
            f'cluster_name = "{cluster_name}"\n'
            f'state_dir = "{tmp_path / "state-n1"}"\n'
        )
        found = shown(history("--config", str(config), "--json"))
        assert sorted(e["device"] for e in found) == names
        assert [e["time"] for e in found] == sorted(e["time"] for e in found)
        for item in found:
            assert item["result"] == "succeeded"
            assert {"account": 1, "field": "password", "from": None, "to": "(set)"} in item[
                "changes"
            ]

        text = history("--config", str(config))
        assert text.returncode == 0, text.stderr
        assert "no changes recorded" not in text.stdout
        for name in names:
            assert f"{name}  " in text.stdout, text.stdout
        assert "Hist 1" in text.stdout

        some = shown(history("--config", str(config), "--json", "--device", "dev0[12]"))
        assert sorted(e["device"] for e in some) == ["dev01", "dev02"]
        assert SIP_PASSWORD not in text.stdout + text.stderr

    def test_device_and_since_filter_the_cluster_history(
        self, etcd: EtcdServer, tmp_path: Path, cluster_name: str
    ) -> None:
        """Entries of several ages in etcd: ``--since`` drops the older, ``--device`` globs keep their devices; the settings may come from the environment; no state dir and no password-record key are needed."""
        append_history(
            etcd.endpoint,
            cluster_name,
            [
                entry("site-a/door-1", ago=timedelta(hours=3), label="Old door"),
                entry("site-a/door-2", ago=timedelta(minutes=5), label="New door"),
                entry("site-b/gate", ago=timedelta(minutes=1), label="Gate", password=True),
            ],
        )
        flags = ("--cluster-endpoints", etcd.endpoint, "--cluster-name", cluster_name)
        missing = ("--state-dir", str(tmp_path / "no-state"))

        everything = shown(history(*flags, *missing, "--json"))
        assert [e["device"] for e in everything] == [
            "site-a/door-1",
            "site-a/door-2",
            "site-b/gate",
        ]

        recent = shown(history(*flags, *missing, "--json", "--since", "1h"))
        assert [e["device"] for e in recent] == ["site-a/door-2", "site-b/gate"]

        env = {"SYNCD_CLUSTER_ENDPOINTS": etcd.endpoint, "SYNCD_CLUSTER_NAME": cluster_name}
        site_a = shown(
            history(*missing, "--json", "--device", "site-a/*", "--since", "1h", env=env)
        )
        assert [e["device"] for e in site_a] == ["site-a/door-2"]
        assert site_a[0]["changes"] == [
            {"account": 1, "field": "displayName", "from": "old", "to": "New door"}
        ]

        text = history(*flags, *missing, "--device", "site-b/*")
        assert text.returncode == 0, text.stderr
        rows = text.stdout.splitlines()
        assert rows[0].startswith("TIME") and "site-b/gate" in rows[1], text.stdout
        assert "site-a" not in text.stdout
        assert "1.password: - -> (set)" in text.stdout
        assert SIP_PASSWORD not in text.stdout + text.stderr

    def test_unreachable_etcd_is_one_sentence(self, tmp_path: Path, cluster_name: str) -> None:
        """No etcd at the endpoint: exit 1 with one sentence naming cluster_endpoints, although the state dir exists."""
        (tmp_path / "state").mkdir()
        endpoint = f"http://127.0.0.1:{free_port()}"
        result = history(
            "--cluster-endpoints",
            endpoint,
            "--cluster-name",
            cluster_name,
            "--state-dir",
            str(tmp_path / "state"),
        )
        error = one_error(result)
        assert "cluster_endpoints" in error and endpoint in error, error
        assert "etcd" in error

    def test_with_an_etcd_user_the_password_is_never_shown(
        self, own_etcd: EtcdServer, tmp_path: Path, cluster_name: str
    ) -> None:
        """etcd with a user, as the README sets it up: the history is read with cluster_username and cluster_password_file; a wrong password or no user is one sentence naming the settings; no password is ever printed."""
        asyncio.run(
            enable_auth(
                own_etcd.endpoint,
                user="syncd",
                password=ETCD_PASSWORD,
                prefix=f"/{cluster_name}/",
            )
        )
        append_history(
            own_etcd.endpoint,
            cluster_name,
            [entry("door", ago=timedelta(minutes=1), label="Door", password=True)],
            user=("syncd", ETCD_PASSWORD),
        )
        (tmp_path / "etcd-password").write_text(ETCD_PASSWORD + "\n")
        (tmp_path / "wrong-password").write_text("not-the-Pass-9\n")
        base = ("--cluster-endpoints", own_etcd.endpoint, "--cluster-name", cluster_name)
        user = ("--cluster-username", "syncd")

        found = history(*base, *user, "--cluster-password-file", str(tmp_path / "etcd-password"))
        assert found.returncode == 0, found.stderr
        assert "door" in found.stdout and "1.password: - -> (set)" in found.stdout, found.stdout
        as_json = history(
            *base, *user, "--cluster-password-file", str(tmp_path / "etcd-password"), "--json"
        )
        assert [e["device"] for e in shown(as_json)] == ["door"]

        wrong = history(*base, *user, "--cluster-password-file", str(tmp_path / "wrong-password"))
        error = one_error(wrong)
        assert "cluster_username" in error and "cluster_password_file" in error, error

        anonymous = one_error(history(*base))
        assert "etcd requires a user" in anonymous, anonymous

        for result in (found, as_json, wrong):
            output = result.stdout + result.stderr
            for secret in (ETCD_PASSWORD, "not-the-Pass-9", SIP_PASSWORD):
                assert secret not in output

    def test_over_tls_with_the_ca_file(
        self, tls_etcd: Any, cluster_name: str, tmp_path: Path
    ) -> None:
        """etcd over https: read with cluster_ca_file; a CA that did not sign etcd's certificate is one sentence naming cluster_ca_file."""
        server, ca_file, other_ca = tls_etcd
        append_history(
            server.endpoint,
            cluster_name,
            [entry("tls-door", ago=timedelta(minutes=1), label="Secure door")],
            ca_file=ca_file,
        )
        base = ("--cluster-endpoints", server.endpoint, "--cluster-name", cluster_name)

        found = shown(history(*base, "--cluster-ca-file", str(ca_file), "--json"))
        assert [e["device"] for e in found] == ["tls-door"]

        error = one_error(history(*base, "--cluster-ca-file", str(other_ca)))
        assert "cluster_ca_file" in error, error

        # The daemon refused the same way says it once too (no gRPC line beside it).
        (tmp_path / "desired").mkdir()
        (tmp_path / "key").write_text("ab" * 32)
        own = ("--node-name", "n1", "--password-key-file", str(tmp_path / "key"))
        places = ("--desired", str(tmp_path / "desired"), "--state-dir", str(tmp_path / "s"))
        run = syncd("run", *base, "--cluster-ca-file", str(other_ca), *own, *places, timeout=60)
        assert run.returncode == 1
        (line,) = run.stderr.strip().splitlines()
        assert "cluster_ca_file" in json.loads(line)["error"]
