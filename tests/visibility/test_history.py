"""The change history: one JSON line per PUT, rotated, readable while written, never a password."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

from syncd.diff import Change
from syncd.history import (
    HistoryChange,
    HistoryEntry,
    HistoryLog,
    format_history_table,
    history_changes,
    parse_duration,
    since_start,
)
from tests.e2e.conftest import syncd

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
SECRET = "hunter2-very-secret"


def entry(n: int, device: str = "site-a/lobby", **kw: object) -> HistoryEntry:
    """An entry ``n`` minutes after T0."""
    fields: dict[str, object] = {
        "time": T0 + timedelta(minutes=n),
        "device": device,
        "revision": "0123456789abcdef0123456789abcdef01234567",
        "trigger": "change",
        "result": "succeeded",
        "changes": (HistoryChange(1, "domain", "old.example", f"new{n}.example"),),
    }
    fields.update(kw)
    return HistoryEntry(**fields)  # type: ignore[arg-type]


class TestEntry:
    def test_line_has_exactly_the_spec_fields(self, tmp_path: Path) -> None:
        """A stored line holds time (UTC, Z), device, revision, trigger, wave, result, changes, error."""
        log = HistoryLog(tmp_path / "history.jsonl")
        log.append(entry(0, wave="canary", error=None))
        stored = json.loads((tmp_path / "history.jsonl").read_text())
        assert stored == {
            "time": "2024-05-01T12:00:00.000Z",
            "device": "site-a/lobby",
            "revision": "0123456789abcdef0123456789abcdef01234567",
            "trigger": "change",
            "wave": "canary",
            "result": "succeeded",
            "changes": [
                {"account": 1, "field": "domain", "from": "old.example", "to": "new0.example"}
            ],
            "error": None,
        }

    def test_password_value_cannot_be_stored(self, tmp_path: Path) -> None:
        """A password change is stored as from null to (set), whatever value it was given."""
        log = HistoryLog(tmp_path / "history.jsonl")
        changes = (
            HistoryChange(1, "password", "old-" + SECRET, SECRET),
            HistoryChange(2, "password", None, SecretStr(SECRET)),
        )
        log.append(entry(0, changes=changes))
        text = (tmp_path / "history.jsonl").read_text()
        assert SECRET not in text
        stored = json.loads(text)["changes"]
        assert stored == [
            {"account": 1, "field": "password", "from": None, "to": "(set)"},
            {"account": 2, "field": "password", "from": None, "to": "(set)"},
        ]

    def test_from_plan_changes(self) -> None:
        """Plan changes map live -> from and desired -> to, the password placeholder to (set)."""
        plan = [Change(1, "domain", "a", "b"), Change(1, "password", None, "(will be set)")]
        got = [c.as_dict() for c in history_changes(plan)]
        assert got == [
            {"account": 1, "field": "domain", "from": "a", "to": "b"},
            {"account": 1, "field": "password", "from": None, "to": "(set)"},
        ]

    def test_revert_swaps_and_drops_passwords(self) -> None:
        """A revert records desired -> live and no password (it is not sent back)."""
        plan = [Change(1, "domain", "a", "b"), Change(1, "password", None, SECRET)]
        got = [c.as_dict() for c in history_changes(plan, reverse=True)]
        assert got == [{"account": 1, "field": "domain", "from": "b", "to": "a"}]

    def test_repr_holds_no_password(self) -> None:
        """Even the repr of a password change holds no value."""
        assert SECRET not in repr(HistoryChange(1, "password", SECRET, SECRET))

    @pytest.mark.parametrize(
        "bad", [{"trigger": "manual"}, {"result": "ok"}, {"time": datetime(2024, 1, 1)}]
    )
    def test_bad_values_refused(self, bad: dict[str, object]) -> None:
        """A trigger or result outside the SPEC's, or a naive time, is refused."""
        with pytest.raises(ValueError):
            entry(0, **bad)


