"""The loader against hostile or broken input: it reports, it never hangs or crashes."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
from core_helpers import GOOD, device, only_error

from syncd.desired import MAX_FILE_BYTES, DesiredState, Loader, load_desired
from syncd.desired.result import FileFailed
from syncd.desired.tree import read_doc

Load = Callable[[Mapping[str, str | bytes]], DesiredState]
Tree = Callable[[Mapping[str, str | bytes]], Path]

BILLION_LAUGHS = """\
device:
  url: https://192.0.2.10
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def timed_load(root: Path) -> tuple[DesiredState, float]:
    start = time.monotonic()
    state = load_desired(root)
    return state, time.monotonic() - start


class TestHostileYaml:
    def test_billion_laughs_is_an_error_quickly(self, tree: Tree) -> None:
        """An alias bomb is refused as too large within a fraction of a second."""
        state, took = timed_load(
            tree({"bomb.yaml": BILLION_LAUGHS, "ok.yaml": device("https://x")})
        )
        problem = only_error(state)
        assert problem.file == "bomb.yaml"
        assert "too large" in problem.message
        assert list(state.devices) == ["ok"]
        assert took < 2.0

    def test_aliases_under_the_limit_still_validated(self, load: Load) -> None:
        """An alias that repeats an account is caught as the same account twice."""
        text = device(accounts="- &one {account: 1, displayName: x}\n- *one\n")
        problem = only_error(load({"a.yaml": text}))
        assert "listed twice" in problem.message

    def test_file_over_one_mebibyte(self, load: Load) -> None:
        """A file larger than 1 MiB is refused unread with a message saying so."""
        big = GOOD + "# " + "x" * MAX_FILE_BYTES + "\n"
        problem = only_error(load({"big.yaml": big}))
        assert problem.file == "big.yaml"
        assert "larger than" in problem.message

    def test_file_just_under_limit_is_parsed(self, load: Load) -> None:
        """A file under 1 MiB (a long comment) is parsed normally."""
        body = GOOD + "# " + "x" * (MAX_FILE_BYTES - len(GOOD) - 100) + "\n"
        assert list(load({"a.yaml": body}).devices) == ["a"]

    def test_file_grown_since_its_stat_is_read_whole(self, tmp_path: Path) -> None:
        """read_doc given a stale (smaller) size still reads the whole file, and its end."""
        path = tmp_path / "a.yaml"
        path.write_text(GOOD + "mode: observe\n")
        doc = read_doc(path, "a.yaml", 10)
        assert doc["mode"] == "observe" and doc["device"]["url"] == "https://192.0.2.10"

    def test_file_grown_past_the_limit_since_its_stat(self, tmp_path: Path) -> None:
        """A file that grew past 1 MiB after its stat is refused as too large, not cut short."""
        path = tmp_path / "a.yaml"
        path.write_text(GOOD + "# " + "x" * MAX_FILE_BYTES + "\n")
        with pytest.raises(FileFailed) as caught:
            read_doc(path, "a.yaml", len(GOOD))
        assert "larger than" in caught.value.problems[0].message

    def test_non_utf8_bytes_named_with_line(self, load: Load) -> None:
        """Invalid UTF-8 (Latin-1 é) is an error naming the line it is on."""
        data = b"device:\n  url: https://192.0.2.10\n  name: caf\xe9\n"
        problem = only_error(load({"a.yaml": data}))
        assert (problem.file, problem.line) == ("a.yaml", 3)
        assert "UTF-8" in problem.message

    def test_raw_control_character(self, load: Load) -> None:
        """A raw control character (0x01) in the file is an error naming its line."""
        data = b"device:\n  url: https://192.0.2.10\n  name: a\x01b\n"
        problem = only_error(load({"a.yaml": data}))
        assert (problem.file, problem.line) == ("a.yaml", 3)
        assert "control character" in problem.message

    def test_nul_byte(self, load: Load) -> None:
        """A NUL byte in the file is an error, not a truncated parse."""
        data = b"device:\n  url: https://192.0.2.10\x00\n"
        problem = only_error(load({"a.yaml": data}))
        assert (problem.file, problem.line) == ("a.yaml", 2)

    @pytest.mark.parametrize("char", ["\x7f", "\x9b", "\ufffe"])
    def test_characters_yaml_refuses_named_with_line(self, load: Load, char: str) -> None:
        """DEL, C1 controls and U+FFFE are errors on their own line, in one line of text."""
        text = f"device:\n  url: https://192.0.2.10\n  name: a{char}b\n"
        problem = only_error(load({"a.yaml": text}))
        assert (problem.file, problem.line) == ("a.yaml", 3)
        assert f"{ord(char):#06x}" in problem.message
        assert "\n" not in str(problem)

    def test_escaped_control_character_in_value(self, load: Load) -> None:
        """A control character written as a YAML escape ("\\x01") is refused in a text field."""
        text = device(accounts='- account: 1\n  displayName: "door\\x01bell"\n')
        problem = only_error(load({"a.yaml": text}))
        assert (problem.line, problem.path) == (5, "accounts[0].displayName")
        assert "control character" in problem.message

    @pytest.mark.parametrize("value", ["2024-13-45", "!!float x", "!!int abc", "!!bool maybe"])
    def test_value_yaml_cannot_construct(self, load: Load, value: str) -> None:
        """A scalar PyYAML cannot build (a bad date, a bad explicit tag) is an error on its line."""
        text = device(accounts=f"- account: 1\n  displayName: {value}\n")
        problem = only_error(load({"a.yaml": text}))
        assert (problem.file, problem.line) == ("a.yaml", 5)
        assert "invalid value" in problem.message

    def test_unconstructible_secret_not_echoed(self, load: Load) -> None:
        """A bad explicit tag on a password reports the type, never the text written."""
        problem = only_error(load({"a.yaml": device(extra="auth:\n  password: !!int hunter2\n")}))
        assert (problem.file, problem.line) == ("a.yaml", 4)
        assert "hunter2" not in str(problem)

    def test_newline_in_text_value_refused(self, load: Load) -> None:
        """A text value holding a newline (a YAML block scalar) is refused."""
        text = device(accounts="- account: 1\n  displayName: |\n    two\n    lines\n")
        problem = only_error(load({"a.yaml": text}))
        assert (problem.line, problem.path) == (5, "accounts[0].displayName")

    def test_deep_flow_nesting(self, tree: Tree) -> None:
        """Thousands of nested brackets are an error, not a RecursionError or a hang."""
        text = device() + "junk: " + "[" * 5000 + "]" * 5000 + "\n"
        state, took = timed_load(tree({"a.yaml": text}))
        problem = only_error(state)
        assert (problem.file, problem.line) == ("a.yaml", 3)
        assert took < 2.0

    def test_moderately_deep_nesting(self, load: Load) -> None:
        """Nesting beyond the depth limit (100 levels) is refused as too deep."""
        text = device() + "junk: " + "[" * 100 + "]" * 100 + "\n"
        problem = only_error(load({"a.yaml": text}))
        assert "nested" in problem.message

    def test_deep_block_nesting(self, load: Load) -> None:
        """Deeply indented block mappings are refused with a line inside the file."""
        lines = "".join("  " * (i + 1) + f"k{i}:\n" for i in range(60)) + "  " * 61 + "v\n"
        problem = only_error(load({"a.yaml": device() + "junk:\n" + lines}))
        assert problem.file == "a.yaml" and problem.line is not None and problem.line > 3
        assert "nested" in problem.message

    def test_huge_flat_list(self, tree: Tree) -> None:
        """A list of 50,000 items is refused as too large, fast."""
        text = device() + "junk: [" + ",".join(["1"] * 50_000) + "]\n"
        state, took = timed_load(tree({"a.yaml": text}))
        assert "too large" in only_error(state).message
        assert took < 5.0

    def test_ten_thousand_character_display_name(self, load: Load) -> None:
        """A 10,000-character displayName is an error giving the length, not echoing it."""
        text = device(accounts="- account: 1\n  displayName: '" + "x" * 10_000 + "'\n")
        problem = only_error(load({"a.yaml": text}))
        assert (problem.line, problem.path) == (5, "accounts[0].displayName")
        assert "10000" in problem.message
        assert "x" * 300 not in str(problem)

    def test_long_device_name(self, load: Load) -> None:
        """An overlong device.name is refused like any overlong text."""
        problem = only_error(load({"a.yaml": device(extra="name: " + "n" * 1000 + "\n")}))
        assert (problem.line, problem.path) == (3, "device.name")

    def test_binary_junk(self, load: Load) -> None:
        """Random binary bytes are reported, and a good neighbour still loads."""
        junk = bytes(range(256)) * 8
        state = load({"junk.yaml": junk, "ok.yaml": GOOD})
        assert list(state.devices) == ["ok"]
        assert {p.file for p in state.errors} == {"junk.yaml"}


