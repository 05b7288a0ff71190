"""The desired-state loader over a tree: discovery, naming, clashes, defaults, valid forms."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
import yaml
from core_helpers import GOOD, device, only_error

from syncd.desired import DesiredState, Loader, load_desired
from syncd.model import ACCOUNT_FIELDS, AuthMethod, Mode
from syncd.secrets import SecretRef

Load = Callable[[Mapping[str, str | bytes]], DesiredState]
Tree = Callable[[Mapping[str, str | bytes]], Path]

#: A GET /api/phone/config answer from string-typed firmware, as the manual shows it.
GET_ANSWER = {
    "success": True,
    "result": {
        "accounts": [
            {
                "account": 1,
                "enabled": True,
                "displayName": "Lobby door",
                "sipNumber": "4001",
                "domain": "pbx.example.com",
                "domainPort": "5060",
                "authId": "",
                "proxyAddress": "",
                "proxyPort": "",
                "registrationEnabled": True,
                "registrarAddress": "pbx.example.com",
                "registrarPort": "5060",
                "answerMode": "1",
            },
            {
                "account": 2,
                "enabled": False,
                "displayName": "",
                "sipNumber": "",
                "domain": "",
                "domainPort": "",
                "authId": "",
                "proxyAddress": "",
                "proxyPort": "",
                "registrationEnabled": False,
                "registrarAddress": "",
                "registrarPort": "",
                "answerMode": "0",
            },
        ]
    },
}


class TestDiscovery:
    def test_hidden_files_and_folders_ignored(self, load: Load) -> None:
        """Files and folders whose name starts with '.' are never read, even if broken."""
        state = load(
            {
                "a.yaml": GOOD,
                ".broken.yaml": "device: [",
                ".git/config.yaml": "device: [",
                "site/.hidden/x.yaml": "device: [",
            }
        )
        assert list(state.devices) == ["a"]
        assert state.problems == []

    def test_non_yaml_files_ignored(self, load: Load) -> None:
        """Only .yaml and .yml files are device files; README, .txt, .json are ignored."""
        state = load({"a.yaml": GOOD, "README.md": "# x", "notes.txt": "device: [", "x.json": "{}"})
        assert list(state.devices) == ["a"]
        assert state.problems == []

    def test_yml_accepted(self, load: Load) -> None:
        """A .yml file is a device file named without its suffix."""
        state = load({"door.yml": GOOD})
        assert list(state.devices) == ["door"]
        assert state.devices["door"].file == "door.yml"

    def test_nested_folders(self, load: Load) -> None:
        """Device files in any sub-folder depth are found, named by relative path."""
        state = load(
            {
                "a/b/c/deep.yaml": device(url="https://192.0.2.1"),
                "site-a/lobby.yaml": device(url="https://192.0.2.2"),
            }
        )
        assert sorted(state.devices) == ["a/b/c/deep", "site-a/lobby"]
        assert state.devices["a/b/c/deep"].file == "a/b/c/deep.yaml"

    def test_defaults_file_is_not_a_device(self, load: Load) -> None:
        """_defaults.yaml is merged, never loaded as a device of its own."""
        state = load({"_defaults.yaml": "device:\n  mode: observe\n", "a.yaml": GOOD})
        assert list(state.devices) == ["a"]

    def test_empty_tree(self, load: Load) -> None:
        """An empty desired dir loads as no devices and no problems."""
        state = load({})
        assert state.devices == {} and state.problems == [] and state.invalid_files == set()


class TestNaming:
    def test_default_name_is_relative_path_without_suffix(self, load: Load) -> None:
        """Without device.name the name is the path relative to the desired dir, no suffix."""
        state = load({"site-a/lobby.yaml": GOOD})
        entry = state.devices["site-a/lobby"]
        assert entry.name == "site-a/lobby"
        assert entry.file == "site-a/lobby.yaml"

    def test_explicit_name(self, load: Load) -> None:
        """device.name overrides the path-derived name."""
        state = load({"x/y.yaml": device(extra="name: lobby-door\n")})
        assert list(state.devices) == ["lobby-door"]
        assert state.devices["lobby-door"].file == "x/y.yaml"

    def test_dotted_file_name(self, load: Load) -> None:
        """Only the .yaml suffix is dropped from a default name containing dots."""
        state = load({"door.v2.yaml": GOOD})
        assert list(state.devices) == ["door.v2"]


class TestClashes:
    def test_same_name_reports_both_loads_neither(self, load: Load) -> None:
        """Two files naming one device are both errors naming each other; neither loads."""
        state = load(
            {
                "a.yaml": device(url="https://192.0.2.1", extra="name: door\n"),
                "b.yaml": device(url="https://192.0.2.2", extra="name: door\n"),
                "c.yaml": device(url="https://192.0.2.3"),
            }
        )
        assert list(state.devices) == ["c"]
        assert state.invalid_files == {"a.yaml", "b.yaml"}
        by_file = {p.file: p for p in state.errors}
        assert set(by_file) == {"a.yaml", "b.yaml"}
        assert "same device name" in by_file["a.yaml"].message
        assert "b.yaml" in by_file["a.yaml"].message
        assert "a.yaml" in by_file["b.yaml"].message

    def test_explicit_name_equal_to_other_files_path(self, load: Load) -> None:
        """An explicit name equal to another file's default name is a clash too."""
        state = load(
            {
                "door.yaml": device(url="https://192.0.2.1"),
                "other.yaml": device(url="https://192.0.2.2", extra="name: door\n"),
            }
        )
        assert state.devices == {}
        assert state.invalid_files == {"door.yaml", "other.yaml"}

    def test_yaml_and_yml_same_stem_clash(self, load: Load) -> None:
        """a.yaml and a.yml both default to name 'a' and so clash."""
        state = load({"a.yaml": device(url="https://192.0.2.1"), "a.yml": GOOD})
        assert state.devices == {}
        assert state.invalid_files == {"a.yaml", "a.yml"}

    def test_same_url_reports_both_loads_neither(self, load: Load) -> None:
        """Two files with the same device URL are both errors; neither loads."""
        state = load(
            {
                "a.yaml": device(url="https://192.0.2.10"),
                "b.yaml": device(url="https://192.0.2.10/"),
                "c.yaml": device(url="https://192.0.2.11"),
            }
        )
        assert list(state.devices) == ["c"]
        assert state.invalid_files == {"a.yaml", "b.yaml"}
        messages = {p.file: p.message for p in state.errors}
        assert "same device URL" in messages["a.yaml"] and "b.yaml" in messages["a.yaml"]
        assert "same device URL" in messages["b.yaml"] and "a.yaml" in messages["b.yaml"]

    def test_a_duplicate_url_is_told_where_it_is_written(self, load: Load) -> None:
        """A duplicate URL is told at its url line, or, when a _defaults.yaml sets it for
        the device file, with that file and line named."""
        state = load(
            {
                "s/_defaults.yaml": "device:\n  url: https://192.0.2.10\n",
                "s/a.yaml": "accounts:\n  - account: 1\n",
                "b.yaml": device(url="https://192.0.2.10"),
            }
        )
        assert state.devices == {}
        told = {(p.file, p.line, p.path, p.message) for p in state.errors}
        assert told == {
            ("b.yaml", 2, "device.url", "same device URL as s/a.yaml"),
            (
                "s/a.yaml",
                1,
                "device.url",
                "same device URL as b.yaml (its url is set in s/_defaults.yaml:2)",
            ),
        }

    def test_special_files_spelt_yml_are_named_not_taken_for_devices(self, load: Load) -> None:
        """_defaults.yml and _fleet.yml: one error each saying which name is read, not a
        device file's "device: is required"."""
        state = load(
            {
                "a.yaml": device(url="https://192.0.2.1"),
                "site/_defaults.yml": "accounts:\n  - account: 1\n    domain: x\n",
                "_fleet.yml": "rollout: {}\n",
            }
        )
        assert list(state.devices) == ["a"]
        assert sorted(str(p) for p in state.errors) == [
            "_fleet.yml:1: only _fleet.yaml is read: rename the file",
            "site/_defaults.yml:1: only _defaults.yaml is read: rename the file",
        ]

    def test_default_port_written_or_not_is_the_same_url(self, load: Load) -> None:
        """http://h:80 is http://h and https://H:443 is https://h: one device, both errors;
        another port, or the other scheme's default, is another device."""
        state = load(
            {
                "a.yaml": device(url="http://192.0.2.5:80"),
                "b.yaml": device(url="http://192.0.2.5"),
                "c.yaml": device(url="https://Intercom.Example"),
                "d.yaml": device(url="https://intercom.example:443"),
                "e.yaml": device(url="http://192.0.2.5:8080"),
                "f.yaml": device(url="https://192.0.2.5:80"),
                "g.yaml": device(url="http://[2001:db8::1]:80"),
                "h.yaml": device(url="http://[2001:db8::1]"),
            }
        )
        assert sorted(state.devices) == ["e", "f"]
        assert state.invalid_files == {"a.yaml", "b.yaml", "c.yaml", "d.yaml", "g.yaml", "h.yaml"}

    def test_three_files_same_name(self, load: Load) -> None:
        """Three files naming one device are all reported and none loads."""
        state = load(
            {
                f"{n}.yaml": device(url=f"https://192.0.2.{i}", extra="name: door\n")
                for i, n in enumerate("abc", start=1)
            }
        )
        assert state.devices == {}
        assert state.invalid_files == {"a.yaml", "b.yaml", "c.yaml"}
        assert {p.file for p in state.errors} == {"a.yaml", "b.yaml", "c.yaml"}

    def test_clash_by_url_then_by_name(self, load: Load) -> None:
        """b shares a's URL and c's name: all three are reported, none loads, nothing is left."""
        state = load(
            {
                "a.yaml": device(url="https://192.0.2.1"),
                "b.yaml": device(url="https://192.0.2.1", extra="name: door\n"),
                "c.yaml": device(url="https://192.0.2.3", extra="name: door\n"),
                "d.yaml": device(url="https://192.0.2.4"),
            }
        )
        assert list(state.devices) == ["d"]
        assert state.invalid_files == {"a.yaml", "b.yaml", "c.yaml"}
        messages = [(p.file, p.message) for p in state.errors]
        assert ("b.yaml", "same device URL as a.yaml") in messages
        assert ("b.yaml", "same device name as c.yaml") in messages
        assert ("c.yaml", "same device name as b.yaml") in messages

    def test_same_host_in_other_case_clashes(self, load: Load) -> None:
        """Host names are case-insensitive: LOBBY.example and lobby.example are one device."""
        state = load(
            {
                "a.yaml": device(url="https://LOBBY.example"),
                "b.yaml": device(url="HTTPS://lobby.example"),
            }
        )
        assert state.devices == {}
        assert state.invalid_files == {"a.yaml", "b.yaml"}

    def test_same_url_different_port_is_no_clash(self, load: Load) -> None:
        """Devices on one host but different ports (an emulator fleet) do not clash."""
        state = load(
            {
                "a.yaml": device(url="http://127.0.0.1:8080"),
                "b.yaml": device(url="http://127.0.0.1:8081"),
            }
        )
        assert sorted(state.devices) == ["a", "b"]
        assert state.problems == []


