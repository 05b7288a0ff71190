"""Position-keeping YAML parsing (yamldoc) and the value model's fingerprint."""

from __future__ import annotations

import pytest

from syncd.desired.yamldoc import (
    MAX_DEPTH,
    MAX_NODES,
    Pos,
    Yaml11Bool,
    YamlError,
    YamlList,
    YamlMap,
    parse_yaml,
)
from syncd.model import AccountSpec, DeviceSpec, Mode


class TestParseYaml:
    def test_positions_of_keys_and_items(self) -> None:
        """Mappings record each key's line and raw text; lists record each item's line."""
        doc = parse_yaml("a: 1\nb:\n  - x\n  - '0123'\nc: 0123\n", "f.yaml")
        assert isinstance(doc, YamlMap)
        assert doc.key_pos["a"] == Pos("f.yaml", 1, "1")
        assert doc.key_pos["c"] == Pos("f.yaml", 5, "0123")
        items = doc["b"]
        assert isinstance(items, YamlList)
        assert [p.line for p in items.item_pos] == [3, 4]
        assert items.item_pos[1].raw == "0123"
        assert doc["c"] == 83  # YAML 1.1 reads 0123 as octal: why text must be quoted

    def test_plain_values(self) -> None:
        """Scalars come back as the usual Python types."""
        doc = parse_yaml("t: true\nn: 5\ns: '5'\nz: null\ne: ''\n", "f.yaml")
        assert dict(doc) == {"t": True, "n": 5, "s": "5", "z": None, "e": ""}

    def test_plain_scalars_read_the_same_every_time(self) -> None:
        """Remembered tags change nothing: each text reads as before, in any document, any order."""
        text = "a: 0123\nb: yes\nc: '5'\nd: 5\ne: 1.5\nf: ~\ng: 2024-01-01\nh: x\n"
        first = dict(parse_yaml(text, "f.yaml"))
        again = dict(parse_yaml("y: x\nz: 5\n" + text, "g.yaml"))
        assert first["a"] == 83 and again["a"] == 83 and again["z"] == 5
        assert first["b"] == again["b"] == Yaml11Bool("yes")
        assert first["c"] == "5" and first["d"] == 5 and first["e"] == 1.5 and first["f"] is None
        assert str(first["g"]) == "2024-01-01" and first["h"] == "x"
        for key in "abcdefgh":
            assert first[key] == again[key]

    def test_empty_document_is_none(self) -> None:
        """An empty or comment-only document parses to None."""
        assert parse_yaml("", "f.yaml") is None
        assert parse_yaml("# c\n", "f.yaml") is None

    def test_duplicate_key(self) -> None:
        """A duplicate key raises YamlError at the second, naming the first line."""
        with pytest.raises(YamlError) as caught:
            parse_yaml("a: 1\nb: 2\na: 3\n", "f.yaml")
        assert caught.value.pos == Pos("f.yaml", 3)
        assert "duplicate key 'a'" in caught.value.message and "line 1" in caught.value.message
        assert str(caught.value).startswith("f.yaml:3: ")

    def test_nested_duplicate_key(self) -> None:
        """Duplicate keys are caught at any depth."""
        with pytest.raises(YamlError) as caught:
            parse_yaml("x:\n  y:\n    k: 1\n    k: 2\n", "f.yaml")
        assert caught.value.pos.line == 4

    def test_node_limit(self) -> None:
        """More than MAX_NODES values (via aliases) raises YamlError instead of expanding."""
        width = 200
        text = "a: &a [" + ",".join(["1"] * width) + "]\n"
        text += "b: [" + ",".join(["*a"] * (MAX_NODES // width + 1)) + "]\n"
        with pytest.raises(YamlError, match="too large"):
            parse_yaml(text, "f.yaml")

    def test_depth_limit(self) -> None:
        """Nesting deeper than MAX_DEPTH raises YamlError; just within the limit parses."""
        parse_yaml("[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1), "f.yaml")
        with pytest.raises(YamlError, match="nested"):
            parse_yaml("[" * (MAX_DEPTH + 2) + "]" * (MAX_DEPTH + 2), "f.yaml")

    def test_syntax_error_line(self) -> None:
        """A syntax error is a YamlError at the parser's line with a short message."""
        with pytest.raises(YamlError) as caught:
            parse_yaml("a: 1\nb: [\n", "f.yaml")
        assert caught.value.pos.line == 3
        assert caught.value.message.startswith("invalid YAML: ")

    def test_refused_character_line(self) -> None:
        """A character YAML refuses (DEL) is reported on its own line, not line 1."""
        with pytest.raises(YamlError) as caught:
            parse_yaml("a: 1\nb: 2\nc: x\x7fy\n", "f.yaml")
        assert caught.value.pos.line == 3
        assert "0x007f" in caught.value.message

    def test_merge_key_refused(self) -> None:
        """A `<<` merge key raises YamlError."""
        with pytest.raises(YamlError, match="merge keys"):
            parse_yaml("a: &x {k: 1}\nb:\n  <<: *x\n", "f.yaml")

    @pytest.mark.parametrize("text", ["1: a\n", "[a]: b\n", "{a: 1}: c\n", "null: x\n"])
    def test_non_string_keys(self, text: str) -> None:
        """A key that is not a string raises YamlError."""
        with pytest.raises(YamlError, match="must be a string"):
            parse_yaml(text, "f.yaml")

    def test_unsafe_tag(self) -> None:
        """Python-object tags are refused, on one line of text."""
        with pytest.raises(YamlError) as caught:
            parse_yaml("a: !!python/name:os.system x\n", "f.yaml")
        assert "\n" not in str(caught.value)


def spec(url: str = "https://192.0.2.1", **accounts: dict[str, object]) -> DeviceSpec:
    return DeviceSpec(
        name="d",
        file="d.yaml",
        url=url,
        accounts={
            int(k[1:]): AccountSpec(int(k[1:]), v)  # type: ignore[arg-type]
            for k, v in accounts.items()
        },
    )


class TestFingerprint:
    def test_stable_and_order_independent(self) -> None:
        """The fingerprint ignores the order fields were written in."""
        one = spec(a1={"enabled": True, "domain": "x"})
        two = spec(a1={"domain": "x", "enabled": True})
        assert one.fingerprint == two.fingerprint
        assert len(one.fingerprint) == 32

    def test_changes_with_fields_values_and_url(self) -> None:
        """A different value, an added field, another account or another URL change it."""
        base = spec(a1={"enabled": True}).fingerprint
        assert spec(a1={"enabled": False}).fingerprint != base
        assert spec(a1={"enabled": True, "domain": ""}).fingerprint != base
        assert spec(a1={"enabled": True}, a2={}).fingerprint != base
        assert spec("https://192.0.2.2", a1={"enabled": True}).fingerprint != base

    def test_ignores_name_mode_and_file(self) -> None:
        """Renaming the file or device does not change the fingerprint of what is managed."""
        one = spec(a1={"enabled": True})
        two = DeviceSpec(
            name="other", file="x.yaml", url=one.url, mode=Mode.OBSERVE, accounts=one.accounts
        )
        assert one.fingerprint == two.fingerprint