class TestHostileTree:
    def test_symlink_loop_reported_without_hang(self, tree: Tree) -> None:
        """A directory link back to an ancestor is reported once and not followed."""
        root = tree({"a.yaml": GOOD, "sub/b.yaml": device(url="https://192.0.2.2")})
        (root / "sub" / "up").symlink_to("..")
        state, took = timed_load(root)
        assert sorted(state.devices) == ["a", "sub/b"]
        assert any(p.file == "sub/up" and "loop" in p.message for p in state.errors)
        assert took < 2.0

    def test_self_referencing_symlink(self, tree: Tree) -> None:
        """A link that points at itself (ELOOP) is reported, and the rest still loads."""
        root = tree({"a.yaml": GOOD})
        (root / "self").symlink_to("self")
        (root / "self.yaml").symlink_to("self.yaml")
        state = load_desired(root)
        assert list(state.devices) == ["a"]
        assert {p.file for p in state.errors} == {"self", "self.yaml"}

    def test_symlink_pointing_outside_is_reported_not_followed(
        self, tree: Tree, tmp_path: Path
    ) -> None:
        """Links to a dir or file outside the desired dir are reported and not loaded."""
        outside = tmp_path / "outside"
        outside.mkdir()
        (outside / "x.yaml").write_text(device(url="https://192.0.2.99"))
        root = tree({"a.yaml": GOOD})
        (root / "ext").symlink_to(outside)
        (root / "ext.yaml").symlink_to(outside / "x.yaml")
        state = load_desired(root)
        assert list(state.devices) == ["a"]
        problems = {p.file: p.message for p in state.errors}
        assert set(problems) == {"ext", "ext.yaml"}
        assert all("outside" in m for m in problems.values())

    def test_dangling_symlink(self, tree: Tree) -> None:
        """A .yaml link to nothing is reported as broken."""
        root = tree({"a.yaml": GOOD})
        (root / "gone.yaml").symlink_to("missing.yaml")
        state = load_desired(root)
        assert list(state.devices) == ["a"]
        assert [p.file for p in state.errors] == ["gone.yaml"]

    def test_second_path_to_a_folder_read_once_by_its_own_path(self, tree: Tree) -> None:
        """A link to a folder already in the tree is reported; the folder loads under its real path."""
        root = tree({"real/a.yaml": GOOD})
        (root / "alias").symlink_to("real")
        state = load_desired(root)
        assert list(state.devices) == ["real/a"]
        (problem,) = state.errors
        assert problem.file == "alias" and "already read" in problem.message

    def test_link_to_hidden_folder_inside_tree_is_followed(self, tree: Tree) -> None:
        """A link to a hidden folder inside the tree (git-sync style) loads under the link's path."""
        root = tree({".rev-1/a.yaml": GOOD})
        (root / "current").symlink_to(".rev-1")
        state = load_desired(root)
        assert list(state.devices) == ["current/a"]
        assert state.problems == []

    def test_desired_dir_itself_a_symlink(self, tmp_path: Path) -> None:
        """A desired dir that is a symlink to a checkout (git-sync style) loads the checkout."""
        checkout = tmp_path / "rev-1"
        checkout.mkdir()
        (checkout / "a.yaml").write_text(GOOD)
        link = tmp_path / "current"
        link.symlink_to(checkout)
        state = load_desired(link)
        assert list(state.devices) == ["a"] and state.problems == []

    def test_fifo_named_yaml_does_not_block(self, tree: Tree) -> None:
        """A FIFO named x.yaml is reported as not a regular file instead of blocking on read."""
        root = tree({"a.yaml": GOOD})
        os.mkfifo(root / "pipe.yaml")
        state, took = timed_load(root)
        problem = only_error(state)
        assert problem.file == "pipe.yaml" and "regular file" in problem.message
        assert took < 2.0

    def test_directory_named_like_yaml_is_walked(self, tree: Tree) -> None:
        """A folder named x.yaml is a folder, not a device file."""
        root = tree({"x.yaml/a.yaml": GOOD})
        assert list(load_desired(root).devices) == ["x.yaml/a"]


