"""The fleet policy in _fleet.yaml: values, defaults, and file:line errors like device files."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from syncd.desired import Problem
from syncd.desired.fleet import load_policy
from syncd.desired.names import fleet_file_problem
from syncd.policy import (
    ALL_DAYS,
    DEFAULT_POLICY,
    CallsPolicy,
    FleetPolicy,
    HealthPolicy,
    PolicyResult,
    RolloutPolicy,
    Wave,
    Window,
)
from syncd.policy_schema import glob_problem

SPEC_EXAMPLE = """\
# desired/_fleet.yaml
rollout:
  waves:
    - name: canary
      devices: ["lab/*", "site-a/lobby"]
    - name: early
      percent: 10
    - name: rest
  bake: 60
  maxFailures: 1
  onFailure: halt
health:
  registration: true
  timeout: 60
  monitor: true
windows:
  - allow: {days: [mon, tue, wed, thu, fri], from: "22:00", to: "05:00", timezone: Europe/Prague}
  - deny: {days: [sat, sun], from: "00:00", to: "24:00", timezone: Europe/Prague}
calls:
  waitForIdle: true
  maxWait: 300
"""


def load(root: Path, text: str | bytes) -> PolicyResult:
    path = root / "_fleet.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return load_policy(root)


def valid(root: Path, text: str) -> FleetPolicy:
    result = load(root, text)
    assert result.problems == [], [str(p) for p in result.problems]
    assert result.policy is not None
    return result.policy


def only_error(root: Path, text: str | bytes) -> Problem:
    result = load(root, text)
    assert result.policy is None
    assert len(result.errors) == 1, [str(p) for p in result.problems]
    return result.errors[0]


def only_error_of(result: PolicyResult) -> Problem:
    assert result.policy is None and len(result.errors) == 1, [str(p) for p in result.problems]
    return result.errors[0]


def assert_problem(problem: Problem, line: int | None, path: str, text: str) -> None:
    assert (problem.file, problem.line, problem.path) == ("_fleet.yaml", line, path), str(problem)
    assert text in problem.message, str(problem)


class TestValues:
    def test_absent_file_is_no_policy_and_no_problem(self, root: Path) -> None:
        """Without _fleet.yaml the result is no policy and no problem (the caller uses the default)."""
        assert load_policy(root) == PolicyResult(None, [])

    def test_spec_example_reads_as_written(self, root: Path) -> None:
        """The SPEC's example file gives exactly the values it writes."""
        policy = valid(root, SPEC_EXAMPLE)
        assert policy.rollout == RolloutPolicy(
            waves=(
                Wave("canary", ("lab/*", "site-a/lobby")),
                Wave("early", percent=10),
                Wave("rest"),
            ),
            bake=60.0,
            max_failures=1,
            on_failure="halt",
        )
        assert policy.health == HealthPolicy(registration=True, timeout=60.0, monitor=True)
        assert policy.windows == (
            Window("allow", frozenset({0, 1, 2, 3, 4}), 22 * 60, 5 * 60, "Europe/Prague"),
            Window("deny", frozenset({5, 6}), 0, 1440, "Europe/Prague"),
        )
        assert policy.calls == CallsPolicy(wait_for_idle=True, max_wait=300.0)

    def test_empty_file_means_every_default_with_the_health_gate_on(self, root: Path) -> None:
        """An empty _fleet.yaml is valid: one wave, no limit, and health.registration true."""
        policy = valid(root, "# nothing yet\n")
        assert policy == FleetPolicy()
        assert policy.health.registration is True
        assert policy.rollout.waves == () and policy.rollout.max_failures is None

    def test_default_policy_has_no_health_gate_one_wave_no_halting(self) -> None:
        """Without _fleet.yaml: no health gate, no waves, no limit; calls and monitoring on."""
        assert DEFAULT_POLICY.health.registration is False
        assert DEFAULT_POLICY.health.monitor is True
        assert DEFAULT_POLICY.rollout.waves == ()
        assert DEFAULT_POLICY.max_failures_for(100) is None
        assert DEFAULT_POLICY.calls == CallsPolicy(wait_for_idle=True, max_wait=300.0)
        assert DEFAULT_POLICY.windows == ()

    def test_window_defaults_whole_day_every_day_utc(self, root: Path) -> None:
        """A window with no days, from, to or timezone is all day, every day, in UTC."""
        policy = valid(root, "windows:\n  - allow: {}\n")
        assert policy.windows == (Window("allow", ALL_DAYS, 0, 1440, "UTC"),)

    def test_revert_and_percent_limit(self, root: Path) -> None:
        """onFailure: revert and maxFailures "10%" are kept as written."""
        policy = valid(root, 'rollout:\n  maxFailures: "10%"\n  onFailure: revert\n')
        assert policy.rollout.max_failures == "10%"
        assert policy.rollout.on_failure == "revert"

    @pytest.mark.parametrize(
        ("limit", "total", "expected"),
        [(0, 12, 0), (3, 12, 3), ("10%", 12, 1), ("50%", 3, 1), ("0%", 50, 0), ("100%", 7, 7)],
    )
    def test_max_failures_for_resolves_shares_rounding_down(
        self, limit: int | str, total: int, expected: int
    ) -> None:
        """maxFailures "N%" tolerates N % of the rollout's devices, rounded down; a number is itself."""
        policy = FleetPolicy(rollout=RolloutPolicy(max_failures=limit))
        assert policy.max_failures_for(total) == expected

    def test_to_may_be_24_00_and_from_after_to_crosses_midnight(self, root: Path) -> None:
        """to "24:00" is minute 1440; from "22:00" to "05:00" keeps start after end."""
        policy = valid(
            root,
            'windows:\n  - allow: {from: "08:00", to: "24:00"}\n'
            '  - allow: {from: "22:00", to: "05:00"}\n',
        )
        assert [(w.start, w.end) for w in policy.windows] == [(480, 1440), (1320, 300)]


