"""``syncd plan`` on a cluster host judges by the records the nodes keep in etcd (SPEC 5, 11).

A real ``syncd run`` node (etcd with a user, as the README sets it up) applies
passwords and settings to two emulated devices and is stopped; ``syncd plan``
then runs as a subprocess with the same cluster settings and a state dir of
its own that does not exist.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from syncd.cluster.connection import EtcdAccess, EtcdConnection
from syncd.cluster.watching import read_prefix
from syncd.simulator import Fleet, run_fleet_in_thread
from tests.cluster.conftest import _binary, enable_auth
from tests.cluster.daemons import (
    SIP_PASSWORD,
    all_labelled,
    desired_tree,
    device_file,
    node_args,
    one_error,
    start_node,
    wait_until,
)
from tests.e2e.conftest import syncd, write
from tests.etcd_server import EtcdServer

CLUSTER = "plan-cluster"
ETCD_USER = "syncd"
ETCD_PASSWORD = "plan-Etcd-Pass-3"


@dataclass(frozen=True)
class Applied:
    """A cluster whose node applied ``desired`` to ``fleet`` and stopped."""

    fleet: Fleet
    etcd: EtcdServer
    desired: Path
    password_key: Path
    etcd_password: Path
    root: Path

    def flags(self, *, state_dir: Path, desired: Path | None = None) -> list[str]:
        """The node's cluster settings, with another state dir (and desired tree, if given)."""
        return [
            "--desired",
            str(desired or self.desired),
            "--state-dir",
            str(state_dir),
            "--cluster-endpoints",
            self.etcd.endpoint,
            "--cluster-name",
            CLUSTER,
            "--cluster-username",
            ETCD_USER,
            "--cluster-password-file",
            str(self.etcd_password),
            "--password-key-file",
            str(self.password_key),
            "--log-format",
            "json",
        ]


def etcd_state(endpoint: str, prefix: str) -> tuple[dict[str, tuple[bytes, int, int]], int]:
    """Every key under ``prefix`` (value, mod revision, lease), and etcd's revision, read now."""

    async def read() -> tuple[dict[str, tuple[bytes, int, int]], int]:
        access = EtcdAccess((endpoint,), username=ETCD_USER, password=SecretStr(ETCD_PASSWORD))
        connection = EtcdConnection(access, timeout=2.0)
        try:
            await connection.authenticate()
            changes, revision = await read_prefix(connection, prefix)
        finally:
            await connection.close()
        return {c.key: (c.value or b"", c.revision, c.lease) for c in changes}, revision

    return asyncio.run(read())


def recorded(endpoint: str) -> bool:
    """Both devices' records hold a password and a fingerprint in etcd."""
    keys, _ = etcd_state(endpoint, f"/{CLUSTER}/state/devices/")
    docs = [json.loads(value) for value, _, _ in keys.values()]
    return len(docs) == 2 and all(d.get("passwords") and d.get("fingerprint") for d in docs)


@pytest.fixture(scope="module")
def applied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Applied]:
    """One node applies two devices' passwords and settings through etcd, then stops."""
    root = tmp_path_factory.mktemp("plan-cluster")
    server = EtcdServer(_binary(), root / "etcd")
    server.start()
    try:
        asyncio.run(
            enable_auth(server.endpoint, user=ETCD_USER, password=ETCD_PASSWORD, prefix="/")
        )
        (root / "etcd-password").write_text(ETCD_PASSWORD + "\n")
        with run_fleet_in_thread(devices=2) as fleet:
            desired_tree(root / "desired", fleet.devices, "Plan")
            args = node_args(
                endpoint=server.endpoint,
                cluster=CLUSTER,
                node="n1",
                desired=root / "desired",
                tmp_path=root,
                extra=(
                    "--cluster-username",
                    ETCD_USER,
                    "--cluster-password-file",
                    str(root / "etcd-password"),
                ),
            )
            node = start_node(args)
            try:
                wait_until(all_labelled(fleet.devices, "Plan"), 30, "the fleet converged")
                wait_until(lambda: recorded(server.endpoint), 10, "records in etcd")
                assert node.stop() == 0
            finally:
                node.discard()
            # Keys bound to the node's lease are gone before anything is compared.
            wait_until(
                lambda: (
                    not any(lease for _, _, lease in etcd_state(server.endpoint, "/")[0].values())
                ),
                10,
                "the node's lease keys gone",
            )
            yield Applied(
                fleet,
                server,
                root / "desired",
                root / "password-key",
                root / "etcd-password",
                root,
            )
    finally:
        server.stop()


