"""A pending PUT as the device record keeps it: round trip, no password value, damage read as none."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from pydantic import SecretStr

from syncd.diff import Change
from syncd.pending_put import PendingPut
from syncd.state import FileStateStore

WHEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _pending() -> PendingPut:
    changes = [
        Change(1, "domain", "pbx.example.com", "pbx.nowhere.invalid"),
        Change(1, "password", None, SecretStr("sip-secret-1")),
    ]
    return PendingPut.of("fp-new", "fp-old", changes, drift=False, time=WHEN)


class TestPendingPut:
    def test_round_trip_through_the_device_record_keeps_no_password(self, tmp_path):
        """Kept in the state dir and read back equal; the password's value is nowhere in it."""
        store = FileStateStore.open(tmp_path)
        store.record_pending_put("d1", _pending().to_doc())
        again = FileStateStore.open(tmp_path)
        read = PendingPut.from_doc(again.pending_put("d1"))
        assert read == _pending()
        assert read is not None and read.changes[1] == Change(1, "password", None, None)
        assert read.trigger == "change" and read.before == "fp-old" and not read.logged
        text = "".join(p.read_text() for p in tmp_path.rglob("*") if p.is_file())
        assert "sip-secret-1" not in text and "pbx.nowhere.invalid" in text

    def test_the_unhealthy_mark_ends_it_and_none_drops_it(self, tmp_path):
        """record_unhealthy ends the pending PUT (its check is over); None removes it."""
        store = FileStateStore.open(tmp_path)
        store.record_pending_put("d1", _pending().to_doc())
        store.record_unhealthy("d1", "fp-new", restored="fp-old")
        assert store.pending_put("d1") is None and store.applied_fingerprint("d1") == "fp-old"
        store.record_pending_put("d2", _pending().written().to_doc())
        assert PendingPut.from_doc(store.pending_put("d2")).logged  # type: ignore[union-attr]
        store.record_pending_put("d2", None)
        assert FileStateStore.open(tmp_path).pending_put("d2") is None

    def test_a_damaged_doc_reads_as_none(self):
        """Missing keys, a bad trigger or a time without a zone: none, not an exception."""
        doc = _pending().to_doc()
        assert PendingPut.from_doc(None) is None
        assert PendingPut.from_doc({**doc, "trigger": "revert"}) is None
        assert PendingPut.from_doc({**doc, "time": "2026-01-02T03:04:05"}) is None
        assert PendingPut.from_doc({k: v for k, v in doc.items() if k != "changes"}) is None
        assert PendingPut.from_doc(json.loads(json.dumps(doc))) == _pending()
