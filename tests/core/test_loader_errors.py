"""The desired-state loader: every validation error names file, line, path and cause."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pytest
from core_helpers import GOOD, device, only_error

from syncd.desired import DesiredState, Problem

Load = Callable[[Mapping[str, str | bytes]], DesiredState]


def account_file(*lines: str) -> str:
    """A device file whose account 1 holds ``lines``; the first of them is on line 5."""
    return device(accounts="- account: 1\n" + "".join(f"  {line}\n" for line in lines))


def assert_problem(problem: Problem, file: str, line: int | None, path: str, text: str) -> None:
    assert (problem.file, problem.line, problem.path) == (file, line, path), str(problem)
    assert text in problem.message, str(problem)


class TestProblem:
    def test_str_is_file_line_path_message(self) -> None:
        """str(Problem) reads FILE:LINE: path: message, the form the SPEC shows."""
        problem = Problem("site-a/lobby.yaml", 14, "accounts[0].domainPort", "must be a port")
        assert str(problem) == "site-a/lobby.yaml:14: accounts[0].domainPort: must be a port"

    def test_str_without_line_or_path(self) -> None:
        """A problem with no line or path still reads as one clean sentence after the file."""
        assert str(Problem("a.yaml", None, "", "file is too big")) == "a.yaml: file is too big"

    def test_invalid_file_is_not_loaded_and_is_listed(self, load: Load) -> None:
        """A file with an error yields no device and is listed in invalid_files."""
        state = load({"a.yaml": account_file("mdoe: 1")})
        assert state.devices == {}
        assert state.invalid_files == {"a.yaml"}
        assert state.errors and not state.warnings


class TestUnknownKeys:
    def test_misspelt_device_key_suggests_nearest(self, load: Load) -> None:
        """`mdoe` under device: is an error on its line that suggests `mode`."""
        problem = only_error(load({"a.yaml": device(extra="mdoe: observe\n")}))
        assert_problem(problem, "a.yaml", 3, "device.mdoe", "unknown key 'mdoe'")
        assert "did you mean 'mode'?" in problem.message

    def test_misspelt_account_key_suggests_nearest(self, load: Load) -> None:
        """`domainPrt` in an account is an error that suggests `domainPort`."""
        problem = only_error(load({"a.yaml": account_file("domainPrt: 5060")}))
        assert_problem(problem, "a.yaml", 5, "accounts[0].domainPrt", "unknown key 'domainPrt'")
        assert "did you mean 'domainPort'?" in problem.message

    def test_misspelt_top_level_key(self, load: Load) -> None:
        """A misspelt top-level key (`acounts`) suggests `accounts`."""
        problem = only_error(load({"a.yaml": device() + "acounts: []\n"}))
        assert_problem(problem, "a.yaml", 3, "acounts", "did you mean 'accounts'?")

    def test_misspelt_nested_auth_key(self, load: Load) -> None:
        """A misspelt key under device.auth suggests the auth key it resembles."""
        text = device(extra="auth:\n  usernme: syncd\n")
        problem = only_error(load({"a.yaml": text}))
        assert_problem(problem, "a.yaml", 4, "device.auth.usernme", "did you mean 'username'?")

    def test_unrelated_key_lists_known_keys(self, load: Load) -> None:
        """A key resembling nothing lists the keys allowed in that place."""
        problem = only_error(load({"a.yaml": device(extra="tls:\n  zzz: 1\n")}))
        assert_problem(problem, "a.yaml", 4, "device.tls.zzz", "unknown key 'zzz'")
        assert "verify" in problem.message and "caFile" in problem.message


class TestAccountNumbers:
    @pytest.mark.parametrize("number", ["0", "5", "-1", "true", '"1"', "1.0"])
    def test_account_other_than_1_to_4(self, load: Load, number: str) -> None:
        """An account number that is not the integer 1, 2, 3 or 4 is an error on its line."""
        problem = only_error(load({"a.yaml": device(accounts=f"- account: {number}\n")}))
        assert_problem(problem, "a.yaml", 4, "accounts[0].account", "must be a number 1 to 4")

    def test_same_account_twice(self, load: Load) -> None:
        """Listing account 1 twice is an error at the second one naming the first's line."""
        text = device(accounts="- account: 1\n  enabled: true\n- account: 1\n")
        problem = only_error(load({"a.yaml": text}))
        assert_problem(problem, "a.yaml", 6, "accounts[1].account", "listed twice")
        assert "line 4" in problem.message

    def test_account_without_number(self, load: Load) -> None:
        """An account entry without `account:` is an error on that entry's line."""
        state = load({"a.yaml": device(accounts="- enabled: true\n")})
        assert state.devices == {}
        assert state.errors
        assert all(p.file == "a.yaml" and p.line == 4 for p in state.errors)
        assert any(
            p.path.startswith("accounts[0]") and ("missing" in p.message or "required" in p.message)
            for p in state.errors
        )

    def test_account_that_is_not_a_mapping(self, load: Load) -> None:
        """A list item that is a scalar, not a mapping, is an error on its line."""
        problem = only_error(load({"a.yaml": device(accounts="- 5\n")}))
        assert_problem(problem, "a.yaml", 4, "accounts[0]", "must be a mapping")

    def test_accounts_not_a_list(self, load: Load) -> None:
        """`accounts:` holding a scalar is an error saying it must be a list."""
        problem = only_error(load({"a.yaml": device() + "accounts: lots\n"}))
        assert_problem(problem, "a.yaml", 3, "accounts", "must be a list")


