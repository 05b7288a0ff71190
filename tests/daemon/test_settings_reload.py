"""SIGHUP's fresh read of the settings: the settings in force after it, and its events."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from syncd.logs import configure_logging, get_logger
from syncd.settings import Settings, SettingsError
from syncd.settings_reload import log_reread, reread_settings

START = Settings.model_construct(
    **Settings(state_dir=Path("/var/lib/syncd"), cluster_password_file=Path("/etc/pw")).model_dump()
)


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    """JSON log lines written to a buffer; the logging configuration is put back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    config = structlog.get_config()
    stream = io.StringIO()
    configure_logging(level="info", fmt="json", stream=stream)
    yield stream
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.configure(**config)


def events(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


class TestReread:
    async def test_live_settings_change_and_restart_ones_keep_their_value(self, lines) -> None:
        """The new resync_interval is in force; the new state_dir waits, so the next SIGHUP warns again."""
        fresh = START.model_copy(update={"resync_interval": 5.0, "state_dir": Path("/elsewhere")})
        reread = await reread_settings(START, lambda: fresh)
        assert reread.in_force.resync_interval == 5.0
        assert reread.in_force.state_dir == Path("/var/lib/syncd")
        again = await reread_settings(reread.in_force, lambda: fresh)
        assert again.change.live == () and again.change.restart == ("state_dir",)
        log_reread(reread, log=get_logger())
        signal, restart = events(lines)
        assert signal["event"] == "daemon.signal"
        assert signal["settings"] == {"resync_interval": {"from": 60.0, "to": 5.0}}
        assert restart["event"] == "settings.restart_needed" and restart["setting"] == "state_dir"
        assert "/elsewhere" in restart["message"]

    async def test_unreadable_settings_keep_those_in_force(self, lines) -> None:
        """A settings error changes nothing and is one settings.invalid warning with its sentence."""

        def broken() -> Settings:
            raise SettingsError("cannot read config file c.toml: Invalid value (at line 1)")

        reread = await reread_settings(START, broken)
        assert reread.in_force is START
        log_reread(reread, log=get_logger())
        signal, invalid = events(lines)
        assert signal["settings"] == {}
        assert invalid == {
            **invalid,
            "level": "warning",
            "event": "settings.invalid",
            "error": "cannot read config file c.toml: Invalid value (at line 1)",
        }

    async def test_a_password_file_change_names_the_file_never_its_contents(
        self, lines, tmp_path: Path
    ) -> None:
        """A changed etcd password file is named (a restart setting); what it holds is never read."""
        secret = tmp_path / "etcd.pw"
        secret.write_text("hunter2-etcd\n")
        fresh = START.model_copy(update={"cluster_password_file": secret})
        log_reread(await reread_settings(START, lambda: fresh), log=get_logger())
        text = lines.getvalue()
        assert "settings.restart_needed" in text and str(secret) in text
        assert "hunter2" not in text

    async def test_an_unexpected_error_is_a_warning_too(self, lines) -> None:
        """Whatever goes wrong reading the settings, SIGHUP keeps them and says so in one sentence."""

        def failing() -> Settings:
            raise RuntimeError("boom")

        reread = await reread_settings(START, failing)
        assert reread.in_force is START
        assert reread.error == "cannot read the settings: RuntimeError: boom"
