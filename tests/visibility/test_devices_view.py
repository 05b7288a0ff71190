"""DeviceView's decisions, without I/O: repeats, recovery, registration news, status, revision."""

from __future__ import annotations

import time
from dataclasses import replace

from pydantic import SecretStr

from syncd.device_status import AccountStatus
from syncd.devices_view import DeviceView, difference_key
from syncd.diff import Change
from syncd.fleet_view import FleetView
from syncd.model import AccountSpec, DeviceSpec, Mode
from syncd.outcome import Failure, Outcome
from syncd.revision import revision_material
from syncd.status import status_json

HOUR = 3600.0


def spec(mode: Mode = Mode.ENFORCE, *, password: bool = True, name: str = "door") -> DeviceSpec:
    account = AccountSpec(
        account=1, fields={"displayName": "Door"}, password=SecretStr("pw") if password else None
    )
    return DeviceSpec(
        name=name, file=f"{name}.yaml", url="http://127.0.0.1:1", mode=mode, accounts={1: account}
    )


def outcome(
    status: str, kind: str | None = None, *, mode: Mode = Mode.ENFORCE, changes=()
) -> Outcome:
    failure = Failure(kind, f"{kind} went wrong") if kind else None
    return Outcome.of(spec(mode), status, failure=failure, changes=tuple(changes))  # type: ignore[arg-type]


def up(registered: bool | None, *, registration: bool = True) -> list[AccountStatus]:
    return [
        AccountStatus(
            account=1, enabled=True, registration_enabled=registration, registered=registered
        )
    ]


class TestRepeats:
    def test_unreachable_logged_once_an_hour_and_again_after_recovery(self):
        """The same condition is news at first, then an hour later, and at once after it ended."""
        view = DeviceView(spec())
        assert view.first("unreachable", "transport", 0.0)
        assert not view.first("unreachable", "transport", 10.0)
        assert not view.first("unreachable", "transport", HOUR - 1)
        assert view.first("unreachable", "transport", HOUR + 1)
        view.observe(outcome("in_sync"), HOUR + 2, revision=None)
        assert view.first("unreachable", "transport", HOUR + 3)

    def test_observe_difference_is_news_when_it_changes_or_comes_back(self):
        """A lasting difference is logged once; another one, or the same after in-sync, again."""
        view = DeviceView(spec(Mode.OBSERVE))
        one = difference_key([Change(1, "displayName", "Hacked", "Door")])
        two = difference_key([Change(1, "displayName", "Other", "Door")])
        assert view.first("observe", one, 0.0)
        assert not view.first("observe", one, 1e9)
        assert view.first("observe", two, 1.0)
        view.observe(outcome("in_sync", mode=Mode.OBSERVE), 2.0, revision=None)
        assert view.first("observe", two, 3.0)

    def test_suspend_is_news_again_after_the_mode_changed(self):
        """Suspend is logged once per revision, and again after the device was taken out of it."""
        view = DeviceView(spec(Mode.SUSPEND))
        assert view.first("suspend", "rev1", 0.0)
        assert not view.first("suspend", "rev1", 1.0)
        assert view.first("suspend", "rev2", 2.0)
        view.update_spec(spec(Mode.ENFORCE))
        view.update_spec(spec(Mode.SUSPEND))
        assert view.first("suspend", "rev2", 3.0)


