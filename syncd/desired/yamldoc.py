"""Parse one YAML document into plain values that remember where they came from.

libyaml (through PyYAML's C loader) does the parsing; this module only walks
the node tree it composes, so that every mapping key and list item keeps its
file and line, duplicate keys are refused, and hostile documents (alias
bombs, deep nesting) stop early with a message instead of eating the host.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import yaml

__all__ = [
    "MAX_DEPTH",
    "MAX_NODES",
    "Pos",
    "Yaml11Bool",
    "YamlError",
    "YamlList",
    "YamlMap",
    "parse_yaml",
]

#: No legitimate desired-state file comes near these; alias bombs and junk do.
MAX_NODES = 20_000
MAX_DEPTH = 24

_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_MERGE = "tag:yaml.org,2002:merge"
_ScalarNode = yaml.ScalarNode
#: Booleans in YAML 1.1 (PyYAML) but text in YAML 1.2: refused, as they mean different things.
_YAML11_BOOLS = frozenset({"yes", "no", "on", "off"})
#: YAML 1.2's core-schema numbers, the plain texts PyYAML's YAML 1.1 leaves as strings
#: among them (``1e3``, ``0o17``); what may start one.
_YAML12_NUMBER = re.compile(
    r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+|[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)"
)
_NUMBER_START = frozenset("0123456789+-.")
_SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_resolve: Callable[..., str] = _SafeLoader.resolve
#: Plain scalars' texts and the tags they resolve to (keys and common values recur in
#: every file); bounded, so that a stream of distinct values cannot grow it.
_PLAIN_TAGS: dict[str, str] = {}
_PLAIN_TAGS_MAX = 4096


class _Loader(_SafeLoader):  # type: ignore[valid-type,misc]
    """The safe loader, remembering which tag each plain scalar's text resolves to.

    libyaml asks the resolver (Python) about every scalar, and PyYAML tries its
    regular expressions each time. A plain scalar's tag depends on its text
    alone (while no path resolvers are registered), so the answer is kept:
    ~10% of reading a device file.
    """

    def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
        if kind is _ScalarNode and implicit[0] and not self.yaml_path_resolvers:
            tag = _PLAIN_TAGS.get(value)
            if tag is None:
                tag = _resolve(self, kind, value, implicit)
                if len(_PLAIN_TAGS) < _PLAIN_TAGS_MAX:
                    _PLAIN_TAGS[value] = tag
            return tag
        return _resolve(self, kind, value, implicit)


class Pos(NamedTuple):
    """Where a value was written: file (relative to the desired dir), line, source text.

    A named tuple rather than a frozen dataclass: one is made for every key and
    list item of every file, and a tuple is several times cheaper to make.
    """

    file: str
    line: int
    raw: str | None = None


#: ``_new_pos(Pos, (file, line, raw))``: a Pos without the Python-level ``__new__`` of a
#: named tuple; the walker makes one per key and list item.
_new_pos = tuple.__new__


class YamlError(Exception):
    def __init__(self, pos: Pos, message: str) -> None:
        super().__init__(f"{pos.file}:{pos.line}: {message}")
        self.pos = pos
        self.message = message


@dataclass(frozen=True)
class _Yaml12Number:
    """An unquoted ``1e3``, ``0o17`` or ``1.5e3``: text to YAML 1.1 (PyYAML), a number
    in YAML 1.2 (1000, 15, ...). syncd takes it as neither: every field refuses it, with a hint."""

    text: str


@dataclass(frozen=True)
class Yaml11Bool:
    """An unquoted ``yes``/``no``/``on``/``off``: a boolean in YAML 1.1 (PyYAML), text in
    YAML 1.2. syncd takes it as neither: every field refuses it, with a hint."""

    text: str


class YamlMap(dict[str, Any]):
    """A mapping that also records the position of itself and of each key."""

    __slots__ = ("key_pos", "pos")  # no __dict__ per mapping: there are a few per file
    pos: Pos
    key_pos: dict[str, Pos]


class YamlList(list[Any]):
    """A sequence that also records the position of itself and of each item."""

    __slots__ = ("item_pos", "pos")
    pos: Pos
    item_pos: list[Pos]


def parse_yaml(text: str, file: str) -> Any:
    """Parse ``text`` (one YAML document) into YamlMap/YamlList/scalars.

    Raises :class:`YamlError` naming ``file`` and the line for syntax errors,
    duplicate keys, non-string keys, and documents too large or too deep.
    """
    loader = _Loader(text)
    try:
        try:
            node = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            line, problem = _where_it_starts(exc, text)
            raise YamlError(Pos(file, line), f"invalid YAML: {problem}") from None
        except yaml.reader.ReaderError as exc:
            # A character YAML refuses (DEL, C1 controls, U+FFFE): name it and its line.
            code = exc.character if isinstance(exc.character, int) else None
            at = text.find(chr(code)) if code is not None else -1
            line = text.count("\n", 0, at) + 1 if at >= 0 else 1
            what = f"character {code:#06x}" if code is not None else "a character"
            raise YamlError(Pos(file, line), f"invalid YAML: {what} is not allowed") from None
        except yaml.YAMLError as exc:
            raise YamlError(Pos(file, 1), f"invalid YAML: {exc}") from None
        except RecursionError:
            raise YamlError(Pos(file, 1), "invalid YAML: nested too deeply") from None
        if node is None:
            return None
        return _Walker(loader, file).walk(node, 0)
    finally:
        loader.dispose()


class _Walker:
    """Turns composed nodes into values; hot (every value of every file), so written for speed.

    Plain strings, decimal integers, booleans and nulls, by far the most common
    values, are read here; anything else goes to PyYAML's constructors.
    """

    def __init__(self, loader: yaml.SafeLoader, file: str) -> None:
        self._loader = loader
        self._file = file
        self._nodes = 0

    def _pos(self, node: yaml.Node, raw: bool = False) -> Pos:
        text = node.value if raw and isinstance(node, yaml.ScalarNode) else None
        return Pos(self._file, node.start_mark.line + 1, text)

    def _refuse(self, node: yaml.Node, depth: int) -> None:
        """Raise for a document over the node limit (checked first) or too deep; else nothing."""
        if self._nodes > MAX_NODES:
            raise YamlError(
                self._pos(node), f"document too large: more than {MAX_NODES} values (alias bomb?)"
            )
        if depth > MAX_DEPTH:
            raise YamlError(self._pos(node), f"nested more than {MAX_DEPTH} levels deep")

    def walk(self, node: yaml.Node, depth: int) -> Any:
        self._nodes += 1
        if self._nodes > MAX_NODES or depth > MAX_DEPTH:
            self._refuse(node, depth)
        if isinstance(node, _ScalarNode):
            return self._scalar(node)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, depth)
        if isinstance(node, yaml.SequenceNode):
            file = self._file
            items = node.value
            seq = YamlList([self.walk(item, depth + 1) for item in items])
            seq.pos = Pos(file, node.start_mark.line + 1)
            seq.item_pos = [
                _new_pos(Pos, (file, item.start_mark.line + 1, _raw(item))) for item in items
            ]
            return seq
        return self._construct(node)

    def _scalar(self, node: yaml.ScalarNode) -> Any:
        tag = node.tag
        value: str = node.value
        if tag == _STR:
            return _text(node)  # the common case, without PyYAML's generic constructor
        if tag == _INT:
            # Plain decimals only: 0123 (octal in YAML 1.1), 0x1f, 1_000 or a huge one go
            # to PyYAML, whose readings (and failures) stay as they were.
            if _is_decimal(value):
                return int(value)
        elif tag == _BOOL:
            lowered = value.lower()
            if lowered in _YAML11_BOOLS:
                return Yaml11Bool(value)
            if lowered == "true":
                return True
            if lowered == "false":
                return False
        elif tag == _NULL:
            return None
        return self._construct(node)

    def _construct(self, node: yaml.Node) -> Any:
        try:
            return self._loader.construct_object(node)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise YamlError(self._pos(node), f"invalid value: {problem}") from None
        except Exception:
            # PyYAML's constructors raise plain ValueError/KeyError/... for values such as
            # 2024-13-45, `!!float x`, `!!bool x` or an integer of 5,000 digits. Their
            # messages may quote the value (a secret, maybe), so name only the type.
            kind = str(node.tag).rsplit(":", 1)[-1]
            raise YamlError(self._pos(node), f"invalid value: not a valid {kind}") from None

    def _mapping(self, node: yaml.MappingNode, depth: int) -> YamlMap:
        file = self._file
        result = YamlMap()
        result.pos = Pos(file, node.start_mark.line + 1)
        key_pos: dict[str, Pos] = {}
        result.key_pos = key_pos
        inner = depth + 1
        for key_node, value_node in node.value:
            if key_node.tag == _STR and isinstance(key_node, _ScalarNode):
                self._nodes += 1  # walk() inlined for the usual key, a plain string
                if self._nodes > MAX_NODES or inner > MAX_DEPTH:
                    self._refuse(key_node, inner)
                key = key_node.value
            else:
                if key_node.tag == _MERGE:
                    raise YamlError(self._pos(key_node), "YAML merge keys (<<) are not supported")
                key = self.walk(key_node, inner)
                if not isinstance(key, str):
                    raise YamlError(self._pos(key_node), f"key {key!r} must be a string")
            if key in result:
                first = key_pos[key].line
                raise YamlError(
                    self._pos(key_node), f"duplicate key '{key}' (first written on line {first})"
                )
            if value_node.__class__ is _ScalarNode and value_node.tag == _STR:
                self._nodes += 1  # and for the usual value, a string
                if self._nodes > MAX_NODES or inner > MAX_DEPTH:
                    self._refuse(value_node, inner)
                raw = value_node.value
                result[key] = _text(value_node) if raw[:1] in _NUMBER_START else raw
            else:
                result[key] = self.walk(value_node, inner)
                raw = value_node.value if value_node.__class__ is _ScalarNode else None
            key_pos[key] = _new_pos(Pos, (file, key_node.start_mark.line + 1, raw))
        return result


def _is_decimal(value: str) -> bool:
    """An ASCII decimal without a leading zero and of sane length, as ``int()`` reads it."""
    return (
        value.isascii()
        and value.isdigit()
        and len(value) <= 18
        and (value[0] != "0" or value == "0")
    )


def _text(node: yaml.ScalarNode) -> str | _Yaml12Number:
    """A string scalar's value; a plain one that YAML 1.2 reads as a number is marked."""
    value: str = node.value
    if not node.style and value[:1] in _NUMBER_START and _YAML12_NUMBER.fullmatch(value):
        return _Yaml12Number(value)
    return value


