"""The pure diff: desired accounts + a GET answer -> the smallest PUT, in the device's typing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from syncd.diff import PASSWORD_PLACEHOLDER, Change, DiffError, Plan, diff
from syncd.model import (
    ACCOUNT_FIELDS,
    AccountSpec,
    FieldKind,
    normalise_live,
    render_for_device,
)

PORTS = [n for n, k in ACCOUNT_FIELDS.items() if k is FieldKind.PORT]
NUMBERS = [n for n, k in ACCOUNT_FIELDS.items() if k is FieldKind.NUMBER]
FIRMWARES = ("string", "integer")

# ------------------------------------------------------------- an emulated device


def report(kind: FieldKind, value: Any, firmware: str) -> Any:
    """How a firmware reports a canonical value in its GET answer."""
    if kind in (FieldKind.PORT, FieldKind.NUMBER) and firmware == "string":
        return "" if kind is FieldKind.PORT and value == 0 else str(value)
    return value


def accept(kind: FieldKind, sent: Any, firmware: str) -> Any:
    """How a firmware reads a value from a PUT; refuses a value not in its own typing."""
    if kind in (FieldKind.PORT, FieldKind.NUMBER):
        if firmware == "string":
            assert isinstance(sent, str), f"string firmware sent {sent!r}"
            return 0 if sent == "" else int(sent)
        assert isinstance(sent, int) and not isinstance(sent, bool), f"int firmware sent {sent!r}"
        return sent
    if kind is FieldKind.BOOL:
        assert isinstance(sent, bool)
    else:
        assert isinstance(sent, str)
    return sent


class Device:
    """A device holding canonical values that answers GET and applies PUT in its typing."""

    def __init__(self, firmware: str, accounts: Mapping[int, Mapping[str, Any]]) -> None:
        self.firmware = firmware
        self.accounts = {n: dict(a) for n, a in accounts.items()}
        self.passwords: dict[int, str] = {}

    def get(self) -> list[dict[str, Any]]:
        answer = []
        for number, fields in sorted(self.accounts.items()):
            account: dict[str, Any] = {"account": number}
            for name, value in fields.items():
                account[name] = report(ACCOUNT_FIELDS[name], value, self.firmware)
            if self.firmware == "integer":
                account["accountType"] = "sip"  # newer firmware adds fields syncd ignores
            answer.append(account)
        return answer

    def put(self, body: list[dict[str, Any]]) -> None:
        for entry in body:
            number = entry["account"]
            for name, sent in entry.items():
                if name == "account":
                    continue
                if name == "password":
                    self.passwords[number] = sent
                    continue
                self.accounts[number][name] = accept(ACCOUNT_FIELDS[name], sent, self.firmware)


# ------------------------------------------------------------------ strategies


def canonical(kind: FieldKind) -> st.SearchStrategy[Any]:
    if kind is FieldKind.BOOL:
        return st.booleans()
    if kind is FieldKind.TEXT:
        return st.text(alphabet="ab4 .-é", max_size=6)
    if kind is FieldKind.PORT:
        return st.one_of(st.sampled_from([0, 1, 5060, 5061, 65535]), st.integers(0, 65535))
    return st.integers(0, 5)


@st.composite
def account_fields(draw: st.DrawFn, min_size: int = 0) -> dict[str, Any]:
    names = draw(st.sets(st.sampled_from(list(ACCOUNT_FIELDS)), min_size=min_size))
    return {name: draw(canonical(ACCOUNT_FIELDS[name])) for name in names}


@st.composite
def desired_accounts(draw: st.DrawFn) -> dict[int, AccountSpec]:
    numbers = draw(st.sets(st.sampled_from([1, 2])))
    out = {}
    for number in sorted(numbers):
        password = draw(st.none() | st.text(min_size=1, max_size=8).map(SecretStr))
        out[number] = AccountSpec(number, draw(account_fields()), password)
    return out


@st.composite
def live_state(draw: st.DrawFn) -> dict[int, dict[str, Any]]:
    """Canonical live values: both accounts, every field (as a real device reports)."""
    return {
        number: {name: draw(canonical(kind)) for name, kind in ACCOUNT_FIELDS.items()}
        for number in (1, 2)
    }


def scenario() -> st.SearchStrategy[tuple[dict[int, AccountSpec], Device, set[int]]]:
    return st.tuples(
        desired_accounts(),
        st.builds(Device, st.sampled_from(FIRMWARES), live_state()),
        st.sets(st.sampled_from([1, 2])),
    )


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ------------------------------------------------------------------ properties


class TestDiffProperties:
    @SETTINGS
    @given(scenario())
    def test_applying_the_put_converges(
        self, case: tuple[dict[int, AccountSpec], Device, set[int]]
    ) -> None:
        """After the device applies put_body(), every managed field equals desired and a re-diff is empty."""
        desired, dev, due = case
        plan = diff(desired, dev.get(), passwords_due=due)
        dev.put(plan.put_body())
        after = {a["account"]: a for a in dev.get()}
        for number, spec in desired.items():
            for name, want in spec.fields.items():
                assert normalise_live(ACCOUNT_FIELDS[name], after[number][name]) == want
        assert diff(desired, dev.get(), passwords_due=set()).empty

    @SETTINGS
    @given(scenario())
    def test_put_holds_only_managed_fields(
        self, case: tuple[dict[int, AccountSpec], Device, set[int]]
    ) -> None:
        """No field absent from the desired account ever appears in put_body()."""
        desired, dev, due = case
        for entry in diff(desired, dev.get(), passwords_due=due).put_body():
            spec = desired[entry["account"]]
            allowed = {"account", *spec.fields}
            if spec.password is not None:
                allowed.add("password")
            assert set(entry) <= allowed

    @SETTINGS
    @given(scenario())
    def test_put_holds_only_changed_fields(
        self, case: tuple[dict[int, AccountSpec], Device, set[int]]
    ) -> None:
        """Every readable field in put_body() differs on the device; equal fields are left out."""
        desired, dev, due = case
        live = {a["account"]: a for a in dev.get()}
        for entry in diff(desired, dev.get(), passwords_due=due).put_body():
            number = entry["account"]
            for name in set(entry) - {"account", "password"}:
                kind = ACCOUNT_FIELDS[name]
                assert normalise_live(kind, live[number][name]) != desired[number].fields[name]

    @SETTINGS
    @given(scenario())
    def test_every_put_account_has_account_and_another_field(
        self, case: tuple[dict[int, AccountSpec], Device, set[int]]
    ) -> None:
        """Each account object in the PUT holds `account` plus at least one other field."""
        desired, dev, due = case
        body = diff(desired, dev.get(), passwords_due=due).put_body()
        for entry in body:
            assert entry["account"] in (1, 2)
            assert len(entry) >= 2
        numbers = [e["account"] for e in body]
        assert numbers == sorted(set(numbers))

    @SETTINGS
    @given(scenario())
    def test_values_sent_in_device_typing(
        self, case: tuple[dict[int, AccountSpec], Device, set[int]]
    ) -> None:
        """String firmware gets ports/answerMode as strings ("" for 0); integer firmware ints."""
        desired, dev, due = case
        for entry in diff(desired, dev.get(), passwords_due=due).put_body():
            for name in set(entry) & set(PORTS + NUMBERS):
                sent = entry[name]
                want = desired[entry["account"]].fields[name]
                if dev.firmware == "string":
                    expected = "" if name in PORTS and want == 0 else str(want)
                else:
                    expected = want
                assert sent == expected and type(sent) is type(expected)

    @SETTINGS
    @given(scenario())
    def test_password_only_when_due(
        self, case: tuple[dict[int, AccountSpec], Device, set[int]]
    ) -> None:
        """A password is sent exactly for accounts with a desired password that are due."""
        desired, dev, due = case
        plan = diff(desired, dev.get(), passwords_due=due)
        sent = {e["account"]: e["password"] for e in plan.put_body() if "password" in e}
        expected = {
            n: s.password.get_secret_value()
            for n, s in desired.items()
            if s.password is not None and n in due
        }
        assert sent == expected
        shown = [c for c in plan.changes if c.field == "password"]
        assert shown == [
            Change(n, "password", None, PASSWORD_PLACEHOLDER) for n in sorted(expected)
        ]
        assert all(c.field != "password" for c in plan.readable_changes)

    @SETTINGS
    @given(scenario())
    def test_changes_mirror_updates(
        self, case: tuple[dict[int, AccountSpec], Device, set[int]]
    ) -> None:
        """readable_changes list exactly the updated fields, with the live value as reported."""
        desired, dev, due = case
        live = {a["account"]: a for a in dev.get()}
        plan = diff(desired, dev.get(), passwords_due=due)
        from_changes = {(c.account, c.field): (c.live, c.desired) for c in plan.readable_changes}
        from_updates = {
            (n, f): (live[n][f], v) for n, fields in plan.updates.items() for f, v in fields.items()
        }
        assert from_changes == from_updates
        assert plan.empty == (plan.put_body() == [])

    @SETTINGS
    @given(live_state(), st.sampled_from(FIRMWARES), st.sets(st.sampled_from([1, 2])))
    def test_device_reporting_desired_is_empty(
        self, values: dict[int, dict[str, Any]], firmware: str, due: set[int]
    ) -> None:
        """Desired equal to what the device reports (any typing) gives an empty plan."""
        dev = Device(firmware, values)
        desired = {n: AccountSpec(n, dict(values[n])) for n in (1, 2)}
        plan = diff(desired, dev.get(), passwords_due=due)
        assert plan.empty and plan.put_body() == [] and plan.changes == ()

    @SETTINGS
    @given(live_state(), st.sampled_from(FIRMWARES), st.sets(st.sampled_from([1, 2])))
    def test_account_with_nothing_managed_produces_nothing(
        self, values: dict[int, dict[str, Any]], firmware: str, due: set[int]
    ) -> None:
        """Accounts with no fields and no password give no change, whatever is due."""
        dev = Device(firmware, values)
        desired = {1: AccountSpec(1, {}), 2: AccountSpec(2, {})}
        assert diff(desired, dev.get(), passwords_due=due) == Plan()

    @SETTINGS
    @given(account_fields(min_size=1), st.sampled_from(FIRMWARES), st.booleans())
    def test_desired_account_missing_on_device(
        self, fields: dict[str, Any], firmware: str, with_password: bool
    ) -> None:
        """A desired account (with fields) the device lacks raises DiffError naming it."""
        dev = Device(firmware, {1: dict(CANONICAL)})
        password = SecretStr("pw") if with_password else None
        with pytest.raises(DiffError, match="2"):
            diff({2: AccountSpec(2, fields, password)}, dev.get(), passwords_due={2})


# -------------------------------------------------------------------- examples


def string_account(**overrides: Any) -> dict[str, Any]:
    """Account 1 as string-typed firmware reports it (the manual's example)."""
    account = {
        "account": 1,
        "enabled": True,
        "displayName": "Lobby",
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
    }
    account.update(overrides)
    return account


def integer_account(**overrides: Any) -> dict[str, Any]:
    """Account 1 as integer-typed firmware reports it, with an extra field."""
    account = string_account(domainPort=5060, proxyPort=0, registrarPort=5060, answerMode=1)
    account["accountType"] = "sip"
    account.update(overrides)
    return account


CANONICAL = {
    "enabled": True,
    "displayName": "Lobby",
    "sipNumber": "4001",
    "domain": "pbx.example.com",
    "domainPort": 5060,
    "authId": "",
    "proxyAddress": "",
    "proxyPort": 0,
    "registrationEnabled": True,
    "registrarAddress": "pbx.example.com",
    "registrarPort": 5060,
    "answerMode": 1,
}


class TestDiffExamples:
    @pytest.mark.parametrize("live", [string_account(), integer_account()])
    def test_no_perpetual_diff_between_typings(self, live: dict[str, Any]) -> None:
        """5060 vs "5060", 0 vs "", 1 vs "1": equal after normalising, whichever firmware."""
        assert diff({1: AccountSpec(1, CANONICAL)}, [live]).empty

    @pytest.mark.parametrize(("field", "value"), [("proxyPort", "0"), ("domainPort", " 5060 ")])
    def test_string_zero_and_padded_port_are_equal(self, field: str, value: str) -> None:
        """A live "0" equals the default port 0, and surrounding spaces are ignored."""
        want = {"proxyPort": 0, "domainPort": 5060}[field]
        assert diff({1: AccountSpec(1, {field: want})}, [string_account(**{field: value})]).empty

    def test_string_firmware_gets_strings(self) -> None:
        """Changing ports on string firmware sends "5061" and "" for the default."""
        desired = {1: AccountSpec(1, {"domainPort": 5061, "registrarPort": 0, "answerMode": 2})}
        plan = diff(desired, [string_account()])
        assert plan.put_body() == [
            {"account": 1, "domainPort": "5061", "registrarPort": "", "answerMode": "2"}
        ]

    def test_integer_firmware_gets_ints(self) -> None:
        """Changing ports on integer firmware sends 5061 and 0 for the default."""
        desired = {1: AccountSpec(1, {"domainPort": 5061, "registrarPort": 0, "answerMode": 2})}
        plan = diff(desired, [integer_account()])
        assert plan.put_body() == [
            {"account": 1, "domainPort": 5061, "registrarPort": 0, "answerMode": 2}
        ]

    def test_change_shows_live_and_rendered_desired(self) -> None:
        """A Change carries the live value as reported and the desired value as it will be sent."""
        plan = diff({1: AccountSpec(1, {"domainPort": 5061})}, [string_account()])
        assert plan.changes == (Change(1, "domainPort", "5060", "5061"),)
        assert plan.changes[0].as_dict() == {
            "account": 1,
            "field": "domainPort",
            "live": "5060",
            "desired": "5061",
        }

    def test_empty_string_clears_text(self) -> None:
        """An explicit "" in desired clears a live text field."""
        plan = diff({1: AccountSpec(1, {"authId": ""})}, [string_account(authId="x")])
        assert plan.put_body() == [{"account": 1, "authId": ""}]

    def test_unmanaged_live_fields_ignored(self) -> None:
        """Live fields the desired account leaves out never appear, however different."""
        live = string_account(displayName="Someone else", domain="evil.example", accountType="x")
        plan = diff({1: AccountSpec(1, {"sipNumber": "4002"})}, [live])
        assert plan.put_body() == [{"account": 1, "sipNumber": "4002"}]

    def test_fields_in_device_order(self) -> None:
        """Changed fields of one account are sent in the device's field order."""
        desired = {1: AccountSpec(1, {"answerMode": 0, "enabled": False, "domain": "x"})}
        (entry,) = diff(desired, [string_account()]).put_body()
        assert list(entry) == ["account", "enabled", "domain", "answerMode"]

    def test_only_changed_accounts_in_put(self) -> None:
        """Account 2 in sync is left out of a PUT that fixes account 1."""
        live = [string_account(), string_account(account=2, displayName="Gate")]
        desired = {
            1: AccountSpec(1, {"displayName": "Door"}),
            2: AccountSpec(2, {"displayName": "Gate"}),
        }
        assert diff(desired, live).put_body() == [{"account": 1, "displayName": "Door"}]

    def test_live_account_number_as_string(self) -> None:
        """A live answer giving the account number as "1" is matched to account 1."""
        assert diff({1: AccountSpec(1, CANONICAL)}, [string_account(account="1")]).empty

    def test_field_missing_from_live_is_a_change(self) -> None:
        """A managed field the device does not report shows as a change from None."""
        live = string_account()
        del live["registrarPort"]
        plan = diff({1: AccountSpec(1, {"registrarPort": 5060})}, [live])
        assert plan.changes == (Change(1, "registrarPort", None, "5060"),)

    @pytest.mark.parametrize(
        ("field", "live_value", "want"),
        [
            ("answerMode", True, 1),
            ("answerMode", False, 0),
            ("enabled", 1, True),
            ("enabled", 0, False),
            ("enabled", "true", True),
            ("domainPort", "²", 5060),
            ("domainPort", "9" * 5000, 5060),
            ("domainPort", None, 0),
            ("sipNumber", 4001, "4001"),
        ],
    )
    def test_odd_live_values_differ_never_crash(
        self, field: str, live_value: Any, want: Any
    ) -> None:
        """A live value in a shape syncd does not know compares unequal (a change), never raises."""
        plan = diff({1: AccountSpec(1, {field: want})}, [string_account(**{field: live_value})])
        assert [(c.field, c.live) for c in plan.changes] == [(field, live_value)]

    def test_password_due_shows_placeholder(self) -> None:
        """A due password is a change from None to "(will be set)" and is in the PUT."""
        plan = diff(
            {1: AccountSpec(1, {}, SecretStr("pw1"))}, [string_account()], passwords_due={1}
        )
        assert plan.changes == (Change(1, "password", None, "(will be set)"),)
        assert plan.readable_changes == ()
        assert plan.put_body() == [{"account": 1, "password": "pw1"}]
        assert not plan.empty

    def test_password_not_due_not_sent(self) -> None:
        """A password that is not due is neither sent nor listed, even with other changes."""
        spec = AccountSpec(1, {"displayName": "New"}, SecretStr("pw1"))
        plan = diff({1: spec}, [string_account()], passwords_due={2})
        assert plan.put_body() == [{"account": 1, "displayName": "New"}]
        assert [c.field for c in plan.changes] == ["displayName"]

    def test_due_without_desired_password_is_nothing(self) -> None:
        """passwords_due naming an account without a managed password changes nothing."""
        assert diff({1: AccountSpec(1, {})}, [string_account()], passwords_due={1}).empty

    def test_password_and_fields_in_one_account_object(self) -> None:
        """A due password rides in the same account object as that account's field changes."""
        spec = AccountSpec(1, {"enabled": False}, SecretStr("pw"))
        plan = diff({1: spec}, [integer_account()], passwords_due={1})
        assert plan.put_body() == [{"account": 1, "enabled": False, "password": "pw"}]

    def test_missing_account_error(self) -> None:
        """Desiring account 2 from a device reporting only account 1 raises DiffError."""
        with pytest.raises(DiffError, match="account 2"):
            diff({2: AccountSpec(2, {"enabled": True})}, [string_account()])

    def test_missing_account_managing_nothing_is_fine(self) -> None:
        """An `account: 2` entry with nothing managed does not need the device to have it."""
        assert diff({2: AccountSpec(2, {})}, [string_account()]).empty

    def test_empty_desired(self) -> None:
        """No desired accounts against any live answer is an empty plan."""
        assert diff({}, [string_account()]) == Plan()


class TestRendering:
    @pytest.mark.parametrize(
        ("kind", "value", "live", "sent"),
        [
            (FieldKind.PORT, 5060, "5060", "5060"),
            (FieldKind.PORT, 0, "5060", ""),
            (FieldKind.PORT, 5060, 1, 5060),
            (FieldKind.PORT, 0, 5060, 0),
            (FieldKind.PORT, 5060, None, "5060"),
            (FieldKind.PORT, 5060, True, "5060"),
            (FieldKind.NUMBER, 0, "1", "0"),
            (FieldKind.NUMBER, 2, 1, 2),
            (FieldKind.TEXT, "x", 5, "x"),
            (FieldKind.BOOL, False, "true", False),
        ],
    )
    def test_render_for_device(self, kind: FieldKind, value: Any, live: Any, sent: Any) -> None:
        """render_for_device copies the live typing for numbers; string typing when unknown."""
        out = render_for_device(kind, value, live)
        assert out == sent and type(out) is type(sent)

    @pytest.mark.parametrize(
        ("kind", "live", "canonical_value"),
        [
            (FieldKind.PORT, "", 0),
            (FieldKind.PORT, "0", 0),
            (FieldKind.PORT, "5060", 5060),
            (FieldKind.PORT, 5060, 5060),
            (FieldKind.NUMBER, "1", 1),
            (FieldKind.NUMBER, "", ""),
            (FieldKind.TEXT, "5060", "5060"),
            (FieldKind.PORT, "٥٠٦٠", "٥٠٦٠"),
        ],
    )
    def test_normalise_live(self, kind: FieldKind, live: Any, canonical_value: Any) -> None:
        """normalise_live maps the device's forms to canonical and leaves unknown shapes alone."""
        assert normalise_live(kind, live) == canonical_value


class TestUnreportedFieldTyping:
    def test_field_missing_from_live_takes_the_firmwares_number_typing(self) -> None:
        """A port the device does not report is sent as an int to integer firmware, a string otherwise."""
        from syncd.model import AccountSpec as Spec

        desired = {1: Spec(1, {"proxyPort": 5060})}
        integer = diff(desired, [{"account": 1, "domainPort": 0}]).put_body()
        string = diff(desired, [{"account": 1, "domainPort": ""}]).put_body()
        assert integer == [{"account": 1, "proxyPort": 5060}]
        assert string == [{"account": 1, "proxyPort": "5060"}]
