"""Where a value was written, and pydantic's errors as operator-worded problems at file:line."""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel

from syncd.desired.result import Problem
from syncd.desired.schema import FileDoc
from syncd.desired.yamldoc import Pos, YamlList, YamlMap

__all__ = ["locate", "problem_from_error"]


def locate(doc: Any, loc: tuple[int | str, ...], fallback: str) -> tuple[Pos, str]:
    """The position of the deepest value on ``loc``, and ``loc`` as a dotted path."""
    pos = getattr(doc, "pos", None) or Pos(fallback, 1)
    node = doc
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
            if isinstance(node, YamlList) and part < len(node):
                pos = node.item_pos[part]
                node = node[part]
            else:
                break
        else:
            path += f".{part}" if path else part
            if isinstance(node, YamlMap) and part in node:
                pos = node.key_pos[part]
                node = node[part]
            else:
                if isinstance(node, YamlMap):
                    pos = node.pos
                break
    return pos, path


def problem_from_error(err: Any, doc: Any, rel: str) -> Problem:
    """One pydantic error on the merged document ``doc`` of device file ``rel``, as a Problem."""
    loc = tuple(err["loc"])
    pos, path = locate(doc, loc, rel)

    def problem(message: str) -> Problem:
        return Problem(pos.file, pos.line, path, message)

    kind = err["type"]
    if kind == "extra_forbidden":
        return problem(_unknown_key(loc))
    if kind == "missing":
        return problem("is required")
    if kind == "text_type" and pos.raw in _NULLS:
        return problem(
            f'is empty (YAML null); write {loc[-1]}: "" to clear it on the device, '
            "or leave the key out to leave the device's value alone"
        )
    if kind == "text_type" and pos.raw is not None:
        return problem(
            f'must be a string; quote it: {loc[-1]}: "{pos.raw}" '
            "(unquoted, YAML reads it as another type, and 0123 as a different number)"
        )
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return problem("must be a mapping")
    if kind == "list_type":
        return problem("must be a list")
    message = err["msg"]
    if kind == "enum":
        message = message.replace("Input should be", "must be")
    return problem(message)


#: How YAML writes null: no value, ``~``, ``null`` in its three spellings.
_NULLS = frozenset({"", "~", "null", "Null", "NULL"})


def _unknown_key(loc: tuple[int | str, ...]) -> str:
    """``unknown key 'x'`` with the nearest known key, or the known keys."""
    key = str(loc[-1])
    parent_model = _model_at(loc[:-1])
    known = list(parent_model.model_fields) if parent_model else []
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    if known and not close:
        hint = f"; known keys: {', '.join(known)}"
    return f"unknown key '{key}'{hint}"


def _model_at(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    model: type[BaseModel] = FileDoc
    for part in loc:
        if isinstance(part, int):
            continue
        info = model.model_fields.get(str(part))
        if info is None:
            return None
        annotation = info.annotation
        inner = getattr(annotation, "__args__", (annotation,))
        nested = next((a for a in inner if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if nested is None:
            return None
        model = nested
    return model
