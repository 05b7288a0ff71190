"""Settings: flags > SYNCD_* environment > TOML file > defaults; bad values name the setting."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import syncd.settings
from syncd.settings import SettingsError, load_settings, unknown_environment


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No SYNCD_* or systemd variables from the host, and no /etc/syncd/syncd.toml."""
    for name in list(os.environ):
        if name.startswith("SYNCD_") or name == "STATE_DIRECTORY":
            monkeypatch.delenv(name)
    monkeypatch.setattr(syncd.settings, "DEFAULT_CONFIG", tmp_path / "absent" / "syncd.toml")


def toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "syncd.toml"
    path.write_text(text)
    return path


class TestDefaults:
    def test_defaults(self) -> None:
        """With nothing set, every setting takes the SPEC's default."""
        s = load_settings(None)
        assert s.desired_dir == Path("desired")
        assert s.state_dir == Path(".syncd-state")
        assert s.resync_interval == 60
        assert s.concurrency == 32
        assert s.request_timeout == 10
        assert s.log_format is None  # decided later: json unless stdout is a terminal
        assert s.log_level == "info"
        assert s.metrics_address is None

    def test_state_dir_from_systemd(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Under systemd, state_dir defaults to the first path in $STATE_DIRECTORY."""
        monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/syncd:/var/lib/other")
        assert load_settings(None).state_dir == Path("/var/lib/syncd")

    def test_default_config_file_read_if_present(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """Without --config, the default config file is read when it exists."""
        path = toml(tmp_path, "concurrency = 5\n")
        monkeypatch.setattr(syncd.settings, "DEFAULT_CONFIG", path)
        assert load_settings(None).concurrency == 5


class TestSources:
    def test_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Each setting is read from SYNCD_<NAME>."""
        env = {
            "SYNCD_DESIRED_DIR": "/srv/desired",
            "SYNCD_STATE_DIR": "/var/lib/x",
            "SYNCD_RESYNC_INTERVAL": "30",
            "SYNCD_CONCURRENCY": "8",
            "SYNCD_REQUEST_TIMEOUT": "2.5",
            "SYNCD_LOG_FORMAT": "console",
            "SYNCD_LOG_LEVEL": "debug",
            "SYNCD_METRICS_ADDRESS": "127.0.0.1:9100",
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        s = load_settings(None)
        assert s.desired_dir == Path("/srv/desired")
        assert s.state_dir == Path("/var/lib/x")
        assert (s.resync_interval, s.concurrency, s.request_timeout) == (30, 8, 2.5)
        assert (s.log_format, s.log_level) == ("console", "debug")
        assert s.metrics_address == "127.0.0.1:9100"

    def test_toml_file(self, tmp_path: Path) -> None:
        """Settings are read from the --config TOML file."""
        path = toml(
            tmp_path,
            'desired_dir = "/srv/desired"\nresync_interval = 15\nconcurrency = 4\n'
            'log_format = "json"\nmetrics_address = ":9100"\n',
        )
        s = load_settings(path)
        assert s.desired_dir == Path("/srv/desired")
        assert (s.resync_interval, s.concurrency, s.log_format) == (15, 4, "json")
        assert s.metrics_address == ":9100"

    def test_flags(self) -> None:
        """Keyword flags set settings; None means the flag was not given."""
        s = load_settings(None, concurrency=3, desired_dir=Path("d"), log_level=None)
        assert (s.concurrency, s.desired_dir, s.log_level) == (3, Path("d"), "info")

    def test_precedence(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        """Flags beat environment, environment beats TOML, TOML beats defaults."""
        path = toml(tmp_path, "concurrency = 1\nresync_interval = 2\nrequest_timeout = 3\n")
        monkeypatch.setenv("SYNCD_CONCURRENCY", "10")
        monkeypatch.setenv("SYNCD_RESYNC_INTERVAL", "20")
        s = load_settings(path, concurrency=100)
        assert s.concurrency == 100  # flag
        assert s.resync_interval == 20  # environment
        assert s.request_timeout == 3  # TOML
        assert s.log_level == "info"  # default

    def test_flag_overrides_bad_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A flag given for a setting wins even over a bad value in the environment."""
        monkeypatch.setenv("SYNCD_LOG_LEVEL", "loud")
        assert load_settings(None, log_level="error").log_level == "error"

    @pytest.mark.parametrize(("raw", "value"), [("0.5", 0.5), ("1.25", 1.25), ("90", 90.0)])
    def test_fractional_durations(
        self, monkeypatch: pytest.MonkeyPatch, raw: str, value: float
    ) -> None:
        """Durations are seconds and may be fractional."""
        monkeypatch.setenv("SYNCD_RESYNC_INTERVAL", raw)
        monkeypatch.setenv("SYNCD_REQUEST_TIMEOUT", raw)
        s = load_settings(None)
        assert s.resync_interval == value and s.request_timeout == value

    def test_fractional_duration_in_toml(self, tmp_path: Path) -> None:
        """A TOML float duration is kept as is."""
        assert load_settings(toml(tmp_path, "request_timeout = 0.75\n")).request_timeout == 0.75


class TestErrors:
    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("SYNCD_CONCURRENCY", "many"),
            ("SYNCD_CONCURRENCY", "0"),
            ("SYNCD_RESYNC_INTERVAL", "-1"),
            ("SYNCD_RESYNC_INTERVAL", "0"),
            ("SYNCD_RESYNC_INTERVAL", "1m"),
            ("SYNCD_REQUEST_TIMEOUT", "soon"),
            ("SYNCD_LOG_FORMAT", "xml"),
            ("SYNCD_LOG_LEVEL", "loud"),
        ],
    )
    def test_bad_environment_value_names_setting(
        self, monkeypatch: pytest.MonkeyPatch, name: str, value: str
    ) -> None:
        """A bad value from the environment is a SettingsError naming the setting."""
        monkeypatch.setenv(name, value)
        setting = name.removeprefix("SYNCD_").lower()
        with pytest.raises(SettingsError) as caught:
            load_settings(None)
        assert setting in str(caught.value)
        assert name in str(caught.value)

    def test_bad_toml_value_names_setting_and_file(self, tmp_path: Path) -> None:
        """A bad value in the TOML file names the setting and the file."""
        path = toml(tmp_path, 'concurrency = "lots"\n')
        with pytest.raises(SettingsError) as caught:
            load_settings(path)
        assert "concurrency" in str(caught.value) and str(path) in str(caught.value)

    def test_bad_flag_names_setting(self) -> None:
        """A bad flag value names the setting and its flag spelling."""
        with pytest.raises(SettingsError, match="--request-timeout"):
            load_settings(None, request_timeout=-5)

    def test_unknown_toml_key(self, tmp_path: Path) -> None:
        """A misspelt key in the TOML file is an error naming it, not silently ignored."""
        with pytest.raises(SettingsError, match="concurency"):
            load_settings(toml(tmp_path, "concurency = 4\n"))

    def test_toml_syntax_error(self, tmp_path: Path) -> None:
        """A TOML syntax error is a SettingsError naming the file."""
        path = toml(tmp_path, "concurrency = \n")
        with pytest.raises(SettingsError, match=str(path)):
            load_settings(path)

    def test_missing_config_file(self, tmp_path: Path) -> None:
        """--config naming a file that does not exist is a SettingsError naming it."""
        path = tmp_path / "nope.toml"
        with pytest.raises(SettingsError, match=str(path)):
            load_settings(path)

    def test_message_is_one_line(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A settings error is one sentence on one line (it goes to stderr as is)."""
        monkeypatch.setenv("SYNCD_CONCURRENCY", "many")
        with pytest.raises(SettingsError) as caught:
            load_settings(None)
        assert "\n" not in str(caught.value)


PATH_SETTINGS = [
    "desired_dir",
    "state_dir",
    "socket",
    "cluster_ca_file",
    "cluster_cert_file",
    "cluster_key_file",
    "cluster_password_file",
    "password_key_file",
]


class TestEmptyPaths:
    @pytest.mark.parametrize("name", PATH_SETTINGS)
    def test_empty_flag_is_refused(self, name: str) -> None:
        """An empty path flag is refused naming the setting, not taken as the working dir."""
        with pytest.raises(SettingsError) as caught:
            load_settings(None, **{name: ""})
        assert str(caught.value).startswith(f"bad setting {name} (flag --")
        assert "must not be empty" in str(caught.value)

    @pytest.mark.parametrize("name", PATH_SETTINGS)
    def test_empty_environment_is_refused(self, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
        """SYNCD_<NAME>= (set, but empty) is refused naming the variable."""
        monkeypatch.setenv(f"SYNCD_{name.upper()}", "")
        with pytest.raises(SettingsError) as caught:
            load_settings(None)
        said = f"bad setting {name} (SYNCD_{name.upper()}): must not be empty: name a path"
        assert str(caught.value) == said

    def test_empty_in_toml_is_refused(self, tmp_path: Path) -> None:
        """state_dir = "" in the TOML file is refused naming the file."""
        path = toml(tmp_path, 'state_dir = ""\n')
        with pytest.raises(SettingsError, match=f"bad setting state_dir \\({path}\\)"):
            load_settings(path)

    def test_empty_config_is_refused(self) -> None:
        """--config "" is refused, not read as the default file or the working dir."""
        with pytest.raises(SettingsError, match="--config is empty"):
            load_settings("")


class TestOwnWords:
    def test_the_source_holding_the_value_is_named(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """Only the source that holds the bad value is named, not every possible one."""
        path = toml(tmp_path, 'concurrency = "lots"\n')
        with pytest.raises(SettingsError) as caught:
            load_settings(path)
        assert str(caught.value) == f"bad setting concurrency ({path}): must be a whole number"
        monkeypatch.setenv("SYNCD_CONCURRENCY", "many")
        with pytest.raises(SettingsError) as caught:
            load_settings(path)
        said = "bad setting concurrency (SYNCD_CONCURRENCY): must be a whole number"
        assert str(caught.value) == said
        with pytest.raises(SettingsError) as caught:
            load_settings(path, concurrency=0)
        assert (
            str(caught.value) == "bad setting concurrency (flag --concurrency): must be at least 1"
        )

    @pytest.mark.parametrize(
        ("name", "value", "said"),
        [
            ("SYNCD_RESYNC_INTERVAL", "soon", "must be a number"),
            ("SYNCD_RESYNC_INTERVAL", "0", "must be more than 0"),
            ("SYNCD_RESYNC_INTERVAL", "inf", "must be a finite number"),
            ("SYNCD_CONCURRENCY", "1.5", "must be a whole number"),
            ("SYNCD_CONCURRENCY", "20000", "must be at most 10000"),
            ("SYNCD_LOG_FORMAT", "xml", "must be one of json, console"),
            ("SYNCD_LOG_LEVEL", "loud", "must be one of debug, info, warning, error"),
            ("SYNCD_METRICS_ADDRESS", "notanaddress", "must be HOST:PORT, for example"),
            ("SYNCD_METRICS_ADDRESS", "127.0.0.1:70000", "the port must be 1-65535"),
            ("SYNCD_METRICS_ADDRESS", "[::1", "an IPv6 address goes in brackets: [::1]:9477"),
        ],
    )
    def test_messages_are_ours(
        self, monkeypatch: pytest.MonkeyPatch, name: str, value: str, said: str
    ) -> None:
        """A bad value is said in our words, not pydantic's ("Input should be ...")."""
        monkeypatch.setenv(name, value)
        with pytest.raises(SettingsError) as caught:
            load_settings(None)
        assert f"({name}): {said}" in str(caught.value)
        assert "Input should" not in str(caught.value)

    @pytest.mark.parametrize("setting", ["concurrency", "resync_interval", "lease_ttl"])
    def test_a_boolean_is_not_a_number(self, tmp_path: Path, setting: str) -> None:
        """TOML true for a number is refused (pydantic would take it as 1)."""
        path = toml(tmp_path, f"{setting} = true\n")
        with pytest.raises(SettingsError) as caught:
            load_settings(path)
        said = f"bad setting {setting} ({path}): must be a number, not true or false"
        assert str(caught.value) == said

    def test_unknown_toml_key_suggests_the_nearest(self, tmp_path: Path) -> None:
        """A misspelt TOML key names the file and the nearest known setting."""
        path = toml(tmp_path, "concurency = 4\n")
        with pytest.raises(SettingsError) as caught:
            load_settings(path)
        said = f"unknown setting concurency in config file {path}; did you mean concurrency?"
        assert str(caught.value) == said

    def test_config_that_is_a_directory(self, tmp_path: Path) -> None:
        """--config naming a directory says it is a directory, not that it does not exist."""
        with pytest.raises(SettingsError) as caught:
            load_settings(tmp_path)
        assert str(caught.value) == f"config file {tmp_path} is a directory, not a file"


class TestUnknownVariables:
    def test_a_misspelt_variable_is_named_with_the_nearest(self) -> None:
        """SYNCD_CONCURENCY names no setting: one sentence naming it and SYNCD_CONCURRENCY."""
        found = unknown_environment(
            {
                "SYNCD_CONCURENCY": "4",
                "SYNCD_CONCURRENCY": "4",
                "HOME": "/",
                "SYNCD_TEST_ETCD": "/usr/bin/etcd",  # the test suite's own, never a setting
            }
        )
        assert found == {
            "SYNCD_CONCURENCY": "environment variable SYNCD_CONCURENCY names no setting "
            "and is ignored; did you mean SYNCD_CONCURRENCY?"
        }

    def test_settings_in_any_case_are_known(self) -> None:
        """Variables pydantic reads (any case) are not reported; a far-off one has no hint."""
        found = unknown_environment({"syncd_log_level": "info", "SYNCD_ZZZZZZ": "1"})
        assert found == {
            "SYNCD_ZZZZZZ": "environment variable SYNCD_ZZZZZZ names no setting and is ignored"
        }
