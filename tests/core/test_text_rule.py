"""The text rule: what validate accepts in a text field is exactly what a device accepts."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pytest
from core_helpers import device, only_error

from syncd.desired import DesiredState
from syncd.desired.schema import text_problem
from syncd.simulator.fields import InvalidValue, coerce

Load = Callable[[Mapping[str, str | bytes]], DesiredState]

#: C0 controls, DEL and the C1 controls: a device refuses each with code 12.
REFUSED = ["\x00", "\x07", "\x1f", "\x7f", "\x80", "\x85", "\x9b", "\x9f"]
#: Just outside the refused ranges: printable, and accepted by both.
ACCEPTED = [" ", "~", "\xa0", "é", "\u2028", "\U0001f514"]


def emulator_accepts(value: str) -> bool:
    try:
        coerce("displayName", value)
    except InvalidValue:
        return False
    return True


class TestTextRule:
    @pytest.mark.parametrize("char", REFUSED, ids=[f"U+{ord(c):04X}" for c in REFUSED])
    def test_control_characters_refused_by_both(self, char: str) -> None:
        """A C0 control, DEL or C1 control (U+0080-U+009F) fails the text rule and the device."""
        value = f"a{char}b"
        assert text_problem(value) == "contains a control character"
        assert not emulator_accepts(value)

    @pytest.mark.parametrize("char", ACCEPTED, ids=[f"U+{ord(c):04X}" for c in ACCEPTED])
    def test_printable_characters_accepted_by_both(self, char: str) -> None:
        """Characters next to the refused ranges pass the text rule and the device alike."""
        value = f"a{char}b"
        assert text_problem(value) is None
        assert emulator_accepts(value)

    def test_length_limit_agrees(self) -> None:
        """255 characters pass both; 256 fail both."""
        assert text_problem("x" * 255) is None and emulator_accepts("x" * 255)
        assert text_problem("x" * 256) is not None and not emulator_accepts("x" * 256)

    def test_validate_refuses_an_escaped_c1_character(self, load: Load) -> None:
        """displayName: "a\\x85b" (a C1 control written as a YAML escape) is an error at its line."""
        state = load({"a.yaml": device(accounts='- account: 1\n  displayName: "a\\x85b"\n')})
        problem = only_error(state)
        assert (problem.file, problem.line, problem.path) == (
            "a.yaml",
            5,
            "accounts[0].displayName",
        )
        assert "control character" in problem.message
