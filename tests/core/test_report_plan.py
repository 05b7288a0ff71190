"""Plan output: `plan --json` has exactly the SPEC section 5 shape; text is one line per field."""

from __future__ import annotations

import json
from typing import Any

from syncd.client import RejectedError, TransportError
from syncd.diff import PASSWORD_PLACEHOLDER, Change
from syncd.model import Mode
from syncd.outcome import Failure, Outcome
from syncd.report import plan_json, plan_text, summary

DEVICE_KEYS = {"device", "url", "mode", "status", "changes", "error"}
ERROR_KEYS = {"kind", "message", "code", "param"}
CHANGE_KEYS = {"account", "field", "live", "desired"}
SUMMARY_KEYS = {"devices", "in_sync", "changes", "errors", "skipped"}


def fleet() -> list[Outcome]:
    """One outcome of every kind, deliberately out of name order."""
    return [
        Outcome(
            device="site-b/gate",
            url="https://192.0.2.2",
            mode=Mode.OBSERVE,
            status="changes",
            changes=(Change(1, "domainPort", "5060", "5061"), Change(2, "enabled", False, True)),
        ),
        Outcome(
            device="site-a/lobby", url="https://192.0.2.1", mode=Mode.ENFORCE, status="in_sync"
        ),
        Outcome(
            device="site-c/door",
            url="https://192.0.2.3",
            mode=Mode.ENFORCE,
            status="changes",
            changes=(Change(1, "password", None, PASSWORD_PLACEHOLDER),),
        ),
        Outcome(
            device="site-d/rejected",
            url="https://192.0.2.4",
            mode=Mode.ENFORCE,
            status="error",
            failure=Failure(
                "rejected",
                "device rejected the request",
                RejectedError(
                    "device rejected the request", code=12, param="blob-json", description="x"
                ),
            ),
        ),
        Outcome(
            device="site-e/down",
            url="http://192.0.2.5:8080",
            mode=Mode.ENFORCE,
            status="error",
            failure=Failure(
                "transport", "connection refused", TransportError("connection refused")
            ),
        ),
        Outcome(
            device="site-f/paused", url="https://192.0.2.6", mode=Mode.SUSPEND, status="skipped"
        ),
        Outcome(
            device="site-g/applied", url="https://192.0.2.7", mode=Mode.ENFORCE, status="applied"
        ),
        Outcome(
            device="site-h/missing",
            url="https://192.0.2.8",
            mode=Mode.ENFORCE,
            status="error",
            failure=Failure("device", "the device has no SIP account 2"),
        ),
    ]


BROKEN = {"site-z/bad": "site-z/bad.yaml:3: device.mdoe: unknown key 'mdoe'"}


def parsed() -> dict[str, Any]:
    result: dict[str, Any] = json.loads(plan_json(fleet(), BROKEN))
    return result