class TestValidForms:
    def test_full_example_from_spec(self, load: Load) -> None:
        """The SPEC's example file loads with every value canonical and secrets as references."""
        text = """\
            device:
              url: https://192.0.2.10
              name: site-a/lobby
              auth:
                method: digest
                username: syncd
                password: {env: LOBBY_API_PASSWORD}
              tls:
                verify: true
                caFile: /etc/syncd/intercom-ca.pem
              mode: enforce
            accounts:
              - account: 1
                enabled: true
                displayName: Lobby door
                sipNumber: "4001"
                authId: ""
                password: {env: LOBBY_SIP1_PASSWORD}
                domain: pbx.example.com
                domainPort: 5060
                proxyAddress: ""
                proxyPort: ""
                registrationEnabled: true
                registrarAddress: pbx.example.com
                registrarPort: 5060
                answerMode: 1
            """
        state = load({"site-a/lobby.yaml": text})
        assert state.problems == []
        entry = state.devices["site-a/lobby"]
        assert entry.url == "https://192.0.2.10"
        assert entry.auth.method is AuthMethod.DIGEST
        assert entry.auth.username == "syncd"
        assert entry.auth.password == SecretRef("env", name="LOBBY_API_PASSWORD")
        assert entry.tls.verify is True
        assert entry.tls.ca_file == "/etc/syncd/intercom-ca.pem"
        assert entry.mode is Mode.ENFORCE
        account = entry.accounts[1]
        assert account.password == SecretRef("env", name="LOBBY_SIP1_PASSWORD")
        assert dict(account.fields) == {
            "enabled": True,
            "displayName": "Lobby door",
            "sipNumber": "4001",
            "authId": "",
            "domain": "pbx.example.com",
            "domainPort": 5060,
            "proxyAddress": "",
            "proxyPort": 0,
            "registrationEnabled": True,
            "registrarAddress": "pbx.example.com",
            "registrarPort": 5060,
            "answerMode": 1,
        }

    def test_defaults_of_device_block(self, load: Load) -> None:
        """Unwritten device settings default to digest auth, verify on, enforce mode."""
        entry = load({"a.yaml": device()}).devices["a"]
        assert entry.auth.method is AuthMethod.DIGEST
        assert entry.auth.username is None and entry.auth.password is None
        assert entry.tls.verify is True and entry.tls.ca_file is None
        assert entry.mode is Mode.ENFORCE
        assert entry.accounts == {}

    @pytest.mark.parametrize("mode", ["enforce", "observe", "suspend"])
    def test_modes(self, load: Load, mode: str) -> None:
        """Each of the three modes loads as its Mode value."""
        entry = load({"a.yaml": device(extra=f"mode: {mode}\n")}).devices["a"]
        assert entry.mode is Mode(mode)

    def test_only_written_fields_are_managed(self, load: Load) -> None:
        """An account's unwritten fields are absent from its managed fields; "" is kept."""
        text = device(accounts="- account: 2\n  displayName: ''\n  enabled: false\n")
        entry = load({"a.yaml": text}).devices["a"]
        assert list(entry.accounts) == [2]
        assert dict(entry.accounts[2].fields) == {"displayName": "", "enabled": False}

    def test_account_with_only_number_manages_nothing(self, load: Load) -> None:
        """An account holding only `account:` is valid and has no managed fields."""
        state = load({"a.yaml": device(accounts="- account: 1\n")})
        assert state.problems == []
        account = state.devices["a"].accounts[1]
        assert dict(account.fields) == {} and account.password is None

    def test_get_answer_pasted_under_accounts_is_valid(self, load: Load) -> None:
        """A string-typed GET answer's accounts pasted under accounts: load without problems."""
        pasted = yaml.safe_dump({"accounts": GET_ANSWER["result"]["accounts"]}, sort_keys=False)
        state = load({"a.yaml": device() + pasted})
        assert state.problems == []
        accounts = state.devices["a"].accounts
        assert set(accounts[1].fields) == set(ACCOUNT_FIELDS)
        assert accounts[1].fields["domainPort"] == 5060
        assert accounts[1].fields["proxyPort"] == 0
        assert accounts[1].fields["answerMode"] == 1
        assert accounts[2].fields["answerMode"] == 0

    def test_get_answer_pasted_as_json_flow(self, load: Load) -> None:
        """The same accounts pasted verbatim as JSON (YAML flow style) load as well."""
        pasted = "accounts: " + json.dumps(GET_ANSWER["result"]["accounts"]) + "\n"
        state = load({"a.yaml": device() + pasted})
        assert state.problems == []
        assert state.devices["a"].accounts[1].fields["sipNumber"] == "4001"

    def test_integer_firmware_answer_pasted(self, load: Load) -> None:
        """An integer-typed GET answer (ports and answerMode as ints) is valid as well."""
        accounts = [dict(a) for a in GET_ANSWER["result"]["accounts"]]
        for account in accounts:
            for key in ("domainPort", "proxyPort", "registrarPort", "answerMode"):
                account[key] = int(account[key] or 0)
        state = load({"a.yaml": device() + yaml.safe_dump({"accounts": accounts})})
        assert state.problems == []
        assert state.devices["a"].accounts[1].fields["registrarPort"] == 5060

    def test_unicode_display_name(self, load: Load) -> None:
        """Non-ASCII text (Czech, emoji) is fine in text fields."""
        text = device(accounts="- account: 1\n  displayName: Vrátnice 🚪\n")
        assert load({"a.yaml": text}).devices["a"].accounts[1].fields == {
            "displayName": "Vrátnice 🚪"
        }

    def test_byte_order_mark_tolerated(self, load: Load) -> None:
        """A UTF-8 byte-order mark (some Windows editors write one) does not break a file."""
        state = load({"a.yaml": "\ufeff".encode() + GOOD.encode()})
        assert list(state.devices) == ["a"]


