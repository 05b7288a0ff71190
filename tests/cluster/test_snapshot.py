"""StateSnapshot judges passwords and fingerprints by the cluster's records as a node does."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from pydantic import SecretStr

from syncd.cluster.snapshot import StateSnapshot, state_prefix
from syncd.cluster.state_codec import encode
from syncd.state import FileStateStore

KEY = b"0123456789abcdef0123456789abcdef"
TARGET = "http://127.0.0.1:8001#SN-1"
PASSWORD = SecretStr("sip-secret-1")


def recorded_pairs(device: str = "door") -> list[tuple[str, bytes | None]]:
    """etcd's keys after a node applied ``PASSWORD`` and fingerprint ``fp-1`` to ``device``
    (the record as the stores write it: the file store's, in a temporary directory)."""
    with tempfile.TemporaryDirectory() as directory:
        writer = FileStateStore.open(Path(directory), key=KEY)
        writer.record_passwords(device, TARGET, {1: PASSWORD})
        writer.record_in_force(device, "fp-1", "rev-1")
        (line,) = (Path(directory) / "devices.jsonl").read_text().splitlines()[-1:]
        record = json.loads(line)
    return [(f"{state_prefix('c')}devices/{device}", encode(record))]


class TestStateSnapshot:
    def test_records_in_etcd_decide_what_is_due(self) -> None:
        """A recorded password is not due and the fingerprint is in force; another password, account or key is due."""
        snapshot = StateSnapshot(recorded_pairs(), cluster_name="c", password_key=KEY)
        assert snapshot.has_password_records()
        assert not snapshot.password_due("door", TARGET, 1, PASSWORD)
        assert snapshot.password_due("door", TARGET, 1, SecretStr("another"))
        assert snapshot.password_due("door", TARGET, 2, PASSWORD)
        assert snapshot.applied_fingerprint("door") == "fp-1"
        assert snapshot.applied_revision("door") == "rev-1"
        other_key = StateSnapshot(recorded_pairs(), cluster_name="c", password_key=b"x" * 32)
        assert other_key.password_due("door", TARGET, 1, PASSWORD)

    def test_a_renamed_device_keeps_its_passwords(self) -> None:
        """A device file renamed (same target): its password is not due under the new name."""
        snapshot = StateSnapshot(recorded_pairs("old-name"), cluster_name="c", password_key=KEY)
        assert not snapshot.password_due("new-name", TARGET, 1, PASSWORD)

    def test_other_clusters_damaged_values_and_other_keys_are_passed_over(self) -> None:
        """Another cluster's records, a damaged record and status keys read as no record."""
        ((key, value),) = recorded_pairs()
        pairs: list[tuple[str, bytes | None]] = [
            (key.replace("/c/", "/other/"), value),
            (f"{state_prefix('c')}devices/broken", b"{not json"),
            (f"{state_prefix('c')}status/door", value),
        ]
        snapshot = StateSnapshot(pairs, cluster_name="c", password_key=KEY)
        assert not snapshot.has_password_records()
        assert snapshot.password_due("door", TARGET, 1, PASSWORD)
        assert snapshot.applied_fingerprint("door") is None

    def test_what_a_pass_records_stays_in_memory(self) -> None:
        """Recording on the snapshot changes its answers but never the pairs it was read from."""
        pairs = recorded_pairs()
        snapshot = StateSnapshot(pairs, cluster_name="c", password_key=KEY)
        snapshot.record_in_force("door", "fp-2", "rev-2")
        assert snapshot.applied_fingerprint("door") == "fp-2"
        assert pairs == recorded_pairs()
        assert (
            StateSnapshot(pairs, cluster_name="c", password_key=KEY).applied_fingerprint("door")
            == "fp-1"
        )