class TestPlanJson:
    def test_top_level_shape(self) -> None:
        """The document is one object with exactly `devices` (a list) and `summary`."""
        doc = parsed()
        assert set(doc) == {"devices", "summary"}
        assert isinstance(doc["devices"], list)

    def test_every_device_has_exactly_the_spec_keys(self) -> None:
        """Each device object has exactly device, url, mode, status, changes, error."""
        for entry in parsed()["devices"]:
            assert set(entry) == DEVICE_KEYS
            assert entry["status"] in {"in_sync", "changes", "error", "skipped"}
            for change in entry["changes"]:
                assert set(change) == CHANGE_KEYS
            assert entry["error"] is None or set(entry["error"]) == ERROR_KEYS

    def test_devices_sorted_by_name_broken_last(self) -> None:
        """Devices are listed by name, then devices whose desired file is broken."""
        names = [d["device"] for d in parsed()["devices"]]
        assert names == [*sorted(o.device for o in fleet()), "site-z/bad"]

    def test_changes_device(self) -> None:
        """A device with changes lists each as {account, field, live, desired} in JSON types."""
        gate = next(d for d in parsed()["devices"] if d["device"] == "site-b/gate")
        assert gate == {
            "device": "site-b/gate",
            "url": "https://192.0.2.2",
            "mode": "observe",
            "status": "changes",
            "changes": [
                {"account": 1, "field": "domainPort", "live": "5060", "desired": "5061"},
                {"account": 2, "field": "enabled", "live": False, "desired": True},
            ],
            "error": None,
        }

    def test_password_change(self) -> None:
        """A password change is {"field": "password", "live": null, "desired": "(will be set)"}."""
        door = next(d for d in parsed()["devices"] if d["device"] == "site-c/door")
        assert door["changes"] == [
            {"account": 1, "field": "password", "live": None, "desired": "(will be set)"}
        ]

    def test_in_sync_device(self) -> None:
        """An in-sync device has status in_sync, no changes and error null."""
        lobby = next(d for d in parsed()["devices"] if d["device"] == "site-a/lobby")
        assert lobby == {
            "device": "site-a/lobby",
            "url": "https://192.0.2.1",
            "mode": "enforce",
            "status": "in_sync",
            "changes": [],
            "error": None,
        }

    def test_applied_reports_as_in_sync(self) -> None:
        """An `applied` outcome is reported with the SPEC status in_sync."""
        applied = next(d for d in parsed()["devices"] if d["device"] == "site-g/applied")
        assert applied["status"] == "in_sync"

    def test_skipped_device(self) -> None:
        """A suspended device has status skipped and mode suspend."""
        paused = next(d for d in parsed()["devices"] if d["device"] == "site-f/paused")
        assert (paused["status"], paused["mode"], paused["error"]) == ("skipped", "suspend", None)

    def test_api_error_carries_code_and_param(self) -> None:
        """A device API rejection gives error {kind, message, code, param} from the device."""
        rejected = next(d for d in parsed()["devices"] if d["device"] == "site-d/rejected")
        assert rejected["status"] == "error"
        assert rejected["error"] == {
            "kind": "rejected",
            "message": "device rejected the request",
            "code": 12,
            "param": "blob-json",
        }

    def test_transport_error_has_null_code(self) -> None:
        """A transport failure has code and param null."""
        down = next(d for d in parsed()["devices"] if d["device"] == "site-e/down")
        assert down["error"] == {
            "kind": "transport",
            "message": "connection refused",
            "code": None,
            "param": None,
        }

    def test_error_without_exception(self) -> None:
        """An error outcome with no device exception still has the full error object."""
        missing = next(d for d in parsed()["devices"] if d["device"] == "site-h/missing")
        assert missing["error"] == {
            "kind": "device",
            "message": "the device has no SIP account 2",
            "code": None,
            "param": None,
        }

    def test_broken_desired_file(self) -> None:
        """A device whose desired file is invalid is an error of kind desired with the problem."""
        bad = parsed()["devices"][-1]
        assert bad["device"] == "site-z/bad"
        assert bad["status"] == "error" and bad["changes"] == []
        assert bad["error"] == {
            "kind": "desired",
            "message": BROKEN["site-z/bad"],
            "code": None,
            "param": None,
        }

    def test_summary_counts(self) -> None:
        """summary counts devices by status, broken desired files as errors."""
        assert parsed()["summary"] == {
            "devices": 9,
            "in_sync": 2,
            "changes": 2,
            "errors": 4,
            "skipped": 1,
        }

    def test_summary_keys_and_consistency(self) -> None:
        """summary has exactly the SPEC keys and devices equals the sum of the statuses."""
        s = parsed()["summary"]
        assert set(s) == SUMMARY_KEYS
        assert s["devices"] == s["in_sync"] + s["changes"] + s["errors"] + s["skipped"]
        assert s["devices"] == len(parsed()["devices"])

    def test_empty_fleet(self) -> None:
        """No devices gives an empty list and a zero summary."""
        assert json.loads(plan_json([], {})) == {
            "devices": [],
            "summary": {"devices": 0, "in_sync": 0, "changes": 0, "errors": 0, "skipped": 0},
        }

    def test_output_is_one_json_document_with_newline(self) -> None:
        """plan_json is a single JSON document ending in a newline."""
        text = plan_json(fleet(), BROKEN)
        assert text.endswith("\n")
        json.loads(text)

    def test_summary_function_matches(self) -> None:
        """summary() equals the JSON's summary object."""
        assert summary(fleet(), BROKEN) == parsed()["summary"]


class TestPlanText:
    def test_one_line_per_change(self) -> None:
        """Each change is `device  account N  field: live -> desired`, values as JSON."""
        lines = plan_text(fleet(), BROKEN).splitlines()
        assert 'site-b/gate  account 1  domainPort: "5060" -> "5061"  (observe)' in lines
        assert "site-b/gate  account 2  enabled: false -> true  (observe)" in lines

    def test_password_line(self) -> None:
        """A password change reads `password: (unknown) -> (will be set)`."""
        lines = plan_text(fleet(), BROKEN).splitlines()
        assert "site-c/door  account 1  password: (unknown) -> (will be set)" in lines

    def test_errors_listed(self) -> None:
        """Device errors and broken desired files each get a line with their message."""
        lines = plan_text(fleet(), BROKEN).splitlines()
        assert "site-d/rejected  error: device rejected the request" in lines
        assert f"site-z/bad  error: {BROKEN['site-z/bad']}" in lines

    def test_summary_line_last(self) -> None:
        """The last line summarises the fleet."""
        last = plan_text(fleet(), BROKEN).splitlines()[-1]
        assert last == "9 devices: 2 in sync, 2 with changes, 4 errors, 1 skipped"

    def test_in_sync_devices_print_no_change_lines(self) -> None:
        """An in-sync device contributes no line."""
        text = plan_text(fleet(), BROKEN)
        assert "site-a/lobby" not in text and "site-f/paused" not in text