class TestReadWrite:
    def test_round_trip_oldest_first(self, tmp_path: Path) -> None:
        """Entries read back equal those written, oldest first."""
        log = HistoryLog(tmp_path / "history.jsonl")
        written = [
            entry(n, wave="rest" if n % 2 else None, error="x" if n == 2 else None)
            for n in range(4)
        ]
        for e in written:
            log.append(e)
        got = log.read()
        assert got.entries == written
        assert got.warnings == []

    def test_read_by_time_not_by_order_written(self, tmp_path: Path) -> None:
        """An entry written late (its health check took a while) still reads in its PUT's
        place, in the file and across a rotation, and `syncd history` prints it there."""
        path = tmp_path / "history.jsonl"
        line_size = len(json.dumps(entry(0).as_dict(), ensure_ascii=False)) + 1
        log = HistoryLog(path, rotate_bytes=3 * line_size)
        for n in (1, 3, 0, 4, 2):  # 0 written after 3, into .1 ; 2 after 4, into the new file
            log.append(entry(n, device=f"d{n}"))
        assert [e.time.minute for e in log.read().entries] == [0, 1, 2, 3, 4]
        done = syncd("history", "--state-dir", str(tmp_path), "--json")
        assert done.returncode == 0, done.stderr
        assert [e["device"] for e in json.loads(done.stdout)] == ["d0", "d1", "d2", "d3", "d4"]

    def test_missing_file_is_empty(self, tmp_path: Path) -> None:
        """No history yet reads as no entries and no warning."""
        assert HistoryLog(tmp_path / "history.jsonl").read() == ([], [])

    def test_device_and_since_filters(self, tmp_path: Path) -> None:
        """--device keeps that device's entries; --since keeps entries at or after the time."""
        log = HistoryLog(tmp_path / "history.jsonl")
        for n in range(6):
            log.append(entry(n, device="a" if n % 2 else "b"))
        assert [e.time.minute for e in log.read(device="a").entries] == [1, 3, 5]
        assert [e.time.minute for e in log.read(since=T0 + timedelta(minutes=3)).entries] == [
            3,
            4,
            5,
        ]
        both = log.read(device="b", since=T0 + timedelta(minutes=1)).entries
        assert [e.time.minute for e in both] == [2, 4]

    def test_torn_last_line_skipped_with_warning(self, tmp_path: Path) -> None:
        """A half-written last line is skipped with a warning naming file:line; the rest is read."""
        path = tmp_path / "history.jsonl"
        log = HistoryLog(path)
        log.append(entry(0))
        log.append(entry(1))
        whole = path.read_bytes()
        path.write_bytes(whole[: len(whole) - 40])
        got = log.read()
        assert [e.time.minute for e in got.entries] == [0]
        assert got.warnings == [f"{path}:2: skipped a line that is not a whole entry"]
        # `syncd history` says so on stderr as one JSON event when stderr is not a terminal.
        done = syncd("history", "--state-dir", str(tmp_path))
        assert done.returncode == 0, done.stderr
        (warned,) = map(json.loads, done.stderr.splitlines())
        assert warned["event"] == "history.skipped" and warned["level"] == "warning"
        assert warned["error"] == got.warnings[0]

    def test_append_after_torn_line_starts_a_new_line(self, tmp_path: Path) -> None:
        """The next append after a torn line is on its own line and reads back."""
        path = tmp_path / "history.jsonl"
        log = HistoryLog(path)
        log.append(entry(0))
        path.write_bytes(path.read_bytes() + b'{"time": "2024-05-01T12:0')
        log.append(entry(5))
        got = log.read()
        assert [e.time.minute for e in got.entries] == [0, 5]
        assert len(got.warnings) == 1

    def test_rotation_keeps_three_old_files(self, tmp_path: Path) -> None:
        """Past the size limit the file rotates to .1, .2, .3; older ones are dropped; reads span them."""
        path = tmp_path / "history.jsonl"
        line_size = len(json.dumps(entry(0).as_dict(), ensure_ascii=False)) + 1
        log = HistoryLog(path, rotate_bytes=2 * line_size)
        for n in range(10):
            log.append(entry(n))
        names = sorted(p.name for p in tmp_path.iterdir())
        assert names == ["history.jsonl", "history.jsonl.1", "history.jsonl.2", "history.jsonl.3"]
        assert all(p.stat().st_size <= 2 * line_size for p in tmp_path.iterdir())
        minutes = [e.time.minute for e in log.read().entries]
        assert minutes == [2, 3, 4, 5, 6, 7, 8, 9]

    def test_default_rotation_is_ten_mib(self, tmp_path: Path) -> None:
        """The default limit is 10 MiB with 3 old files."""
        log = HistoryLog.in_state_dir(tmp_path)
        assert log.path == tmp_path / "history.jsonl"
        assert (log.rotate_bytes, log.keep) == (10 * 1024 * 1024, 3)