class TestRecovery:
    def test_recovered_reports_how_long_it_failed(self):
        """A failing device in sync again: the seconds since its first failure; only once."""
        view = DeviceView(spec())
        assert view.observe(outcome("error", "transport"), 100.0, revision=None) is None
        assert view.failing_kind == "transport"
        assert view.observe(outcome("error", "auth"), 110.0, revision=None) is None
        assert view.observe(outcome("applied"), 130.0, revision="r2") == 30.0
        assert view.failing_kind is None and view.revision == "r2" and view.last_change == 130.0
        assert view.observe(outcome("in_sync"), 140.0, revision="r2") is None

    def test_failing_counts_from_the_start_of_the_reconcile_that_failed(self):
        """Timeouts and retries are failing time too: ``failing_for`` counts from when the
        first failed reconcile began, not from when it gave up."""
        view = DeviceView(spec())
        failed = replace(outcome("error", "transport"), started=91.0)
        assert view.observe(failed, 100.0, revision=None) is None
        later = replace(outcome("error", "transport"), started=105.0)
        assert view.observe(later, 110.0, revision=None) is None
        assert view.observe(outcome("in_sync"), 112.0, revision=None) == 21.0

    def test_last_change_is_every_accepted_put(self):
        """A PUT that failed its health check, and a revert, changed the device; a failed PUT did not."""
        view = DeviceView(spec())
        view.observe(outcome("applied"), 100.0, revision="r1")
        view.observe(outcome("error", "transport"), 110.0, revision="r2")
        assert view.last_change == 100.0
        view.observe(outcome("error", "health"), 120.0, revision="r2")
        assert view.last_change == 120.0
        view.changed(130.0)
        assert view.last_change == 130.0

    def test_states_from_outcomes(self):
        """Outcomes map to SPEC states; an unreachable device is not 'failed'."""
        view = DeviceView(spec())
        assert view.state() == "unknown"
        view.begin_change()
        assert view.state() == "changing"
        cases = {
            ("in_sync", None): "in_sync",
            ("applied", None): "in_sync",
            ("error", "transport"): "unreachable",
            ("error", "tls"): "unreachable",
            ("error", "rejected"): "failed",
            ("error", "auth"): "failed",
            ("changes", None): "drifted",
            ("skipped", None): "suspended",
        }
        for (status, kind), state in cases.items():
            view.observe(outcome(status, kind), 1.0, revision=None)
            assert view.state() == state, (status, kind)
        assert view.status().message is None
        view.observe(outcome("error", "rejected"), 1.0, revision=None)
        assert view.status().message == "rejected went wrong"


