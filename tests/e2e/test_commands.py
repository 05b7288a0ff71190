"""validate, plan and apply as an operator runs them, against emulated intercoms."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from syncd.simulator.faults import Fault
from tests.e2e.conftest import device_yaml, puts, syncd, write

ACCOUNT_1 = """\
  - account: 1
    enabled: true
    displayName: Lobby door
    sipNumber: "4001"
    domain: pbx.example.com
    domainPort: 5060
    answerMode: 1
"""


def _tree(tmp_path: Path, fleet, accounts: str = ACCOUNT_1) -> Path:
    root = tmp_path / "desired"
    for n, dev in enumerate(fleet.devices, start=1):
        write(root, f"site/dev{n}.yaml", device_yaml(dev.url, accounts))
    return root


def _run(cmd: str, root: Path, tmp_path: Path, *extra: str, env=None):
    return syncd(
        cmd, "--desired", str(root), "--state-dir", str(tmp_path / "state"), *extra, env=env
    )


class TestPlanApply:
    def test_plan_apply_converge_with_one_multipart_put_each(self, sim, tmp_path):
        """plan exits 2, apply sends one multipart PUT of only the changed fields, then all is quiet."""
        fleet = sim(devices=2)
        root = _tree(tmp_path, fleet)
        first = _run("plan", root, tmp_path)
        assert first.returncode == 2, first.stderr
        assert 'site/dev1  account 1  displayName: "" -> "Lobby door"' in first.stdout
        assert all(not puts(d) for d in fleet.devices)

        applied = _run("apply", root, tmp_path)
        assert applied.returncode == 0, applied.stderr
        # Every event about the desired state carries its revision (SPEC 7), one for both runs.
        about = ("desired.loaded", "change.pending", "apply.succeeded")
        logged = [
            e
            for run in (first, applied)
            for e in map(json.loads, run.stderr.splitlines())
            if e["event"] in about
        ]
        assert {e["event"] for e in logged} == set(about)
        assert len({e.get("revision") for e in logged}) == 1
        assert str(logged[0]["revision"]).startswith("tree:")
        for dev in fleet.devices:
            (put,) = puts(dev)
            assert put.multipart
            # answerMode is already "1" on a factory device: not sent.
            assert put.blob == {
                "accounts": [
                    {
                        "account": 1,
                        "enabled": True,
                        "displayName": "Lobby door",
                        "sipNumber": "4001",
                        "domain": "pbx.example.com",
                        "domainPort": "5060",
                    }
                ]
            }
            dev.clear_journal()

        again = _run("apply", root, tmp_path)
        assert again.returncode == 0
        assert all(not puts(d) for d in fleet.devices)
        assert _run("plan", root, tmp_path).returncode == 0

    def test_device_filter_keeps_the_trees_revision(self, sim, tmp_path):
        """--device selects what is applied, not what the tree's revision is: the same for both."""
        fleet = sim(devices=2)
        root = _tree(tmp_path, fleet)

        def revision(*extra: str) -> str:
            done = _run("plan", root, tmp_path, *extra)
            assert done.returncode == 2, done.stderr
            (loaded,) = [
                e
                for e in map(json.loads, done.stderr.splitlines())
                if e["event"] == "desired.loaded"
            ]
            return str(loaded["revision"])

        whole = revision()
        assert whole.startswith("tree:")
        assert revision("--device", "site/dev1") == whole
        write(
            root,
            "site/dev2.yaml",
            device_yaml(fleet.devices[1].url, ACCOUNT_1.replace("Lobby", "Side")),
        )
        assert revision("--device", "site/dev1") not in (whole, "")

    def test_integer_firmware_has_no_perpetual_diff(self, sim, tmp_path):
        """On integer firmware values are sent as integers and a second plan is clean."""
        fleet = sim(devices=1, firmware="integer")
        root = _tree(tmp_path, fleet, ACCOUNT_1 + '    proxyPort: ""\n    registrarPort: "5060"\n')
        assert _run("apply", root, tmp_path).returncode == 0
        (put,) = puts(fleet.devices[0])
        sent = put.blob["accounts"][0]
        assert sent["domainPort"] == 5060 and sent["registrarPort"] == 5060
        assert "proxyPort" not in sent  # 0 on the device already means the default port
        assert "answerMode" not in sent
        assert _run("plan", root, tmp_path).returncode == 0

    def test_defaults_merge_under_device_file(self, sim, tmp_path):
        """_defaults.yaml values reach the device, and the device file wins over them."""
        fleet = sim(devices=1)
        root = tmp_path / "desired"
        write(
            root,
            "_defaults.yaml",
            "accounts:\n  - account: 1\n    domain: from-defaults\n"
            '    displayName: default name\n  - account: 2\n    sipNumber: "9"\n',
        )
        write(
            root,
            "a/dev.yaml",
            device_yaml(fleet.devices[0].url, "  - account: 1\n    displayName: mine\n"),
        )
        assert _run("apply", root, tmp_path).returncode == 0
        acc1, acc2 = fleet.devices[0].accounts
        assert (acc1["domain"], acc1["displayName"], acc2["sipNumber"]) == (
            "from-defaults",
            "mine",
            "9",
        )

    def test_unmanaged_fields_and_accounts_are_never_touched(self, sim, tmp_path):
        """Fields and accounts left out of the desired state keep their live values."""
        fleet = sim(devices=1)
        dev = fleet.devices[0]
        dev.set_live(1, proxyAddress="proxy.local")
        dev.set_live(2, displayName="hand-made", enabled=True)
        root = _tree(tmp_path, fleet, "  - account: 1\n    displayName: x\n")
        assert _run("apply", root, tmp_path).returncode == 0
        acc1, acc2 = dev.accounts
        assert acc1["proxyAddress"] == "proxy.local"
        assert (acc2["displayName"], acc2["enabled"]) == ("hand-made", True)
        (put,) = puts(dev)
        assert put.blob == {"accounts": [{"account": 1, "displayName": "x"}]}