class TestDuration:
    @pytest.mark.parametrize(
        ("text", "seconds"),
        [
            ("90", 90),
            ("90s", 90),
            ("5m", 300),
            ("2h", 7200),
            ("1d", 86400),
            ("1.5h", 5400),
            ("0", 0),
        ],
    )
    def test_durations(self, text: str, seconds: float) -> None:
        """Seconds or a number with s, m, h or d."""
        assert parse_duration(text) == seconds

    def test_since_reaching_before_any_date_is_everything(self) -> None:
        """--since 99999999999d asks for all of it, not for an overflow."""
        now = datetime(2026, 12, 1, tzinfo=UTC)
        assert since_start("99999999999d", now) is None
        assert since_start("999999d", now) is None
        assert since_start("2h", now) == now - timedelta(hours=2)

    @pytest.mark.parametrize("text", ["", "5x", "-5m", "m", "1h30m", "inf", "nan"])
    def test_bad_duration_one_sentence(self, text: str) -> None:
        """Anything else is a ValueError of one sentence quoting the input."""
        with pytest.raises(ValueError) as caught:
            parse_duration(text)
        message = str(caught.value)
        assert repr(text) in message and "\n" not in message
        assert message.count(". ") == 0


class TestTable:
    def test_table_fits_100_columns_and_shows_the_change(self) -> None:
        """Every line fits 100 columns; a change shows as account.field: from -> to; revision 12 chars."""
        long_changes = tuple(
            HistoryChange(n, "displayName", "x" * 30, "y" * 30) for n in range(1, 5)
        )
        entries = [
            entry(0),
            entry(
                1, device="a-very-long-site-name/building-7/entrance-north", changes=long_changes
            ),
            entry(
                2, result="failed", error="device rejected the value: code 12, param domain " * 3
            ),
            entry(3, trigger="drift", changes=(HistoryChange(1, "password", 1, 2),)),
        ]
        text = format_history_table(entries)
        lines = text.splitlines()
        assert all(len(line) <= 100 for line in lines), max(lines, key=len)
        assert lines[0].split() == [
            "TIME", "DEVICE", "REVISION", "WAVE", "TRIGGER", "RESULT", "CHANGES"
        ]  # fmt: skip
        # The rollout's wave where it has one (a drift correction has none).
        table = format_history_table([entry(0, wave="canary"), entry(1)])
        rows = [line.split() for line in table.splitlines() if line.startswith("2024-")]
        assert [r[3:5] for r in rows] == [["canary", "change"], ["-", "change"]]
        assert "1.domain: old.example -> new0.example" in text
        assert "0123456789ab " in lines[1] and "0123456789abc" not in text
        assert "1.password: - -> (set)" in text
        assert "error: device rejected" in text
        assert "2024-05-01T12:00:00Z" in lines[1]

    def test_short_changes_stay_on_the_row(self) -> None:
        """Changes that fit stay on the entry's own line."""
        text = format_history_table(
            [entry(0, device="lobby", changes=(HistoryChange(1, "domain", "a", "b"),))]
        )
        assert text.splitlines()[1].endswith("succeeded  1.domain: a -> b")
        flags = (HistoryChange(1, "enabled", False, True), HistoryChange(1, "sipNumber", "", "4"))
        text = format_history_table([entry(0, device="lobby", changes=flags)])
        assert "1.enabled: false -> true" in text and '1.sipNumber: "" -> 4' in text

    def test_control_characters_neutralised(self) -> None:
        """A device name with a terminal escape prints without the escape."""
        text = format_history_table([entry(0, device="evil\x1b[2Jname")])
        assert "\x1b" not in text

    def test_empty(self) -> None:
        """No entries says so."""
        assert format_history_table([]) == "no changes recorded\n"
