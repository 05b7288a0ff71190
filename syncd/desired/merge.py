"""Merge ``_defaults.yaml`` under device files, keeping every value's position.

Mappings merge key by key, ``accounts`` by account number, any other list is
replaced (SPEC section 2). A ``password`` is one value whatever its form: a
device file's ``{file: PATH}`` replaces the defaults' ``{env: NAME}`` whole,
as a quoted string would (merged key by key they made ``{env:, file:}``, no
secret at all). Accounts merge by number, so each source must name each
account once, validly: :func:`check_accounts` says where it does not.
"""

from __future__ import annotations

from typing import Any, TypeGuard

from syncd.desired.result import Problem
from syncd.desired.schema import account_number_problem
from syncd.desired.yamldoc import YamlList, YamlMap
from syncd.model import ACCOUNT_NUMBERS

__all__ = ["check_accounts", "merge"]

#: An account without ``account:`` (the schema reports the same place as "is required").
MISSING_ACCOUNT = "is required: the account number, 1 to 4"
#: Keys whose value is one secret (``device.auth.password``, an account's ``password``):
#: replaced whole, never merged, even where both sources write a reference mapping.
_WHOLE = frozenset({"password"})


def check_accounts(doc: YamlMap) -> list[Problem]:
    """Problems of one source's ``accounts``: not a mapping, no number, a bad or repeated one."""
    accounts = doc.get("accounts")
    if not isinstance(accounts, YamlList):
        return []
    problems: list[Problem] = []
    seen: dict[int, int] = {}
    for i, item in enumerate(accounts):
        pos = accounts.item_pos[i]
        if not isinstance(item, YamlMap):
            problems.append(Problem(pos.file, pos.line, f"accounts[{i}]", "must be a mapping"))
            continue
        number = item.get("account")
        where = item.key_pos.get("account", item.pos)
        path = f"accounts[{i}].account"
        if "account" not in item:
            # The schema says the same at the same place: one problem, not two.
            problems.append(Problem(pos.file, pos.line, path, MISSING_ACCOUNT))
        elif not _is_account_number(number):
            message = account_number_problem(number) or "must be a number 1 to 4"
            problems.append(Problem(where.file, where.line, path, message))
        elif number in seen:
            message = f"account {number} is listed twice (first on line {seen[number]})"
            problems.append(Problem(where.file, where.line, path, message))
        else:
            seen[number] = where.line
    return problems


def _is_account_number(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value in ACCOUNT_NUMBERS


def merge(base: Any, top: Any) -> Any:
    """Deep-merge ``top`` over ``base`` keeping positions; accounts merge by number."""
    if isinstance(base, YamlMap) and isinstance(top, YamlMap):
        out = YamlMap(base)
        out.pos = top.pos
        out.key_pos = key_pos = base.key_pos.copy()
        key_pos.update(top.key_pos)
        for key, value in top.items():
            if key not in base:
                out[key] = value
                continue
            below = base[key]
            if isinstance(value, YamlMap) and key not in _WHOLE:
                out[key] = merge(below, value)
            elif key == "accounts" and isinstance(value, YamlList) and isinstance(below, YamlList):
                out[key] = _merge_accounts(below, value)
            else:
                out[key] = value  # what merge() would return for anything but two mappings
        return out
    return top


def _merge_accounts(base: YamlList, top: YamlList) -> YamlList:
    def number(item: Any) -> Any:
        return item.get("account") if isinstance(item, YamlMap) else None

    out = YamlList()
    out.pos = top.pos
    out.item_pos = []
    index = {number(item): i for i, item in enumerate(base)}
    used: set[int] = set()
    for item, pos in zip(top, top.item_pos, strict=True):
        i = index.get(number(item))
        if i is not None:
            used.add(i)
            out.append(merge(base[i], item))
        else:
            out.append(item)
        out.item_pos.append(pos)
    for i, item in enumerate(base):
        if i not in used:
            out.append(item)
            out.item_pos.append(base.item_pos[i])
    return out