class TestPasswords:
    def test_password_sent_once_then_again_only_after_change(self, sim, tmp_path):
        """A SIP password is sent on first apply, not again, and again once it changes."""
        fleet = sim(devices=1)
        dev = fleet.devices[0]
        root = _tree(tmp_path, fleet, "  - account: 1\n    password: {env: SIP1}\n")
        env = {"SIP1": "s3cret-one"}
        plan = _run("plan", root, tmp_path, env=env)
        assert plan.returncode == 2
        assert "password: (unknown) -> (no record)" in plan.stdout
        first = _run("apply", root, tmp_path, env=env)
        assert first.returncode == 0, first.stderr
        assert dev.passwords[1] == "s3cret-one"
        assert len(puts(dev)) == 1
        second = _run("apply", root, tmp_path, env=env)
        assert second.returncode == 0 and len(puts(dev)) == 1
        assert _run("plan", root, tmp_path, env=env).returncode == 0
        changed = _run("plan", root, tmp_path, env={"SIP1": "s3cret-two"})
        assert changed.returncode == 2
        assert "password: (unknown) -> (will be set)" in changed.stdout
        third = _run("apply", root, tmp_path, env={"SIP1": "s3cret-two"})
        assert third.returncode == 0 and len(puts(dev)) == 2
        assert dev.passwords[1] == "s3cret-two"
        outputs = [r.stdout + r.stderr for r in (plan, first, second, changed, third)]
        state = b"".join(p.read_bytes() for p in (tmp_path / "state").rglob("*") if p.is_file())
        for secret in ("s3cret-one", "s3cret-two"):
            assert all(secret not in out for out in outputs)
            assert secret.encode() not in state

    def test_replaced_device_at_same_url_gets_its_password_again(self, sim, tmp_path):
        """A device swapped at the same address (another serial number) is sent the password again."""
        fleet = sim(devices=1)
        dev = fleet.devices[0]
        root = _tree(tmp_path, fleet, "  - account: 1\n    password: {env: SIP1}\n")
        env = {"SIP1": "s3cret-one"}
        assert _run("apply", root, tmp_path, env=env).returncode == 0
        assert _run("apply", root, tmp_path, env=env).returncode == 0
        assert len(puts(dev)) == 1
        dev.factory_reset()
        dev.identity["serialNumber"] = "54-9999-0001"
        assert dev.passwords[1] is None
        assert _run("apply", root, tmp_path, env=env).returncode == 0
        assert len(puts(dev)) == 2 and dev.passwords[1] == "s3cret-one"
        assert _run("apply", root, tmp_path, env=env).returncode == 0
        assert len(puts(dev)) == 2

    @pytest.mark.parametrize(
        "fault",
        [{"kind": "reject", "code": 14}, {"kind": "malformed"}],
        ids=["rejected", "not-json"],
    )
    def test_serial_unread_once_sends_no_password(self, sim, tmp_path, fault):
        """One bad answer from /api/system/info is not another device: no apply around it,
        recorded with the serial or without, sends the unchanged password again."""
        fleet = sim(devices=1)
        dev = fleet.devices[0]
        root = _tree(tmp_path, fleet, "  - account: 1\n    password: {env: SIP1}\n")
        env = {"SIP1": "s3cret-one"}
        glitch = Fault.from_json({**fault, "count": 1, "path": "/api/system/info"})
        dev.add_fault(glitch)  # the first apply records the password without the serial
        assert _run("apply", root, tmp_path, env=env).returncode == 0
        assert len(puts(dev)) == 1 and not dev.faults
        for _ in range(2):  # the serial read: the entry is bound to it, not sent again
            assert _run("apply", root, tmp_path, env=env).returncode == 0
        dev.add_fault(glitch)
        for _ in range(2):  # unread again, then read again
            assert _run("apply", root, tmp_path, env=env).returncode == 0
        assert len(puts(dev)) == 1
        dev.factory_reset()  # and a box swapped at the address is still another device
        dev.identity["serialNumber"] = "54-9999-0001"
        assert _run("apply", root, tmp_path, env=env).returncode == 0
        assert len(puts(dev)) == 2 and dev.passwords[1] == "s3cret-one"

    def test_moved_device_file_sends_no_password(self, sim, tmp_path):
        """A device file renamed (git mv) is the same device: apply sends it no password again."""
        fleet = sim(devices=1)
        dev = fleet.devices[0]
        root = _tree(tmp_path, fleet, "  - account: 1\n    password: {env: SIP1}\n")
        env = {"SIP1": "s3cret-one"}
        assert _run("apply", root, tmp_path, env=env).returncode == 0
        assert len(puts(dev)) == 1 and dev.passwords[1] == "s3cret-one"
        moved = root / "site-b" / "lobby.yaml"
        moved.parent.mkdir()
        (root / "site" / "dev1.yaml").rename(moved)
        plan = _run("plan", root, tmp_path, env=env)
        assert plan.returncode == 0, plan.stdout
        again = _run("apply", root, tmp_path, env=env)
        assert again.returncode == 0, again.stderr
        assert len(puts(dev)) == 1
        # The record moved with the device: a changed password is still sent once.
        changed = _run("apply", root, tmp_path, env={"SIP1": "s3cret-two"})
        assert changed.returncode == 0 and len(puts(dev)) == 2
        assert dev.passwords[1] == "s3cret-two"

    def test_plan_json_shows_password_placeholder(self, sim, tmp_path):
        """plan --json reports a due password as live null, desired "(will be set)"."""
        fleet = sim(devices=1)
        root = _tree(tmp_path, fleet, "  - account: 2\n    password: {env: SIP2}\n")
        assert _run("apply", root, tmp_path, env={"SIP2": "pw-1"}).returncode == 0
        result = _run("plan", root, tmp_path, "--json", env={"SIP2": "pw-2"})
        assert result.returncode == 2
        doc = json.loads(result.stdout)
        assert doc["devices"][0]["changes"] == [
            {"account": 2, "field": "password", "live": None, "desired": "(will be set)"}
        ]
        assert doc["summary"] == {
            "devices": 1,
            "in_sync": 0,
            "changes": 1,
            "errors": 0,
            "skipped": 0,
        }
        assert "pw-2" not in result.stdout + result.stderr
        assert "plan.no_password_records" not in result.stderr

    def test_plan_without_state_creates_nothing_and_says_why_passwords_show(self, sim, tmp_path):
        """plan with no state dir creates none, marks passwords (no record) and says so once."""
        fleet = sim(devices=2)
        root = _tree(tmp_path, fleet, "  - account: 1\n    password: {env: SIP1}\n")
        state = tmp_path / "state"
        text = _run("plan", root, tmp_path, env={"SIP1": "pw-1"})
        assert text.returncode == 2
        assert text.stdout.count("password: (unknown) -> (no record)") == 2
        assert "(will be set)" not in text.stdout
        notices = [
            e
            for e in map(json.loads, text.stderr.splitlines())
            if e["event"] == "plan.no_password_records"
        ]
        assert len(notices) == 1 and notices[0]["state_dir"] == str(state)
        # --json keeps SPEC 5's machine form; the warning on stderr says why it may be in place.
        result = _run("plan", root, tmp_path, "--json", env={"SIP1": "pw-1"})
        changes = [c for d in json.loads(result.stdout)["devices"] for c in d["changes"]]
        assert (
            changes
            == [{"account": 1, "field": "password", "live": None, "desired": "(will be set)"}] * 2
        )
        assert "plan.no_password_records" in result.stderr
        assert not state.exists()
        # An existing but empty state dir is the same, and stays empty.
        state.mkdir()
        again = _run("plan", root, tmp_path, env={"SIP1": "pw-1"})
        assert "(no record)" in again.stdout and "plan.no_password_records" in again.stderr
        assert list(state.iterdir()) == []