class TestSecretForms:
    @pytest.mark.parametrize(
        ("written", "ref"),
        [
            ("{env: LOBBY_PW}", SecretRef("env", name="LOBBY_PW")),
            ("{file: secrets/lobby}", SecretRef("file", name="secrets/lobby")),
            ("{credential: lobby-sip}", SecretRef("credential", name="lobby-sip")),
        ],
    )
    def test_references_accepted_silently(self, load: Load, written: str, ref: SecretRef) -> None:
        """{env:}, {file:} and {credential:} load as references with no problem at all."""
        text = device(
            extra=f"auth:\n  password: {written}\n",
            accounts=f"- account: 1\n  password: {written}\n",
        )
        state = load({"a.yaml": text})
        assert state.problems == []
        assert state.devices["a"].auth.password == ref
        assert state.devices["a"].accounts[1].password == ref

    def test_literal_device_password_is_a_warning(self, load: Load) -> None:
        """A literal API password loads, with one warning at its line (warning=True)."""
        state = load({"a.yaml": device(extra="auth:\n  password: hunter2\n")})
        assert list(state.devices) == ["a"]
        assert state.errors == []
        (warning,) = state.warnings
        assert warning.warning is True
        assert (warning.file, warning.line, warning.path) == ("a.yaml", 4, "device.auth.password")
        assert "literal" in warning.message
        assert "hunter2" not in str(warning)

    def test_literal_account_password_is_a_warning(self, load: Load) -> None:
        """A literal SIP password loads, with a warning naming accounts[i].password."""
        text = device(accounts="- account: 2\n  password: 's3cret'\n")
        state = load({"a.yaml": text})
        assert state.errors == []
        (warning,) = state.warnings
        assert (warning.file, warning.line, warning.path) == ("a.yaml", 5, "accounts[0].password")
        assert "s3cret" not in str(warning)
        assert "s3cret" not in repr(state.devices["a"])

    @pytest.mark.parametrize(
        "written",
        [
            "{vault: x}",
            "{env: A, file: b}",
            "{env: ''}",
            "{env: 5}",
            "{}",
            "1234",
            "true",
            "[a, b]",
        ],
    )
    def test_malformed_secret_is_an_error(self, load: Load, written: str) -> None:
        """A secret that is neither a reference mapping nor a string is an error with the forms."""
        state = load({"a.yaml": device(extra=f"auth:\n  password: {written}\n")})
        problem = only_error(state)
        assert (problem.file, problem.line, problem.path) == ("a.yaml", 4, "device.auth.password")
        assert "{env: NAME}" in problem.message