class TestRegistration:
    def test_lost_and_restored_by_itself(self):
        """Registered -> not is lost (once); back is restored."""
        view = DeviceView(spec())
        assert view.registration_read(up(True), now=0, resend_after=50).lost == ()
        assert view.registration_read(up(False), now=10, resend_after=50).lost == (1,)
        assert view.registration_read(up(False), now=20, resend_after=50).lost == ()
        news = view.registration_read(up(True), now=30, resend_after=50)
        assert news.restored == (1,) and news.lost == ()
        assert view.registration() == ((1, True),)

    def test_an_account_that_does_not_register_is_not_unregistered(self):
        """Disabled, or with registration off: registration None (no gauge series, no alert)."""
        view = DeviceView(spec())
        statuses = (
            AccountStatus(1, enabled=False, registration_enabled=True, registered=False),
            AccountStatus(2, enabled=True, registration_enabled=False, registered=False),
            AccountStatus(3, enabled=True, registration_enabled=True, registered=False),
        )
        view.registration_read(statuses, now=0, resend_after=50)
        assert dict(view.registration()) == {1: None, 2: None, 3: False}

    def test_syncds_own_change_is_no_news(self):
        """Unregistered right after syncd's PUT changed the account: no registration.lost."""
        view = DeviceView(spec())
        view.registration_read(up(True), now=0, resend_after=50)
        assert view.registration_read(up(False), now=10, changed=[1], resend_after=50).lost == ()
        assert view.registration_read(up(True), now=20, resend_after=50).restored == ()

    def test_password_resent_after_a_whole_resync_at_most_hourly(self):
        """Registered with syncd's password, then down for a resync: resend; not again within the hour."""
        view = DeviceView(spec())
        kw = {"managed": {1: "desired"}, "in_force": True, "resend_after": 50}
        view.registration_read(up(True), now=0, **kw)
        assert view.registration_read(up(False), now=10, **kw).resend == ()
        assert view.registration_read(up(False), now=70, **kw).resend == (1,)
        assert view.registration_read(up(False), now=200, **kw).resend == ()
        assert view.registration_read(up(False), now=10 + HOUR + 100, **kw).resend == (1,)

    def test_no_resend_under_new_desired_settings_until_they_register(self):
        """A commit's PUT changed the account: a registration slower than a resync (or a
        registrar the new settings cannot reach) is no factory reset; proven, it is again."""
        view = DeviceView(spec())
        kw = {"in_force": True, "resend_after": 50}
        old, new = {1: "domain a"}, {1: "domain b"}
        view.registration_read(up(True), now=0, managed=old, **kw)
        view.registration_read(up(False), now=10, changed=[1], managed=new, **kw)
        assert view.registration_read(up(False), now=100, managed=new, **kw).resend == ()
        assert view.registration_read(up(False), now=1000, managed=new, **kw).resend == ()
        view.registration_read(up(True), now=1010, managed=new, **kw)
        view.registration_read(up(False), now=1020, managed=new, **kw)
        assert view.registration_read(up(False), now=1080, managed=new, **kw).resend == (1,)

    def test_a_drift_correction_keeps_the_proof(self):
        """Factory reset in place: the settings put back are the ones proven, so the password
        is sent again a resync after the correction."""
        view = DeviceView(spec())
        kw = {"managed": {1: "desired"}, "in_force": True, "resend_after": 50}
        view.registration_read(up(True), now=0, **kw)
        view.registration_read(up(False), now=10, changed=[1], **kw)
        assert view.registration_read(up(False), now=70, **kw).resend == (1,)

    def test_no_resend_without_proof_or_when_it_should_not_register(self):
        """Never registered with syncd's password, or registration disabled: no resend."""
        never = DeviceView(spec())
        kw = {"managed": {1: "desired"}, "in_force": True, "resend_after": 50}
        never.registration_read(up(False), now=0, **kw)
        assert never.registration_read(up(False), now=100, **kw).resend == ()
        off = DeviceView(spec())
        off.registration_read(up(True), now=0, **kw)
        off.registration_read(up(False, registration=False), now=10, **kw)
        assert off.registration_read(up(False, registration=False), now=100, **kw).resend == ()

    def test_proof_is_news_once_per_desired_account(self):
        """Seen registered in force: the account is news for the state to keep, once per
        desired account it registered under (not at every read, not when not in force)."""
        view = DeviceView(spec())
        kw = {"in_force": True, "resend_after": 50}
        assert view.registration_read(up(True), now=0, managed={1: "a"}, **kw).proven == (1,)
        assert view.registration_read(up(True), now=10, managed={1: "a"}, **kw).proven == ()
        assert view.registration_read(up(True), now=20, managed={1: "b"}, **kw).proven == (1,)
        news = view.registration_read(up(True), now=30, managed={1: "c"}, resend_after=50)
        assert news.proven == ()

    def test_a_proof_kept_from_before_a_restart_counts_until_one_is_seen(self):
        """A new daemon has seen nothing: the state's proof decides (asked with the account);
        once this daemon saw it registered, what it saw decides."""
        asked: list[int] = []

        def kept(account: int) -> bool:
            asked.append(account)
            return True

        kw = {"managed": {1: "desired"}, "in_force": True, "resend_after": 50}
        view = DeviceView(spec())
        view.registration_read(up(False), now=0, proven_before=kept, **kw)
        assert asked == []  # not down for a whole resync yet: not asked
        assert view.registration_read(up(False), now=60, proven_before=kept, **kw).resend == (1,)
        assert asked == [1]
        seen = DeviceView(spec())
        seen.registration_read(up(True), now=0, managed={1: "old"}, in_force=True, resend_after=50)
        seen.registration_read(up(False), now=10, proven_before=kept, **kw)
        assert seen.registration_read(up(False), now=70, proven_before=kept, **kw).resend == ()

    def test_unsupported_is_not_asked_again_until_the_spec_changes(self):
        """After codes 1/4/10 the device is skipped; a changed spec asks again."""
        view = DeviceView(spec())
        ok = outcome("in_sync")
        assert view.should_monitor(spec(), ok)
        view.registration_unsupported(spec())
        assert not view.should_monitor(spec(), ok)
        assert view.should_monitor(spec(password=False), ok)
        assert not view.should_monitor(spec(), outcome("error", "transport"))