class TestModesAndFilters:
    def test_observe_reports_but_never_puts(self, sim, tmp_path):
        """An observe device counts as a change for plan, is no failure for apply, gets no PUT."""
        fleet = sim(devices=1)
        root = tmp_path / "desired"
        write(root, "o.yaml", device_yaml(fleet.devices[0].url, ACCOUNT_1, "  mode: observe\n"))
        assert _run("plan", root, tmp_path).returncode == 2
        applied = _run("apply", root, tmp_path)
        assert applied.returncode == 0
        assert not puts(fleet.devices[0])
        assert "reconcile.skipped" in applied.stderr

    def test_suspend_is_skipped_without_a_request(self, sim, tmp_path):
        """A suspended device is not even read."""
        fleet = sim(devices=1)
        root = tmp_path / "desired"
        write(root, "s.yaml", device_yaml(fleet.devices[0].url, ACCOUNT_1, "  mode: suspend\n"))
        result = _run("plan", root, tmp_path, "--json")
        assert result.returncode == 0
        assert json.loads(result.stdout)["devices"][0]["status"] == "skipped"
        assert fleet.devices[0].journal == []

    def test_device_filter_limits_the_run(self, sim, tmp_path):
        """--device limits apply to the named devices; an unknown name is an error."""
        fleet = sim(devices=2)
        root = _tree(tmp_path, fleet)
        assert _run("apply", root, tmp_path, "--device", "site/dev2").returncode == 0
        assert not fleet.devices[0].journal and puts(fleet.devices[1])
        missing = _run("apply", root, tmp_path, "--device", "nope")
        assert missing.returncode == 1 and "no device matches --device nope" in missing.stderr


