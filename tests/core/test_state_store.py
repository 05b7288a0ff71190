"""The state directory: password HMACs and applied fingerprints, safe on disk."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import pytest
from pydantic import SecretStr

from syncd.state import FileStateStore, StateError

URL = "https://192.0.2.10"
PASSWORD = "Pa55-unique-9c1d"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def all_state_bytes(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file())


def records_on_disk(state_dir: Path) -> dict[str, dict[str, object]]:
    """The device records in ``devices.jsonl``: each device's last line."""
    lines = (state_dir / "devices.jsonl").read_text().splitlines()
    return {record["device"]: record for record in map(json.loads, lines)}


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state" / "syncd"


class TestOpen:
    def test_creates_private_directory(self, state_dir: Path) -> None:
        """open() creates the directory (and parents) with mode 0700."""
        FileStateStore.open(state_dir)
        assert state_dir.is_dir()
        assert mode(state_dir) == 0o700

    def test_tightens_existing_directory(self, state_dir: Path) -> None:
        """An existing, world-readable state dir is tightened to 0700."""
        state_dir.mkdir(parents=True)
        state_dir.chmod(0o755)
        FileStateStore.open(state_dir)
        assert mode(state_dir) == 0o700

    def test_files_are_private(self, state_dir: Path) -> None:
        """The key and every device file are mode 0600."""
        store = FileStateStore.open(state_dir)
        store.record_passwords("lobby", URL, {1: SecretStr(PASSWORD)})
        store.record_fingerprint("gate", "f" * 32)
        files = [p for p in state_dir.rglob("*") if p.is_file()]
        assert sorted(p.name for p in files) == ["devices.jsonl", "key"]
        assert all(mode(p) == 0o600 for p in files), {str(p): oct(mode(p)) for p in files}

    def test_path_under_a_regular_file(self, tmp_path: Path) -> None:
        """A state dir below a regular file raises StateError naming the dir."""
        blocker = tmp_path / "plain-file"
        blocker.write_text("x")
        target = blocker / "state"
        with pytest.raises(StateError) as caught:
            FileStateStore.open(target)
        assert str(target) in str(caught.value)

    def test_state_dir_is_a_file(self, tmp_path: Path) -> None:
        """A state dir path that is itself a regular file raises StateError naming it."""
        target = tmp_path / "file"
        target.write_text("x")
        with pytest.raises(StateError, match=str(target)):
            FileStateStore.open(target)

    def test_key_persists_across_reopen(self, state_dir: Path) -> None:
        """Reopening keeps the same key, so recorded passwords stay not due."""
        FileStateStore.open(state_dir).record_passwords("lobby", URL, {1: SecretStr(PASSWORD)})
        key = (state_dir / "key").read_bytes()
        again = FileStateStore.open(state_dir)
        assert (state_dir / "key").read_bytes() == key
        assert not again.password_due("lobby", URL, 1, SecretStr(PASSWORD))

    def test_key_is_random_per_installation(self, tmp_path: Path) -> None:
        """Two state dirs get different keys, so their HMACs of one password differ."""
        one = FileStateStore.open(tmp_path / "one")
        two = FileStateStore.open(tmp_path / "two")
        for store in (one, two):
            store.record_passwords("d", URL, {1: SecretStr(PASSWORD)})
        assert (tmp_path / "one" / "key").read_bytes() != (tmp_path / "two" / "key").read_bytes()
        assert records_on_disk(tmp_path / "one") != records_on_disk(tmp_path / "two")

    def test_damaged_key_replaced(self, state_dir: Path) -> None:
        """A damaged key file is replaced; stored passwords then count as due (sent once more)."""
        FileStateStore.open(state_dir).record_passwords("lobby", URL, {1: SecretStr(PASSWORD)})
        (state_dir / "key").write_text("not hex")
        store = FileStateStore.open(state_dir)
        assert store.password_due("lobby", URL, 1, SecretStr(PASSWORD))