class TestDuplicateKeys:
    def test_duplicate_key_in_account(self, load: Load) -> None:
        """A key written twice is an error at the second, naming the first's line."""
        problem = only_error(load({"a.yaml": account_file("enabled: true", "enabled: false")}))
        assert_problem(problem, "a.yaml", 6, "", "duplicate key 'enabled'")
        assert "line 5" in problem.message

    def test_duplicate_top_level_key(self, load: Load) -> None:
        """Two `device:` blocks in one file are an error, not a silent override."""
        text = device() + "device:\n  url: https://192.0.2.99\n"
        problem = only_error(load({"a.yaml": text}))
        assert_problem(problem, "a.yaml", 3, "", "duplicate key 'device'")


class TestTypes:
    @pytest.mark.parametrize("value", ['"yes"', '"true"', "1", "0", '""', "null"])
    def test_bool_must_be_yaml_boolean(self, load: Load, value: str) -> None:
        """A boolean field holding a string or number is an error; "yes" is a string."""
        problem = only_error(load({"a.yaml": account_file(f"enabled: {value}")}))
        assert_problem(problem, "a.yaml", 5, "accounts[0].enabled", "true or false")

    @pytest.mark.parametrize("value", ["yes", "no", "on", "off", "Yes", "OFF"])
    def test_yaml_1_1_booleans_are_refused_with_a_hint(self, load: Load, value: str) -> None:
        """Unquoted yes/no/on/off (booleans to PyYAML, text to YAML 1.2) are refused: write true or false."""
        problem = only_error(load({"a.yaml": account_file(f"enabled: {value}")}))
        assert_problem(problem, "a.yaml", 5, "accounts[0].enabled", "write true or false")
        assert f"'{value}'" in problem.message

    def test_yaml_1_1_boolean_in_tls_verify_and_defaults(self, load: Load) -> None:
        """verify: no, and a yes in a _defaults.yaml, are refused where they are written."""
        state = load(
            {
                "_defaults.yaml": "accounts:\n  - account: 1\n    registrationEnabled: yes\n",
                "a.yaml": device(extra="tls:\n  verify: no\n"),
            }
        )
        found = {(p.file, p.line, p.path) for p in state.errors}
        assert ("a.yaml", 4, "device.tls.verify") in found
        assert ("_defaults.yaml", 3, "accounts[0].registrationEnabled") in found
        assert all("write true or false" in p.message for p in state.errors)

    def test_device_tls_verify_must_be_bool(self, load: Load) -> None:
        """device.tls.verify as the string "no" is an error."""
        problem = only_error(load({"a.yaml": device(extra='tls:\n  verify: "no"\n')}))
        assert_problem(problem, "a.yaml", 4, "device.tls.verify", "true or false")

    def test_unquoted_number_in_text_field_says_quote(self, load: Load) -> None:
        """`sipNumber: 4001` is an error whose message says to quote it, showing how."""
        problem = only_error(load({"a.yaml": account_file("sipNumber: 4001")}))
        assert_problem(problem, "a.yaml", 5, "accounts[0].sipNumber", "must be a string")
        assert "quote" in problem.message
        assert 'sipNumber: "4001"' in problem.message

    @pytest.mark.parametrize("raw", ["1e3", "0o17", "1.5e3", "-2E+5"])
    def test_yaml12_number_in_text_field_says_quote(self, load: Load, raw: str) -> None:
        """`sipNumber: 1e3` is text to PyYAML (YAML 1.1) but a number to YAML 1.2 tools: refused
        like 4001, with the quoting hint; quoted it is the text."""
        problem = only_error(load({"a.yaml": account_file(f"sipNumber: {raw}")}))
        assert_problem(problem, "a.yaml", 5, "accounts[0].sipNumber", "must be a string")
        assert f'sipNumber: "{raw}"' in problem.message
        quoted = load({"a.yaml": account_file(f'sipNumber: "{raw}"')})
        assert quoted.errors == []
        assert quoted.devices["a"].accounts[1].fields["sipNumber"] == raw

    @pytest.mark.parametrize("raw", ["null", "~", "NULL", ""])
    def test_null_in_text_field_says_how_to_clear_it(self, load: Load, raw: str) -> None:
        """`domain: null` (or ~, or nothing) is refused with the two things it may mean,
        clear it ("") or leave it alone (no key); never the text "null" quoted."""
        problem = only_error(load({"a.yaml": account_file(f"domain: {raw}".rstrip())}))
        assert_problem(problem, "a.yaml", 5, "accounts[0].domain", "is empty (YAML null)")
        assert 'write domain: "" to clear it' in problem.message
        assert "leave the key out" in problem.message and '"null"' not in problem.message

    def test_leading_zero_number_quoted_as_written(self, load: Load) -> None:
        """`sipNumber: 0123` is refused and the hint quotes the digits as written, "0123"."""
        problem = only_error(load({"a.yaml": account_file("sipNumber: 0123")}))
        assert_problem(problem, "a.yaml", 5, "accounts[0].sipNumber", "quote")
        assert '"0123"' in problem.message

    @pytest.mark.parametrize(
        "field", ["displayName", "authId", "domain", "proxyAddress", "registrarAddress"]
    )
    def test_every_text_field_refuses_numbers(self, load: Load, field: str) -> None:
        """Every text field refuses an unquoted number with the quoting hint."""
        problem = only_error(load({"a.yaml": account_file(f"{field}: 12")}))
        assert_problem(problem, "a.yaml", 5, f"accounts[0].{field}", "quote")

    def test_text_field_refuses_boolean(self, load: Load) -> None:
        """`displayName: yes` (a YAML boolean) is refused as not a string."""
        problem = only_error(load({"a.yaml": account_file("displayName: yes")}))
        assert_problem(problem, "a.yaml", 5, "accounts[0].displayName", "must be a string")

    def test_text_field_refuses_mapping(self, load: Load) -> None:
        """A text field holding a mapping is an error on its line."""
        problem = only_error(load({"a.yaml": account_file("domain: {a: 1}")}))
        assert_problem(problem, "a.yaml", 5, "accounts[0].domain", "string")

    def test_bad_mode(self, load: Load) -> None:
        """An unknown device.mode is an error listing the allowed modes."""
        problem = only_error(load({"a.yaml": device(extra="mode: sometimes\n")}))
        assert_problem(problem, "a.yaml", 3, "device.mode", "enforce")
        assert "observe" in problem.message and "suspend" in problem.message

    def test_bad_auth_method(self, load: Load) -> None:
        """An unknown auth method is an error listing digest, basic and none."""
        problem = only_error(load({"a.yaml": device(extra="auth:\n  method: ntlm\n")}))
        assert_problem(problem, "a.yaml", 4, "device.auth.method", "digest")

    def test_device_not_a_mapping(self, load: Load) -> None:
        """`device:` holding a scalar is an error saying it must be a mapping."""
        problem = only_error(load({"a.yaml": "device: lobby\n"}))
        assert_problem(problem, "a.yaml", 1, "device", "must be a mapping")

    @pytest.mark.parametrize(
        ("line", "field", "text"),
        [
            ("enabled: null", "enabled", "true or false"),
            ("domainPort:", "domainPort", "port"),
            ("answerMode: ~", "answerMode", "whole number"),
            ("displayName: null", "displayName", "is empty (YAML null)"),
            ("sipNumber:", "sipNumber", "is empty (YAML null)"),
        ],
    )
    def test_explicit_null_is_a_type_error(
        self, load: Load, line: str, field: str, text: str
    ) -> None:
        """A field written with no value (null) is an error, not a managed "nothing"."""
        problem = only_error(load({"a.yaml": account_file(line)}))
        assert_problem(problem, "a.yaml", 5, f"accounts[0].{field}", text)


