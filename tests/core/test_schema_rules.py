"""Values a device would refuse, or that cannot work, fail ``validate`` at their line, in plain words."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
from core_helpers import device, only_error

from syncd.desired import DesiredState, load_desired, resolve_device
from syncd.secrets import SecretError

Load = Callable[[Mapping[str, str | bytes]], DesiredState]
Tree = Callable[[Mapping[str, str | bytes]], Path]


def where(state: DesiredState) -> tuple[str, int | None, str, str]:
    problem = only_error(state)
    return problem.file, problem.line, problem.path, problem.message


class TestAnswerMode:
    @pytest.mark.parametrize("value", ["999999999999999999999999", "10", "-5", '"12"', "1.5"])
    def test_outside_what_the_device_takes_names_the_range(self, load: Load, value: str) -> None:
        """answerMode beyond one digit (huge, 10, negative, "12", 1.5) is an error naming the range 0 to 9."""
        state = load({"a.yaml": device(accounts=f"- account: 1\n  answerMode: {value}\n")})
        assert where(state) == (
            "a.yaml",
            5,
            "accounts[0].answerMode",
            "must be a whole number 0 to 9, e.g. 1",
        )

    @pytest.mark.parametrize(("value", "expected"), [("0", 0), ("9", 9), ('"1"', 1)])
    def test_a_digit_or_its_string_is_taken(self, load: Load, value: str, expected: int) -> None:
        """answerMode 0 to 9, as a number or its string form, is valid."""
        state = load({"a.yaml": device(accounts=f"- account: 1\n  answerMode: {value}\n")})
        assert state.errors == []
        assert state.devices["a"].accounts[1].fields == {"answerMode": expected}


class TestAccountNumber:
    @pytest.mark.parametrize(
        ("value", "message"),
        [
            ('"1"', "must be a number 1 to 4, not text: write account: 1 (unquoted)"),
            ('"one"', "must be a number 1 to 4, not text"),
            ("true", "must be a number 1 to 4, not true or false"),
            ("5", "must be a number 1 to 4"),
        ],
    )
    def test_says_what_is_wrong_with_it(self, load: Load, value: str, message: str) -> None:
        """account: as text or a boolean says it must be a number 1 to 4 and what it is instead."""
        state = load({"a.yaml": device(accounts=f"- account: {value}\n  enabled: true\n")})
        assert where(state) == ("a.yaml", 4, "accounts[0].account", message)

    def test_a_missing_account_is_one_problem(self, load: Load) -> None:
        """An account entry without account: is one problem, not two."""
        state = load({"a.yaml": device(accounts="- displayName: Door\n")})
        assert where(state) == (
            "a.yaml",
            4,
            "accounts[0].account",
            "is required: the account number, 1 to 4",
        )


class TestDeviceUrl:
    @pytest.mark.parametrize(
        ("url", "message"),
        [
            ("https://192.0.2.10:0", "has port 0; give a port 1-65535, or none"),
            ("http://intercom.example:0", "has port 0; give a port 1-65535, or none"),
            ('"https://lobby door"', "has a host 'lobby door' that is not a host name"),
            ('"https://a b:8080"', "has a host 'a b' that is not a host name"),
            ("http://[::1", "has a malformed IPv6 address; write it as [2001:db8::1]"),
            ("http://[::zz]:80", "has a malformed IPv6 address"),
            ("https://192.0.2.10:70000", "has an invalid port"),
        ],
    )
    def test_a_url_no_device_can_have_is_an_error(self, load: Load, url: str, message: str) -> None:
        """Port 0, a host with a space, a malformed IPv6 address: an error in our words at the url line."""
        file, line, path, said = where(load({"a.yaml": device(url=url)}))
        assert (file, line, path) == ("a.yaml", 2, "device.url")
        assert said.startswith(message), said
        assert "Value error" not in said

    @pytest.mark.parametrize(
        ("url", "normal"),
        [
            ("http://[::1]:8080", "http://[::1]:8080"),
            ("https://Intercom_1.example:8443", "https://intercom_1.example:8443"),
            ("https://192.0.2.10:65535", "https://192.0.2.10:65535"),
        ],
    )
    def test_good_urls_stay_valid(self, load: Load, url: str, normal: str) -> None:
        """IPv6 in brackets, host names with underscores and port 65535 are valid."""
        state = load({"a.yaml": device(url=url)})
        assert state.errors == []
        assert state.devices["a"].url == normal


class TestAuthCredentials:
    @pytest.mark.parametrize("method", ["digest", "basic"])
    def test_a_method_without_credentials_is_an_error_at_auth(
        self, load: Load, method: str
    ) -> None:
        """auth: {method: digest|basic} with neither username nor password fails at the auth line."""
        state = load({"a.yaml": device(extra=f"auth:\n  method: {method}\n")})
        assert where(state) == (
            "a.yaml",
            3,
            "device.auth",
            f"{method} authentication needs a username and a password; "
            "for a device that asks for no credentials write method: none",
        )

    def test_an_empty_auth_mapping_is_digest_without_credentials(self, load: Load) -> None:
        """auth: {} means digest and names no credentials: the same error."""
        state = load({"a.yaml": device(extra="auth: {}\n")})
        assert where(state)[:3] == ("a.yaml", 3, "device.auth")

    def test_none_and_credentials_from_defaults_are_valid(self, load: Load) -> None:
        """method: none needs nothing; digest with credentials from _defaults.yaml is valid; no auth: at all stays valid."""
        state = load(
            {
                "a.yaml": device(extra="auth:\n  method: none\n"),
                "b/_defaults.yaml": "device:\n  auth:\n    username: syncd\n"
                "    password: {env: API}\n",
                "b/c.yaml": device(url="https://192.0.2.11", extra="auth:\n  method: basic\n"),
                "d.yaml": device(url="https://192.0.2.12"),
            }
        )
        assert state.errors == [], [str(p) for p in state.errors]


class TestBlankPasswordFiles:
    @pytest.mark.parametrize(
        ("content", "reason"),
        [
            ("", "is empty"),
            ("\n", "is empty"),
            ("   \n", "holds only whitespace"),
            ("\t\r\n", "holds only whitespace"),
        ],
    )
    def test_an_empty_or_blank_password_file_is_an_error_naming_the_reference(
        self, tree: Tree, content: str, reason: str
    ) -> None:
        """A {file:} SIP or API password that is empty or only whitespace fails where it is resolved, naming file:line and the reference, never the value."""
        text = device(
            extra="auth:\n  username: syncd\n  password: {file: api.pw}\n",
            accounts="- account: 1\n  password: {file: sip.pw}\n",
        )
        raw = content.encode()  # bytes: written as they are, not dedented
        root = tree({"a.yaml": text, "sip.pw": raw, "api.pw": raw})
        (spec,) = load_desired(root).devices.values()
        with pytest.raises(SecretError) as caught:
            resolve_device(spec, environ={}, base_dir=root)
        assert [str(p) for p in caught.value.problems] == [  # type: ignore[attr-defined]
            f"a.yaml:5: device.auth.password: {{file: api.pw}} gives a password that {reason}",
            f"a.yaml:8: accounts[0].password: {{file: sip.pw}} gives a password that {reason}",
        ]

    def test_a_blank_credential_is_an_error_and_an_empty_env_value_is_kept(
        self, tree: Tree, tmp_path: Path
    ) -> None:
        """A {credential:} file of only a newline is an error; an environment variable set empty is taken as set."""
        credentials = tmp_path / "credentials"
        credentials.mkdir()
        (credentials / "sip").write_text("\n")
        text = device(
            extra="auth:\n  method: none\n",
            accounts="- account: 1\n  password: {credential: sip}\n"
            "- account: 2\n  password: {env: SIP2}\n",
        )
        root = tree({"a.yaml": text})
        (spec,) = load_desired(root).devices.values()
        environ = {"CREDENTIALS_DIRECTORY": str(credentials), "SIP2": ""}
        with pytest.raises(SecretError) as caught:
            resolve_device(spec, environ=environ, base_dir=root)
        assert [str(p) for p in caught.value.problems] == [  # type: ignore[attr-defined]
            "a.yaml:7: accounts[0].password: {credential: sip} gives a password that is empty"
        ]
