"""syncd export against emulated intercoms over real sockets, run as an operator runs it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncd.desired import load_desired
from syncd.desired.yamldoc import parse_yaml
from syncd.export import PASSWORD_HINT, write_new_file, yaml_string
from syncd.model import ACCOUNT_FIELDS
from syncd.simulator import Fleet, run_fleet_in_thread

API_PASSWORD = "Pa55-w0rd:not-for-output"
SIP_PASSWORD = "sip-secret-9876"

#: A configured account 1: a leading-zero number, characters YAML cares about, ports.
CONFIGURED: dict[str, Any] = {
    "enabled": True,
    "displayName": 'Lobby "door": #1 — Vchod č.p. 12',
    "sipNumber": "0123",
    "domain": "pbx.example.com",
    "domainPort": 5060,
    "authId": "",
    "proxyAddress": "proxy.example.com",
    "proxyPort": "",
    "registrationEnabled": True,
    "registrarAddress": "yes",
    "registrarPort": "5061",
    "answerMode": 2,
    "password": SIP_PASSWORD,
}


@pytest.fixture
def intercoms() -> Iterator[Callable[..., Fleet]]:
    """Start emulated fleets in background threads; all stop when the test ends."""
    with ExitStack() as stack:

        def start(**options: Any) -> Fleet:
            return stack.enter_context(run_fleet_in_thread(**options))

        yield start


@pytest.fixture
def free_port() -> int:
    """A TCP port on 127.0.0.1 with nothing listening on it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m syncd ARGS`` with JSON logs and no inherited SYNCD_* settings."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("SYNCD_")}
    return subprocess.run(
        [sys.executable, "-m", "syncd", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**base, "SYNCD_LOG_FORMAT": "json", **(env or {})},
        check=False,
    )


def messages(stderr: str) -> list[str]:
    """The error sentences on stderr, as ``syncd: error: ...``; log events left out.

    With JSON logs an error is a JSON line too (``command.failed``); any line
    that is not JSON is kept as it is (and should not be there).
    """
    out = []
    for line in stderr.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            out.append(line)
            continue
        if event.get("event") in ("command.failed", "command.usage"):
            out.append(f"syncd: error: {event['error']}")
    return out


def configure(fleet: Fleet) -> None:
    """Give every device of ``fleet`` a configured account 1 (drift behind syncd's back)."""
    for dev in fleet.devices:
        dev.set_live(1, **CONFIGURED)


def digest_args(url: str, var: str = "EXPORT_API_PW") -> list[str]:
    return [
        "export",
        "--url",
        url,
        "--auth",
        "digest",
        "--username",
        "admin",
        "--password-env",
        var,
    ]


class TestExportDocument:
    def test_configured_device_exports_yaml_the_loader_accepts(self, intercoms, tmp_path):
        """Every managed field of both accounts comes out, typed as the loader wants, no secret."""
        fleet = intercoms(devices=1, firmware="integer")
        configure(fleet)
        dev = fleet.devices[0]
        done = run("export", "--url", dev.url + "/", "--auth", "none", "--name", "site-a/lobby")
        assert done.returncode == 0, done.stderr
        assert messages(done.stderr) == []

        root = tmp_path / "desired"
        root.mkdir()
        (root / "anything.yaml").write_text(done.stdout)
        state = load_desired(root)
        assert state.problems == []
        entry = state.devices["site-a/lobby"]
        assert entry.url == dev.url
        assert [a for a in entry.accounts] == [1, 2]
        one = dict(entry.accounts[1].fields)
        assert list(one) == list(ACCOUNT_FIELDS)
        assert one["sipNumber"] == "0123"
        assert one["displayName"] == CONFIGURED["displayName"]
        assert one["registrarAddress"] == "yes"
        assert one["domainPort"] == 5060 and one["registrarPort"] == 5061
        assert one["proxyPort"] == 0 and one["answerMode"] == 2
        assert one["enabled"] is True and one["registrationEnabled"] is True
        assert entry.accounts[1].password is None
        assert dict(entry.accounts[2].fields)["enabled"] is False

        assert SIP_PASSWORD not in done.stdout + done.stderr
        assert done.stdout.count(PASSWORD_HINT) == 2
        assert "\n    accountType:" not in done.stdout  # unmanaged live field, not exported
        assert '    sipNumber: "0123"\n' in done.stdout
        assert "\n  mode: enforce\n" in done.stdout

    @pytest.mark.parametrize("firmware", ["string", "integer"])
    def test_round_trip_plan_is_clean(self, intercoms, tmp_path, firmware):
        """An exported file put in a desired dir makes `syncd plan` report nothing to change."""
        fleet = intercoms(devices=1, firmware=firmware, auth="digest", password=API_PASSWORD)
        configure(fleet)
        dev = fleet.devices[0]
        dev.set_live(2, enabled=True, sipNumber="4002", domainPort="0", answerMode="0")
        root = tmp_path / "desired"
        env = {"EXPORT_API_PW": API_PASSWORD}
        done = run(*digest_args(dev.url), "--output", str(root), env=env)
        assert done.returncode == 0, done.stderr
        name = f"127.0.0.1-{dev.port}"
        assert (root / f"{name}.yaml").is_file()
        dev.clear_journal()

        plan = run(
            "plan",
            "--json",
            "--desired",
            str(root),
            "--state-dir",
            str(tmp_path / "state"),
            env=env,
        )
        assert plan.returncode == 0, plan.stdout + plan.stderr
        report = json.loads(plan.stdout)
        (device,) = report["devices"]
        assert device["device"] == name
        assert device["status"] == "in_sync" and device["changes"] == []
        assert {e.method for e in dev.journal} == {"GET"}  # read only, nothing sent


