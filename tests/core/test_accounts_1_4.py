"""SIP accounts 1 to 4 in the desired state and the diff, as newer firmware has them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest
from core_helpers import device, only_error
from pydantic import SecretStr

from syncd.desired import DesiredState
from syncd.diff import DiffError, diff
from syncd.model import ACCOUNT_NUMBERS, AccountSpec

Load = Callable[[Mapping[str, str | bytes]], DesiredState]


def live(number: int, **fields: Any) -> dict[str, Any]:
    """A live account of integer firmware, with the read-only ``accountType``."""
    base = {
        "account": number,
        "accountType": "local" if number == 4 else "general",
        "enabled": False,
        "displayName": "",
        "domainPort": 0,
    }
    return base | fields


class TestDesiredState:
    def test_account_numbers_are_1_to_4(self) -> None:
        """The model knows four account numbers."""
        assert ACCOUNT_NUMBERS == (1, 2, 3, 4)

    def test_a_pasted_get_answer_with_account_type_loads_and_manages_no_account_type(
        self, load: Load
    ) -> None:
        """accountType, read-only on newer firmware, is accepted in a file and never managed;
        a warning at its line says so (it is not silently dropped)."""
        text = device(accounts="- account: 3\n  accountType: general\n  displayName: Gate\n")
        state = load({"a.yaml": text})
        assert state.errors == []
        (warning,) = [p for p in state.problems if p.warning]
        assert (warning.file, warning.path) == ("a.yaml", "accounts[0].accountType")
        assert "read-only on the device: syncd never sends it" in str(warning)
        (spec,) = state.devices.values()
        assert dict(spec.accounts[3].fields) == {"displayName": "Gate"}

    def test_accounts_3_and_4_load(self, load: Load) -> None:
        """A device file managing accounts 3 and 4 is valid."""
        text = device(accounts="- account: 3\n  displayName: Gate\n- account: 4\n  enabled: true\n")
        state = load({"a.yaml": text})
        assert state.errors == []
        (spec,) = state.devices.values()
        assert set(spec.accounts) == {3, 4}
        assert spec.accounts[3].fields == {"displayName": "Gate"}

    @pytest.mark.parametrize("number", ["5", "0", "40"])
    def test_account_5_is_an_error_at_its_line(self, load: Load, number: str) -> None:
        """An account number outside 1 to 4 is one error naming file, line and the range."""
        text = device(accounts=f"- account: 1\n  enabled: true\n- account: {number}\n")
        problem = only_error(load({"a.yaml": text}))
        assert (problem.file, problem.line, problem.path) == ("a.yaml", 6, "accounts[1].account")
        assert problem.message == "must be a number 1 to 4"


class TestDiff:
    def test_account_3_changes_only_its_managed_fields(self) -> None:
        """Account 3's change is sent alone, in integer typing, without accountType or unknown fields."""
        current = [live(n, newField={"x": 1}) for n in (1, 2, 3, 4)]
        plan = diff({3: AccountSpec(3, {"displayName": "Gate", "domainPort": 5060})}, current)
        assert plan.put_body() == [{"account": 3, "displayName": "Gate", "domainPort": 5060}]

    def test_unmanaged_live_fields_never_differ(self) -> None:
        """A device equal on every managed field is in sync whatever its other fields say."""
        current = [live(3, accountType="msteams", displayName="Gate", extra=[1, 2])]
        assert diff({3: AccountSpec(3, {"displayName": "Gate"})}, current).empty

    @pytest.mark.parametrize(
        ("reported", "message"),
        [
            ((1, 2), "the device has no SIP account 3 (it reports accounts 1, 2)"),
            ((1,), "the device has no SIP account 3 (it reports account 1)"),
            ((), "the device has no SIP accounts 1, 3 (it reports no accounts)"),
        ],
    )
    def test_missing_account_names_it_and_what_the_device_has(
        self, reported: tuple[int, ...], message: str
    ) -> None:
        """Desired accounts the device does not list are one DiffError naming them and what it has."""
        desired = {
            1: AccountSpec(1, {"displayName": "Door"}),
            2: AccountSpec(2, {}),
            3: AccountSpec(3, {"displayName": "Gate"}),
        }
        with pytest.raises(DiffError) as caught:
            diff(desired, [live(n) for n in reported])
        assert str(caught.value) == message

    def test_missing_account_with_only_a_password_due(self) -> None:
        """A password due for an account the device lacks is the same error, never a PUT."""
        desired = {3: AccountSpec(3, {}, SecretStr("pw"))}
        with pytest.raises(DiffError, match="no SIP account 3"):
            diff(desired, [live(1), live(2)], passwords_due={3})

    def test_missing_account_managing_nothing_is_fine(self) -> None:
        """`account: 3` alone manages nothing, so a 2-account device is fine with it."""
        assert diff({3: AccountSpec(3, {})}, [live(1), live(2)]).empty