class TestPasswords:
    def test_new_password_is_due(self, state_dir: Path) -> None:
        """A password never applied is due."""
        store = FileStateStore.open(state_dir)
        assert store.password_due("lobby", URL, 1, SecretStr(PASSWORD))

    def test_recorded_password_not_due(self, state_dir: Path) -> None:
        """After record_passwords, the same password for the same device/URL/account is not due."""
        store = FileStateStore.open(state_dir)
        store.record_passwords("lobby", URL, {1: SecretStr(PASSWORD)})
        assert not store.password_due("lobby", URL, 1, SecretStr(PASSWORD))

    def test_changed_password_due(self, state_dir: Path) -> None:
        """A different password for a recorded account is due again."""
        store = FileStateStore.open(state_dir)
        store.record_passwords("lobby", URL, {1: SecretStr(PASSWORD)})
        assert store.password_due("lobby", URL, 1, SecretStr(PASSWORD + "x"))

    def test_other_url_due(self, state_dir: Path) -> None:
        """The same password is due when the device's URL changed (another box)."""
        store = FileStateStore.open(state_dir)
        store.record_passwords("lobby", URL, {1: SecretStr(PASSWORD)})
        assert store.password_due("lobby", "https://192.0.2.99", 1, SecretStr(PASSWORD))

    def test_other_account_and_device_due(self, state_dir: Path) -> None:
        """Recording account 1 of one device leaves account 2, and other devices, due."""
        store = FileStateStore.open(state_dir)
        store.record_passwords("lobby", URL, {1: SecretStr(PASSWORD)})
        assert store.password_due("lobby", URL, 2, SecretStr(PASSWORD))
        assert store.password_due("gate", "https://192.0.2.11", 1, SecretStr(PASSWORD))

    def test_rerecord_after_change(self, state_dir: Path) -> None:
        """Recording a new password makes it current and the old one due."""
        store = FileStateStore.open(state_dir)
        store.record_passwords("lobby", URL, {1: SecretStr("old")})
        store.record_passwords("lobby", URL, {1: SecretStr("new")})
        assert not store.password_due("lobby", URL, 1, SecretStr("new"))
        assert store.password_due("lobby", URL, 1, SecretStr("old"))

    def test_survives_reopen(self, state_dir: Path) -> None:
        """Records are on disk: a fresh store sees them."""
        FileStateStore.open(state_dir).record_passwords(
            "lobby", URL, {1: SecretStr("a"), 2: SecretStr("b")}
        )
        store = FileStateStore.open(state_dir)
        assert not store.password_due("lobby", URL, 1, SecretStr("a"))
        assert not store.password_due("lobby", URL, 2, SecretStr("b"))

    def test_files_never_hold_the_password(self, state_dir: Path) -> None:
        """No state file holds the password, in any common encoding."""
        store = FileStateStore.open(state_dir)
        store.record_passwords("lobby", URL, {1: SecretStr(PASSWORD), 2: SecretStr(PASSWORD)})
        store.record_fingerprint("lobby", "0" * 32)
        data = all_state_bytes(state_dir)
        assert PASSWORD.encode() not in data
        assert PASSWORD.encode("utf-16-le") not in data
        assert PASSWORD.encode().hex().encode() not in data
        assert json.dumps(PASSWORD).encode() not in data

    def test_repr_holds_no_key(self, state_dir: Path) -> None:
        """The store's repr names the directory only, not the key."""
        store = FileStateStore.open(state_dir)
        key = (state_dir / "key").read_text().strip()
        assert key not in repr(store)

    def test_device_names_with_slashes_and_spaces(self, state_dir: Path) -> None:
        """Device names like 'site-a/lobby door' are stored as records of their own, kept apart."""
        store = FileStateStore.open(state_dir)
        store.record_passwords("site-a/lobby door", URL, {1: SecretStr("a")})
        store.record_passwords("site-a", "https://192.0.2.11", {1: SecretStr("b")})
        assert not store.password_due("site-a/lobby door", URL, 1, SecretStr("a"))
        assert not store.password_due("site-a", "https://192.0.2.11", 1, SecretStr("b"))
        assert sorted(records_on_disk(state_dir)) == ["site-a", "site-a/lobby door"]
        again = FileStateStore.open(state_dir)
        assert not again.password_due("site-a/lobby door", URL, 1, SecretStr("a"))
        assert again.password_due("site-a/lobby door", URL, 1, SecretStr("b"))

    def test_nothing_to_record_writes_nothing(self, state_dir: Path) -> None:
        """record_passwords with no passwords writes no record."""
        store = FileStateStore.open(state_dir)
        store.record_passwords("lobby", URL, {})
        assert not (state_dir / "devices.jsonl").exists()


def append_line(state_dir: Path, line: str) -> None:
    with (state_dir / "devices.jsonl").open("a") as records:
        records.write(line)