class TestDefaults:
    FILES: Mapping[str, str] = {
        "_defaults.yaml": """\
            device:
              auth:
                method: basic
                username: root-user
              mode: observe
            accounts:
              - account: 1
                domain: root.example
                domainPort: 5060
              - account: 2
                enabled: false
            """,
        "site/_defaults.yaml": """\
            device:
              auth:
                username: site-user
            accounts:
              - account: 1
                domain: site.example
            """,
        "site/lobby.yaml": """\
            device:
              url: https://192.0.2.10
              mode: enforce
            accounts:
              - account: 1
                displayName: Lobby
            """,
        "top.yaml": """\
            device:
              url: https://192.0.2.11
            """,
        "other/gate.yaml": """\
            device:
              url: https://192.0.2.12
            accounts:
              - account: 2
                enabled: true
                sipNumber: "4002"
            """,
    }

    def test_mappings_merge_key_by_key(self, load: Load) -> None:
        """device.auth from defaults merges key by key with nearer values winning."""
        lobby = load(self.FILES).devices["site/lobby"]
        assert lobby.auth.method is AuthMethod.BASIC
        assert lobby.auth.username == "site-user"

    @pytest.mark.parametrize(
        ("below", "above", "expected"),
        [
            (
                "{env: SITE_PW}",
                "{file: secrets/lobby.pw}",
                SecretRef("file", name="secrets/lobby.pw"),
            ),
            ("{file: site.pw}", "{credential: lobby}", SecretRef("credential", name="lobby")),
            ("{env: SITE_PW}", '"plain"', None),
            ('"plain"', "{env: LOBBY_PW}", SecretRef("env", name="LOBBY_PW")),
        ],
    )
    def test_a_password_is_replaced_whole(
        self, load: Load, below: str, above: str, expected: SecretRef | None
    ) -> None:
        """A device file's password replaces the defaults' whatever either's form: two reference
        mappings are not merged key by key (that made {env:, file:}, refused)."""
        files = {
            "_defaults.yaml": f"""\
                device:
                  auth:
                    username: syncd
                    password: {below}
                accounts:
                  - account: 1
                    password: {below}
                """,
            "lobby.yaml": f"""\
                device:
                  url: https://192.0.2.10
                  auth:
                    password: {above}
                accounts:
                  - account: 1
                    password: {above}
                """,
        }
        state = load(files)
        assert [p for p in state.problems if not p.warning] == []  # a literal: a warning
        lobby = state.devices["lobby"]
        for written in (lobby.auth.password, lobby.accounts[1].password):
            assert written is not None
            if expected is None:
                assert written.source == "literal" and written.literal is not None
                assert written.literal.get_secret_value() == "plain"
            else:
                assert written == expected
        assert lobby.auth.username == "syncd"  # the rest of device.auth still merges

    def test_device_file_wins(self, load: Load) -> None:
        """A value in the device file beats every defaults file (mode enforce over observe)."""
        state = load(self.FILES)
        assert state.devices["site/lobby"].mode is Mode.ENFORCE
        assert state.devices["top"].mode is Mode.OBSERVE

    def test_accounts_merge_by_number_nearer_wins(self, load: Load) -> None:
        """Account 1 merges across all levels; the nearer defaults' domain wins."""
        lobby = load(self.FILES).devices["site/lobby"]
        assert dict(lobby.accounts[1].fields) == {
            "displayName": "Lobby",
            "domain": "site.example",
            "domainPort": 5060,
        }

    def test_defaults_add_missing_account(self, load: Load) -> None:
        """A defaults entry for an account the device file lacks adds that account."""
        state = load(self.FILES)
        assert dict(state.devices["site/lobby"].accounts[2].fields) == {"enabled": False}
        assert dict(state.devices["top"].accounts[1].fields) == {
            "domain": "root.example",
            "domainPort": 5060,
        }

    def test_device_account_merges_over_defaults_account(self, load: Load) -> None:
        """A device's own account 2 keeps defaults' fields it lacks and overrides the rest."""
        gate = load(self.FILES).devices["other/gate"]
        assert dict(gate.accounts[2].fields) == {"enabled": True, "sipNumber": "4002"}

    def test_defaults_apply_only_at_and_below_their_folder(self, load: Load) -> None:
        """site/_defaults.yaml does not reach top.yaml or other/gate.yaml."""
        state = load(self.FILES)
        assert state.devices["top"].auth.username == "root-user"
        assert state.devices["other/gate"].auth.username == "root-user"

    def test_sources_list_defaults_then_device(self, load: Load) -> None:
        """DeviceSpec.sources (as loaded) lists defaults from farthest to nearest, then the device file."""
        state = load(self.FILES)
        assert state.devices["site/lobby"].sources == (
            "_defaults.yaml",
            "site/_defaults.yaml",
            "site/lobby.yaml",
        )
        assert state.devices["top"].sources == ("_defaults.yaml", "top.yaml")

    def test_defaults_can_supply_url_free_settings_only(self, load: Load) -> None:
        """A device file with no url still fails even under defaults (url is per device)."""
        state = load({"_defaults.yaml": "device:\n  mode: observe\n", "a.yaml": "device: {}\n"})
        problem = only_error(state)
        assert (problem.file, problem.path) == ("a.yaml", "device.url")

    def test_error_in_defaults_names_defaults_file_and_line(self, load: Load) -> None:
        """A bad value in a defaults file is reported at that file and line, once."""
        state = load(
            {
                "site/_defaults.yaml": "accounts:\n  - account: 1\n    domainPort: 70000\n",
                "site/a.yaml": device(url="https://192.0.2.1"),
                "site/b.yaml": device(url="https://192.0.2.2"),
                "c.yaml": device(url="https://192.0.2.3"),
            }
        )
        problem = only_error(state)
        assert (problem.file, problem.line, problem.path) == (
            "site/_defaults.yaml",
            3,
            "accounts[0].domainPort",
        )
        assert list(state.devices) == ["c"]
        assert state.invalid_files == {"site/a.yaml", "site/b.yaml"}

    def test_unknown_key_in_defaults_names_defaults_file(self, load: Load) -> None:
        """A misspelt key in _defaults.yaml is reported there, with the suggestion."""
        state = load({"_defaults.yaml": "device:\n  mdoe: observe\n", "a.yaml": GOOD})
        problem = only_error(state)
        assert (problem.file, problem.line, problem.path) == ("_defaults.yaml", 2, "device.mdoe")
        assert "did you mean 'mode'?" in problem.message

    def test_syntax_error_in_defaults(self, load: Load) -> None:
        """A YAML syntax error in a defaults file fails the devices below it only."""
        state = load(
            {
                "site/_defaults.yaml": "device:\n  mode: [\n",
                "site/a.yaml": GOOD,
                "b.yaml": device(url="https://192.0.2.2"),
            }
        )
        problem = only_error(state)
        assert problem.file == "site/_defaults.yaml" and problem.line == 3
        assert list(state.devices) == ["b"]

    def test_duplicate_account_in_defaults(self, load: Load) -> None:
        """Account 1 listed twice in a defaults file is an error located in that file."""
        text = "accounts:\n  - account: 1\n  - account: 1\n"
        problem = only_error(load({"_defaults.yaml": text, "a.yaml": GOOD}))
        assert (problem.file, problem.line) == ("_defaults.yaml", 3)
        assert "listed twice" in problem.message

    def test_error_in_device_file_under_defaults_names_device_file(self, load: Load) -> None:
        """An error written in the device file is located there, not in the defaults."""
        state = load(
            {
                "_defaults.yaml": "accounts:\n  - account: 1\n    domain: x.example\n",
                "a.yaml": device(accounts="- account: 1\n  domainPort: abc\n"),
            }
        )
        problem = only_error(state)
        assert (problem.file, problem.line, problem.path) == (
            "a.yaml",
            5,
            "accounts[0].domainPort",
        )

    def test_empty_defaults_file_is_harmless(self, load: Load) -> None:
        """An empty _defaults.yaml merges nothing and breaks nothing."""
        state = load({"_defaults.yaml": "", "a.yaml": GOOD})
        assert list(state.devices) == ["a"] and state.problems == []

    def test_non_mapping_defaults_file(self, load: Load) -> None:
        """A _defaults.yaml holding a list is an error named at the defaults file."""
        state = load({"_defaults.yaml": "- 1\n", "a.yaml": GOOD})
        problem = only_error(state)
        assert problem.file == "_defaults.yaml"
        assert state.devices == {}

    def test_other_lists_replaced_not_merged(self, root: Path) -> None:
        """A list other than accounts in a nearer file replaces the farther one's list."""
        from syncd.desired.merge import merge
        from syncd.desired.yamldoc import parse_yaml

        base = parse_yaml("device:\n  tags: [a, b, c]\naccounts:\n  - account: 1\n", "d.yaml")
        top = parse_yaml("device:\n  tags: [z]\n", "x.yaml")
        merged = merge(base, top)
        assert merged["device"]["tags"] == ["z"]
        assert merged["accounts"] == [{"account": 1}]

    def test_tls_verify_from_defaults(self, load: Load) -> None:
        """tls.verify: false in defaults reaches the device below."""
        state = load(
            {"lab/_defaults.yaml": "device:\n  tls:\n    verify: false\n", "lab/a.yaml": GOOD}
        )
        assert state.devices["lab/a"].tls.verify is False


