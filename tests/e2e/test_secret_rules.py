"""SIP passwords the device would refuse, password-file line ends, and auth method none, as the CLI shows them."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.conftest import syncd, write

LONG = "Zq7" * 102  # 306 characters: the device refuses more than 255
CONTROL = "ctl\x01Pw9"
SECRETS = (LONG[:12], "ctl\x01", "Pw9")
#: Nothing answers here: a device with a bad secret is never contacted.
URL = "http://127.0.0.1:9"


def device_file(password: str) -> str:
    """A device file whose account 1 password is the YAML text ``password`` (on line 7)."""
    head = f"device:\n  url: {URL}\n  auth:\n    method: none\n"
    return head + f"accounts:\n  - account: 1\n    password: {password}\n"


def run(root: Path, tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """stdout and stderr of a syncd command that must fail with exit 1 and no traceback."""
    result = syncd(*args, "--desired", str(root), "--state-dir", str(tmp_path / "s"), env=env)
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "Traceback" not in out
    assert not any(secret in out for secret in SECRETS), out
    return out


class TestPasswordTextRule:
    def test_literal_too_long_is_a_validate_error(self, tmp_path):
        """A 306-character literal password fails validate at its file:line, value unsaid."""
        root = tmp_path / "desired"
        write(root, "a.yaml", device_file(f'"{LONG}"'))
        out = run(root, tmp_path, "validate")
        assert "a.yaml:7: accounts[0].password: is 306 characters long; at most 255 allowed" in out

    def test_literal_control_character_is_a_validate_error(self, tmp_path):
        """A literal password holding \\x01 fails validate at its file:line, value unsaid."""
        root = tmp_path / "desired"
        write(root, "a.yaml", device_file('"ctl\\x01Pw9"'))
        out = run(root, tmp_path, "validate")
        assert "a.yaml:7: accounts[0].password: contains a control character" in out

    def test_env_value_too_long(self, tmp_path):
        """{env: LONGPW} holding 306 characters: form-only validate passes, resolving fails."""
        root = tmp_path / "desired"
        write(root, "a.yaml", device_file("{env: LONGPW}"))
        env = {"LONGPW": LONG}
        assert syncd("validate", str(root), env=env).returncode == 0
        expected = (
            "a.yaml:7: accounts[0].password: {env: LONGPW} gives a password that "
            "is 306 characters long; at most 255 allowed"
        )
        assert expected in run(root, tmp_path, "validate", "--resolve-secrets", env=env)
        assert expected in run(root, tmp_path, "plan", env=env)

    def test_env_value_not_utf8(self, tmp_path):
        """{env: SIP} holding Latin-1 bytes fails validate --resolve-secrets and plan at the
        reference's line naming the variable (not one byte of it); the other device is planned."""
        root = tmp_path / "desired"
        write(root, "a.yaml", device_file("{env: LATIN}"))
        write(root, "b.yaml", device_file('"Pw9-fine"').replace(":9", ":10"))
        env = {"LATIN": "caf\udce9Pw9"}  # the child gets the bytes b"caf\xe9Pw9"
        expected = "a.yaml:7: accounts[0].password: environment variable LATIN is not UTF-8 text"
        assert expected in run(root, tmp_path, "validate", "--resolve-secrets", env=env)
        out = run(root, tmp_path, "plan", env=env)
        assert expected in out and "caf" not in out and "unexpected" not in out
        assert '"devices": 1, "invalid": 1' in out  # b is planned, only a is refused

    def test_file_value_with_control_character(self, tmp_path):
        """{file: ...} whose text holds \\x01 fails plan and apply at the reference's line."""
        root = tmp_path / "desired"
        write(root, "a.yaml", device_file("{file: sip.pw}"))
        write(root, "sip.pw", CONTROL + "\n")
        expected = (
            "a.yaml:7: accounts[0].password: {file: sip.pw} gives a password that "
            "contains a control character"
        )
        assert expected in run(root, tmp_path, "validate", "--resolve-secrets")
        assert expected in run(root, tmp_path, "apply")


class TestPasswordFileLineEnd:
    def test_windows_line_end_is_stripped(self, sim, tmp_path):
        """A password file ending in \\r\\n sets the password without the \\r."""
        fleet = sim(devices=1)
        root = tmp_path / "desired"
        text = device_file("{file: sip.pw}").replace(URL, fleet.devices[0].url)
        write(root, "a.yaml", text)
        (root / "sip.pw").write_bytes(b"Crlf-Pw-5\r\n")
        result = syncd("apply", "--desired", str(root), "--state-dir", str(tmp_path / "s"))
        assert result.returncode == 0, result.stdout + result.stderr
        assert fleet.devices[0].passwords[1] == "Crlf-Pw-5"


DIGEST_DEFAULTS = (
    "device:\n  auth:\n    method: digest\n    username: admin\n    password: {env: API_PW}\n"
)


class TestAuthNone:
    def test_inherited_credentials_are_not_needed(self, sim, tmp_path):
        """method: none under digest defaults plans without API_PW; digest devices still need it."""
        fleet = sim(devices=1)
        root = tmp_path / "desired"
        write(root, "_defaults.yaml", DIGEST_DEFAULTS)
        write(root, "site-c/_defaults.yaml", "device:\n  auth:\n    method: none\n")
        write(root, "site-c/door.yaml", f"device:\n  url: {fleet.devices[0].url}\n")
        write(root, "site-d/door.yaml", f"device:\n  url: {URL}\n")
        args = ("plan", "--json", "--desired", str(root), "--state-dir", str(tmp_path / "s"))
        result = syncd(*args, "--device", "site-c/*")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "API_PW" not in result.stdout + result.stderr
        (device,) = json.loads(result.stdout)["devices"]
        assert (device["device"], device["status"]) == ("site-c/door", "in_sync")
        other = syncd(*args, "--device", "site-d/*")
        assert other.returncode == 1
        assert "_defaults.yaml:5: device.auth.password: environment variable API_PW" in (
            other.stdout + other.stderr
        )
