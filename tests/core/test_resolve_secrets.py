"""Secret references: parsing, resolving via resolve_device, and never leaking values."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
from core_helpers import device

from syncd.desired import DeviceSecretError, load_desired, resolve_device
from syncd.diff import diff
from syncd.model import AccountSpec, AuthMethod, DeviceSpec
from syncd.secrets import SecretError, SecretRef, parse_secret_ref, resolve_secret

Tree = Callable[[Mapping[str, str | bytes]], Path]

API = "api-Value-1f8e"
SIP1 = "sip1-Value-77aa"
SIP2 = "sip2-Value-c0de"


def entry_with(
    tree: Tree, auth_pw: str, sip1: str, sip2: str
) -> tuple[DeviceSpec[SecretRef], Path]:
    """Load one device whose API and SIP passwords are the given YAML secret forms."""
    text = device(
        extra=f"auth:\n  username: syncd\n  password: {auth_pw}\n",
        accounts=f"- account: 1\n  password: {sip1}\n- account: 2\n  password: {sip2}\n",
    )
    root = tree({"a.yaml": text})
    state = load_desired(root)
    assert state.errors == [], [str(p) for p in state.errors]
    return state.devices["a"], root


@pytest.fixture
def creds(tmp_path: Path) -> Path:
    """A $CREDENTIALS_DIRECTORY holding credential 'sip2' (with a trailing newline)."""
    path = tmp_path / "credentials"
    path.mkdir()
    (path / "sip2").write_text(SIP2 + "\n")
    return path


class TestParseSecretRef:
    @pytest.mark.parametrize("source", ["env", "file", "credential"])
    def test_reference_forms(self, source: str) -> None:
        """A one-key mapping {env|file|credential: NAME} is a reference with that source."""
        assert parse_secret_ref({source: "X"}) == SecretRef(source, name="X")

    def test_literal_string(self) -> None:
        """A plain string is a literal whose value is held hidden."""
        ref = parse_secret_ref("hunter2")
        assert ref.source == "literal"
        assert ref.literal is not None and ref.literal.get_secret_value() == "hunter2"
        assert "hunter2" not in repr(ref) and "hunter2" not in str(ref)

    @pytest.mark.parametrize(
        "value",
        [
            {},
            {"env": ""},
            {"env": "  "},
            {"env": 1},
            {"vault": "x"},
            {"env": "A", "file": "b"},
            {"literal": "x"},
            5,
            None,
            ["x"],
            True,
        ],
    )
    def test_malformed(self, value: object) -> None:
        """Anything else is refused with a message listing the accepted forms."""
        with pytest.raises(ValueError, match=r"\{env: NAME\}"):
            parse_secret_ref(value)

    def test_str_names_the_reference(self) -> None:
        """str() of a reference shows where the secret lives, in the YAML form."""
        assert str(SecretRef("env", name="LOBBY")) == "{env: LOBBY}"
        assert str(parse_secret_ref("x")) == "(literal)"


class TestResolveDevice:
    def test_env_file_and_credential(self, tree: Tree, creds: Path) -> None:
        """Each reference form resolves: env from environ, file under base_dir, credential."""
        tree({"secrets/sip1": SIP1 + "\n"})
        entry, root = entry_with(
            tree, "{env: API_PW}", "{file: secrets/sip1}", "{credential: sip2}"
        )
        spec = resolve_device(
            entry,
            environ={"API_PW": API, "CREDENTIALS_DIRECTORY": str(creds)},
            base_dir=root,
        )
        assert isinstance(spec, DeviceSpec)
        assert spec.auth.method is AuthMethod.DIGEST and spec.auth.username == "syncd"
        assert spec.auth.password is not None
        assert spec.auth.password.get_secret_value() == API
        assert spec.accounts[1].password is not None and spec.accounts[2].password is not None
        assert spec.accounts[1].password.get_secret_value() == SIP1
        assert spec.accounts[2].password.get_secret_value() == SIP2

    @pytest.mark.parametrize(
        ("content", "value"),
        [
            (b"  pass word \n\n", "  pass word \n"),
            (b"no-newline", "no-newline"),
            (b"crlf\r\n", "crlf"),
            (b"two-crlf\r\n\r\n", "two-crlf\r\n"),
            (b"lone-cr\r", "lone-cr\r"),
        ],
    )
    def test_only_one_trailing_newline_stripped(
        self, tree: Tree, creds: Path, content: bytes, value: str
    ) -> None:
        """A file or credential loses one trailing \\n or \\r\\n; other whitespace is kept."""
        root = tree({"p1": content, "p2": b"sip-1"})
        (creds / "api").write_bytes(content)
        for ref in ("{file: p1}", "{credential: api}"):
            entry, _ = entry_with(tree, ref, "{file: p2}", "{file: p2}")
            environ = {"CREDENTIALS_DIRECTORY": str(creds)}
            spec = resolve_device(entry, environ=environ, base_dir=root)
            assert spec.auth.password is not None
            assert spec.auth.password.get_secret_value() == value

    def test_sip_password_from_a_windows_file(self, tree: Tree) -> None:
        """A SIP password file ending in \\r\\n gives the password without the \\r."""
        root = tree({"p1": b"sip-crlf\r\n"})
        entry, _ = entry_with(tree, "{env: A}", "{file: p1}", "{env: A}")
        spec = resolve_device(entry, environ={"A": "a"}, base_dir=root)
        assert spec.accounts[1].password is not None
        assert spec.accounts[1].password.get_secret_value() == "sip-crlf"

    def test_env_value_kept_verbatim(self, tree: Tree) -> None:
        """An environment secret is used as is, trailing newline and all."""
        entry, root = entry_with(tree, "{env: A}", "{env: B}", "{env: C}")
        spec = resolve_device(entry, environ={"A": "x\n", "B": "", "C": " c "}, base_dir=root)
        assert spec.auth.password is not None and spec.auth.password.get_secret_value() == "x\n"
        assert spec.accounts[1].password is not None
        assert spec.accounts[1].password.get_secret_value() == ""

    def test_absolute_file_reference(self, tree: Tree, tmp_path: Path) -> None:
        """An absolute {file:} path is read where it says, not under base_dir."""
        secret = tmp_path / "abs-secret"
        secret.write_text(SIP1)
        entry, root = entry_with(tree, "{env: A}", f"{{file: {secret}}}", "{env: A}")
        spec = resolve_device(entry, environ={"A": API}, base_dir=root)
        assert spec.accounts[1].password is not None
        assert spec.accounts[1].password.get_secret_value() == SIP1

    def test_literal_resolves_to_itself(self, tree: Tree) -> None:
        """A literal secret resolves to its own value with no environment at all."""
        entry, root = entry_with(tree, "lit-api", "lit-1", "lit-2")
        spec = resolve_device(entry, environ={}, base_dir=root)
        assert spec.auth.password is not None and spec.auth.password.get_secret_value() == "lit-api"

    def test_fields_mode_and_url_carried_over(self, tree: Tree) -> None:
        """resolve_device keeps name, file, url, mode, fields and sources from the entry."""
        root = tree(
            {
                "_defaults.yaml": "device:\n  mode: observe\n",
                "s/a.yaml": device(accounts="- account: 1\n  domainPort: '5060'\n"),
            }
        )
        entry = load_desired(root).devices["s/a"]
        spec = resolve_device(entry, environ={}, base_dir=root)
        assert (spec.name, spec.file, spec.url) == ("s/a", "s/a.yaml", "https://192.0.2.10")
        assert spec.mode.value == "observe"
        assert dict(spec.accounts[1].fields) == {"domainPort": 5060}
        assert spec.accounts[1].password is None
        assert spec.auth.password is None
        assert spec.sources == ("_defaults.yaml", "s/a.yaml")

    def test_ca_file_anchored_at_base_dir(self, tree: Tree) -> None:
        """A relative caFile is resolved under the desired dir; an absolute one is kept."""
        root = tree(
            {
                "a.yaml": device(url="https://192.0.2.1", extra="tls:\n  caFile: certs/ca.pem\n"),
                "b.yaml": device(url="https://192.0.2.2", extra="tls:\n  caFile: /etc/ca.pem\n"),
            }
        )
        state = load_desired(root)
        a = resolve_device(state.devices["a"], environ={}, base_dir=root)
        b = resolve_device(state.devices["b"], environ={}, base_dir=root)
        assert a.tls.ca_file == str(root / "certs" / "ca.pem")
        assert b.tls.ca_file == "/etc/ca.pem"


class TestUnresolvable:
    def test_missing_env_names_variable(self, tree: Tree) -> None:
        """A missing environment variable raises SecretError naming it, the file and the field."""
        entry, root = entry_with(tree, "{env: API_PW}", "{env: SIP1_PW}", "{env: SIP2_PW}")
        with pytest.raises(SecretError) as caught:
            resolve_device(entry, environ={"SIP1_PW": SIP1, "SIP2_PW": SIP2}, base_dir=root)
        message = str(caught.value)
        assert "API_PW" in message and "a.yaml" in message and "device.auth.password" in message
        assert SIP1 not in message and SIP2 not in message

    def test_missing_file_names_path(self, tree: Tree) -> None:
        """A missing secret file raises SecretError naming the path, never other secrets."""
        entry, root = entry_with(tree, "{env: API_PW}", "{file: nope/sip1}", "{env: SIP2_PW}")
        with pytest.raises(SecretError) as caught:
            resolve_device(entry, environ={"API_PW": API, "SIP2_PW": SIP2}, base_dir=root)
        message = str(caught.value)
        assert "nope/sip1" in message and "a.yaml:8: accounts[0].password" in message
        assert API not in message and SIP2 not in message

    def test_credential_without_credentials_directory(self, tree: Tree) -> None:
        """{credential:} without $CREDENTIALS_DIRECTORY says that variable is needed."""
        entry, root = entry_with(tree, "{env: API_PW}", "{env: SIP1_PW}", "{credential: sip2}")
        with pytest.raises(SecretError, match="CREDENTIALS_DIRECTORY") as caught:
            resolve_device(entry, environ={"API_PW": API, "SIP1_PW": SIP1}, base_dir=root)
        assert "sip2" in str(caught.value)
        assert API not in str(caught.value) and SIP1 not in str(caught.value)

    def test_missing_credential_names_it(self, tree: Tree, creds: Path) -> None:
        """A credential absent from the directory raises SecretError naming the credential."""
        entry, root = entry_with(tree, "{env: API_PW}", "{credential: other}", "{credential: sip2}")
        env = {"API_PW": API, "CREDENTIALS_DIRECTORY": str(creds)}
        with pytest.raises(SecretError) as caught:
            resolve_device(entry, environ=env, base_dir=root)
        assert "other" in str(caught.value)
        assert API not in str(caught.value) and SIP2 not in str(caught.value)

    @pytest.mark.parametrize("name", ["../etc/passwd", "a/b", "..", "."])
    def test_credential_name_cannot_escape(self, tmp_path: Path, name: str) -> None:
        """A credential name with '/' or '.'/'..' is refused rather than read outside the dir."""
        with pytest.raises(SecretError):
            resolve_secret(
                SecretRef("credential", name=name),
                environ={"CREDENTIALS_DIRECTORY": str(tmp_path)},
                base_dir=tmp_path,
            )

    def test_non_utf8_file_content_not_echoed(self, tmp_path: Path) -> None:
        """A secret file that is not UTF-8 is an error that shows none of its bytes."""
        (tmp_path / "bin").write_bytes(b"\xffSECRETBYTES\xfe")
        with pytest.raises(SecretError) as caught:
            resolve_secret(SecretRef("file", name="bin"), environ={}, base_dir=tmp_path)
        assert "UTF-8" in str(caught.value) and "SECRETBYTES" not in str(caught.value)

    def test_non_utf8_env_value_not_echoed(self, tree: Tree) -> None:
        """An environment variable holding bytes that are not UTF-8 (os.environ keeps them
        as surrogates) is an error at the reference's line naming the variable, no byte of it."""
        entry, root = entry_with(tree, "{env: API_PW}", "{env: SIP1_PW}", "{env: SIP2_PW}")
        bad = "caf\udce9SECRETBYTES"  # what os.environ makes of b"caf\xe9SECRETBYTES"
        with pytest.raises(SecretError) as caught:
            resolve_device(
                entry, environ={"API_PW": API, "SIP1_PW": bad, "SIP2_PW": SIP2}, base_dir=root
            )
        message = str(caught.value)
        assert message == (
            "a.yaml:8: accounts[0].password: environment variable SIP1_PW is not UTF-8 text"
        )

    def test_huge_file_refused(self, tmp_path: Path) -> None:
        """A multi-megabyte 'secret' file is refused as too large, content unechoed."""
        (tmp_path / "big").write_text("Q" * (200 * 1024))
        with pytest.raises(SecretError, match="too large") as caught:
            resolve_secret(SecretRef("file", name="big"), environ={}, base_dir=tmp_path)
        assert "QQQQ" not in str(caught.value)

    def test_directory_as_secret_file(self, tmp_path: Path) -> None:
        """A {file:} naming a directory raises SecretError, not IsADirectoryError."""
        (tmp_path / "d").mkdir()
        with pytest.raises(SecretError, match="d"):
            resolve_secret(SecretRef("file", name="d"), environ={}, base_dir=tmp_path)


