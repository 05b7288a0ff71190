"""An invalid ``_fleet.yaml`` never lets a change out in one wave, and it shows wherever a bad file does."""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.conftest import puts, syncd, write
from tests.etcd_server import free_port
from tests.git_repo import git
from tests.rollouts.helpers import (
    BAD,
    ENV,
    FLEET,
    GOOD,
    OTHER_GOOD,
    PBX,
    args,
    domain_of,
    set_domain,
    tree,
    wait_until,
)

FLEET_OPTIONS = {"devices": 4, "pbx": PBX, "register_delay": 0.2}
#: ``bake: "1"`` is refused (a number of seconds): on line 6 of the template.
BROKEN = FLEET.format(bake='"1"', on_failure="revert", timeout=2, extra="")
BROKEN_AT = "_fleet.yaml:6"


def _valid(bake: float = 0.5) -> str:
    return FLEET.format(bake=bake, on_failure="revert", timeout=2, extra="")


def _status(tmp_path: Path) -> dict[str, Any]:
    shown = syncd("status", "--json", "--state-dir", str(tmp_path / "state"))
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)  # type: ignore[no-any-return]


def _puts_since(fleet: Any, since: float) -> list[tuple[str, Any]]:
    return [(d.url, e) for d in fleet.devices for e in puts(d) if e.time > since]


def _plan_args(root: Path, tmp_path: Path) -> list[str]:
    return ["--desired", str(root), "--state-dir", str(tmp_path / "state")]


def _rolled_out(root: Path, tmp_path: Path, daemon: Any) -> None:
    """A first daemon rolls ``root`` out under its valid policy and stops."""
    proc = daemon(*args(root, tmp_path), env=ENV)
    proc.wait_for("rollout.completed", timeout=20)
    assert proc.stop() == 0


def _events(proc: Any, name: str, **match: Any) -> list[dict[str, Any]]:
    return [
        e
        for e in proc.events
        if e.get("event") == name and all(e.get(k) == v for k, v in match.items())
    ]


class TestStartWithAnInvalidPolicy:
    def test_changes_wait_drift_is_corrected_the_file_shows_and_a_fix_rolls_out_by_wave(
        self, sim, daemon, tmp_path
    ):
        """Started with an invalid _fleet.yaml: no change goes out (deferred once, naming the file:line), a drift is corrected, status, /status, the page and the metric show the file, and fixing it starts a rollout by waves."""
        fleet = sim(**FLEET_OPTIONS)
        root = tree(tmp_path, fleet)
        _rolled_out(root, tmp_path, daemon)
        write(root, "_fleet.yaml", BROKEN)
        set_domain(root, BAD)  # a change for every device ...
        dev2 = (root / "dev2.yaml").read_text()  # ... but dev2, whose state stays in force
        write(root, "dev2.yaml", dev2 + f"    domain: {GOOD}\n")
        fleet.devices[1].set_live(1, domain=OTHER_GOOD)  # and drifts
        port = free_port()
        since = time.time()
        proc = daemon(*args(root, tmp_path, "--metrics-address", f"127.0.0.1:{port}"), env=ENV)
        invalid = proc.wait_for("desired.invalid", file="_fleet.yaml")
        assert invalid["line"] == 6
        corrected = proc.wait_for("apply.succeeded", device="dev2", timeout=10)
        assert corrected["fields"][0]["desired"] == GOOD
        for name in ("dev1", "dev3", "dev4"):
            deferred = proc.wait_for("apply.deferred", device=name, reason="policy")
            assert BROKEN_AT in deferred["error"], deferred
        time.sleep(4.5)  # two resyncs
        sent = _puts_since(fleet, since)
        assert [url for url, _ in sent] == [fleet.devices[1].url], sent
        assert [domain_of(d) for d in fleet.devices] == [GOOD] * 4
        assert not _events(proc, "rollout.started")
        assert len(_events(proc, "apply.deferred", device="dev1")) == 1
        assert len(_events(proc, "desired.invalid", file="_fleet.yaml")) == 1

        shown = _status(tmp_path)
        (entry,) = shown["invalid_files"]
        assert (entry["file"], entry["line"]) == ("_fleet.yaml", 6)
        assert "rollout.bake" in entry["error"]
        states = {d["device"]: d for d in shown["devices"]}
        assert states["dev1"]["state"] == "waiting"
        assert "_fleet.yaml" in states["dev1"]["message"]
        assert states["dev2"]["state"] == "in_sync"
        base = f"http://127.0.0.1:{port}"
        assert json.loads(httpx.get(f"{base}/status").text)["invalid_files"] == [entry]
        assert "_fleet.yaml" in httpx.get(f"{base}/").text
        metrics = httpx.get(f"{base}/metrics").text
        assert re.search(r"^syncd_desired_invalid_files 1\.0$", metrics, re.M), metrics

        write(root, "_fleet.yaml", _valid())
        started = proc.wait_for("rollout.started", timeout=10)
        assert started["waves"] == [
            {"name": "canary", "devices": 1},
            {"name": "rest", "devices": 2},
        ]
        assert proc.stop() == 0


