"""The field value rules and their rendering per firmware, as pure functions."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncd.simulator.blob import parse_updates
from syncd.simulator.errors import ApiError
from syncd.simulator.fields import InvalidValue, coerce, factory_account, render


class TestValueRules:
    @given(st.integers(min_value=0, max_value=65535))
    def test_port_typings_agree(self, port: int) -> None:
        """A port as int or decimal string stores the same; each firmware renders its typing."""
        assert coerce("domainPort", port) == coerce("domainPort", str(port)) == port
        account = {**factory_account(), "domainPort": port}
        assert render(1, account, firmware="integer")["domainPort"] == port
        assert render(1, account, firmware="string")["domainPort"] == (str(port) if port else "")

    @given(st.integers().filter(lambda n: not 0 <= n <= 65535))
    def test_ports_out_of_range(self, port: int) -> None:
        """Integers outside 0..65535 are refused in both typings."""
        for value in (port, str(port)):
            with pytest.raises(InvalidValue):
                coerce("proxyPort", value)

    @given(st.text(st.characters(exclude_categories=["Cc", "Cs"]), max_size=255))
    def test_text_is_kept_verbatim(self, text: str) -> None:
        """Text without control characters, up to 255 characters, is stored unchanged."""
        assert coerce("displayName", text) == text

    @given(st.characters(codec="utf-8", categories=["Cc"]))
    def test_control_characters_are_refused(self, char: str) -> None:
        """Any control character makes a text value invalid."""
        with pytest.raises(InvalidValue):
            coerce("sipNumber", f"40{char}01")

    def test_rejection_names_first_bad_field(self) -> None:
        """Validation stops at the first bad field and names it in the error."""
        document = {"accounts": [{"account": 1, "enabled": True, "answerMode": "x", "bad": 1}]}
        with pytest.raises(ApiError) as raised:
            parse_updates(document, firmware="string")
        assert (raised.value.code, raised.value.param) == (12, "answerMode")

    def test_password_is_separated_from_fields(self) -> None:
        """A blob's password travels apart from the reportable fields."""
        (update,) = parse_updates(
            {"accounts": [{"account": 2, "password": "pw", "sipNumber": "1"}]}, firmware="integer"
        )
        assert (update.account, update.fields, update.password) == (2, {"sipNumber": "1"}, "pw")