class TestDeviceRefusedSipPassword:
    @pytest.mark.parametrize(
        ("value", "reason"),
        [
            ("L" * 256, "is 256 characters long; at most 255 allowed"),
            ("bad\x7fvalue", "contains a control character"),
            ("bad\u0085value", "contains a control character"),
        ],
    )
    def test_resolved_sip_password_checked(self, tree: Tree, value: str, reason: str) -> None:
        """A SIP secret the device would refuse is a problem at its line, value unsaid."""
        entry, root = entry_with(tree, "{env: API_PW}", "{env: SIP1_PW}", "{env: SIP2_PW}")
        env = {"API_PW": value, "SIP1_PW": value, "SIP2_PW": SIP2}
        with pytest.raises(DeviceSecretError) as caught:
            resolve_device(entry, environ=env, base_dir=root)
        assert [str(p) for p in caught.value.problems] == [
            f"a.yaml:8: accounts[0].password: {{env: SIP1_PW}} gives a password that {reason}"
        ]
        assert value not in str(caught.value) and "LLLL" not in str(caught.value)

    def test_255_characters_accepted(self, tree: Tree) -> None:
        """A SIP password of exactly 255 characters resolves."""
        entry, root = entry_with(tree, "{env: A}", "{env: A}", "{env: B}")
        spec = resolve_device(entry, environ={"A": "L" * 255, "B": ""}, base_dir=root)
        assert spec.accounts[1].password is not None
        assert spec.accounts[1].password.get_secret_value() == "L" * 255


