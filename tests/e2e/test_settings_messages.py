"""Settings at the command line: empty paths refused, our own words, unknown variables named."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from tests.e2e.conftest import device_yaml, syncd, write


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No settings from the host's environment."""
    for name in ("SYNCD_STATE_DIR", "SYNCD_DESIRED_DIR", "STATE_DIRECTORY", "SYNCD_CONCURRENCY"):
        monkeypatch.delenv(name, raising=False)


def _one_error(stderr: str) -> str:
    """The one error sentence of a failed command (its JSON log line)."""
    lines = [json.loads(line) for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line["level"] == "error"]
    assert len(errors) == 1, stderr
    return str(errors[0]["error"])


class TestEmptyPaths:
    @pytest.mark.parametrize(
        ("args", "env", "said"),
        [
            (
                ["--state-dir", ""],
                {},
                "bad setting state_dir (flag --state-dir): must not be empty",
            ),
            (
                [],
                {"SYNCD_STATE_DIR": ""},
                "bad setting state_dir (SYNCD_STATE_DIR): must not be empty",
            ),
        ],
    )
    def test_rollout_pause_writes_nothing_in_the_working_dir(
        self, tmp_path: Path, args: list[str], env: dict[str, str], said: str
    ) -> None:
        """An empty state dir is refused; the working dir gets no state and keeps its mode."""
        mode = tmp_path.stat().st_mode
        result = syncd("rollout", "pause", *args, env=env, cwd=tmp_path)
        assert result.returncode == 1
        assert _one_error(result.stderr).startswith(said)
        assert list(tmp_path.iterdir()) == []
        assert tmp_path.stat().st_mode == mode

    def test_empty_desired_dir_variable(self, tmp_path: Path) -> None:
        """SYNCD_DESIRED_DIR= does not validate the working dir."""
        write(tmp_path, "a.yaml", device_yaml("http://127.0.0.1:9"))
        result = syncd("validate", env={"SYNCD_DESIRED_DIR": ""}, cwd=tmp_path)
        assert result.returncode == 1
        assert _one_error(result.stderr).startswith(
            "bad setting desired_dir (SYNCD_DESIRED_DIR): must not be empty"
        )
        assert "valid" not in result.stdout


class TestMessages:
    def test_bad_toml_value_names_the_file_alone(self, tmp_path: Path) -> None:
        """A TOML boolean for a number is refused naming the file that holds it."""
        config = tmp_path / "c.toml"
        config.write_text("concurrency = true\n")
        write(tmp_path / "d", "a.yaml", device_yaml("http://127.0.0.1:9"))
        result = syncd("validate", str(tmp_path / "d"), "--config", str(config))
        assert result.returncode == 1
        said = f"bad setting concurrency ({config}): must be a number, not true or false"
        assert _one_error(result.stderr) == said

    def test_config_naming_a_directory(self, tmp_path: Path) -> None:
        """--config DIR says DIR is a directory."""
        result = syncd("validate", str(tmp_path), "--config", str(tmp_path))
        assert result.returncode == 1
        assert _one_error(result.stderr) == f"config file {tmp_path} is a directory, not a file"

    def test_misspelt_variable_is_warned_once(self, tmp_path: Path) -> None:
        """SYNCD_CONCURENCY=4 is named once, with the setting it may mean; the command goes on."""
        write(tmp_path, "a.yaml", device_yaml("http://127.0.0.1:9"))
        result = syncd("validate", str(tmp_path), env={"SYNCD_CONCURENCY": "4"})
        assert result.returncode == 0, result.stderr
        warned = [line for line in result.stderr.splitlines() if "SYNCD_CONCURENCY" in line]
        assert len(warned) == 1
        event = json.loads(warned[0])
        assert event["event"] == "settings.unknown_variable"
        assert event["message"] == (
            "environment variable SYNCD_CONCURENCY names no setting and is ignored; "
            "did you mean SYNCD_CONCURRENCY?"
        )

    def test_daemon_warns_at_start_not_on_sighup(self, daemon, tmp_path: Path) -> None:
        """The daemon names the variable once at start; a SIGHUP's fresh read does not repeat it."""
        root = tmp_path / "desired"
        write(root, "a.yaml", device_yaml("http://127.0.0.1:9"))
        args = ("--desired", str(root), "--state-dir", str(tmp_path / "state"))
        proc = daemon(*args, env={"SYNCD_CONCURENCY": "4"})
        proc.wait_for("settings.unknown_variable", variable="SYNCD_CONCURENCY")
        proc.wait_for("desired.loaded", reason="start")
        proc.proc.send_signal(signal.SIGHUP)
        proc.wait_for("desired.loaded", reason="SIGHUP")
        assert proc.stop() == 0
        assert [e["event"] for e in proc.events].count("settings.unknown_variable") == 1


class TestStateDirThatIsAFile:
    @pytest.mark.parametrize("command", ["plan", "apply", "run"])
    def test_every_command_says_not_a_directory(self, tmp_path: Path, command: str) -> None:
        """plan, apply and run say the same of a state dir that is a regular file."""
        root = tmp_path / "desired"
        write(root, "a.yaml", device_yaml("http://127.0.0.1:9"))
        state = tmp_path / "state"
        state.write_text("")
        result = syncd(command, "--desired", str(root), "--state-dir", str(state), timeout=30)
        assert result.returncode == 1
        out = result.stdout + result.stderr
        assert f"state directory {state} is not usable: not a directory" in out, out
        assert "File exists" not in out