class TestCredentials:
    @pytest.mark.parametrize("source", ["env", "file"])
    def test_digest_password_is_used_but_never_printed(self, intercoms, tmp_path, source):
        """The API password reaches the device, but only its reference appears in the output."""
        fleet = intercoms(devices=1, auth="digest", password=API_PASSWORD)
        configure(fleet)
        url = fleet.devices[0].url
        if source == "env":
            done = run(*digest_args(url), env={"EXPORT_API_PW": API_PASSWORD})
            reference = '    password: {env: "EXPORT_API_PW"}\n'
        else:
            secret = tmp_path / "api-password"
            secret.write_text(API_PASSWORD + "\n")
            done = run(
                "export", "--url", url, "--username", "admin", "--password-file", str(secret)
            )
            reference = f'    password: {{file: "{secret}"}}\n'
        assert done.returncode == 0, done.stderr
        assert reference in done.stdout
        assert '    method: digest\n    username: "admin"\n' in done.stdout
        for secret_value in (API_PASSWORD, SIP_PASSWORD):
            assert secret_value not in done.stdout
            assert secret_value not in done.stderr

    def test_wrong_password_fails_with_one_sentence(self, intercoms):
        """Refused credentials give exit 1 and one line naming the device, without the secret."""
        fleet = intercoms(devices=1, auth="digest", password=API_PASSWORD)
        url = fleet.devices[0].url
        done = run(*digest_args(url), env={"EXPORT_API_PW": "not-the-password"})
        assert done.returncode == 1
        assert done.stdout == ""
        (line,) = messages(done.stderr)
        assert line.startswith("syncd: error: ") and url in line
        assert "authorisation required" in line and "--username" in line
        assert "not-the-password" not in done.stderr
        assert "Traceback" not in done.stderr

    def test_method_mismatch_names_the_flag(self, intercoms):
        """A Basic-only device exported with --auth digest: the sentence names --auth digest."""
        fleet = intercoms(devices=1, auth="basic", password=API_PASSWORD)
        url = fleet.devices[0].url
        done = run(*digest_args(url), env={"EXPORT_API_PW": API_PASSWORD})
        assert done.returncode == 1
        (line,) = messages(done.stderr)
        assert "the device asked for Basic authentication but --auth digest was given" in line
        assert "desired state" not in line

    def test_missing_password_sources_are_named(self, intercoms, tmp_path):
        """An unset variable or a missing file is named, and no request is sent."""
        fleet = intercoms(devices=1, auth="digest")
        dev = fleet.devices[0]
        unset = run(*digest_args(dev.url, "EXPORT_UNSET_VAR"))
        assert unset.returncode == 1
        assert messages(unset.stderr) == [
            "syncd: error: cannot read the API password (--password-env): "
            "environment variable EXPORT_UNSET_VAR is not set"
        ]
        missing = tmp_path / "nope"
        gone = run(
            "export", "--url", dev.url, "--username", "admin", "--password-file", str(missing)
        )
        assert gone.returncode == 1
        (line,) = messages(gone.stderr)
        assert str(missing) in line and "does not exist" in line
        assert dev.journal == []