class TestFailures:
    def test_partially_broken_tree_still_serves_the_good_devices(self, sim, tmp_path):
        """A bad file is reported with file:line and exit 1, while the good device converges."""
        fleet = sim(devices=2)
        root = tmp_path / "desired"
        write(root, "good.yaml", device_yaml(fleet.devices[0].url, ACCOUNT_1))
        write(
            root,
            "bad.yaml",
            device_yaml(fleet.devices[1].url, "  - account: 1\n    domainPort: 99999\n"),
        )
        result = _run("apply", root, tmp_path)
        assert result.returncode == 1
        assert "bad.yaml:7: accounts[0].domainPort: must be a port number" in result.stderr
        assert "Traceback" not in result.stderr
        (invalid,) = [
            e
            for line in result.stderr.splitlines()
            if (e := json.loads(line))["event"] == "desired.invalid"
        ]
        assert (invalid["file"], invalid["line"], invalid["device"]) == ("bad.yaml", 7, "bad")
        assert len(puts(fleet.devices[0])) == 1
        assert fleet.devices[1].journal == []

    def test_a_defaults_secret_unset_is_one_problem_and_counts_every_device(self, sim, tmp_path):
        """plan with _defaults.yaml's API password unset: one desired.invalid naming it, and
        desired.loaded counts the devices as the daemon does (none usable, all invalid)."""
        fleet = sim(devices=2)
        root = _tree(tmp_path, fleet)
        write(
            root,
            "_defaults.yaml",
            "device:\n  auth:\n    method: basic\n    username: a\n    password: {env: UNSET_API_PW}\n",
        )
        for n, dev in enumerate(fleet.devices, start=1):
            # No `auth: method: none` of their own: with it, the defaults' password is ignored.
            write(root, f"site/dev{n}.yaml", f"device:\n  url: {dev.url}\n")
        result = _run("plan", root, tmp_path)
        assert result.returncode == 1
        evs = [json.loads(line) for line in result.stderr.splitlines()]
        invalid = [e for e in evs if e["event"] == "desired.invalid"]
        assert [(e["file"], e["line"]) for e in invalid] == [("_defaults.yaml", 5)]
        (loaded,) = [e for e in evs if e["event"] == "desired.loaded"]
        assert (loaded["devices"], loaded["invalid"]) == (0, 2)

    def test_rejected_put_fails_promptly_and_spares_others(self, sim, tmp_path):
        """A device rejecting the PUT makes apply exit 1 quickly; the other device converges."""
        fleet = sim(devices=2)
        fleet.devices[0].inject(kind="reject", code=12, param="domain", method="PUT", count=5)
        root = _tree(tmp_path, fleet)
        started = time.monotonic()
        result = _run("apply", root, tmp_path)
        assert time.monotonic() - started < 20
        assert result.returncode == 1
        assert "code 12" in result.stderr and "domain" in result.stderr
        assert len(puts(fleet.devices[0])) == 1  # a rejection is not retried
        assert fleet.devices[1].accounts[0]["displayName"] == "Lobby door"

    def test_unreachable_device_exits_1_without_traceback(self, sim, tmp_path):
        """A device that refuses connections is an error line, not a hang or a traceback."""
        root = tmp_path / "desired"
        write(root, "gone.yaml", device_yaml("http://127.0.0.1:9", ACCOUNT_1))
        result = _run("plan", root, tmp_path, "--json")
        assert result.returncode == 1
        device = json.loads(result.stdout)["devices"][0]
        assert device["status"] == "error" and device["error"]["kind"] == "transport"
        assert "device.unreachable" in result.stderr and "Traceback" not in result.stderr

    def test_transient_5xx_is_retried(self, sim, tmp_path):
        """Two HTTP 503 answers are retried through (request.retrying, at debug); apply still converges."""
        fleet = sim(devices=1)
        # On the config read (the call status, read alongside it, falls back to a read of its own).
        fleet.devices[0].inject(kind="status", status=503, path="/api/phone/config", count=2)
        root = _tree(tmp_path, fleet)
        result = _run("apply", root, tmp_path, "--log-level", "debug")
        assert result.returncode == 0, result.stderr
        assert result.stderr.count('"request.retrying"') == 2
        assert "apply.retrying" not in result.stderr