class TestDamage:
    @pytest.mark.parametrize(
        "line",
        [
            '{"device": "lobby", "passwords": [1, 2]}',
            '{"device": "lobby", "passwords": "abc", "fingerprint": 5}',
            '{"device": "lobby", "passwords": {"1": 7}}',
            '{"device": "lobby", "forgotten": "yes"}',
        ],
    )
    def test_a_damaged_record_is_taken_as_empty(self, state_dir: Path, line: str) -> None:
        """A device's damaged last record means 'never applied': due, no fingerprint, and
        sound again once written anew; other devices keep theirs."""
        first = FileStateStore.open(state_dir)
        first.record_passwords("lobby", URL, {1: SecretStr(PASSWORD)})
        first.record_in_force("lobby", "f" * 32, "r1")
        first.record_passwords("gate", URL + "1", {1: SecretStr(PASSWORD)})
        append_line(state_dir, line + "\n")
        store = FileStateStore.open(state_dir)
        assert store.password_due("lobby", URL, 1, SecretStr(PASSWORD))
        assert store.applied_fingerprint("lobby") is None
        assert not store.password_due("gate", URL + "1", 1, SecretStr(PASSWORD))
        store.record_passwords("lobby", URL, {1: SecretStr(PASSWORD)})
        store.record_fingerprint("lobby", "abc")
        again = FileStateStore.open(state_dir)
        assert not again.password_due("lobby", URL, 1, SecretStr(PASSWORD))
        assert again.applied_fingerprint("lobby") == "abc"

    @pytest.mark.parametrize("line", ["garbage", "[1, 2]", '{"device": 5}', '"text"', "{not"])
    def test_a_line_naming_no_device_makes_every_password_before_it_due(
        self, state_dir: Path, line: str
    ) -> None:
        """A damaged line that names no device may have been any device's latest record:
        every password recorded before it is due; records after it, and fingerprints, stand."""
        store = FileStateStore.open(state_dir)
        store.record_passwords("lobby", URL, {1: SecretStr(PASSWORD)})
        store.record_fingerprint("lobby", "f" * 32)
        append_line(state_dir, line + "\n")
        later = FileStateStore.open_readonly(state_dir)
        later.record_passwords("gate", URL + "1", {1: SecretStr(PASSWORD)})
        append_line(state_dir, json.dumps(later._record("gate")) + "\n")
        told: list[tuple[str | None, str]] = []
        again = FileStateStore.open(state_dir)
        again.on_damaged = lambda device, file, error: told.append((device, error))
        assert again.password_due("lobby", URL, 1, SecretStr(PASSWORD))
        assert again.applied_fingerprint("lobby") == "f" * 32
        assert not again.password_due("gate", URL + "1", 1, SecretStr(PASSWORD))
        ((device, error),) = told
        assert device is None and error.startswith("line 3: "), told

    @pytest.mark.parametrize(
        ("line", "why"),
        [
            ('{"device": "lobby", "passwords": "abc"}', "'passwords' not an object"),
            ('{"device": "lobby", "passwords": {"1": 7}}', "'passwords' not an object"),
            ('{"device": "lobby", "targets": []}', "'targets' not an object"),
            ('{"device": "lobby", "fingerprint": 5}', "'fingerprint' not text"),
            ('{"device": "lobby", "forgotten": "yes"}', "'forgotten' not true or false"),
            ('{"device": "lobby", "put": 1}', "'put' not an object"),
        ],
    )
    def test_a_damaged_record_is_told_once_and_rewritten(
        self, state_dir: Path, line: str, why: str
    ) -> None:
        """on_damaged hears the device, file and why once per store that reads it; plan's
        (read-only) store leaves the file as it is, a writing store rewrites it without it."""
        FileStateStore.open(state_dir).record_passwords("lobby", URL, {1: SecretStr(PASSWORD)})
        append_line(state_dir, line + "\n")
        path = state_dir / "devices.jsonl"
        damaged = path.read_bytes()
        told: list[tuple[str | None, Path, str]] = []
        readonly = FileStateStore.open_readonly(state_dir)
        readonly.on_damaged = lambda device, file, error: told.append((device, file, error))
        assert readonly.password_due("lobby", URL, 1, SecretStr(PASSWORD))
        assert readonly.password_due("lobby", URL, 1, SecretStr(PASSWORD))
        assert path.read_bytes() == damaged
        store = FileStateStore.open(state_dir)
        store.on_damaged = lambda device, file, error: told.append((device, file, error))
        assert not store.has_password_records()
        assert store.applied_fingerprint("lobby") is None
        assert [(d, f) for d, f, _ in told] == [("lobby", path)] * 2
        assert all(f"line 2: {why}" in error for _, _, error in told), told
        assert path.read_bytes() == b"", "the damaged line was not left behind"
        again = FileStateStore.open_readonly(state_dir)
        again.on_damaged = lambda device, file, error: told.append((device, file, error))
        assert again.password_due("lobby", URL, 1, SecretStr(PASSWORD))
        assert len(told) == 2

    def test_a_line_cut_short_is_left_out_quietly(self, state_dir: Path) -> None:
        """A last line without its newline (a process killed mid-write) is as if unwritten:
        the record before it stands, nothing is told, and the next write drops it."""
        store = FileStateStore.open(state_dir)
        store.record_passwords("lobby", URL, {1: SecretStr(PASSWORD)})
        append_line(state_dir, '{"device": "lobby", "passwords": {"1": "00')
        told: list[str | None] = []
        again = FileStateStore.open(state_dir)
        again.on_damaged = lambda device, file, error: told.append(device)
        assert not again.password_due("lobby", URL, 1, SecretStr(PASSWORD))
        again.record_fingerprint("gate", "f" * 32)
        assert told == []
        assert (state_dir / "devices.jsonl").read_text().endswith("}\n")
        assert sorted(records_on_disk(state_dir)) == ["gate", "lobby"]

    def test_sound_and_missing_records_are_not_told(self, state_dir: Path) -> None:
        """A sound record, an older one without passwords, and a missing one tell nothing."""
        store = FileStateStore.open(state_dir)
        store.record_passwords("lobby", URL, {1: SecretStr(PASSWORD)})
        store.record_fingerprint("gate", "f" * 32)
        append_line(state_dir, '{"device": "old", "fingerprint": "ab"}\n')
        told: list[str | None] = []
        again = FileStateStore.open(state_dir)
        again.on_damaged = lambda device, file, error: told.append(device)
        assert again.has_password_records()
        assert not again.password_due("lobby", URL, 1, SecretStr(PASSWORD))
        assert again.applied_fingerprint("old") == "ab"
        assert again.applied_fingerprint("never") is None
        assert told == []

    def test_no_temp_files_left(self, state_dir: Path) -> None:
        """Writes leave no temporary files behind."""
        store = FileStateStore.open(state_dir)
        for i in range(5):
            store.record_passwords("lobby", URL, {1: SecretStr(str(i))})
            store.record_fingerprint("lobby", str(i))
        names = sorted(p.name for p in state_dir.rglob("*") if p.is_file())
        assert names == ["devices.jsonl", "key"]