def plan(applied: Applied, *args: str, **flags: Any) -> subprocess.CompletedProcess[str]:
    return syncd("plan", *applied.flags(**flags), *args, env={"CLUSTER_SIP_PASSWORD": SIP_PASSWORD})


def no_secret(*results: subprocess.CompletedProcess[str]) -> None:
    for result in results:
        output = result.stdout + result.stderr
        assert SIP_PASSWORD not in output and ETCD_PASSWORD not in output


class TestPlanOnACluster:
    def test_applied_cluster_plans_in_sync_and_nothing_is_written(
        self, applied: Applied, tmp_path: Path
    ) -> None:
        """After the node applied, plan with an empty state dir shows both devices in sync and no password due (exit 0), creates no state dir and leaves etcd's keys byte-identical."""
        state = tmp_path / "plan-state"
        before = etcd_state(applied.etcd.endpoint, "/")
        text = plan(applied, state_dir=state)
        as_json = plan(applied, "--json", state_dir=state)
        after = etcd_state(applied.etcd.endpoint, "/")

        assert text.returncode == 0, (text.stdout, text.stderr)
        assert text.stdout == "2 devices: 2 in sync, 0 with changes, 0 errors, 0 skipped\n"
        assert "plan.no_password_records" not in text.stderr
        assert as_json.returncode == 0, as_json.stderr
        doc = json.loads(as_json.stdout)
        assert [(d["device"], d["status"], d["changes"]) for d in doc["devices"]] == [
            ("dev01", "in_sync", []),
            ("dev02", "in_sync", []),
        ]
        assert not state.exists()
        assert after == before
        no_secret(text, as_json)

    def test_an_edit_shows_exactly_that_change(self, applied: Applied, tmp_path: Path) -> None:
        """One device's display name edited: plan shows that field alone (exit 2); a new SIP password shows as due on both devices, nothing else."""
        edited = tmp_path / "desired"
        shutil.copytree(applied.desired, edited)
        write(edited, "dev01.yaml", device_file(applied.fleet.devices[0].url, "Edited 1"))
        state = tmp_path / "plan-state"

        result = plan(applied, "--json", state_dir=state, desired=edited)
        assert result.returncode == 2, (result.stdout, result.stderr)
        doc = json.loads(result.stdout)
        assert [(d["device"], d["status"], d["changes"]) for d in doc["devices"]] == [
            (
                "dev01",
                "changes",
                [{"account": 1, "field": "displayName", "live": "Plan 1", "desired": "Edited 1"}],
            ),
            ("dev02", "in_sync", []),
        ]
        text = plan(applied, state_dir=state, desired=edited)
        assert text.returncode == 2
        assert text.stdout.splitlines()[:-1] == [
            'dev01  account 1  displayName: "Plan 1" -> "Edited 1"'
        ]

        new_password = syncd(
            "plan",
            *applied.flags(state_dir=state),
            env={"CLUSTER_SIP_PASSWORD": "another-sip-secret-9"},
        )
        assert new_password.returncode == 2, new_password.stderr
        assert new_password.stdout.splitlines()[:2] == [
            "dev01  account 1  password: (unknown) -> (will be set)",
            "dev02  account 1  password: (unknown) -> (will be set)",
        ]
        assert "another-sip-secret-9" not in new_password.stdout + new_password.stderr
        assert not state.exists()
        no_secret(result, text, new_password)

    def test_missing_password_key_is_the_daemons_sentence(
        self, applied: Applied, tmp_path: Path
    ) -> None:
        """No password_key_file in cluster mode: plan exits 1 with the one sentence the daemon gives, naming the setting."""
        flags = applied.flags(state_dir=tmp_path / "state")
        at = flags.index("--password-key-file")
        del flags[at : at + 2]
        env = {"CLUSTER_SIP_PASSWORD": SIP_PASSWORD}
        planned = syncd("plan", *flags, env=env)
        error = one_error(planned)
        assert "password_key_file" in error, error
        assert not (tmp_path / "state").exists()
        ran = syncd("run", *flags, "--node-name", "n9", env=env, timeout=60)
        assert ran.returncode != 0
        (line,) = ran.stderr.strip().splitlines()
        assert json.loads(line)["error"] == error
        no_secret(planned, ran)

    def test_refused_etcd_user_is_one_sentence(self, applied: Applied, tmp_path: Path) -> None:
        """A wrong etcd password: exit 1 with one sentence naming cluster_username and cluster_password_file; no password shown."""
        wrong = tmp_path / "wrong"
        wrong.write_text("not-the-Pass-8\n")
        flags = applied.flags(state_dir=tmp_path / "state")
        flags[flags.index(str(applied.etcd_password))] = str(wrong)
        result = syncd("plan", *flags, env={"CLUSTER_SIP_PASSWORD": SIP_PASSWORD})
        error = one_error(result)
        assert "cluster_username" in error and "cluster_password_file" in error, error
        assert "not-the-Pass-8" not in result.stderr
        no_secret(result)