class TestAuthNone:
    def test_inherited_credentials_dropped(self, tree: Tree) -> None:
        """method: none under defaults with credentials keeps neither, so none is resolved."""
        root = tree(
            {
                "_defaults.yaml": "device:\n  auth:\n    username: admin\n"
                "    password: {env: API_PW}\n",
                "c/_defaults.yaml": "device:\n  auth:\n    method: none\n",
                "c/a.yaml": device(),
                "d/a.yaml": device(url="https://192.0.2.11"),
            }
        )
        state = load_desired(root)
        assert state.errors == []
        none, digest = state.devices["c/a"].auth, state.devices["d/a"].auth
        assert (none.method, none.username, none.password) == (AuthMethod.NONE, None, None)
        assert (digest.method, digest.username) == (AuthMethod.DIGEST, "admin")
        assert digest.password == SecretRef("env", name="API_PW")
        spec = resolve_device(state.devices["c/a"], environ={}, base_dir=root)
        assert (spec.auth.username, spec.auth.password) == (None, None)


class TestEveryUnresolvableReported:
    def test_each_bad_reference_is_a_problem_at_its_line(self, tree: Tree) -> None:
        """All unresolvable references of a device are reported, each with file, line and field."""
        from syncd.desired import DeviceSecretError

        entry, root = entry_with(tree, "{env: GONE_API}", "{env: GONE_SIP1}", '"literal"')
        with pytest.raises(DeviceSecretError) as caught:
            resolve_device(entry, environ={}, base_dir=root)
        where = [(p.file, p.line, p.path) for p in caught.value.problems]
        assert where == [
            ("a.yaml", 5, "device.auth.password"),
            ("a.yaml", 8, "accounts[0].password"),
        ]
        assert "GONE_API" in caught.value.problems[0].message
        assert "literal" not in str(caught.value)