class TestManyFiles:
    def test_bad_files_do_not_hide_good_ones(self, load: Load) -> None:
        """A tree with several bad files loads every good one and reports every bad one."""
        state = load(
            {
                "good1.yaml": device(url="https://192.0.2.1"),
                "bad/syntax.yaml": "device: [\n",
                "bad/type.yaml": device(url="https://192.0.2.3", accounts="- account: 7\n"),
                "bad/empty.yaml": "",
                "bad/unknown.yaml": device(url="https://192.0.2.5", extra="mdoe: x\n"),
                "sub/good2.yaml": device(url="https://192.0.2.6"),
                "bad/binary.yaml": b"\xff\xfe\x00",
            }
        )
        assert sorted(state.devices) == ["good1", "sub/good2"]
        bad = {
            "bad/syntax.yaml",
            "bad/type.yaml",
            "bad/empty.yaml",
            "bad/unknown.yaml",
            "bad/binary.yaml",
        }
        assert state.invalid_files == bad
        assert {p.file for p in state.errors} == bad

    def test_every_error_in_one_file_is_reported(self, load: Load) -> None:
        """Several independent mistakes in one file are all reported, each on its line."""
        text = device(
            extra="mode: sometimes\n",
            accounts="- account: 1\n  enabled: 'yes'\n  domainPort: 70000\n  sipNumber: 4001\n",
        )
        state = load({"a.yaml": text})
        assert [(p.line, p.path) for p in state.errors] == [
            (3, "device.mode"),
            (6, "accounts[0].enabled"),
            (7, "accounts[0].domainPort"),
            (8, "accounts[0].sipNumber"),
        ]


