"""Commands on a cluster host never act on a local state dir the cluster ignores (SPEC 9, 10, 11).

Node ``n2`` runs (a ``syncd run`` subprocess on a real etcd); "host 1" is a
state dir of its own, ``state-n1``, where no daemon answers. With the cluster
settings, ``rollout pause|resume``, ``passwords resend`` and ``status`` there
refuse and name the node to run them on; without them, on a state dir a
cluster node has used (its ``cluster-node`` marker), those and ``history``,
``plan`` and ``apply`` refuse and ask for the cluster settings.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.simulator import Fleet, run_fleet_in_thread
from tests.cluster.conftest import enable_auth
from tests.cluster.daemons import (
    PASSWORD_KEY,
    SIP_PASSWORD,
    all_labelled,
    desired_tree,
    node_args,
    one_error,
    start_node,
    wait_until,
)
from tests.e2e.conftest import DaemonProcess, puts, syncd
from tests.etcd_server import EtcdServer

ETCD_PASSWORD = "node-commands-Etcd-Pass-5"


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    with run_fleet_in_thread(devices=4) as running:
        yield running


def command(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return syncd(*args, "--log-format", "json", env=env, timeout=30)


def listing(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir()) if path.is_dir() else []


def start_cluster_node(
    fleet: Fleet, etcd: EtcdServer, tmp_path: Path, cluster_name: str, node: str
) -> DaemonProcess:
    """``node`` running over the whole fleet (its state dir ``state-NODE``), converged."""
    desired = tmp_path / "desired"
    if not desired.exists():
        desired_tree(desired, fleet.devices, "Node")
    args = node_args(
        endpoint=etcd.endpoint, cluster=cluster_name, node=node, desired=desired, tmp_path=tmp_path
    )
    proc = start_node(args)
    proc.wait_for("cluster.joined", timeout=20)
    return proc


class TestNoNodeOnThisHost:
    def test_pause_resume_resend_status_refuse_and_name_the_running_node(
        self,
        fleet: Fleet,
        etcd: EtcdServer,
        nodes: list[DaemonProcess],
        tmp_path: Path,
        cluster_name: str,
    ) -> None:
        """n2 runs, host 1 has no daemon: with the cluster settings (flags or SYNCD_CLUSTER_* variables, on a missing or an empty state dir) pause, resume, resend and status exit 1 naming n2, and host 1's state dir is neither created nor written; through n2's socket the pause works."""
        nodes.append(start_cluster_node(fleet, etcd, tmp_path, cluster_name, "n2"))
        wait_until(all_labelled(fleet.devices, "Node"), 30, "the fleet converged")
        key = tmp_path / "password-key"
        host1 = tmp_path / "state-n1"
        flags = (
            "--cluster-endpoints",
            etcd.endpoint,
            "--cluster-name",
            cluster_name,
            "--password-key-file",
            str(key),
            "--desired",
            str(tmp_path / "desired"),
        )
        env = {
            "SYNCD_CLUSTER_ENDPOINTS": etcd.endpoint,
            "SYNCD_CLUSTER_NAME": cluster_name,
            "SYNCD_PASSWORD_KEY_FILE": str(key),
            "SYNCD_DESIRED_DIR": str(tmp_path / "desired"),
        }
        for ways in ((flags, None), ((), env)):
            given, variables = ways
            for action in ("pause", "resume"):
                error = one_error(
                    command("rollout", action, "--state-dir", str(host1), *given, env=variables)
                )
                assert f"no node of cluster {cluster_name} runs on this host" in error, error
                assert f"run `syncd rollout {action}` on the host of node n2" in error, error
                assert "paused" not in error and "resumed" not in error, error
            resend = one_error(
                command(
                    "passwords", "resend", "dev01", "--state-dir", str(host1), *given, env=variables
                )
            )
            assert "the passwords of dev01 are sent by the node that owns it" in resend, resend
            assert "run `syncd passwords resend dev01` on the host of node n2" in resend, resend
            status = one_error(command("status", "--state-dir", str(host1), *given, env=variables))
            assert "run `syncd status` on the host of a node that runs (node n2)" in status
            assert not host1.exists()

        host1.mkdir()
        one_error(command("rollout", "pause", "--state-dir", str(host1), *flags))
        one_error(command("passwords", "resend", "dev02", "--state-dir", str(host1), *flags))
        assert listing(host1) == []

        state_n2 = str(tmp_path / "state-n2")
        paused = command("rollout", "pause", "--state-dir", state_n2, *flags)
        assert paused.returncode == 0, paused.stderr
        assert "rollout paused" in paused.stdout
        shown = command("status", "--json", "--state-dir", state_n2)
        assert json.loads(shown.stdout)["rollout"]["state"] == "paused"

    def test_no_node_anywhere_and_etcd_down_still_refuse(
        self, etcd: EtcdServer, tmp_path: Path, cluster_name: str
    ) -> None:
        """No node registered: the pause refuses saying none runs anywhere; etcd not answering: it still refuses, naming cluster_endpoints; never "paused"."""
        (tmp_path / "state").mkdir()
        base = ("rollout", "pause", "--state-dir", str(tmp_path / "state"))
        nobody = one_error(
            command(*base, "--cluster-endpoints", etcd.endpoint, "--cluster-name", cluster_name)
        )
        assert "nor anywhere else (no node is registered in etcd)" in nobody, nobody
        gone = one_error(command(*base, "--cluster-endpoints", "http://127.0.0.1:9"))
        assert "no node of cluster syncd runs on this host" in gone, gone
        assert "cluster_endpoints http://127.0.0.1:9" in gone, gone
        assert listing(tmp_path / "state") == []


class TestNodeStateDirWithoutClusterSettings:
    def test_every_command_on_a_nodes_state_dir_asks_for_the_cluster_settings(
        self,
        fleet: Fleet,
        etcd: EtcdServer,
        nodes: list[DaemonProcess],
        tmp_path: Path,
        cluster_name: str,
    ) -> None:
        """n1 ran on state-n1 and stopped: without cluster settings, history, status, plan, apply, pause, resume, resend and a standalone run there exit 1 naming node n1 and its cluster; while n1 runs, status goes through its socket; with the marker deleted, history answers from the dir again. The marker holds no endpoint nor secret."""
        node = start_cluster_node(fleet, etcd, tmp_path, cluster_name, "n1")
        nodes.append(node)
        wait_until(all_labelled(fleet.devices, "Node"), 30, "the fleet converged")
        state = tmp_path / "state-n1"
        at = ("--state-dir", str(state), "--desired", str(tmp_path / "desired"))
        env = {"CLUSTER_SIP_PASSWORD": SIP_PASSWORD}

        running = command("status", "--json", *at)
        assert running.returncode == 0, running.stderr
        assert json.loads(running.stdout)["node"] == "n1"
        during = one_error(command("history", *at))
        assert f"belongs to node n1 of cluster {cluster_name}" in during, during

        assert node.stop() == 0
        marker = (state / "cluster-node").read_text()
        assert json.loads(marker) == {"node": "n1", "cluster": cluster_name}
        port = etcd.endpoint.rsplit(":", 1)[1]
        assert port not in marker and PASSWORD_KEY.strip() not in marker

        before = {p.name: p.stat().st_mtime_ns for p in state.iterdir()}
        put_before = sum(len(puts(d)) for d in fleet.devices)
        for args in (
            ("history",),
            ("status",),
            ("plan",),
            ("apply",),
            ("rollout", "pause"),
            ("rollout", "resume"),
            ("passwords", "resend", "dev01"),
        ):
            error = one_error(command(*args, *at, env=env))
            assert f"the state dir {state} belongs to node n1 of cluster {cluster_name}" in error
            assert "run the command with the node's cluster settings" in error, (args, error)
            assert SIP_PASSWORD not in error
        assert {p.name: p.stat().st_mtime_ns for p in state.iterdir()} == before
        assert sum(len(puts(d)) for d in fleet.devices) == put_before

        (tmp_path / "empty").mkdir()
        standalone = syncd(
            "run", "--state-dir", str(state), "--desired", str(tmp_path / "empty"), timeout=30
        )
        assert standalone.returncode == 1, standalone.stderr
        assert f"belongs to node n1 of cluster {cluster_name}" in standalone.stderr
        assert f"or delete {state / 'cluster-node'} to use this state dir standalone" in (
            standalone.stderr
        )
        (state / "cluster-node").unlink()
        history = command("history", *at)
        assert history.returncode == 0, history.stderr
        assert "no changes recorded" in history.stdout


class TestReadmeRecipe:
    def test_cluster_settings_in_the_config_file_serve_the_node_and_a_root_shell(
        self, fleet: Fleet, own_etcd: EtcdServer, nodes: list[DaemonProcess], tmp_path: Path
    ) -> None:
        """As the README sets a node up: cluster settings in the TOML file, the unit's drop-in overriding the private files' paths (its credentials); a command from a shell given only that file lists the fleet's PUTs, and pauses and resumes through the node; with only the state dir it is refused; with the node stopped a pause is refused, never written locally."""
        asyncio.run(
            enable_auth(own_etcd.endpoint, user="syncd", password=ETCD_PASSWORD, prefix="/syncd/")
        )
        root_files, credentials = tmp_path / "etc-credentials", tmp_path / "creds-dir"
        for folder in (root_files, credentials):
            folder.mkdir()
            (folder / "etcd-password").write_text(ETCD_PASSWORD)
            (folder / "password-key").write_text(PASSWORD_KEY)
        state = tmp_path / "var-lib-syncd"
        desired = tmp_path / "desired"
        desired_tree(desired, fleet.devices, "Recipe")
        config = tmp_path / "syncd.toml"
        config.write_text(
            f'desired_dir = "{desired}"\nstate_dir = "{state}"\nlog_format = "json"\n'
            f'cluster_endpoints = "{own_etcd.endpoint}"\ncluster_username = "syncd"\n'
            f'cluster_password_file = "{root_files / "etcd-password"}"\n'
            f'password_key_file = "{root_files / "password-key"}"\n'
        )
        unit = {
            "SYNCD_CLUSTER_PASSWORD_FILE": str(credentials / "etcd-password"),
            "SYNCD_PASSWORD_KEY_FILE": str(credentials / "password-key"),
        }
        node = start_node(
            ["--config", str(config), "--node-name", "mgmt-1", "--lease-ttl", "2"], env=unit
        )
        nodes.append(node)
        node.wait_for("cluster.joined", timeout=20)
        wait_until(all_labelled(fleet.devices, "Recipe"), 30, "the fleet converged")

        def listed() -> bool:
            result = command("history", "--config", str(config), "--json")
            return result.returncode == 0 and len(json.loads(result.stdout)) >= 4

        wait_until(listed, 15, "the fleet's PUTs listed from etcd")
        paused = command("rollout", "pause", "--config", str(config))
        assert paused.returncode == 0 and "rollout paused" in paused.stdout, paused.stderr
        resumed = command("rollout", "resume", "--config", str(config))
        assert resumed.returncode == 0 and "rollout resumed" in resumed.stdout, resumed.stderr
        refused = one_error(command("history", "--state-dir", str(state)))
        assert "belongs to node mgmt-1 of cluster syncd (etcd key prefix /syncd/)" in refused

        assert node.stop() == 0
        before = listing(state)
        stopped = one_error(command("rollout", "pause", "--config", str(config)))
        assert "no node of cluster syncd runs on this host" in stopped, stopped
        assert ETCD_PASSWORD not in stopped
        assert listing(state) == before
