"""etcd refusing a node: a wrong password and a role without the cluster's keys are told apart (SPEC 11)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.cluster.conftest import enable_auth
from tests.cluster.daemons import one_error
from tests.e2e.conftest import syncd
from tests.etcd_server import EtcdServer

USER = "syncdu"
PASSWORD = "refusal-Etcd-Pass-3"


class TestPermissionDenied:
    def test_a_role_without_the_cluster_prefix_names_the_user_and_the_prefix(
        self, own_etcd: EtcdServer, tmp_path: Path
    ) -> None:
        """A user whose role grants ``syncd`` (no leading slash), not ``/syncd/``: ``run`` and ``history`` say permission denied, naming the user and the prefix; a wrong password still names the credentials settings."""
        asyncio.run(enable_auth(own_etcd.endpoint, user=USER, password=PASSWORD, prefix="syncd"))
        (tmp_path / "right").write_text(PASSWORD + "\n")
        (tmp_path / "wrong").write_text("not-the-Pass-1\n")
        (tmp_path / "key").write_text("ab" * 32)
        (tmp_path / "desired").mkdir()
        base = ("--cluster-endpoints", own_etcd.endpoint, "--cluster-username", USER)
        right = (*base, "--cluster-password-file", str(tmp_path / "right"))
        run_args = (
            "run",
            "--log-format",
            "json",
            "--node-name",
            "n1",
            "--password-key-file",
            str(tmp_path / "key"),
            "--desired",
            str(tmp_path / "desired"),
            "--state-dir",
            str(tmp_path / "state"),
        )

        history = one_error(syncd("history", "--log-format", "json", *right, timeout=30))
        run = syncd(*run_args, *right, timeout=60)
        assert run.returncode == 1, run.stdout + run.stderr
        (line,) = run.stderr.strip().splitlines()
        for error in (history, line):
            assert "permission denied" in error, error
            assert f"'{USER}'" in error and "/syncd/" in error, error
            assert "check cluster_username and cluster_password_file" not in error, error

        wrong = (*base, "--cluster-password-file", str(tmp_path / "wrong"))
        refused = one_error(syncd("history", "--log-format", "json", *wrong, timeout=30))
        assert "check cluster_username and cluster_password_file" in refused, refused
        assert "permission denied" not in refused, refused
        for output in (history, line, refused):
            assert PASSWORD not in output and "not-the-Pass-1" not in output