class TestNoLeaks:
    def resolved(self, tree: Tree) -> DeviceSpec:
        entry, root = entry_with(tree, "{env: A}", "{env: B}", f"'{SIP2}'")
        return resolve_device(entry, environ={"A": API, "B": SIP1}, base_dir=root)

    def test_secretstr_repr_hides_value(self, tree: Tree) -> None:
        """A resolved password's repr and str are masked."""
        spec = self.resolved(tree)
        assert spec.auth.password is not None
        assert API not in repr(spec.auth.password) and API not in str(spec.auth.password)

    def test_device_spec_repr_holds_no_secret(self, tree: Tree) -> None:
        """repr() and str() of a whole DeviceSpec show no API or SIP password."""
        spec = self.resolved(tree)
        for text in (repr(spec), str(spec)):
            assert API not in text and SIP1 not in text and SIP2 not in text

    def test_device_entry_repr_holds_no_literal(self, tree: Tree) -> None:
        """A loaded DeviceSpec with literal secrets shows none of them in its repr."""
        entry, _ = entry_with(tree, f"'{API}'", f"'{SIP1}'", f"'{SIP2}'")
        text = repr(entry)
        assert API not in text and SIP1 not in text and SIP2 not in text

    def test_fingerprint_ignores_passwords(self, tree: Tree) -> None:
        """Two specs differing only in passwords share a fingerprint (no hash of a secret)."""
        entry, root = entry_with(tree, "{env: A}", "{env: B}", "{env: B}")
        one = resolve_device(entry, environ={"A": "1", "B": "2"}, base_dir=root)
        two = resolve_device(entry, environ={"A": "3", "B": "4"}, base_dir=root)
        assert one.fingerprint == two.fingerprint

    def test_plan_repr_holds_no_password(self) -> None:
        """A Plan carrying a due password shows it neither in repr nor in its changes."""
        from pydantic import SecretStr

        plan = diff(
            {1: AccountSpec(1, {}, SecretStr(SIP1))},
            [{"account": 1, "enabled": True}],
            passwords_due={1},
        )
        assert SIP1 not in repr(plan)
        assert all(SIP1 not in repr(c) for c in plan.changes)
        assert plan.put_body() == [{"account": 1, "password": SIP1}]


def test_a_defaults_secret_that_does_not_resolve_is_one_problem_for_every_device(
    tree: Tree,
) -> None:
    """Every device takes the API password from _defaults.yaml; unset, it is one problem
    (logged and shown once), while each device is still named as broken."""
    from syncd.desired import resolve_desired

    files: dict[str, str | bytes] = {
        "_defaults.yaml": "device:\n  auth:\n    username: syncd\n    password: {env: NOPE_PW}\n"
    }
    for n in (1, 2, 3):
        files[f"dev{n}.yaml"] = device(url=f"http://127.0.0.1:{19000 + n}")
    resolved = resolve_desired(load_desired(tree(files)), environ={})
    assert [(p.file, p.line) for p in resolved.problems] == [("_defaults.yaml", 4)]
    assert sorted(resolved.broken) == ["dev1", "dev2", "dev3"]
    assert (
        resolved.problems[0].detail
        == "device.auth.password: environment variable NOPE_PW is not set"
    )
