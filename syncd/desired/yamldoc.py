"""Parse one YAML document into plain values that remember where they came from.

libyaml (through PyYAML's C loader) does the parsing; this module only walks
the node tree it composes, so that every mapping key and list item keeps its
file and line, duplicate keys are refused, and hostile documents (alias
bombs, deep nesting) stop early with a message instead of eating the host.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
_BOOL = "tag:yaml.org,2002:bool"
#: Booleans in YAML 1.1 (PyYAML) but text in YAML 1.2: refused, as they mean different things.
_YAML11_BOOLS = frozenset({"yes", "no", "on", "off"})
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class Pos:
    """Where a value was written: file (relative to the desired dir), line, source text."""

    file: str
    line: int
    raw: str | None = None


class YamlError(Exception):
    def __init__(self, pos: Pos, message: str) -> None:
        super().__init__(f"{pos.file}:{pos.line}: {message}")
        self.pos = pos
        self.message = message


@dataclass(frozen=True)
class Yaml11Bool:
    """An unquoted ``yes``/``no``/``on``/``off``: a boolean in YAML 1.1 (PyYAML), text in
    YAML 1.2. syncd takes it as neither: every field refuses it, with a hint."""

    text: str


class YamlMap(dict[str, Any]):
    """A mapping that also records the position of itself and of each key."""

    pos: Pos
    key_pos: dict[str, Pos]


class YamlList(list[Any]):
    """A sequence that also records the position of itself and of each item."""

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
    def __init__(self, loader: yaml.SafeLoader, file: str) -> None:
        self._loader = loader
        self._file = file
        self._nodes = 0

    def _pos(self, node: yaml.Node, raw: bool = False) -> Pos:
        text = node.value if raw and isinstance(node, yaml.ScalarNode) else None
        return Pos(self._file, node.start_mark.line + 1, text)

    def walk(self, node: yaml.Node, depth: int) -> Any:
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise YamlError(
                self._pos(node), f"document too large: more than {MAX_NODES} values (alias bomb?)"
            )
        if depth > MAX_DEPTH:
            raise YamlError(self._pos(node), f"nested more than {MAX_DEPTH} levels deep")
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, depth)
        if isinstance(node, yaml.SequenceNode):
            seq = YamlList(self.walk(item, depth + 1) for item in node.value)
            seq.pos = self._pos(node)
            seq.item_pos = [self._pos(item, raw=True) for item in node.value]
            return seq
        if node.tag == _STR:
            return node.value  # the common case, without PyYAML's generic constructor
        if node.tag == _BOOL and node.value.lower() in _YAML11_BOOLS:
            return Yaml11Bool(node.value)
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
        result = YamlMap()
        result.pos = self._pos(node)
        result.key_pos = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise YamlError(self._pos(key_node), "YAML merge keys (<<) are not supported")
            key = self.walk(key_node, depth + 1)
            if not isinstance(key, str):
                raise YamlError(self._pos(key_node), f"key {key!r} must be a string")
            if key in result:
                first = result.key_pos[key].line
                raise YamlError(
                    self._pos(key_node), f"duplicate key '{key}' (first written on line {first})"
                )
            result[key] = self.walk(value_node, depth + 1)
            result.key_pos[key] = Pos(self._file, key_node.start_mark.line + 1, _raw(value_node))
        return result


def _raw(node: yaml.Node) -> str | None:
    return node.value if isinstance(node, yaml.ScalarNode) else None


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
    return line, problem


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