class TestTransport:
    def test_unclosed_ipv6_url_is_one_sentence(self):
        """--url http://[::1 is one sentence naming the URL, not an unexpected ValueError."""
        done = run("export", "--url", "http://[::1", "--auth", "none")
        assert done.returncode == 1
        assert messages(done.stderr) == [
            "syncd: error: --url http://[::1: the URL has a malformed IPv6 address; "
            "write it as [2001:db8::1]"
        ]

    def test_unreachable_device_fails_cleanly(self, free_port):
        """A refused connection ends in exit 1 with one sentence naming the URL, no traceback."""
        url = f"http://127.0.0.1:{free_port}"
        done = run("export", "--url", url, "--auth", "none")
        assert done.returncode == 1
        assert done.stdout == ""
        assert messages(done.stderr) == [
            f"syncd: error: {url} could not be reached: connection refused"
        ]
        assert "Traceback" not in done.stderr

    def test_https_url_on_a_plain_http_device_says_only_that(self, intercoms):
        """The fix is the scheme: no advice about certificates for a device that has none."""
        fleet = intercoms(devices=1)
        url = fleet.devices[0].url.replace("http://", "https://")
        done = run("export", "--url", url, "--auth", "none")
        assert done.returncode == 1
        assert messages(done.stderr) == [
            f"syncd: error: {url}: the device answered plain HTTP on an HTTPS URL; use http://"
        ]

    def test_transient_server_errors_are_retried(self, intercoms):
        """Two HTTP 503 answers are retried within the bounded budget and the export succeeds."""
        fleet = intercoms(devices=1)
        configure(fleet)
        dev = fleet.devices[0]
        dev.inject(kind="status", status=503, count=2)
        done = run("export", "--url", dev.url, "--auth", "none", "--log-level", "debug")
        assert done.returncode == 0, done.stderr
        retries = [
            json.loads(line) for line in done.stderr.splitlines() if "request.retrying" in line
        ]
        assert [(r["attempt"], r["level"], r["request"]) for r in retries] == [
            (1, "debug", "GET"),
            (2, "debug", "GET"),
        ]
        assert "apply.retrying" not in done.stderr
        assert '    sipNumber: "0123"\n' in done.stdout

    def test_tls_needs_the_ca_file_or_insecure(self, intercoms):
        """HTTPS works with --ca-file or --insecure, and without either fails verification."""
        fleet = intercoms(devices=1, tls=True)
        configure(fleet)
        url = fleet.devices[0].url
        assert url.startswith("https://") and fleet.cert_path is not None

        trusted = run("export", "--url", url, "--auth", "none", "--ca-file", str(fleet.cert_path))
        assert trusted.returncode == 0, trusted.stderr
        assert f'  tls:\n    caFile: "{fleet.cert_path}"\n' in trusted.stdout
        assert "verify:" not in trusted.stdout

        untrusted = run("export", "--url", url, "--auth", "none")
        assert untrusted.returncode == 1
        (line,) = messages(untrusted.stderr)
        assert url in line and "certificate verification failed" in line
        assert "--ca-file" in line and "Traceback" not in untrusted.stderr

        insecure = run("export", "--url", url, "--auth", "none", "--insecure")
        assert insecure.returncode == 0, insecure.stderr
        assert "  tls:\n    verify: false\n" in insecure.stdout
        assert '"Lobby \\"door\\": #1 — Vchod č.p. 12"' in insecure.stdout