class TestRecordsFile:
    def test_a_change_appends_one_line(self, state_dir: Path) -> None:
        """Each change to a record is one line more; the last line of a device is its record."""
        store = FileStateStore.open(state_dir)
        store.record_in_force("lobby", "a" * 32, "r1")
        store.record_in_force("gate", "b" * 32, "r1")
        store.record_in_force("lobby", "c" * 32, "r2")
        store.record_in_force("lobby", "c" * 32, "r2")  # nothing changed: nothing written
        lines = (state_dir / "devices.jsonl").read_text().splitlines()
        assert [json.loads(line)["fingerprint"] for line in lines] == ["a" * 32, "b" * 32, "c" * 32]
        assert FileStateStore.open(state_dir).applied_revision("lobby") == "r2"

    def test_the_file_is_rewritten_when_its_lines_outnumber_the_records(
        self, state_dir: Path
    ) -> None:
        """Lines beyond twice the records and a thousand more are folded: one line per record,
        each the latest, and nothing lost."""
        store = FileStateStore.open(state_dir)
        for i in range(1100):
            store.record_in_force(f"d{i % 10}", f"{i:032x}", f"r{i}")
        lines = (state_dir / "devices.jsonl").read_text().splitlines()
        assert len(lines) < 1100
        again = FileStateStore.open(state_dir)
        for device in range(10):
            last = max(i for i in range(1100) if i % 10 == device)
            assert again.applied_revision(f"d{device}") == f"r{last}"

    def test_an_unreadable_records_file_is_told_and_every_password_due(
        self, state_dir: Path
    ) -> None:
        """plan's store on records it cannot read: told once, naming no device, and every
        password is due (nothing is trusted); nothing is written."""
        (state_dir / "devices.jsonl").mkdir(parents=True)
        told: list[tuple[str | None, Path, str]] = []
        reader = FileStateStore.open_readonly(state_dir)
        reader.on_damaged = lambda device, file, error: told.append((device, file, error))
        assert reader.password_due("lobby", URL, 1, SecretStr(PASSWORD))
        assert not reader.has_password_records()
        assert told == [(None, state_dir / "devices.jsonl", "unreadable: Is a directory")]
        assert (state_dir / "devices.jsonl").is_dir()

    def test_the_records_file_as_a_directory_is_refused_at_open(self, state_dir: Path) -> None:
        """A devices.jsonl that is not a regular file makes the state dir unusable, named."""
        (state_dir / "devices.jsonl").mkdir(parents=True)
        with pytest.raises(StateError, match=r"devices\.jsonl is not a regular file"):
            FileStateStore.open(state_dir)


def as_syncd_0_1(state_dir: Path) -> None:
    """Turn the records into syncd 0.1's layout: one file per device under devices/."""
    (state_dir / "devices").mkdir()
    for device, record in records_on_disk(state_dir).items():
        (state_dir / "devices" / (quote(device, safe="") + ".json")).write_text(json.dumps(record))
    (state_dir / "devices.jsonl").unlink()