class TestPorts:
    @pytest.mark.parametrize(
        "value",
        [
            "70000",
            "65536",
            '"abc"',
            "-1",
            '"-1"',
            "1.5",
            "true",
            '" 5060"',
            '"²"',
            '"99999999999999999999999"',
        ],
    )
    def test_bad_port(self, load: Load, value: str) -> None:
        """A port out of 0..65535, or not a number, is an error on its line."""
        problem = only_error(load({"a.yaml": account_file(f"domainPort: {value}")}))
        assert_problem(problem, "a.yaml", 5, "accounts[0].domainPort", "must be a port number")

    @pytest.mark.parametrize(
        ("value", "canonical"),
        [("5060", 5060), ('"5060"', 5060), ('""', 0), ("0", 0), ('"0"', 0), ("65535", 65535)],
    )
    def test_accepted_port(self, load: Load, value: str, canonical: int) -> None:
        """An integer port, its string form, "" and 0 are accepted; "" and 0 mean default (0)."""
        state = load({"a.yaml": account_file(f"proxyPort: {value}")})
        assert state.problems == []
        assert state.devices["a"].accounts[1].fields == {"proxyPort": canonical}

    @pytest.mark.parametrize("field", ["domainPort", "proxyPort", "registrarPort"])
    def test_every_port_field_validated(self, load: Load, field: str) -> None:
        """All three port fields apply the port rule."""
        problem = only_error(load({"a.yaml": account_file(f"{field}: 70000")}))
        assert_problem(problem, "a.yaml", 5, f"accounts[0].{field}", "port")