class TestTree:
    def test_from_list_writes_a_tree_and_never_overwrites(self, intercoms, tmp_path):
        """Listed devices land in DIR/NAME.yaml; an existing file is kept and makes exit 1."""
        fleet = intercoms(devices=3, firmware="integer")
        configure(fleet)
        d1, d2, d3 = fleet.devices
        out = tmp_path / "desired"
        listing = tmp_path / "devices.txt"
        listing.write_text(
            "# name            url\n"
            f"site-a/lobby  {d1.url}\n"
            "\n"
            f"   site-a/garage {d2.url}   # back door\n"
            f"site-b/gate   {d3.url}\n"
        )
        hand_made = out / "site-b" / "gate.yaml"
        hand_made.parent.mkdir(parents=True)
        kept = f"device:\n  url: {d3.url}\n  auth:\n    method: none\n"
        hand_made.write_text(kept)

        done = run("export", "--from-list", str(listing), "--output", str(out), "--auth", "none")
        assert done.returncode == 1
        (line,) = messages(done.stderr)
        assert str(hand_made) in line and "already exists" in line
        assert hand_made.read_text() == kept
        assert "2 of 3 device(s) exported" in done.stdout

        state = load_desired(out)
        assert state.errors == []
        assert sorted(state.devices) == ["site-a/garage", "site-a/lobby", "site-b/gate"]
        assert state.devices["site-a/garage"].url == d2.url
        assert dict(state.devices["site-a/lobby"].accounts[1].fields)["sipNumber"] == "0123"
        assert "name:" not in (out / "site-a" / "lobby.yaml").read_text()

        before = {p: p.read_text() for p in out.rglob("*.yaml")}
        again = run("export", "--from-list", str(listing), "--output", str(out), "--auth", "none")
        assert again.returncode == 1
        assert len(messages(again.stderr)) == 3
        assert {p: p.read_text() for p in out.rglob("*.yaml")} == before
        assert sorted(p.name for p in out.rglob("*") if p.is_file()) == [
            "garage.yaml",
            "gate.yaml",
            "lobby.yaml",
        ]

    def test_shared_values_go_to_defaults_and_the_plan_is_clean(self, intercoms, tmp_path):
        """Values all devices share land in _defaults.yaml; plan is clean; a defaults edit plans everywhere."""
        fleet = intercoms(devices=3)
        configure(fleet)
        for n, dev in enumerate(fleet.devices, start=1):
            dev.set_live(1, displayName=f"Door {n}")
        out = tmp_path / "desired"
        listing = tmp_path / "devices.txt"
        listing.write_text(
            "".join(f"site/d{n} {d.url}\n" for n, d in enumerate(fleet.devices, start=1))
        )
        done = run("export", "--from-list", str(listing), "--output", str(out), "--auth", "none")
        assert done.returncode == 0, done.stderr
        assert f"wrote {out / '_defaults.yaml'}" in done.stdout
        defaults = (out / "_defaults.yaml").read_text()
        assert '    domain: "pbx.example.com"\n' in defaults
        assert "  mode: enforce\n" in defaults and "Door" not in defaults
        own = (out / "site" / "d2.yaml").read_text()
        assert '    displayName: "Door 2"\n' in own
        assert "domain:" not in own and "mode:" not in own and "  - account: 1\n" in own

        def plan(*extra: str) -> subprocess.CompletedProcess[str]:
            args = ["--desired", str(out), "--state-dir", str(tmp_path / "state"), *extra]
            return run("plan", *args)

        clean = plan()
        assert clean.returncode == 0, clean.stdout + clean.stderr
        (out / "_defaults.yaml").write_text(
            defaults.replace('domain: "pbx.example.com"', 'domain: "pbx2.example.com"')
        )
        changed = plan("--json")
        assert changed.returncode == 2, changed.stdout + changed.stderr
        doc = json.loads(changed.stdout)
        assert {d["device"]: d["changes"] for d in doc["devices"]} == {
            f"site/d{n}": [
                {
                    "account": 1,
                    "field": "domain",
                    "live": "pbx.example.com",
                    "desired": "pbx2.example.com",
                }
            ]
            for n in (1, 2, 3)
        }

    def test_no_factor_defaults_keeps_every_value_in_each_file(self, intercoms, tmp_path):
        """--no-factor-defaults writes whole device files and no _defaults.yaml."""
        fleet = intercoms(devices=2)
        configure(fleet)
        out = tmp_path / "desired"
        listing = tmp_path / "devices.txt"
        listing.write_text(f"a {fleet.devices[0].url}\nb {fleet.devices[1].url}\n")
        done = run(
            "export",
            "--from-list",
            str(listing),
            "--output",
            str(out),
            "--auth",
            "none",
            "--no-factor-defaults",
        )
        assert done.returncode == 0, done.stderr
        assert sorted(p.name for p in out.iterdir()) == ["a.yaml", "b.yaml"]
        assert '    domain: "pbx.example.com"\n' in (out / "a.yaml").read_text()

    def test_output_that_is_a_file_is_named(self, intercoms, tmp_path):
        """--output naming a regular file says so once; nothing is read or written."""
        fleet = intercoms(devices=1)
        listing = tmp_path / "devices.txt"
        listing.write_text(f"a1 {fleet.devices[0].url}\n")
        out = tmp_path / "ofile"
        out.write_text("")
        for source in (["--from-list", str(listing)], ["--url", fleet.devices[0].url]):
            done = run("export", *source, "--output", str(out), "--auth", "none")
            assert done.returncode == 1
            assert messages(done.stderr) == [
                f"syncd: error: --output {out} is a file, not a directory"
            ]
        assert out.read_text() == "" and fleet.devices[0].journal == []

    def test_bad_list_line_is_named_and_nothing_is_written(self, tmp_path):
        """A malformed device list is refused whole, naming file and line, before any request."""
        listing = tmp_path / "devices.txt"
        listing.write_text("ok http://127.0.0.1:9\n../escape http://127.0.0.1:10\n")
        out = tmp_path / "out"
        done = run("export", "--from-list", str(listing), "--output", str(out), "--auth", "none")
        assert done.returncode == 1
        (line,) = messages(done.stderr)
        assert f"{listing}:2:" in line and "../escape" in line
        assert not out.exists()


def test_write_new_file_never_replaces(tmp_path) -> None:
    """Writing over an existing file raises and leaves it, and no temporary file, behind."""
    target = tmp_path / "a" / "b.yaml"
    write_new_file(target, "first\n")
    with pytest.raises(FileExistsError):
        write_new_file(target, "second\n")
    assert target.read_text() == "first\n"
    assert [p.name for p in target.parent.iterdir()] == ["b.yaml"]


@given(st.text(max_size=40))
def test_yaml_string_reads_back_exactly(text: str) -> None:
    """Any text rendered by yaml_string parses back to the same string."""
    assert parse_yaml(f"k: {yaml_string(text)}\n", "t.yaml") == {"k": text}
