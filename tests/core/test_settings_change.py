"""SIGHUP's settings decision: which changed settings apply at once, which wait for a restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from syncd.settings import Settings
from syncd.settings_change import (
    LIVE,
    SettingsChange,
    restart_message,
    settings_change,
    shown_change,
)
from syncd.settings_view import settings_view

BASE: dict[str, Any] = dict(Settings.model_construct(**Settings(state_dir=Path("s")).model_dump()))


def with_(**changes: Any) -> dict[str, Any]:
    return {**BASE, **changes}


class TestDecision:
    def test_nothing_changed(self) -> None:
        """The same settings read again change nothing."""
        assert settings_change(BASE, dict(BASE)) == SettingsChange()

    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("resync_interval", 1.0),
            ("max_backoff", 30.0),
            ("concurrency", 4),
            ("request_timeout", 2.0),
            ("connect_timeout", 1.0),
            ("retry_attempts", 5),
            ("log_level", "debug"),
            ("log_format", "console"),
        ],
    )
    def test_a_live_setting_applies_at_once(self, name: str, value: Any) -> None:
        """The timing, timeout, retry, concurrency and log settings take effect at once."""
        assert settings_change(BASE, with_(**{name: value})) == SettingsChange(live=(name,))

    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("state_dir", Path("/elsewhere")),
            ("desired_dir", Path("/other/desired")),
            ("socket", Path("/run/x.sock")),
            ("metrics_address", "127.0.0.1:9100"),
            ("cluster_endpoints", "http://127.0.0.1:2379"),
            ("node_name", "n2"),
            ("lease_ttl", 20.0),
            ("cluster_password_file", Path("/etc/pw")),
            ("password_key_file", Path("/etc/key")),
        ],
    )
    def test_a_restart_setting_waits_for_a_restart(self, name: str, value: Any) -> None:
        """The state dir, socket, metrics address, desired dir and cluster settings need a restart."""
        assert settings_change(BASE, with_(**{name: value})) == SettingsChange(restart=(name,))

    def test_mixed_changes_in_the_order_of_the_settings(self) -> None:
        """Several changes at once are sorted into live and restart, in the settings' order."""
        new = with_(log_level="debug", state_dir=Path("/x"), resync_interval=5.0, socket=Path("/s"))
        change = settings_change(BASE, new)
        assert change.live == ("resync_interval", "log_level")
        assert change.restart == ("state_dir", "socket")

    def test_a_setting_not_known_as_live_needs_a_restart(self) -> None:
        """A setting the decision does not know (added later) is never changed live."""
        change = settings_change({"a": 1}, {"a": 1, "new_setting": 2})
        assert change == SettingsChange(restart=("new_setting",))
        assert "new_setting" not in LIVE

    def test_in_force_takes_only_the_live_values(self) -> None:
        """The settings in force: the new live values, the old values of the others."""
        new = with_(resync_interval=5.0, state_dir=Path("/x"))
        in_force = settings_change(BASE, new).in_force(BASE, new)
        assert in_force["resync_interval"] == 5.0
        assert in_force["state_dir"] == BASE["state_dir"]

    def test_every_live_setting_is_a_setting(self) -> None:
        """LIVE names only real settings (a typo there would make a setting silently restart-only)."""
        assert set(Settings.model_fields) >= LIVE


class TestShowing:
    def test_values_as_shown(self) -> None:
        """The change shows the old and new values of each setting."""
        old = {"resync_interval": 60.0, "log_level": "info"}
        new = {"resync_interval": 1.0, "log_level": "debug"}
        assert shown_change(("resync_interval",), old, new) == {
            "resync_interval": {"from": 60.0, "to": 1.0}
        }

    def test_a_credential_is_hidden(self) -> None:
        """A setting left out of the shown settings (a credential) shows as (hidden), never its value."""
        assert shown_change(("cluster_password",), {}, {}) == {
            "cluster_password": {"from": "(hidden)", "to": "(hidden)"}
        }

    def test_restart_message_names_the_setting(self) -> None:
        """The restart warning names the setting, both values, and that it needs a restart."""
        old = settings_view(Settings.model_construct(**BASE))
        new = {**old, "metrics_address": "127.0.0.1:9100"}
        message = restart_message("metrics_address", old, new)
        assert message == (
            'setting metrics_address changed from unset to "127.0.0.1:9100"; '
            "it takes effect after a restart"
        )