class TestLoaderReuse:
    def test_only_defaults_parses_are_kept(self, tree: Tree) -> None:
        """A reused Loader keeps an unchanged _defaults.yaml's parse, and no device file's
        (its built entry is kept instead): a changed device file is read again."""
        root = tree(
            {
                "a.yaml": device(url="https://192.0.2.1"),
                "b.yaml": device(url="https://192.0.2.2"),
                "_defaults.yaml": "device:\n  mode: observe\n",
            }
        )
        loader = Loader(root)
        loader.load()
        # The parse cache is keyed by path relative to the root.
        first_defaults = loader._parsed["_defaults.yaml"][1]
        assert set(loader._parsed) == {"_defaults.yaml"}

        path_b = root / "b.yaml"
        path_b.write_text(device(url="https://192.0.2.2", extra="name: renamed\n"))
        st = path_b.stat()
        os.utime(path_b, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
        state = loader.load()

        assert loader._parsed["_defaults.yaml"][1] is first_defaults
        assert set(loader._parsed) == {"_defaults.yaml"}
        assert sorted(state.devices) == ["a", "renamed"]

    def test_unchanged_device_entry_reused(self, tree: Tree) -> None:
        """An unchanged device (file and defaults) keeps its validated entry; an edited one not."""
        root = tree(
            {
                "_defaults.yaml": "device:\n  mode: observe\n",
                "a.yaml": device(url="https://192.0.2.1"),
                "b.yaml": device(url="https://192.0.2.2"),
            }
        )
        loader = Loader(root)
        first = loader.load().devices
        path_b = root / "b.yaml"
        path_b.write_text(device(url="https://192.0.2.2", extra="mode: suspend\n"))
        second = loader.load().devices
        assert second["a"] is first["a"]
        assert second["b"] is not first["b"] and second["b"].mode is Mode.SUSPEND

    def test_reused_loader_sees_changes(self, tree: Tree) -> None:
        """Editing, adding and deleting files between loads is reflected in the next load."""
        root = tree({"a.yaml": device(url="https://192.0.2.1"), "b.yaml": GOOD})
        loader = Loader(root)
        assert sorted(loader.load().devices) == ["a", "b"]
        (root / "b.yaml").unlink()
        (root / "c.yaml").write_text(device(url="https://192.0.2.3", extra="mode: suspend\n"))
        (root / "a.yaml").write_text(device(url="https://192.0.2.1", extra="mode: observe\n"))
        state = loader.load()
        assert sorted(state.devices) == ["a", "c"]
        assert state.devices["a"].mode is Mode.OBSERVE

    def test_fix_after_error_is_picked_up(self, tree: Tree) -> None:
        """A file that failed, once fixed, loads on the next pass of the same Loader."""
        root = tree({"a.yaml": "device: [\n"})
        loader = Loader(root)
        assert loader.load().invalid_files == {"a.yaml"}
        (root / "a.yaml").write_text(GOOD)
        state = loader.load()
        assert list(state.devices) == ["a"] and state.problems == []

    def test_defaults_change_reaches_devices(self, tree: Tree) -> None:
        """Changing _defaults.yaml changes the devices below it on the next load."""
        root = tree({"_defaults.yaml": "device:\n  mode: observe\n", "a.yaml": GOOD})
        loader = Loader(root)
        assert loader.load().devices["a"].mode is Mode.OBSERVE
        (root / "_defaults.yaml").write_text("device:\n  mode: suspend\n")
        assert loader.load().devices["a"].mode is Mode.SUSPEND
        (root / "_defaults.yaml").unlink()
        assert loader.load().devices["a"].mode is Mode.ENFORCE

    def test_load_desired_equals_fresh_loader(self, tree: Tree) -> None:
        """load_desired(root) gives the same devices as Loader(root).load()."""
        root = tree({"a.yaml": GOOD})
        assert load_desired(root).devices == Loader(root).load().devices
