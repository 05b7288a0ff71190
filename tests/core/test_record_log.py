"""Device records as lines: folding, rewriting, and what damage costs (pure)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from syncd.state.record_log import Damage, compacted, fold, record_line, rewrite_due

names = st.text(min_size=1, max_size=12)
texts = st.text(max_size=8)
records = st.builds(
    lambda device, fingerprint, passwords: {
        "device": device,
        "fingerprint": fingerprint,
        "passwords": passwords,
        "targets": dict.fromkeys(passwords, "https://192.0.2.1"),
    },
    names,
    st.none() | texts,
    st.dictionaries(st.sampled_from(["1", "2", "3"]), texts, max_size=3),
)


def latest(changes: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    state: dict[str, dict[str, Any]] = {}
    for record in changes:
        state[record["device"]] = record
    return state


@given(st.lists(records, max_size=30))
def test_each_device_is_its_last_line(changes: list[dict[str, Any]]) -> None:
    """Appending every change and folding the lines gives each device's latest record."""
    data = b"".join(map(record_line, changes))
    folded = fold(data)
    assert folded.records == latest(changes)
    assert folded.lines == len(changes) and not folded.damage and not folded.torn


@given(st.lists(records, max_size=30))
def test_a_rewrite_keeps_every_record(changes: list[dict[str, Any]]) -> None:
    """The rewritten file folds to the same records, one line each."""
    state = latest(changes)
    folded = fold(compacted(state))
    assert folded.records == state and folded.lines == len(state)


@given(st.lists(records, min_size=1, max_size=20), st.data())
def test_a_write_cut_short_is_as_if_it_had_not_happened(
    changes: list[dict[str, Any]], data: st.DataObject
) -> None:
    """Cutting the file anywhere inside its last line leaves the records of the lines before."""
    lines = list(map(record_line, changes))
    whole = b"".join(lines[:-1])
    cut = data.draw(st.integers(min_value=1, max_value=len(lines[-1]) - 1))
    folded = fold(whole + lines[-1][:cut])
    assert folded.records == latest(changes[:-1])
    assert folded.torn and not folded.damage


def test_a_damaged_record_leaves_its_device_without_one() -> None:
    """A line naming its device but unsound: that device has no record from there on."""
    data = (
        record_line({"device": "lobby", "passwords": {"1": "aa"}})
        + record_line({"device": "gate", "passwords": {"1": "bb"}})
        + b'{"device": "lobby", "passwords": [1]}\n'
    )
    folded = fold(data)
    assert set(folded.records) == {"gate"}
    assert folded.damage == [Damage(3, "lobby", "'passwords' not an object of text values")]


def test_a_line_naming_no_device_costs_the_passwords_recorded_before_it() -> None:
    """Records before an unreadable line lose their passwords (fingerprints stay); records
    after it are whole."""
    data = (
        record_line({"device": "lobby", "fingerprint": "f1", "passwords": {"1": "aa"}})
        + b"\x00garbage\n"
        + record_line({"device": "gate", "passwords": {"1": "bb"}, "targets": {"1": "t"}})
    )
    folded = fold(data)
    assert folded.records["lobby"]["passwords"] == {}
    assert folded.records["lobby"]["fingerprint"] == "f1"
    assert folded.records["gate"]["passwords"] == {"1": "bb"}
    assert folded.damage == [Damage(2, None, "not JSON")]
    again = fold(data + record_line({"device": "lobby", "passwords": {"1": "cc"}}))
    assert again.records["lobby"]["passwords"] == {"1": "cc"}  # written again after it
    older = fold(data, {"hall": {"device": "hall", "passwords": {"1": "dd"}}})
    assert older.records["hall"]["passwords"] == {}  # syncd 0.1's records come before it


def test_older_records_are_folded_under_the_lines() -> None:
    """syncd 0.1's records are the base: a line overrides its device, others stay."""
    base = {"lobby": {"device": "lobby", "fingerprint": "old"}, "gate": {"device": "gate"}}
    folded = fold(record_line({"device": "lobby", "fingerprint": "new"}), base)
    assert folded.records["lobby"]["fingerprint"] == "new"
    assert folded.records["gate"] == {"device": "gate"}


def test_lines_are_compact_and_sorted() -> None:
    """A line is one compact JSON object, keys sorted: the same record, the same bytes."""
    line = record_line({"passwords": {}, "device": "d"})
    assert line == b'{"device":"d","passwords":{}}\n'
    assert json.loads(line) == {"device": "d", "passwords": {}}


@given(st.integers(min_value=0, max_value=100_000), st.integers(min_value=0, max_value=20_000))
def test_a_rewrite_comes_at_most_once_per_records_plus_a_thousand_appends(
    lines: int, count: int
) -> None:
    """Just after a rewrite (one line per record) none is due, nor for the next
    ``records + 1000`` appends; any file of more than twice as many lines is due."""
    assert not rewrite_due(count, count)
    assert not rewrite_due(2 * count + 1000, count)
    assert rewrite_due(lines, count) == (lines > 2 * count + 1000)
