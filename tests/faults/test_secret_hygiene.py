"""Secret hygiene: known secrets never appear in logs, plans, errors, exports or the state dir."""

from __future__ import annotations

import hashlib
import json
import signal
from pathlib import Path

from tests.e2e.conftest import syncd, write
from tests.faults.helpers import account, converged, wait_until

API_PW = "Api-Secret-7f3a91"
SIP_ENV = "Sip-Env-Secret-5b21"
SIP_FILE = "Sip-File-Secret-c4e8"
SIP_LITERAL = "Sip-Literal-Secret-9d02"
WRONG_API = "Wrong-Api-Secret-e61b"
BROKEN = "Broken-Secret-3a17"
FLOAT_SECRET = "Float-Secret-8c55"
SECRETS = (API_PW, SIP_ENV, SIP_FILE, SIP_LITERAL, WRONG_API, BROKEN, FLOAT_SECRET)


def _device(url: str, api_password: str, name: str, sip_password: str) -> str:
    return (
        f"device:\n  url: {url}\n  auth:\n    method: digest\n    username: syncd\n"
        f"    password: {api_password}\naccounts:\n" + account(name, password=sip_password)
    )


def _assert_clean(where: str, text: str) -> None:
    lowered = text.lower()  # YAML's float constructor, for one, lower-cases what it quotes
    for secret in SECRETS:
        assert secret.lower() not in lowered, f"{secret} appears in {where}"


def test_no_secret_in_any_output_or_state(sim, daemon, tmp_path):
    """With digest credentials from $CREDENTIALS_DIRECTORY, SIP passwords from env, file and a literal, a wrong password and broken files holding secrets, no secret value appears in validate, plan, plan --json, apply, export or daemon output (debug level), nor in any state file."""
    fleet = sim(devices=4, auth="digest", username="syncd", password=API_PW)
    root = tmp_path / "desired"
    state = tmp_path / "state"
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / "intercom-api").write_text(API_PW + "\n")
    write(root, "secrets/dev2.pw", SIP_FILE + "\n")
    cred = "{credential: intercom-api}"
    urls = [d.url for d in fleet.devices]
    write(root, "dev1.yaml", _device(urls[0], cred, "Door 1", "{env: SIP1_PW}"))
    write(root, "dev2.yaml", _device(urls[1], cred, "Door 2", "{file: secrets/dev2.pw}"))
    write(root, "dev3.yaml", _device(urls[2], cred, "Door 3", f'"{SIP_LITERAL}"'))
    write(root, "dev4.yaml", _device(urls[3], "{env: WRONG_PW}", "Door 4", "{env: SIP1_PW}"))
    # Files that fail validation right next to a secret.
    write(root, "broken.yaml", _device("http://127.0.0.1:9", cred, "B", f'"{BROKEN}\n'))
    write(root, "tagged.yaml", _device("http://127.0.0.1:9", cred, "T", f"!!float {FLOAT_SECRET}"))
    env = {
        "CREDENTIALS_DIRECTORY": str(creds),
        "SIP1_PW": SIP_ENV,
        "WRONG_PW": WRONG_API,
        "EXPORT_PW": API_PW,
    }
    common = ["--desired", str(root), "--state-dir", str(state)]
    outputs: dict[str, str] = {}

    def run(label: str, *args: str) -> int:
        result = syncd(*args, env=env, timeout=90)
        outputs[label] = result.stdout + result.stderr
        return result.returncode

    assert run("validate", "validate", "--resolve-secrets", *common) == 1
    assert (
        run("validate-debug", "validate", "--resolve-secrets", "--log-level", "debug", *common) == 1
    )
    assert run("plan", "plan", *common) == 1
    assert "(will be set)" in outputs["plan"]
    assert run("plan-json", "plan", "--json", "--log-level", "debug", *common) == 1
    assert run("apply", "apply", "--log-level", "debug", *common) == 1
    assert run("plan-after", "plan", "--json", *common) == 1
    assert run("apply-again", "apply", *common) == 1
    assert (
        run(
            "export",
            "export",
            "--url",
            urls[0],
            "--username",
            "syncd",
            "--password-env",
            "EXPORT_PW",
        )
        == 0
    )
    assert (
        run(
            "export-debug",
            "export",
            "--url",
            urls[0],
            "--username",
            "syncd",
            "--password-env",
            "WRONG_PW",
            "--log-level",
            "debug",
        )
        == 1
    )
    # The secrets were really used: devices 1-3 hold their SIP passwords, device 4 refused.
    assert [d.passwords[1] for d in fleet.devices] == [SIP_ENV, SIP_FILE, SIP_LITERAL, None]
    assert "auth" in outputs["apply"] and "dev4" in outputs["apply"]
    assert "Door 1" in outputs["export"]

    # The daemon at debug level: a drift correction, a new SIP password, a SIGHUP.
    proc = daemon(*common, "--resync-interval", "1", "--log-level", "debug", env=env)
    proc.wait_for("auth.failed", device="dev4", timeout=30)
    fleet.devices[0].set_live(1, displayName="Hacked")
    wait_until(lambda: converged(fleet.devices[0], "Door 1"), 15, "drift corrected")
    write(root, "secrets/dev2.pw", SIP_FILE + "-v2\n")
    proc.proc.send_signal(signal.SIGHUP)
    wait_until(
        lambda: fleet.devices[1].passwords[1] == SIP_FILE + "-v2", 15, "new password applied"
    )
    assert proc.stop() == 0
    outputs["daemon"] = "".join(proc.lines) + (proc.proc.stderr.read() if proc.proc.stderr else "")
    assert any(json.loads(line)["level"] == "debug" for line in proc.lines)

    for label, text in outputs.items():
        assert text, label
        _assert_clean(label, text)
    files = [p for p in state.rglob("*") if p.is_file()]
    assert len(files) >= 4
    for path in files:
        _assert_clean(str(path), path.read_bytes().decode("utf-8", "replace"))
    # Where secrets are written, they must not have been echoed: the journal is the control.
    assert any(SIP_ENV in (e.blob_text or "") for e in fleet.devices[0].journal)