class TestValidate:
    def test_validate_exit_codes_and_positional_dir(self, tmp_path):
        """validate DIR exits 0 for a good tree and 1 with a file:line message for a bad one."""
        root = tmp_path / "desired"
        write(root, "a.yaml", device_yaml("https://192.0.2.10", ACCOUNT_1))
        ok = syncd("validate", str(root))
        assert ok.returncode == 0, ok.stderr
        write(
            root,
            "b.yaml",
            device_yaml("https://192.0.2.11", "  - account: 1\n    sipNumber: 4001\n"),
        )
        bad = syncd("validate", str(root))
        assert bad.returncode == 1
        assert "b.yaml:7: accounts[0].sipNumber: must be a string; quote it" in bad.stdout
        assert bad.stderr == ""

    def test_validate_checks_secret_form_only_unless_asked(self, tmp_path):
        """Unset env references pass validate, and fail with --resolve-secrets naming the variable."""
        root = tmp_path / "desired"
        write(
            root,
            "a.yaml",
            device_yaml("https://192.0.2.10", "  - account: 1\n    password: {env: NOT_SET_X}\n"),
        )
        assert syncd("validate", str(root)).returncode == 0
        strict = syncd("validate", str(root), "--resolve-secrets")
        assert strict.returncode == 1 and "NOT_SET_X" in strict.stdout

    def test_missing_desired_dir_is_one_sentence(self, tmp_path):
        """A missing desired dir is one error line and exit 1."""
        result = syncd("plan", "--desired", str(tmp_path / "nope"))
        assert result.returncode == 1
        (line,) = result.stderr.strip().splitlines()
        error = json.loads(line)  # stderr is not a terminal: JSON, like the log events
        assert (error["level"], error["event"]) == ("error", "command.failed")
        assert error["error"] == (
            f"desired dir {tmp_path / 'nope'} does not exist or is not a directory"
        )
        console = syncd("plan", "--desired", str(tmp_path / "nope"), "--log-format", "console")
        assert console.stderr.strip().splitlines() == [
            f"syncd: error: desired dir {tmp_path / 'nope'} does not exist or is not a directory"
        ]

    def test_validate_device_filter_limits_the_check(self, tmp_path):
        """validate --device reports only the chosen devices' problems."""
        root = tmp_path / "desired"
        write(root, "good.yaml", device_yaml("https://192.0.2.10", ACCOUNT_1))
        write(root, "bad.yaml", "device:\n  url: ftp://192.0.2.11\n")
        assert syncd("validate", str(root)).returncode == 1
        only_good = syncd("validate", str(root), "--device", "good")
        assert only_good.returncode == 0, only_good.stdout
        assert "bad.yaml" not in only_good.stdout
        only_bad = syncd("validate", str(root), "--device", "bad")
        assert only_bad.returncode == 1 and "bad.yaml:2: device.url" in only_bad.stdout


class TestApplyAndCluster:
    def test_apply_refuses_to_run_against_a_cluster(self, tmp_path: Path) -> None:
        """With cluster_endpoints set, apply exits 1 with one sentence and touches nothing."""
        (tmp_path / "desired").mkdir()
        result = syncd(
            "apply",
            "--desired",
            str(tmp_path / "desired"),
            "--state-dir",
            str(tmp_path / "state"),
            env={"SYNCD_CLUSTER_ENDPOINTS": "http://127.0.0.1:9"},
        )
        assert result.returncode == 1
        assert "does not run against a cluster" in result.stderr
        assert not (tmp_path / "state").exists()