class TestSyncd01Files:
    def test_records_are_read_then_moved_into_the_records_file(self, state_dir: Path) -> None:
        """syncd 0.1's files are read (nothing due), folded into devices.jsonl by a writing
        store, then removed; a read-only store reads them and changes nothing."""
        store = FileStateStore.open(state_dir)
        store.record_passwords("site-a/lobby", URL, {1: SecretStr(PASSWORD)})
        store.record_in_force("site-a/lobby", "f" * 32, "r1")
        store.record_in_force("gate", "g" * 32, "r1")
        as_syncd_0_1(state_dir)
        before = {p: p.read_bytes() for p in state_dir.rglob("*") if p.is_file()}
        reader = FileStateStore.open_readonly(state_dir)
        assert not reader.password_due("site-a/lobby", URL, 1, SecretStr(PASSWORD))
        assert {p: p.read_bytes() for p in state_dir.rglob("*") if p.is_file()} == before
        writer = FileStateStore.open(state_dir)
        assert not writer.password_due("site-a/lobby", URL, 1, SecretStr(PASSWORD))
        assert not (state_dir / "devices").exists()
        assert sorted(records_on_disk(state_dir)) == ["gate", "site-a/lobby"]
        again = FileStateStore.open(state_dir)
        assert not again.password_due("site-a/lobby", URL, 1, SecretStr(PASSWORD))
        assert again.applied_fingerprint("gate") == "g" * 32

    def test_a_damaged_file_is_told_with_its_device(self, state_dir: Path) -> None:
        """A damaged syncd 0.1 file is taken as empty and told, naming device and file."""
        FileStateStore.open(state_dir).record_passwords("lobby", URL, {1: SecretStr(PASSWORD)})
        as_syncd_0_1(state_dir)
        path = state_dir / "devices" / "lobby.json"
        path.write_text('{"device": "other"}')
        told: list[tuple[str | None, Path, str]] = []
        store = FileStateStore.open(state_dir)
        store.on_damaged = lambda device, file, error: told.append((device, file, error))
        assert store.password_due("lobby", URL, 1, SecretStr(PASSWORD))
        assert told == [("lobby", path, "the record of device 'other'")]


class TestFingerprint:
    def test_none_when_never_applied(self, state_dir: Path) -> None:
        """A device never applied has no fingerprint."""
        assert FileStateStore.open(state_dir).applied_fingerprint("lobby") is None

    def test_round_trip_and_reopen(self, state_dir: Path) -> None:
        """A recorded fingerprint reads back, also from a fresh store."""
        store = FileStateStore.open(state_dir)
        store.record_fingerprint("lobby", "abc123")
        assert store.applied_fingerprint("lobby") == "abc123"
        assert FileStateStore.open(state_dir).applied_fingerprint("lobby") == "abc123"

    def test_overwrite(self, state_dir: Path) -> None:
        """A newer fingerprint replaces the old one."""
        store = FileStateStore.open(state_dir)
        store.record_fingerprint("lobby", "one")
        store.record_fingerprint("lobby", "two")
        assert FileStateStore.open(state_dir).applied_fingerprint("lobby") == "two"

    def test_fingerprint_and_passwords_kept_together(self, state_dir: Path) -> None:
        """Recording a fingerprint keeps password records of the same device, and vice versa."""
        store = FileStateStore.open(state_dir)
        store.record_passwords("lobby", URL, {1: SecretStr(PASSWORD)})
        store.record_fingerprint("lobby", "fp")
        store.record_passwords("lobby", URL, {2: SecretStr("two")})
        again = FileStateStore.open(state_dir)
        assert again.applied_fingerprint("lobby") == "fp"
        assert not again.password_due("lobby", URL, 1, SecretStr(PASSWORD))
        assert not again.password_due("lobby", URL, 2, SecretStr("two"))


class TestRevision:
    def test_none_when_never_applied(self, state_dir: Path) -> None:
        """A device never applied has no applied revision."""
        assert FileStateStore.open(state_dir).applied_revision("lobby") is None

    def test_round_trip_and_reopen(self, state_dir: Path) -> None:
        """A recorded revision is read back, also after reopening, per device."""
        FileStateStore.open(state_dir).record_revision("lobby", "3f2a9c1")
        store = FileStateStore.open(state_dir)
        assert store.applied_revision("lobby") == "3f2a9c1"
        assert store.applied_revision("gate") is None

    def test_kept_with_fingerprint_and_passwords(self, state_dir: Path) -> None:
        """Revision, fingerprint and password records share one device record; none loses another."""
        store = FileStateStore.open(state_dir)
        store.record_passwords("lobby", URL, {1: SecretStr(PASSWORD)})
        store.record_fingerprint("lobby", "f" * 32)
        store.record_revision("lobby", "r1")
        again = FileStateStore.open(state_dir)
        assert again.applied_revision("lobby") == "r1"
        assert again.applied_fingerprint("lobby") == "f" * 32
        assert not again.password_due("lobby", URL, 1, SecretStr(PASSWORD))
        assert list(records_on_disk(state_dir)) == ["lobby"]

    def test_in_force_records_both_and_none_keeps_the_revision(self, state_dir: Path) -> None:
        """record_in_force sets fingerprint and revision together; a None revision keeps the old."""
        store = FileStateStore.open(state_dir)
        store.record_in_force("lobby", "a" * 32, "r1")
        store.record_in_force("lobby", "b" * 32, None)
        again = FileStateStore.open(state_dir)
        assert again.applied_fingerprint("lobby") == "b" * 32
        assert again.applied_revision("lobby") == "r1"

    def test_the_time_of_the_last_change_survives_a_reopen(self, state_dir: Path) -> None:
        """A verified PUT's changed_at is the device's last change, also for the next process;
        recording the state in force without it keeps the time."""
        changed = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
        store = FileStateStore.open(state_dir)
        assert store.last_change("lobby") is None
        store.record_in_force("lobby", "a" * 32, "r1", changed_at=changed)
        store.record_in_force("lobby", "a" * 32, "r2")
        assert FileStateStore.open(state_dir).last_change("lobby") == changed