def _raw(node: yaml.Node) -> str | None:
    return node.value if isinstance(node, _ScalarNode) else None


#: Constructs whose start (the context mark) is where the problem is, not where it showed.
_OPENED = ("while scanning a quoted scalar", "while parsing a flow")


def _where_it_starts(exc: yaml.MarkedYAMLError, text: str) -> tuple[int, str]:
    """The line where a syntax error starts (1-based), and what is wrong.

    libyaml reports where it gave up: an unclosed quote on line 5 shows as a
    problem on line 6. A quote or bracket left open is reported where it was
    opened instead.
    """
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark is not None else 1
    problem = exc.problem or exc.context or "not valid YAML"
    context = exc.context or ""
    if exc.context_mark is not None and context.startswith(_OPENED):
        opened = exc.context_mark.line + 1
        what = "quote" if "quoted" in context else "bracket"
        return opened, f"a {what} opened on this line is not closed ({problem})"
    quote = _unclosed_quote(text, up_to=line)
    if quote is not None:
        return quote, f"a quote opened on this line is not closed ({problem} on line {line})"
    if mark is not None and _char_at(text, mark.line, mark.column) == "\t":
        return line, f"a tab where YAML allows only spaces (indent with spaces; {problem})"
    return line, problem


def _char_at(text: str, line: int, column: int) -> str:
    """The character at 0-based ``line`` and ``column`` of ``text`` ("" past its end)."""
    lines = text.splitlines()
    if line >= len(lines) or column >= len(lines[line]):
        return ""
    return lines[line][column]


def _unclosed_quote(text: str, *, up_to: int) -> int | None:
    """The first line (up to ``up_to``) with a quoted value that does not end on that line.

    Desired-state values fit on one line, so a quote still open at the end of
    its line is almost surely a missing closing quote.
    """
    for number, line in enumerate(text.splitlines()[:up_to], start=1):
        if _opens_quote(line):
            return number
    return None


def _opens_quote(line: str) -> bool:
    quote: str | None = None
    i = 0
    while i < len(line):
        ch = line[i]
        if quote is None:
            before = line[:i].rstrip()
            if ch == "#" and (i == 0 or line[i - 1] in " \t"):
                return False  # a comment
            if ch in "\"'" and (not before or before[-1] in ":-[{,?"):
                quote = ch
        elif quote == '"' and ch == "\\":
            i += 1  # an escaped character
        elif ch == quote:
            if quote == "'" and line[i + 1 : i + 2] == "'":
                i += 1  # '' is a quote inside single quotes
            else:
                quote = None
        i += 1
    return quote is not None
