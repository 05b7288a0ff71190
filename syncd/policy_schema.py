"""Checking a parsed ``_fleet.yaml`` into a :class:`~syncd.policy.FleetPolicy`.

``_fleet.yaml`` sits at the root of the desired dir and is checked like a
device file: every error names file, line and key, and a misspelt key gets
the nearest known one suggested. The document is described by strict
pydantic models whose values are checked by the small checkers below; the
checks across waves follow, and a valid document becomes frozen values.
"""

from __future__ import annotations

import difflib
import math
import re
import zoneinfo
from collections.abc import Collection
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from syncd.desired.locate import locate, problem_from_error
from syncd.desired.names import FLEET_FILE, select_devices
from syncd.desired.result import Problem
from syncd.desired.schema import Bool, Text
from syncd.desired.yamldoc import YamlMap
from syncd.policy import (
    ALL_DAYS,
    DAY_NAMES,
    UNMATCHED_WAVE,
    CallsPolicy,
    FleetPolicy,
    HealthPolicy,
    OnFailure,
    PolicyResult,
    RolloutPolicy,
    Wave,
    Window,
    WindowKind,
)

__all__ = ["glob_problem", "policy_from_doc"]


# ----------------------------------------------------------- text checkers


def glob_problem(pattern: str) -> str | None:
    """What makes ``pattern`` a bad device-name glob, or None."""
    if not pattern:
        return "must not be empty"
    i = 0
    while i < len(pattern):
        if pattern[i] == "[":
            j = i + 1
            if j < len(pattern) and pattern[j] == "!":
                j += 1
            if j < len(pattern) and pattern[j] == "]":
                j += 1
            close = pattern.find("]", j)
            if close < 0:
                return f"'[' at position {i + 1} is never closed by ']' (write [[] for a literal [)"
            i = close
        i += 1
    return None


def _error(kind: str, message: str) -> PydanticCustomError:
    return PydanticCustomError(kind, message)


def _seconds(value: object) -> float:
    if (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    ):
        return float(value)
    raise _error("seconds", "must be a number of seconds, 0 or more")


def _wait_seconds(value: object) -> float:
    """A health check's time limit: 0 would fail every check at once."""
    try:
        seconds = _seconds(value)
    except PydanticCustomError:
        seconds = -1.0
    if seconds <= 0:
        raise _error(
            "seconds",
            "must be a number of seconds more than 0 (0 fails every health check at once: "
            "an account takes from under a second to tens of seconds to register again)",
        )
    return seconds