class TestForgetPasswords:
    def test_recorded_passwords_are_due_again(self, state_dir: Path) -> None:
        """After forget_passwords every account's password is due again, also after reopening."""
        store = FileStateStore.open(state_dir)
        store.record_passwords("lobby", URL, {1: SecretStr("a"), 2: SecretStr("b")})
        store.forget_passwords("lobby")
        assert store.password_due("lobby", URL, 1, SecretStr("a"))
        reopened = FileStateStore.open(state_dir)
        assert reopened.password_due("lobby", URL, 1, SecretStr("a"))
        assert reopened.password_due("lobby", URL, 2, SecretStr("b"))

    def test_other_devices_and_fingerprint_untouched(self, state_dir: Path) -> None:
        """Forgetting one device's passwords keeps its fingerprint and other devices' passwords."""
        store = FileStateStore.open(state_dir)
        store.record_passwords("lobby", URL, {1: SecretStr("a")})
        store.record_passwords("gate", URL, {1: SecretStr("a")})
        store.record_fingerprint("lobby", "f" * 32)
        store.forget_passwords("lobby")
        reopened = FileStateStore.open(state_dir)
        assert not reopened.password_due("gate", URL, 1, SecretStr("a"))
        assert reopened.applied_fingerprint("lobby") == "f" * 32

    def test_unknown_device_records_no_password(self, state_dir: Path) -> None:
        """Forgetting a device never applied records no password and touches no other device."""
        store = FileStateStore.open(state_dir)
        store.record_passwords("gate", "https://192.0.2.11", {1: SecretStr("a")})
        store.forget_passwords("nobody")
        reopened = FileStateStore.open(state_dir)
        assert reopened.password_due("nobody", URL, 1, SecretStr("a"))
        assert not reopened.password_due("gate", "https://192.0.2.11", 1, SecretStr("a"))


SERIAL_TARGET = f"{URL}#54-0000-0001"


class TestMovedDevice:
    """A desired file moved or renamed (git mv): same URL and serial, a new device name."""

    def test_new_name_finds_the_old_record(self, state_dir: Path) -> None:
        """The same password to the same target under a new name is not due, also after reopening."""
        FileStateStore.open(state_dir).record_passwords(
            "site-a/lobby", SERIAL_TARGET, {1: SecretStr("a"), 2: SecretStr("b")}
        )
        store = FileStateStore.open(state_dir)
        assert not store.password_due("site-b/lobby", SERIAL_TARGET, 1, SecretStr("a"))
        assert not store.password_due("site-b/lobby", SERIAL_TARGET, 2, SecretStr("b"))
        reopened = FileStateStore.open(state_dir)
        assert not reopened.password_due("site-b/lobby", SERIAL_TARGET, 1, SecretStr("a"))

    def test_record_moves_to_the_new_name(self, state_dir: Path) -> None:
        """After the lookup the entry is the new name's; the old name no longer holds it."""
        store = FileStateStore.open(state_dir)
        store.record_passwords("old", SERIAL_TARGET, {1: SecretStr("a")})
        assert not store.password_due("new", SERIAL_TARGET, 1, SecretStr("a"))
        reopened = FileStateStore.open(state_dir)
        assert reopened.password_due("old", f"{URL}#another-serial", 1, SecretStr("a"))
        assert records_on_disk(state_dir)["old"]["passwords"] == {}

    def test_other_target_or_password_is_due(self, state_dir: Path) -> None:
        """Another serial (a swapped box), another URL or another password is still due."""
        store = FileStateStore.open(state_dir)
        store.record_passwords("old", SERIAL_TARGET, {1: SecretStr("a")})
        assert store.password_due("new", f"{URL}#54-0000-0002", 1, SecretStr("a"))
        assert store.password_due("new", "https://192.0.2.99#54-0000-0001", 1, SecretStr("a"))
        assert store.password_due("new", SERIAL_TARGET, 1, SecretStr("changed"))
        assert store.password_due("new", SERIAL_TARGET, 2, SecretStr("a"))

    def test_stale_record_never_stands_in_for_a_newer_password(self, state_dir: Path) -> None:
        """A password applied later to the same target releases what an older name held."""
        store = FileStateStore.open(state_dir)
        store.record_passwords("first", SERIAL_TARGET, {1: SecretStr("one")})
        store.record_passwords("second", SERIAL_TARGET, {1: SecretStr("two")})
        reopened = FileStateStore.open(state_dir)
        assert reopened.password_due("third", SERIAL_TARGET, 1, SecretStr("one"))
        assert not reopened.password_due("third", SERIAL_TARGET, 1, SecretStr("two"))

    def test_forgotten_device_does_not_take_over(self, state_dir: Path) -> None:
        """After forget_passwords (a factory reset), the new name's passwords are due."""
        store = FileStateStore.open(state_dir)
        store.record_passwords("old", SERIAL_TARGET, {1: SecretStr("a")})
        store.forget_passwords("new")
        assert FileStateStore.open(state_dir).password_due("new", SERIAL_TARGET, 1, SecretStr("a"))