class TestFileNames:
    def test_a_name_that_is_not_utf8_is_an_invalid_file(self, load: Load) -> None:
        """Such a file is one error naming it with the byte escaped; the other device loads."""
        bad = os.fsdecode(b"a/bad\xffname.yaml")
        state = load({bad: device("https://192.0.2.11"), "a/good.yaml": GOOD})
        problem = only_error(state)
        assert str(problem) == "a/bad\\xffname.yaml: the file name is not UTF-8; rename it"
        assert state.invalid_files == {"a/bad\\xffname.yaml"}
        assert list(state.devices) == ["a/good"]

    @pytest.mark.parametrize(
        ("name", "shown"),
        [
            ("a\nb.yaml", "a\\nb.yaml"),
            ("a\x1bb.yaml", "a\\x1bb.yaml"),
            ("a\x85b.yaml", "a\\x85b.yaml"),
        ],
    )
    def test_a_control_character_in_a_name_is_refused(
        self, load: Load, name: str, shown: str
    ) -> None:
        """A newline (or other control) in a file name is refused, shown escaped on one line."""
        state = load({name: device("https://192.0.2.11"), "good.yaml": GOOD})
        problem = only_error(state)
        assert problem.file == shown and "\n" not in str(problem)
        assert "control character" in problem.message
        assert list(state.devices) == ["good"]

    def test_a_folder_not_utf8_is_refused_once(self, load: Load) -> None:
        """A folder whose name is not UTF-8 is one error; the files in it are not read."""
        folder = os.fsdecode(b"site\xfe")
        state = load(
            {f"{folder}/x.yaml": GOOD, f"{folder}/y.yaml": GOOD, "ok.yaml": device("https://x")}
        )
        problem = only_error(state)
        assert problem.file == "site\\xfe" and "folder name is not UTF-8" in problem.message
        assert list(state.devices) == ["ok"]

    def test_a_misnamed_file_that_is_not_yaml_is_ignored(self, load: Load) -> None:
        """A file that is not a device file is not read, whatever its name."""
        state = load({os.fsdecode(b"notes\xff.txt"): "x", "ok.yaml": GOOD})
        assert state.problems == [] and list(state.devices) == ["ok"]

    def test_a_name_fixed_is_read_on_the_next_load(self, root: Path) -> None:
        """Renamed to a good name, the file is a device on the next load of the same Loader."""
        bad = root / os.fsdecode(b"bad\xff.yaml")
        bad.write_text(GOOD)
        loader = Loader(root)
        assert loader.load().invalid_files == {"bad\\xff.yaml"}
        bad.rename(root / "good.yaml")
        state = loader.load()
        assert state.problems == [] and list(state.devices) == ["good"]