class TestAnswerMode:
    @pytest.mark.parametrize(("value", "canonical"), [("1", 1), ('"1"', 1), ("0", 0), ('"2"', 2)])
    def test_int_or_digit_string(self, load: Load, value: str, canonical: int) -> None:
        """answerMode takes an integer or its string form, stored as the integer."""
        state = load({"a.yaml": account_file(f"answerMode: {value}")})
        assert state.problems == []
        assert state.devices["a"].accounts[1].fields == {"answerMode": canonical}

    @pytest.mark.parametrize(
        "value", ['"auto"', "-1", "true", "1.0", '""', '"9' + "9" * 5000 + '"']
    )
    def test_bad_answer_mode(self, load: Load, value: str) -> None:
        """answerMode that is not a whole number is an error with a clear message."""
        problem = only_error(load({"a.yaml": account_file(f"answerMode: {value}")}))
        assert_problem(problem, "a.yaml", 5, "accounts[0].answerMode", "whole number")


class TestUrls:
    @pytest.mark.parametrize(
        ("url", "text"),
        [
            ("ftp://192.0.2.10", "http:// or https://"),
            ("192.0.2.10", "http:// or https://"),
            ("https://", "no host"),
            ("https://192.0.2.10/api", "no path"),
            ("https://192.0.2.10?x=1", "no path"),
            ("https://192.0.2.10:99999", "invalid port"),
            ("42", "URL"),
        ],
    )
    def test_bad_url(self, load: Load, url: str, text: str) -> None:
        """A URL that is not http(s)://host[:port] is an error on device.url."""
        problem = only_error(load({"a.yaml": device(url=url)}))
        assert_problem(problem, "a.yaml", 2, "device.url", text)

    def test_unclosed_ipv6_bracket_is_said_in_our_words(self, load: Load) -> None:
        """http://[::1 (no closing bracket) is one sentence of ours, not Python's ValueError."""
        problem = only_error(load({"a.yaml": device(url="http://[::1")}))
        assert str(problem) == (
            "a.yaml:2: device.url: has a malformed IPv6 address; write it as [2001:db8::1]"
        )

    def test_url_with_credentials_never_echoes_them(self, load: Load) -> None:
        """A URL holding user:password is refused, and no part of the credential is printed."""
        state = load({"a.yaml": device(url="https://admin:Sup3rS3cret@192.0.2.10")})
        problem = only_error(state)
        assert_problem(problem, "a.yaml", 2, "device.url", "credentials")
        assert "Sup3rS3cret" not in str(problem)
        assert "admin" not in str(problem)

    @pytest.mark.parametrize(
        ("url", "stored"),
        [
            ("https://192.0.2.10", "https://192.0.2.10"),
            ("https://192.0.2.10/", "https://192.0.2.10"),
            ("http://intercom.example:8080", "http://intercom.example:8080"),
            ("https://Intercom.Example", "https://intercom.example"),
            ("https://[2001:db8::1]:8443", "https://[2001:db8::1]:8443"),
        ],
    )
    def test_good_url(self, load: Load, url: str, stored: str) -> None:
        """http and https URLs with an optional port are accepted; a bare "/" is dropped."""
        state = load({"a.yaml": device(url=url)})
        assert state.problems == []
        assert state.devices["a"].url == stored

    def test_missing_url(self, load: Load) -> None:
        """A device block without url: is an error saying it is required."""
        problem = only_error(load({"a.yaml": "device:\n  name: lobby\n"}))
        assert_problem(problem, "a.yaml", 2, "device.url", "required")

    def test_missing_device(self, load: Load) -> None:
        """A file without device: is an error saying it is required."""
        problem = only_error(load({"a.yaml": "accounts: []\n"}))
        assert_problem(problem, "a.yaml", 1, "device", "required")