class TestRevert:
    def test_a_revert_puts_the_revision_before_the_put_back(self, state_dir: Path) -> None:
        """In sync under r1 and r2, r3's PUT reverted: r2 is in force again, also reopened;
        a later revert with no PUT between keeps it."""
        store = FileStateStore.open(state_dir)
        store.record_in_force("a", "f1", "r1")
        store.record_in_force("a", "f1", "r2")
        store.record_in_force("a", "f3", "r3", changed_at=datetime.now(UTC))
        store.record_changed("a", datetime.now(UTC))
        assert store.applied_revision("a") == "r2"
        assert FileStateStore.open(state_dir).applied_revision("a") == "r2"
        store.record_changed("a", datetime.now(UTC))
        assert store.applied_revision("a") == "r2"


class TestUnknownSerial:
    """A serial that could not be read (system/info failed) is not another serial."""

    def test_entry_with_serial_holds_while_the_serial_is_unread(self, state_dir: Path) -> None:
        """Recorded with the serial: the URL alone finds it; another serial or URL does not."""
        store = FileStateStore.open(state_dir)
        store.record_passwords("a", SERIAL_TARGET, {1: SecretStr("pw")})
        assert not store.password_due("a", URL, 1, SecretStr("pw"))
        assert store.password_due("a", URL, 1, SecretStr("other"))
        assert store.password_due("a", f"{URL}#54-0000-0002", 1, SecretStr("pw"))
        assert store.password_due("a", "https://192.0.2.11", 1, SecretStr("pw"))
        assert records_on_disk(state_dir)["a"]["targets"] == {"1": SERIAL_TARGET}

    def test_entry_without_serial_is_bound_to_it_once_read(self, state_dir: Path) -> None:
        """Recorded by URL alone: a serial read later finds it and binds it, so that a box
        swapped after that (another serial) is another device again."""
        store = FileStateStore.open(state_dir)
        store.record_passwords("a", URL, {1: SecretStr("pw")})
        assert not store.password_due("a", SERIAL_TARGET, 1, SecretStr("pw"))
        reopened = FileStateStore.open(state_dir)
        assert records_on_disk(state_dir)["a"]["targets"] == {"1": SERIAL_TARGET}
        assert not reopened.password_due("a", SERIAL_TARGET, 1, SecretStr("pw"))
        assert reopened.password_due("a", f"{URL}#54-0000-0002", 1, SecretStr("pw"))


class TestReadOnly:
    def test_missing_dir_is_not_created(self, tmp_path: Path) -> None:
        """open_readonly on a missing dir creates nothing, and every password is due."""
        missing = tmp_path / "absent" / "state"
        store = FileStateStore.open_readonly(missing)
        assert not store.has_password_records()
        assert store.password_due("lobby", URL, 1, SecretStr(PASSWORD))
        store.record_passwords("lobby", URL, {1: SecretStr(PASSWORD)})
        store.record_fingerprint("lobby", "fp")
        store.forget_passwords("lobby")
        assert not (tmp_path / "absent").exists()

    def test_existing_state_is_read_and_never_written(self, state_dir: Path) -> None:
        """Records are read; writes and take-overs stay in memory; the files are unchanged."""
        store = FileStateStore.open(state_dir)
        store.record_passwords("lobby", SERIAL_TARGET, {1: SecretStr(PASSWORD)})
        store.record_fingerprint("lobby", "fp")
        before = {p: p.read_bytes() for p in state_dir.rglob("*") if p.is_file()}
        reader = FileStateStore.open_readonly(state_dir)
        assert reader.has_password_records()
        assert not reader.password_due("lobby", SERIAL_TARGET, 1, SecretStr(PASSWORD))
        assert not reader.password_due("moved", SERIAL_TARGET, 1, SecretStr(PASSWORD))
        reader.record_fingerprint("lobby", "other")
        reader.record_passwords("gate", URL, {1: SecretStr("x")})
        assert reader.applied_fingerprint("lobby") == "other"
        after = {p: p.read_bytes() for p in state_dir.rglob("*") if p.is_file()}
        assert after == before

    def test_empty_state_has_no_records(self, state_dir: Path) -> None:
        """A state dir holding only fingerprints has no password records."""
        FileStateStore.open(state_dir).record_fingerprint("lobby", "fp")
        assert not FileStateStore.open_readonly(state_dir).has_password_records()

    def test_state_dir_is_a_file(self, tmp_path: Path) -> None:
        """A state dir path that is a regular file is a StateError naming it."""
        target = tmp_path / "file"
        target.write_text("x")
        with pytest.raises(StateError, match=str(target)):
            FileStateStore.open_readonly(target)