def _percent(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 100:
        return value
    raise _error("percent", "must be a whole number 1-100 (a share of the devices left)")


def _glob(value: object) -> str:
    if not isinstance(value, str):
        raise _error("glob_type", 'must be a device-name glob in quotes, e.g. "site-a/*"')
    problem = glob_problem(value)
    if problem is not None:
        raise _error("glob", f"bad glob: {problem}")
    return value


_PERCENT = re.compile(r"^(\d{1,3})%$")


def _max_failures(value: object) -> int | str:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        match = _PERCENT.match(value)
        if match and int(match[1]) <= 100:
            return f"{int(match[1])}%"
    raise _error("max_failures", 'must be a whole number 0 or more, or a share such as "10%"')


def _on_failure(value: object) -> OnFailure:
    if value == "halt":
        return "halt"
    if value == "revert":
        return "revert"
    raise _error("on_failure", "must be halt or revert")


def _day(value: object) -> int:
    if isinstance(value, str) and value in DAY_NAMES:
        return DAY_NAMES.index(value)
    what = f"unknown day '{value}'" if isinstance(value, str) and len(value) < 20 else "not a day"
    raise _error("day", f"{what}; days are {', '.join(DAY_NAMES)}")


_CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def _clock(value: object, *, end: bool) -> int:
    if isinstance(value, str):
        if end and value == "24:00":
            return 1440
        match = _CLOCK.match(value)
        if match:
            return int(match[1]) * 60 + int(match[2])
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML 1.1 reads an unquoted 22:00 as the base-60 number 1320.
        raise _error("clock_number", "must be a time in quotes")
    latest = '"24:00"' if end else '"23:59"'
    raise _error("clock", f'must be a time "HH:MM" from "00:00" to {latest}')


def _zone(value: object) -> str:
    if isinstance(value, str) and value:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
            pass
        else:
            return value
    raise _error("timezone", "must be an IANA time zone name such as Europe/Prague or UTC")


Seconds = Annotated[float, PlainValidator(_seconds)]
WaitSeconds = Annotated[float, PlainValidator(_wait_seconds)]
Percent = Annotated[int, PlainValidator(_percent)]
Glob = Annotated[str, PlainValidator(_glob)]
MaxFailures = Annotated[int | str, PlainValidator(_max_failures)]
OnFailureValue = Annotated[str, PlainValidator(_on_failure)]
Day = Annotated[int, PlainValidator(_day)]
Start = Annotated[int, PlainValidator(lambda v: _clock(v, end=False))]
End = Annotated[int, PlainValidator(lambda v: _clock(v, end=True))]
Zone = Annotated[str, PlainValidator(_zone)]


# ---------------------------------------------------------- document models


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _WaveDoc(_Strict):
    name: Text
    devices: list[Glob] | None = None
    percent: Percent | None = None

    @model_validator(mode="after")
    def _one_selector(self) -> _WaveDoc:
        if self.devices is not None and self.percent is not None:
            raise _error("selector", "a wave selects by devices: or by percent:, not both")
        if self.devices is not None and not self.devices:
            raise _error("selector", "devices: must list at least one glob")
        if not self.name:
            raise _error("wave_name", "name: must not be empty")
        return self


class _RolloutDoc(_Strict):
    waves: list[_WaveDoc] = []
    bake: Seconds = 0.0
    maxFailures: MaxFailures | None = None
    onFailure: OnFailureValue = "halt"


class _HealthDoc(_Strict):
    registration: Bool = True
    timeout: WaitSeconds = 60.0
    monitor: Bool = True


class _WindowSpecDoc(_Strict):
    days: list[Day] | None = None
    start: Start = Field(default=0, alias="from")
    end: End = Field(default=1440, alias="to")
    timezone: Zone = "UTC"

    @model_validator(mode="after")
    def _not_empty(self) -> _WindowSpecDoc:
        if self.days is not None and not self.days:
            raise _error("days", "days: must list at least one day (leave it out for every day)")
        if self.start == self.end % 1440 and self.end != 1440:
            raise _error(
                "window", 'from and to are equal; for a whole day write "00:00" to "24:00"'
            )
        return self


class _WindowDoc(_Strict):
    allow: _WindowSpecDoc | None = None
    deny: _WindowSpecDoc | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> _WindowDoc:
        if (self.allow is None) == (self.deny is None):
            raise _error("window", "each window is either allow: {...} or deny: {...}")
        return self

    def always_denies(self) -> bool:
        """A deny window open every day, all day (days, times and zone written out)."""
        deny = self.deny
        return (
            deny is not None
            and (deny.days is None or set(deny.days) == set(range(len(DAY_NAMES))))
            and deny.start == 0
            and deny.end == 1440
        )


class _CallsDoc(_Strict):
    waitForIdle: Bool = True
    maxWait: Seconds = 300.0


class _FleetDoc(_Strict):
    rollout: _RolloutDoc = _RolloutDoc()
    health: _HealthDoc = _HealthDoc()
    windows: list[_WindowDoc] = []
    calls: _CallsDoc = _CallsDoc()


# ----------------------------------------------------------------- loading


def policy_from_doc(doc: Any, *, devices: Collection[str] | None = None) -> PolicyResult:
    """Check a parsed ``_fleet.yaml``; ``policy`` is None when it is invalid.

    With ``devices`` (the names of the tree's devices), a wave's glob that
    matches none of them is a warning: a typo, or a device not added yet.
    """
    if doc is None:
        return PolicyResult(FleetPolicy())
    if not isinstance(doc, YamlMap):
        message = "must be a mapping with rollout:, health:, windows: or calls:"
        return PolicyResult(None, [Problem(FLEET_FILE, 1, "", message)])
    try:
        parsed = _FleetDoc.model_validate(doc)
    except ValidationError as exc:
        problems = [_problem_of(err, doc) for err in exc.errors()]
        return PolicyResult(None, sorted(set(problems), key=lambda p: (p.line or 0, p.path)))
    problems = [*_wave_problems(parsed, doc), *_window_warnings(parsed, doc)]
    if devices is not None:
        problems += _unmatched_globs(parsed, doc, devices)
    if any(not p.warning for p in problems):
        return PolicyResult(None, problems)
    return PolicyResult(_to_policy(parsed), problems)


def _wave_problems(parsed: _FleetDoc, doc: YamlMap) -> list[Problem]:
    """Checks across waves: names unique and not reserved, no wave after a catch-all."""
    problems: list[Problem] = []
    first: dict[str, int] = {}
    catch_all: str | None = None
    for i, wave in enumerate(parsed.rollout.waves):
        pos, path = locate(doc, ("rollout", "waves", i, "name"), FLEET_FILE)
        if wave.name == UNMATCHED_WAVE:
            message = f"'{UNMATCHED_WAVE}' is reserved for devices no wave matches"
            problems.append(Problem(pos.file, pos.line, path, message))
        elif wave.name in first:
            message = f"wave '{wave.name}' is named twice (first on line {first[wave.name]})"
            problems.append(Problem(pos.file, pos.line, path, message))
        else:
            first[wave.name] = pos.line
        if catch_all is not None:
            where, wave_path = locate(doc, ("rollout", "waves", i), FLEET_FILE)
            message = (
                f"wave '{wave.name}' never gets a device: wave '{catch_all}' before it "
                "takes every device left"
            )
            problems.append(Problem(where.file, where.line, wave_path, message, warning=True))
        elif wave.devices is None and wave.percent is None:
            catch_all = wave.name
    return problems


def _window_warnings(parsed: _FleetDoc, doc: YamlMap) -> list[Problem]:
    """A deny window open all week: valid (a freeze), but no rollout runs while it stays."""
    problems = []
    for i, window in enumerate(parsed.windows):
        if window.always_denies():
            pos, path = locate(doc, ("windows", i, "deny"), FLEET_FILE)
            message = (
                "this deny window is open every day, all day (days, from and to left out "
                "mean every day, 00:00 to 24:00): no rollout runs while it stays; give "
                "days:, from: and to:, or pause rollouts with syncd rollout pause"
            )
            problems.append(Problem(pos.file, pos.line, path, message, warning=True))
    return problems


def _unmatched_globs(parsed: _FleetDoc, doc: YamlMap, devices: Collection[str]) -> list[Problem]:
    """A warning for each wave glob that matches no device of the tree, and for each glob
    wave whose devices an earlier glob wave takes, every one (a device joins the first
    wave that matches it)."""
    problems = []
    taken: dict[str, str] = {}  # device -> the glob wave that takes it
    for i, wave in enumerate(parsed.rollout.waves):
        for j, pattern in enumerate(wave.devices or ()):
            if not select_devices(devices, [pattern]):
                pos, path = locate(doc, ("rollout", "waves", i, "devices", j), FLEET_FILE)
                message = f"wave '{wave.name}': {pattern!r} matches no device"
                problems.append(Problem(pos.file, pos.line, path, message, warning=True))
        if not wave.devices:
            continue
        matched = select_devices(devices, wave.devices)
        if matched and all(d in taken for d in matched):
            earlier = ", ".join(f"'{w}'" for w in dict.fromkeys(taken[d] for d in sorted(matched)))
            pos, path = locate(doc, ("rollout", "waves", i), FLEET_FILE)
            message = (
                f"wave '{wave.name}' never gets a device: every device it matches is in "
                f"wave {earlier} before it"
            )
            problems.append(Problem(pos.file, pos.line, path, message, warning=True))
        for device in matched:
            taken.setdefault(device, wave.name)
    return problems


def _to_policy(parsed: _FleetDoc) -> FleetPolicy:
    rollout = parsed.rollout
    waves = tuple(
        Wave(w.name, tuple(w.devices) if w.devices is not None else None, w.percent)
        for w in rollout.waves
    )
    windows = []
    for item in parsed.windows:
        kind: WindowKind = "allow" if item.allow is not None else "deny"
        spec = item.allow or item.deny
        assert spec is not None  # one of them, by _WindowDoc's validator
        days = frozenset(spec.days) if spec.days is not None else ALL_DAYS
        windows.append(Window(kind, days, spec.start, spec.end, spec.timezone))
    return FleetPolicy(
        rollout=RolloutPolicy(
            waves=waves,
            bake=rollout.bake,
            max_failures=rollout.maxFailures,
            on_failure=_on_failure(rollout.onFailure),
        ),
        health=HealthPolicy(
            parsed.health.registration, parsed.health.timeout, parsed.health.monitor
        ),
        windows=tuple(windows),
        calls=CallsPolicy(parsed.calls.waitForIdle, parsed.calls.maxWait),
    )


# ------------------------------------------------------------ error messages


def _problem_of(err: Any, doc: YamlMap) -> Problem:
    loc = tuple(err["loc"])
    kind = err["type"]
    pos, path = locate(doc, loc, FLEET_FILE)
    if kind == "extra_forbidden":
        key = str(loc[-1])
        known = _known_keys(loc[:-1])
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        hint = f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(known)}"
        return Problem(pos.file, pos.line, path, f"unknown key '{key}'{hint}")
    if kind == "clock_number":
        written = pos.raw or "22:00"
        message = (
            f'must be a time in quotes: {loc[-1]}: "{written}" '
            "(unquoted, YAML reads it as a number of minutes)"
        )
        return Problem(pos.file, pos.line, path, message)
    return problem_from_error(err, doc, FLEET_FILE)


def _known_keys(loc: tuple[int | str, ...]) -> list[str]:
    """The keys a mapping at ``loc`` may hold, as written in YAML."""
    model: type[BaseModel] = _FleetDoc
    for part in loc:
        if isinstance(part, int):
            continue
        info = next(
            (f for n, f in model.model_fields.items() if (f.alias or n) == part),
            None,
        )
        if info is None:
            return []
        inner = getattr(info.annotation, "__args__", (info.annotation,))
        nested = _nested_model(inner)
        if nested is None:
            return []
        model = nested
    return [f.alias or n for n, f in model.model_fields.items()]


def _nested_model(types: tuple[Any, ...]) -> type[BaseModel] | None:
    for kind in types:
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            return kind
        found = _nested_model(getattr(kind, "__args__", ()))
        if found is not None:
            return found
    return None