class TestErrors:
    @pytest.mark.parametrize(
        ("text", "line", "path", "hint"),
        [
            ("rolout: {}\n", 1, "rolout", "did you mean 'rollout'?"),
            ("rollout:\n  wavs: []\n", 2, "rollout.wavs", "did you mean 'waves'?"),
            ("health:\n  timout: 5\n", 2, "health.timout", "did you mean 'timeout'?"),
            (
                "windows:\n  - allow:\n      timzone: UTC\n",
                3,
                "windows[0].allow.timzone",
                "did you mean 'timezone'?",
            ),
            (
                "rollout:\n  waves:\n    - name: a\n      percnt: 5\n",
                4,
                "rollout.waves[0].percnt",
                "'percent'?",
            ),
            ("calls:\n  waitforidle: true\n", 2, "calls.waitforidle", "'waitForIdle'?"),
        ],
    )
    def test_unknown_key_names_its_line_and_suggests_the_nearest(
        self, root: Path, text: str, line: int, path: str, hint: str
    ) -> None:
        """A misspelt key is an error on its own line that suggests the nearest known key."""
        problem = only_error(root, text)
        assert_problem(problem, line, path, "unknown key")
        assert hint in problem.message

    def test_unknown_key_without_a_near_one_lists_the_known_keys(self, root: Path) -> None:
        """A key like nothing known lists the keys that may be written there."""
        problem = only_error(root, "calls:\n  zzz: 1\n")
        assert_problem(problem, 2, "calls.zzz", "known keys: waitForIdle, maxWait")

    def test_str_reads_file_line_path_message(self, root: Path) -> None:
        """The error reads like a device file's: _fleet.yaml:LINE: path: message."""
        problem = only_error(root, "rollout:\n  waves:\n    - name: a\n      percent: 0\n")
        assert str(problem).startswith("_fleet.yaml:4: rollout.waves[0].percent: must be")

    @pytest.mark.parametrize("glob", ["lab/[ab", "[", "x[!]"])
    def test_unbalanced_bracket_glob(self, root: Path, glob: str) -> None:
        """A glob with a [ never closed is an error naming the glob's line."""
        text = f'rollout:\n  waves:\n    - name: a\n      devices: ["ok/*", "{glob}"]\n'
        problem = only_error(root, text)
        assert_problem(problem, 4, "rollout.waves[0].devices[1]", "is never closed")

    @pytest.mark.parametrize("glob", ["[ab]*", "x[!a]", "[]]", "[!]]x", "a]b", "*"])
    def test_balanced_globs_are_fine(self, glob: str) -> None:
        """Closed brackets (with fnmatch's ] and ! rules) and a stray ] are valid globs."""
        assert glob_problem(glob) is None

    def test_empty_glob_and_non_string_glob(self, root: Path) -> None:
        """An empty glob and a number in devices: are errors."""
        result = load(root, 'rollout:\n  waves:\n    - name: a\n      devices: ["", 7]\n')
        messages = {p.path: p.message for p in result.errors}
        assert messages["rollout.waves[0].devices[0]"] == "bad glob: must not be empty"
        assert "in quotes" in messages["rollout.waves[0].devices[1]"]

    @pytest.mark.parametrize("value", ["0", "101", "-5", '"10"', "true", "10.5", '"10%"'])
    def test_percent_outside_1_to_100_or_not_a_number(self, root: Path, value: str) -> None:
        """percent is a whole number 1-100; anything else is an error on its line."""
        problem = only_error(root, f"rollout:\n  waves:\n    - name: a\n      percent: {value}\n")
        assert_problem(problem, 4, "rollout.waves[0].percent", "1-100")

    def test_percent_and_devices_together(self, root: Path) -> None:
        """A wave selects by devices or by percent, never both."""
        text = 'rollout:\n  waves:\n    - name: a\n      devices: ["x"]\n      percent: 5\n'
        problem = only_error(root, text)
        assert_problem(problem, 3, "rollout.waves[0]", "not both")

    def test_empty_devices_list(self, root: Path) -> None:
        """devices: [] selects nothing and is an error."""
        problem = only_error(root, "rollout:\n  waves:\n    - name: a\n      devices: []\n")
        assert_problem(problem, 3, "rollout.waves[0]", "at least one glob")

    def test_wave_without_name(self, root: Path) -> None:
        """A wave needs a name."""
        problem = only_error(root, "rollout:\n  waves:\n    - percent: 5\n")
        assert_problem(problem, 3, "rollout.waves[0].name", "is required")

    def test_duplicate_wave_names_name_the_first_line(self, root: Path) -> None:
        """Two waves with one name: the second is an error that names the first's line."""
        text = "rollout:\n  waves:\n    - name: a\n      percent: 5\n    - name: a\n"
        problem = only_error(root, text)
        assert_problem(problem, 5, "rollout.waves[1].name", "named twice (first on line 3)")

    def test_reserved_wave_name(self, root: Path) -> None:
        """The wave name 'unmatched' is reserved for devices no wave matches."""
        problem = only_error(root, "rollout:\n  waves:\n    - name: unmatched\n")
        assert_problem(problem, 3, "rollout.waves[0].name", "reserved")

    def test_wave_after_a_catch_all_is_a_warning(self, root: Path) -> None:
        """A wave after one with no selector can never get a device: a warning, policy still valid."""
        result = load(
            root, "rollout:\n  waves:\n    - name: all\n    - name: late\n      percent: 5\n"
        )
        assert result.policy is not None and result.errors == []
        (warning,) = result.problems
        assert warning.warning and warning.line == 4 and "never gets a device" in warning.message

    @pytest.mark.parametrize("zone", ["Mars/Olympus", "../../etc/passwd", "", "/etc/localtime"])
    def test_unknown_time_zone(self, root: Path, zone: str) -> None:
        """A time zone zoneinfo does not know is an error on its line."""
        problem = only_error(root, f'windows:\n  - deny:\n      timezone: "{zone}"\n')
        assert_problem(problem, 3, "windows[0].deny.timezone", "IANA time zone")

    @pytest.mark.parametrize(
        ("key", "value"),
        [
            ("from", '"24:00"'),
            ("from", '"7:00"'),
            ("to", '"25:00"'),
            ("to", '"12:60"'),
            ("to", '"noon"'),
        ],
    )
    def test_from_to_not_hh_mm(self, root: Path, key: str, value: str) -> None:
        """from/to must be "HH:MM" (to may be "24:00", from may not)."""
        problem = only_error(root, f"windows:\n  - allow:\n      {key}: {value}\n")
        assert_problem(problem, 3, f"windows[0].allow.{key}", '"HH:MM"')

    def test_unquoted_time_says_to_quote_it(self, root: Path) -> None:
        """An unquoted 22:00 (a base-60 number to YAML) is an error telling to quote it."""
        problem = only_error(root, "windows:\n  - allow:\n      from: 22:00\n")
        assert_problem(problem, 3, "windows[0].allow.from", 'quotes: from: "22:00"')

    def test_equal_from_and_to(self, root: Path) -> None:
        """from equal to to is ambiguous (empty or whole day) and an error."""
        problem = only_error(root, 'windows:\n  - deny: {from: "10:00", to: "10:00"}\n')
        assert_problem(problem, 2, "windows[0].deny", "from and to are equal")

    def test_unknown_day_name(self, root: Path) -> None:
        """A day other than mon..sun is an error naming it."""
        problem = only_error(root, "windows:\n  - deny: {days: [mon, tuesday]}\n")
        assert_problem(problem, 2, "windows[0].deny.days[1]", "unknown day 'tuesday'")

    def test_empty_days(self, root: Path) -> None:
        """days: [] never opens and is an error."""
        problem = only_error(root, "windows:\n  - deny: {days: []}\n")
        assert_problem(problem, 2, "windows[0].deny", "at least one day")

    @pytest.mark.parametrize(
        "item", ["- allow: {}\n    deny: {}", "- {}", "- allow", "- maybe: {}"]
    )
    def test_window_is_one_allow_or_one_deny(self, root: Path, item: str) -> None:
        """Each windows item is a mapping with exactly one of allow: or deny:."""
        problem = only_error(root, f"windows:\n  {item}\n")
        assert problem.line == 2 and problem.path.startswith("windows[0]"), str(problem)

    @pytest.mark.parametrize("value", ["-1", "1.5", '"x%"', '"101%"', '"%"', "true", '"-1%"'])
    def test_max_failures_bad(self, root: Path, value: str) -> None:
        """maxFailures is a whole number 0 or more, or "N%" with N 0-100."""
        problem = only_error(root, f"rollout:\n  maxFailures: {value}\n")
        assert_problem(problem, 2, "rollout.maxFailures", '"10%"')

    def test_on_failure_bad(self, root: Path) -> None:
        """onFailure is halt or revert."""
        problem = only_error(root, "rollout:\n  onFailure: stop\n")
        assert_problem(problem, 2, "rollout.onFailure", "halt or revert")

    @pytest.mark.parametrize(
        ("text", "path"),
        [
            ("rollout:\n  bake: -1\n", "rollout.bake"),
            ("health:\n  timeout: -0.5\n", "health.timeout"),
            ("calls:\n  maxWait: -3\n", "calls.maxWait"),
            ("rollout:\n  bake: .inf\n", "rollout.bake"),
            ('rollout:\n  bake: "60"\n', "rollout.bake"),
        ],
    )
    def test_durations_are_finite_non_negative_numbers(
        self, root: Path, text: str, path: str
    ) -> None:
        """Durations are seconds, 0 or more; negative, infinite or quoted values are errors."""
        assert_problem(only_error(root, text), 2, path, "number of seconds")

    @pytest.mark.parametrize("value", ["0", "0.0", "-1", '"0"'])
    def test_health_timeout_must_be_more_than_zero(self, root: Path, value: str) -> None:
        """health.timeout: 0 would fail every health check at once: refused at its line, and
        a negative or quoted value is told the same rule."""
        problem = only_error(root, f"health:\n  timeout: {value}\n")
        assert_problem(problem, 2, "health.timeout", "more than 0 (0 fails every health check")

    def test_yaml_string_boolean_is_an_error(self, root: Path) -> None:
        """health.registration: "yes" is a string, not a boolean."""
        problem = only_error(root, 'health:\n  registration: "yes"\n')
        assert_problem(problem, 2, "health.registration", "true or false")

    def test_section_of_wrong_type(self, root: Path) -> None:
        """rollout: as a list is an error saying it must be a mapping."""
        assert_problem(only_error(root, "rollout: [1]\n"), 1, "rollout", "must be a mapping")

    def test_top_level_not_a_mapping(self, root: Path) -> None:
        """A _fleet.yaml holding a list is one error on line 1."""
        assert_problem(only_error(root, "- a\n"), 1, "", "must be a mapping")

    def test_invalid_yaml_and_bytes_are_reported_like_device_files(self, root: Path) -> None:
        """Broken YAML and non-UTF-8 bytes are one error with file and line, no traceback."""
        assert_problem(only_error(root, "rollout: {\n"), 2, "", "invalid YAML")
        assert_problem(only_error(root, b"rollout:\n  bake: \xff\n"), 2, "", "UTF-8")

    def test_link_outside_the_desired_dir_is_not_read(self, root: Path, tmp_path: Path) -> None:
        """A _fleet.yaml linking outside the desired dir is refused, like a device file."""
        outside = tmp_path / "secret.yaml"
        outside.write_text("rollout: {bake: 1}\n", encoding="utf-8")
        (root / "_fleet.yaml").symlink_to(outside)
        assert_problem(only_error_of(load_policy(root)), 1, "", "outside the desired dir")

    def test_folder_named_fleet_file_is_an_error(self, root: Path) -> None:
        """A folder named _fleet.yaml is an error saying it cannot be read."""
        (root / "_fleet.yaml").mkdir()
        assert_problem(only_error_of(load_policy(root)), 1, "", "cannot read")

    def test_several_errors_are_all_reported(self, root: Path) -> None:
        """Every bad value of the file is reported, in line order."""
        result = load(root, "rollout:\n  bake: -1\n  onFailure: x\ncalls:\n  maxWait: -1\n")
        assert [p.line for p in result.errors] == [2, 3, 5]


class TestFleetFileElsewhere:
    def test_fleet_file_below_the_root_is_an_error(self) -> None:
        """A _fleet.yaml in a sub-folder is an error: it is only read at the root."""
        problem = fleet_file_problem("site-a/_fleet.yaml")
        assert problem is not None
        assert str(problem) == (
            "site-a/_fleet.yaml:1: _fleet.yaml is only read at the root of the desired dir"
        )

    @pytest.mark.parametrize("rel", ["_fleet.yaml", "site-a/my_fleet.yaml", "a/_fleet.yaml.bak"])
    def test_root_fleet_file_and_other_names_are_fine(self, rel: str) -> None:
        """The root _fleet.yaml and files merely resembling it are not this error."""
        assert fleet_file_problem(rel) is None