class TestFleet:
    def test_snapshot_reuses_unchanged_devices_and_follows_changes(self):
        """The snapshot is SPEC JSON; a device's new outcome shows in the next one."""
        fleet = FleetView(node="n1", revision="tree:000000000000", clock=lambda: 5.0)
        fleet.devices["door"] = DeviceView(spec())
        assert fleet.snapshot()["devices"][0]["state"] == "unknown"
        fleet.devices["door"].observe(outcome("error", "transport"), 5.0, revision=None)
        data = fleet.snapshot()
        assert data["devices"][0]["state"] == "unreachable"
        assert data["summary"]["unreachable"] == 1 and data["node"] == "n1"
        assert fleet.first("door", "auth", 8) and not fleet.first("door", "auth", 8)
        fleet.owner_of = lambda name: "n2"
        assert fleet.snapshot()["devices"][0]["owner"] == "n2"

    def test_a_device_in_sync_with_the_old_desired_state_is_unknown_until_read(self):
        """A new desired state (another fingerprint) turns a device seen in sync into
        ``unknown``, saying why, until a reconcile under the new state; a change of mode
        alone (same fingerprint) keeps it in sync."""
        fleet = FleetView(node="n1")
        view = fleet.devices["door"] = DeviceView(spec())
        view.observe(outcome("in_sync"), 1.0, revision="r1")
        view.update_spec(replace(spec(), mode=Mode.OBSERVE))
        assert fleet.snapshot()["devices"][0]["state"] == "in_sync"
        changed = AccountSpec(account=1, fields={"displayName": "Lobby"}, password=None)
        new = replace(spec(), accounts={1: changed})
        view.update_spec(new)
        data = fleet.snapshot()
        assert data["summary"]["unknown"] == 1 and data["summary"]["in_sync"] == 0
        assert "desired state changed; not read since" in data["devices"][0]["message"]
        view.observe(Outcome.of(new, "in_sync"), 2.0, revision="r2")
        assert fleet.snapshot()["devices"][0]["state"] == "in_sync"
        assert fleet.snapshot()["devices"][0]["message"] is None

    def test_revision_material_is_stable_and_follows_the_specs(self):
        """Same specs in any order: same material; another desired value: another."""
        a, b = spec(name="a"), spec(name="b")
        assert revision_material({"a": a, "b": b}) == revision_material({"b": b, "a": a})
        other = DeviceSpec(name="a", file="a.yaml", url="http://127.0.0.1:2", accounts={})
        assert revision_material({"a": other, "b": b}) != revision_material({"a": a, "b": b})
        observed = replace(a, mode=Mode.OBSERVE)  # mode: is desired state too (SPEC 10)
        assert revision_material({"a": observed, "b": b}) != revision_material({"a": a, "b": b})

    def test_ten_thousand_devices_snapshot_is_cheap(self):
        """A snapshot of 10,000 devices after one changed takes well under a second (not timed strictly)."""
        fleet = FleetView(node="n")
        for n in range(10_000):
            view = DeviceView(spec(name=f"d{n}"))
            view.observe(outcome("in_sync"), 1.0, revision="r")
            fleet.devices[f"d{n}"] = view
        fleet.snapshot()
        fleet.devices["d5"].observe(outcome("error", "transport"), 2.0, revision=None)
        started = time.perf_counter()
        data = fleet.snapshot()
        took = time.perf_counter() - started
        assert data["devices"][0]["device"] == "d5"
        assert data == status_json(fleet.fleet_status())
        assert took < 2.0
