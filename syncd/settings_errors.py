"""A bad setting in our own words: which setting, which source holds the value, what is wrong.

Pure: :func:`setting_problem` words one of pydantic's validation errors (its
``type``, ``loc`` and ``ctx``) for an operator; :func:`value_source` says which
of the flags, the environment and the TOML file holds the value in force;
:func:`unknown_variables` finds ``SYNCD_*`` environment variables that name no
setting (pydantic-settings ignores them, so a misspelt one silently does nothing).
"""

from __future__ import annotations

import difflib
import typing
from collections.abc import Collection, Iterable, Mapping
from typing import Any, Literal

__all__ = ["ENV_PREFIX", "nearest", "setting_problem", "unknown_variables", "value_source"]

ENV_PREFIX = "SYNCD_"

#: The command-line flag of each setting whose flag is not ``--`` plus its name (None: no flag).
_FLAGS: dict[str, str | None] = {
    "desired_dir": "--desired",
    "retry_attempts": None,
    "max_backoff": None,
}

#: What a value of each kind of pydantic error must be, in our words.
_MUST_BE = {
    "int_parsing": "must be a whole number",
    "int_type": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "finite_number": "must be a finite number",
    "string_type": "must be a string",
    "path_type": "must be a path",
    "bool_type": "must be true or false",
}
#: The bounds of a number, by pydantic's error type and its context key.
_BOUNDS = {
    "greater_than": ("gt", "must be more than"),
    "greater_than_equal": ("ge", "must be at least"),
    "less_than": ("lt", "must be less than"),
    "less_than_equal": ("le", "must be at most"),
}


def _flag_of(name: str) -> str | None:
    """The command-line flag of setting ``name``, or None when it has none."""
    return _FLAGS.get(name, f"--{name.replace('_', '-')}")


def nearest(word: str, known: Iterable[str]) -> str | None:
    """The known word nearest to ``word`` (a misspelling of it), or None."""
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return close[0] if close else None


def value_source(
    name: str, *, flags: Collection[str], environ: Mapping[str, str], toml_file: str | None
) -> str:
    """Where the value in force of setting ``name`` comes from, highest source first."""
    flag = _flag_of(name)
    if name in flags and flag is not None:
        return f"flag {flag}"
    wanted = f"{ENV_PREFIX}{name}".upper()
    variable = next((k for k in environ if k.upper() == wanted), None)  # as pydantic: any case
    if variable is not None:
        return variable
    return toml_file or "the defaults"


def setting_problem(err: Mapping[str, Any], annotation: Any = None) -> str:
    """What is wrong with a setting's value, after ``bad setting NAME (SOURCE): ``.

    ``err`` is one of pydantic's errors; ``annotation`` the setting's type (for
    the choices of a ``Literal``).
    """
    kind = str(err.get("type", ""))
    ctx = err.get("ctx") or {}
    if kind in _MUST_BE:
        return _MUST_BE[kind]
    if kind in _BOUNDS:
        key, words = _BOUNDS[kind]
        bound = ctx.get(key)
        if isinstance(bound, float) and bound.is_integer():
            bound = int(bound)  # "more than 0", not "more than 0.0"
        return f"{words} {bound}"
    if kind == "literal_error":
        choices = _choices(annotation)
        if choices:
            return f"must be one of {', '.join(choices)}"
    message = str(err.get("msg", "is not valid"))
    return message.removeprefix("Value error, ")


def _choices(annotation: Any) -> list[str]:
    """The values of a ``Literal`` annotation (inside ``X | None`` too)."""
    for arg in (annotation, *typing.get_args(annotation)):
        if typing.get_origin(arg) is Literal:
            return [str(v) for v in typing.get_args(arg)]
    return []


#: Variables of the test suite (``SYNCD_TEST_ETCD``, say): no setting, and no warning.
TEST_PREFIX = "SYNCD_TEST_"


def unknown_variables(environ: Mapping[str, str], settings: Collection[str]) -> dict[str, str]:
    """Each ``SYNCD_*`` variable that names no setting, with a warning sentence naming
    the nearest setting's variable (``SYNCD_TEST_*`` belongs to the test suite)."""
    warnings = {}
    for variable in sorted(environ):
        upper = variable.upper()
        if not upper.startswith(ENV_PREFIX) or upper.startswith(TEST_PREFIX):
            continue
        name = upper.removeprefix(ENV_PREFIX).lower()
        if name in settings:
            continue
        close = nearest(name, settings)
        hint = f"; did you mean {ENV_PREFIX}{close.upper()}?" if close else ""
        said = f"environment variable {variable} names no setting and is ignored"
        warnings[variable] = said + hint
    return warnings