def test_state_dir_holds_only_keyed_hashes(sim, tmp_path):
    """The state dir records a password as an HMAC under a random per-installation key: two installations record different values for the same password, neither equal to a plain hash of it."""
    fleet = sim(devices=1)
    root = tmp_path / "desired"
    write(
        root,
        "dev1.yaml",
        f"device:\n  url: {fleet.devices[0].url}\n  auth:\n    method: none\naccounts:\n"
        + account("Door", password="{env: SIP1_PW}"),
    )
    records = []
    for n in (1, 2):
        state = tmp_path / f"state{n}"
        result = syncd(
            "apply", "--desired", str(root), "--state-dir", str(state), env={"SIP1_PW": SIP_ENV}
        )
        assert result.returncode == 0, result.stderr
        path = state / "devices.jsonl"
        record = json.loads(path.read_text().splitlines()[-1])
        records.append(record["passwords"]["1"])
        _assert_clean(str(path), path.read_text())
    assert records[0] != records[1]
    plain = {
        hashlib.sha256(SIP_ENV.encode()).hexdigest(),
        hashlib.md5(SIP_ENV.encode()).hexdigest(),
    }
    assert not plain & set(records)
    assert (
        Path(tmp_path / "state1" / "key").read_text()
        != Path(tmp_path / "state2" / "key").read_text()
    )


def test_credentials_typed_into_a_url_are_refused_without_repeating_them(tmp_path):
    """A URL holding user:password on the command line or in a setting is refused naming the
    URL, never the password: export --url, an export device list, cluster_endpoints,
    metrics_address."""
    secret = "Typed-Url-Secret-41d7"
    url = f"http://apiuser:{secret}@127.0.0.1:9"
    listing = tmp_path / "devices.txt"
    listing.write_text(f"lobby {url}\n")
    desired = tmp_path / "desired"
    desired.mkdir()
    common = ["--desired", str(desired), "--state-dir", str(tmp_path / "state")]
    runs = {
        "export --url": syncd("export", "--url", url, "--auth", "none"),
        "export --from-list": syncd(
            "export",
            "--from-list",
            str(listing),
            "--output",
            str(tmp_path / "out"),
            "--auth",
            "none",
        ),
        "cluster_endpoints": syncd(
            "run", *common, "--cluster-endpoints", url.replace(":9", ":2379"), timeout=30
        ),
        "metrics_address": syncd("run", *common, env={"SYNCD_METRICS_ADDRESS": url}, timeout=30),
    }
    for what, result in runs.items():
        assert result.returncode == 1, (what, result.stderr)
        assert "http://***@127.0.0.1" in result.stderr, (what, result.stderr)
        assert secret not in result.stdout + result.stderr, what