class TestHaltedRolloutAndAnInvalidPolicy:
    def test_a_halted_rollout_stays_halted_across_a_restart_with_an_invalid_policy(
        self, sim, daemon, tmp_path
    ):
        """Halted and reverted, then _fleet.yaml broken and the daemon restarted: no device gets a PUT, the rollout stays halted, and restoring the same policy keeps it halted."""
        fleet = sim(**FLEET_OPTIONS)
        root = tree(tmp_path, fleet)
        proc = daemon(*args(root, tmp_path), env=ENV)
        proc.wait_for("rollout.completed", timeout=20)
        set_domain(root, BAD)
        proc.wait_for("rollout.halted", timeout=20)
        proc.wait_for("apply.reverted", device="dev1", timeout=10)
        write(root, "_fleet.yaml", BROKEN)
        proc.wait_for("desired.invalid", file="_fleet.yaml")
        # The status snapshot follows within a tick of the daemon.
        wait_until(lambda: _status(tmp_path)["rollout"]["state"] == "halted", 5)
        halted = _status(tmp_path)["rollout"]
        assert (halted["state"], halted["failed"]) == ("halted", ["dev1"])
        assert proc.stop() == 0

        since = time.time()
        again = daemon(*args(root, tmp_path), env=ENV)
        again.wait_for("desired.invalid", file="_fleet.yaml")
        time.sleep(4.5)  # two resyncs
        assert _puts_since(fleet, since) == []
        assert _status(tmp_path)["rollout"] == halted
        write(root, "_fleet.yaml", _valid())  # the policy the rollout halted under
        loaded = again.wait_for("desired.loaded", reason="files changed")
        assert loaded["revision"] == halted["revision"]
        time.sleep(2.5)
        assert _puts_since(fleet, since) == []
        assert _status(tmp_path)["rollout"] == halted
        assert [domain_of(d) for d in fleet.devices] == [GOOD] * 4
        assert again.stop(signal.SIGTERM) == 0

    def test_a_commit_of_an_invalid_policy_does_not_restart_a_halted_rollout(
        self, sim, daemon, tmp_path
    ):
        """In a Git checkout, a commit that only breaks _fleet.yaml is a new revision, yet the halted rollout is not replaced: nothing is pushed again."""
        fleet = sim(**FLEET_OPTIONS)
        root = tree(tmp_path, fleet)
        git(root, "init", "-q")
        git(root, "add", "-A")
        git(root, "commit", "-qm", "fleet")
        proc = daemon(*args(root, tmp_path), env=ENV)
        proc.wait_for("rollout.completed", timeout=20)
        set_domain(root, BAD)
        git(root, "commit", "-qam", "the bad PBX")
        proc.proc.send_signal(signal.SIGHUP)
        proc.wait_for("rollout.halted", timeout=20)
        proc.wait_for("apply.reverted", device="dev1", timeout=10)
        since, started = time.time(), len(_events(proc, "rollout.started"))
        write(root, "_fleet.yaml", BROKEN)
        git(root, "commit", "-qam", "a broken policy")
        proc.proc.send_signal(signal.SIGHUP)
        proc.wait_for("desired.loaded", revision=git(root, "rev-parse", "HEAD"), timeout=10)
        time.sleep(2.5)  # a resync
        assert _puts_since(fleet, since) == []
        assert len(_events(proc, "rollout.started")) == started
        assert _status(tmp_path)["rollout"]["state"] == "halted"
        assert proc.stop() == 0


class TestPlanWithAnInvalidPolicy:
    def test_plan_names_the_file_and_exits_1(self, sim, tmp_path):
        """``plan`` with an invalid _fleet.yaml: stderr names the file:line, exit 1; ``--json`` carries the problem."""
        fleet = sim(devices=2)
        root = tree(tmp_path, fleet, domain=BAD)
        write(root, "_fleet.yaml", BROKEN)
        text = syncd("plan", *_plan_args(root, tmp_path), env=ENV)
        assert text.returncode == 1, (text.stdout, text.stderr)
        assert BROKEN_AT in text.stderr
        assert "dev1  account 1  domain" in text.stdout  # the plan is still printed
        shown = syncd("plan", "--json", *_plan_args(root, tmp_path), env=ENV)
        assert shown.returncode == 1
        doc = json.loads(shown.stdout)
        (problem,) = doc["invalid_files"]
        assert (problem["file"], problem["line"]) == ("_fleet.yaml", 6)
        assert doc["summary"]["changes"] == 2

    def test_the_tree_revision_covers_the_policy_not_its_comments(self, sim, tmp_path):
        """A ``tree:`` revision changes with a _fleet.yaml edit, not with a comment in it."""
        fleet = sim(devices=1)
        root = tree(tmp_path, fleet)

        def revision() -> str:
            done = syncd("plan", *_plan_args(root, tmp_path), env=ENV)
            assert done.returncode in (0, 2), done.stderr
            loaded = [
                json.loads(line) for line in done.stderr.splitlines() if "desired.loaded" in line
            ]
            return str(loaded[0]["revision"])

        first = revision()
        write(root, "_fleet.yaml", "# reviewed\n" + _valid())
        assert revision() == first
        write(root, "_fleet.yaml", _valid(bake=5))
        assert revision() != first