class TestRollout:
    def test_none_before_any_rollout(self, state_dir: Path) -> None:
        """Without a saved rollout, load_rollout is None."""
        assert FileStateStore.open(state_dir).load_rollout() is None

    def test_round_trip_and_reopen(self, state_dir: Path) -> None:
        """A saved document is loaded back equal, also by a new store on the same dir."""
        doc = {"revision": "r2", "wave": "canary", "failed": ["site-a/lobby"], "paused": False}
        FileStateStore.open(state_dir).save_rollout(doc)
        assert FileStateStore.open(state_dir).load_rollout() == doc
        assert (state_dir / "rollout.json").is_file()

    def test_save_replaces_atomically(self, state_dir: Path) -> None:
        """A second save replaces the first and leaves no temporary file behind."""
        store = FileStateStore.open(state_dir)
        store.save_rollout({"wave": "one"})
        store.save_rollout({"wave": "two"})
        assert store.load_rollout() == {"wave": "two"}
        assert [p.name for p in state_dir.iterdir() if p.name.startswith(".tmp-")] == []

    def test_journal_follows_its_document_until_the_next_save(self, state_dir: Path) -> None:
        """Appended entries load, in order, under ``journal``; the next save starts afresh."""
        store = FileStateStore.open(state_dir)
        store.save_rollout({"wave": "one"})
        store.append_rollout({"device": "a", "status": "active"})
        store.append_rollout({"device": "a", "status": "healthy"})
        assert FileStateStore.open(state_dir).load_rollout() == {
            "wave": "one",
            "journal": [
                {"device": "a", "status": "active"},
                {"device": "a", "status": "healthy"},
            ],
        }
        store.save_rollout({"wave": "two"})
        assert FileStateStore.open(state_dir).load_rollout() == {"wave": "two"}

    def test_journal_of_an_older_document_is_not_read(self, state_dir: Path) -> None:
        """Lines left by a process killed between writing a document and removing the old
        journal belong to the older document: they are not read; a torn last line neither."""
        store = FileStateStore.open(state_dir)
        store.save_rollout({"wave": "one"})
        store.append_rollout({"device": "a", "status": "active"})
        old_lines = (state_dir / "rollout.journal").read_text()
        store.save_rollout({"wave": "two"})
        store.append_rollout({"device": "b", "status": "active"})
        journal = state_dir / "rollout.journal"
        journal.write_text(old_lines + journal.read_text() + '{"id": "torn')
        assert FileStateStore.open(state_dir).load_rollout() == {
            "wave": "two",
            "journal": [{"device": "b", "status": "active"}],
        }

    def test_append_before_any_save_is_a_state_error(self, state_dir: Path) -> None:
        """A journal line needs a document to follow: without one it is a StateError."""
        with pytest.raises(StateError, match=str(state_dir)):
            FileStateStore.open(state_dir).append_rollout({"device": "a", "status": "active"})

    @pytest.mark.parametrize("content", ["", "{not json", "[1, 2]", "null"])
    def test_damaged_document_is_a_state_error_naming_the_file(
        self, state_dir: Path, content: str
    ) -> None:
        """A damaged or non-object rollout.json is a StateError naming it (its reader tells
        and goes on as if there were none); no file at all is simply no rollout."""
        store = FileStateStore.open(state_dir)
        assert store.load_rollout() is None
        (state_dir / "rollout.json").write_text(content)
        with pytest.raises(StateError, match=str(state_dir / "rollout.json")):
            store.load_rollout()

    def test_unwritable_is_a_state_error(self, state_dir: Path) -> None:
        """A value JSON cannot hold is a StateError naming the state dir, and the old state stays."""
        store = FileStateStore.open(state_dir)
        store.save_rollout({"wave": "one"})
        with pytest.raises(StateError, match=str(state_dir)):
            store.save_rollout({"wave": object()})
        assert store.load_rollout() == {"wave": "one"}


def test_file_store_is_a_state_store(state_dir: Path) -> None:
    """FileStateStore has every method of the StateStore protocol, with the same parameters."""
    import inspect

    from syncd.state import StateStore

    for name, member in vars(StateStore).items():
        if callable(member) and not name.startswith("_"):
            mine = getattr(FileStateStore, name)
            assert list(inspect.signature(mine).parameters) == list(
                inspect.signature(member).parameters
            ), name