class TestDocumentShape:
    @pytest.mark.parametrize("text", ["", "# nothing but a comment\n", "---\n"])
    def test_empty_file(self, load: Load, text: str) -> None:
        """An empty file (or only comments) is an error, not a device with no settings."""
        problem = only_error(load({"a.yaml": text}))
        assert_problem(problem, "a.yaml", 1, "", "empty")

    @pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "42\n"])
    def test_top_level_not_a_mapping(self, load: Load, text: str) -> None:
        """A list or scalar at the top level is an error saying a mapping is needed."""
        problem = only_error(load({"a.yaml": text}))
        assert_problem(problem, "a.yaml", 1, "", "mapping")

    def test_syntax_error_names_line(self, load: Load) -> None:
        """A YAML syntax error names the line where the problem starts: an unclosed bracket's."""
        text = "device:\n  url: https://192.0.2.10\naccounts:\n  - account: [1\n    enabled: true\n"
        problem = only_error(load({"a.yaml": text}))
        assert_problem(problem, "a.yaml", 4, "", "invalid YAML: a bracket opened on this line")

    @pytest.mark.parametrize("quoted", ['"Lobby door', "'Lobby door", '"Lobby \\" door'])
    @pytest.mark.parametrize("after", ['  sipNumber: "4001"', "  enabled: true", ""])
    def test_unclosed_quote_is_reported_on_its_own_line(
        self, load: Load, quoted: str, after: str
    ) -> None:
        """An unclosed quote on line 5 is reported as line 5 (libyaml stops on line 6)."""
        text = (
            account_file(f"displayName: {quoted}", after)
            if after
            else account_file(f"displayName: {quoted}")
        )
        problem = only_error(load({"a.yaml": text}))
        assert_problem(problem, "a.yaml", 5, "", "a quote opened on this line is not closed")

    def test_apostrophe_in_plain_text_is_no_quote(self, load: Load) -> None:
        """An apostrophe inside unquoted text does not move the reported line."""
        text = device(accounts="- account: 1\n  displayName: Joe's door\n   enabled: true\n")
        problem = only_error(load({"a.yaml": text}))
        assert problem.line == 6 and "quote" not in problem.message, str(problem)

    @pytest.mark.parametrize(
        "text",
        [
            "device:\n  url: https://192.0.2.10\naccounts:\n\t- account: 1\n",
            "device:\n  url: https://192.0.2.10\naccounts:\n  - account: 1\n\tenabled: true\n",
        ],
    )
    def test_a_tab_indent_is_named_as_a_tab(self, load: Load, text: str) -> None:
        """A tab where YAML wants spaces is said to be a tab, on its line."""
        problem = only_error(load({"a.yaml": text}))
        line = text.count("\n", 0, text.index("\t")) + 1
        assert_problem(problem, "a.yaml", line, "", "a tab where YAML allows only spaces")

    def test_bad_indentation_names_line(self, load: Load) -> None:
        """Mis-indented YAML is an error on the offending line."""
        text = "device:\n  url: https://192.0.2.10\n   name: x\n"
        problem = only_error(load({"a.yaml": text}))
        assert_problem(problem, "a.yaml", 3, "", "invalid YAML")

    def test_tab_indentation(self, load: Load) -> None:
        """A tab used for indentation is an error on its line."""
        problem = only_error(load({"a.yaml": "device:\n\turl: https://192.0.2.10\n"}))
        assert_problem(problem, "a.yaml", 2, "", "invalid YAML")

    def test_two_documents(self, load: Load) -> None:
        """A file holding two YAML documents is an error, not the first one silently."""
        problem = only_error(load({"a.yaml": GOOD + "---\n" + GOOD}))
        assert_problem(problem, "a.yaml", 6, "", "invalid YAML")

    def test_merge_key_refused(self, load: Load) -> None:
        """YAML merge keys (<<) are refused with a message naming them."""
        text = device(accounts="- &base\n  account: 1\n- <<: *base\n  account: 2\n")
        problem = only_error(load({"a.yaml": text}))
        assert_problem(problem, "a.yaml", 6, "", "merge keys")

    def test_non_string_key(self, load: Load) -> None:
        """A mapping key that is not a string (e.g. 1) is an error on its line."""
        problem = only_error(load({"a.yaml": device() + "1: one\n"}))
        assert_problem(problem, "a.yaml", 3, "", "must be a string")

    def test_python_tag_refused(self, load: Load) -> None:
        """A python/object tag is refused (safe loading) with a one-line message."""
        text = "device:\n  url: !!python/object/apply:os.system [echo]\n"
        problem = only_error(load({"a.yaml": text}))
        assert problem.file == "a.yaml" and problem.line == 2
        assert "\n" not in str(problem)


class TestWarnings:
    def test_tls_verify_off_is_a_warning_at_every_load(self, load: Load) -> None:
        """tls.verify: false loads the device and warns, naming file and line, on each load."""
        for _ in range(2):
            state = load({"a.yaml": device(extra="tls:\n  verify: false\n")})
            assert "a" in state.devices and not state.errors
            (warning,) = state.warnings
            assert (warning.file, warning.line, warning.path) == ("a.yaml", 4, "device.tls.verify")
            assert "checks are off" in warning.message