def plan_one_device(
    tmp_path: Path, endpoint: str, *flags: str, before: Callable[[], None] | None = None
) -> subprocess.CompletedProcess[str]:
    """``syncd plan`` of one emulated device on the cluster at ``endpoint`` (``before``: called
    once the device runs, before the plan)."""
    with run_fleet_in_thread(devices=1) as fleet:
        desired_tree(tmp_path / "desired", fleet.devices, "One")
        (tmp_path / "key").write_text("ab" * 32)
        if before is not None:
            before()
        return syncd(
            "plan",
            "--desired",
            str(tmp_path / "desired"),
            "--state-dir",
            str(tmp_path / "state"),
            "--cluster-endpoints",
            endpoint,
            "--password-key-file",
            str(tmp_path / "key"),
            "--log-format",
            "json",
            *flags,
            env={"CLUSTER_SIP_PASSWORD": SIP_PASSWORD},
        )


def test_stopped_etcd_is_one_sentence_naming_cluster_endpoints(
    own_etcd: EtcdServer, tmp_path: Path
) -> None:
    """etcd stopped: plan exits 1 with one sentence naming cluster_endpoints, no traceback, and creates no state dir."""
    result = plan_one_device(tmp_path, own_etcd.endpoint, before=own_etcd.stop)
    error = one_error(result)
    assert "cluster_endpoints" in error and own_etcd.endpoint in error, error
    assert not (tmp_path / "state").exists()
    assert SIP_PASSWORD not in result.stderr


def test_a_cluster_never_applied_says_no_record_exists(
    etcd: EtcdServer, cluster_name: str, tmp_path: Path
) -> None:
    """No node has applied yet (no records in etcd): plan marks the password (no record) and says once that the cluster holds no record, not the state dir (exit 2)."""
    result = plan_one_device(tmp_path, etcd.endpoint, "--cluster-name", cluster_name)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "dev01  account 1  password: (unknown) -> (no record)" in result.stdout.splitlines()
    events = [json.loads(line) for line in result.stderr.splitlines()]
    (notice,) = [e for e in events if e["event"] == "plan.no_password_records"]
    assert notice["cluster"] == cluster_name and "state_dir" not in notice
    assert "etcd" in notice["message"]
    assert not (tmp_path / "state").exists()
    assert SIP_PASSWORD not in result.stdout + result.stderr
