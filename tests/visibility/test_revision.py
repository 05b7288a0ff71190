"""The revision in force: Git HEAD of the desired dir's work tree, else a tree hash."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from syncd.revision import desired_revision, git_head, names_a_ref, tree_revision
from tests.git_repo import git


def make_repo(path: Path, text: str = "a: 1\n") -> str:
    """A repo at ``path`` with a ``desired/`` dir and one commit; returns the commit ID."""
    (path / "desired").mkdir(parents=True)
    (path / "desired" / "lobby.yaml").write_text(text)
    git(path, "init", "-q", "-b", "main")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "one")
    return git(path, "rev-parse", "HEAD")


class TestGit:
    def test_head_commit_of_the_enclosing_work_tree(self, tmp_path: Path) -> None:
        """A desired dir inside a repo has the repo's HEAD commit as its revision."""
        commit = make_repo(tmp_path / "repo")
        assert desired_revision(tmp_path / "repo" / "desired", "x") == commit

    def test_new_commit_shows(self, tmp_path: Path) -> None:
        """After another commit the revision is the new HEAD."""
        repo = tmp_path / "repo"
        first = make_repo(repo)
        (repo / "desired" / "lobby.yaml").write_text("a: 2\n")
        git(repo, "commit", "-qam", "two")
        second = git(repo, "rev-parse", "HEAD")
        assert second != first
        assert git_head(repo / "desired") == second

    def test_packed_refs(self, tmp_path: Path) -> None:
        """A branch whose ref was packed (git gc) still resolves."""
        repo = tmp_path / "repo"
        commit = make_repo(repo)
        git(repo, "pack-refs", "--all")
        assert not (repo / ".git" / "refs" / "heads" / "main").exists()
        assert git_head(repo / "desired") == commit

    def test_detached_head(self, tmp_path: Path) -> None:
        """A detached HEAD (what CI and git-sync check out) is the commit itself."""
        repo = tmp_path / "repo"
        commit = make_repo(repo)
        git(repo, "checkout", "-q", "--detach")
        assert git_head(repo / "desired") == commit

    def test_linked_worktree(self, tmp_path: Path) -> None:
        """A linked worktree (a ``.git`` file) shows its own HEAD, on a branch of its own."""
        repo = tmp_path / "repo"
        make_repo(repo)
        git(repo, "worktree", "add", "-q", "-b", "other", str(tmp_path / "wt"))
        (tmp_path / "wt" / "desired" / "lobby.yaml").write_text("a: 3\n")
        git(tmp_path / "wt", "commit", "-qam", "three")
        want = git(tmp_path / "wt", "rev-parse", "HEAD")
        assert (tmp_path / "wt" / ".git").is_file()
        assert git_head(tmp_path / "wt" / "desired") == want
        assert git_head(repo / "desired") != want

    def test_symlink_swap_between_checkouts(self, tmp_path: Path) -> None:
        """A desired path that is a symlink swapped to another checkout shows that checkout's commit."""
        one = make_repo(tmp_path / "one", "a: 1\n")
        two = make_repo(tmp_path / "two", "a: 2\n")
        link = tmp_path / "current"
        link.symlink_to(tmp_path / "one")
        assert desired_revision(link / "desired", "x") == one
        staged = tmp_path / "current.new"
        staged.symlink_to(tmp_path / "two")
        staged.replace(link)
        assert desired_revision(link / "desired", "x") == two


def test_a_ref_is_told_by_its_path_inside_the_git_dir() -> None:
    """HEAD, packed-refs and refs/ move the revision; reflogs, objects and locks do not; the
    directories above the Git dir (even named logs or refs) do not count."""
    root = Path("/srv/logs/refs/objects/repo/.git")
    moves = [root / "HEAD", root / "packed-refs", root / "refs/heads/main", root / "refs/tags/v1"]
    stays = [
        root / "logs/HEAD",
        root / "logs/refs/heads/main",
        root / "objects/ab/cdef",
        root / "refs/heads/main.lock",
        root / "index",
        root / "COMMIT_EDITMSG",
        Path("/srv/logs/refs/objects/repo/HEAD"),
    ]
    assert [names_a_ref(str(p), (root,)) for p in moves] == [True] * len(moves)
    assert [names_a_ref(str(p), (root,)) for p in stays] == [False] * len(stays)


class TestTree:
    def test_plain_dir_uses_the_tree_hash(self, tmp_path: Path) -> None:
        """Outside any work tree the revision is ``tree:`` and 12 hex digits of the material's hash."""
        (tmp_path / "desired").mkdir()
        got = desired_revision(tmp_path / "desired", "lobby=abc\n")
        assert got == tree_revision("lobby=abc\n")
        assert got.startswith("tree:") and len(got) == 17
        assert desired_revision(tmp_path / "desired", "lobby=abd\n") != got

    def test_str_and_bytes_agree(self) -> None:
        """The same material as text or bytes gives the same revision."""
        assert tree_revision("é") == tree_revision("é".encode())

    @pytest.mark.parametrize(
        "breakage",
        [
            "garbage file",
            "empty dir",
            "bad head",
            "dangling ref",
            "gitdir nowhere",
            "unborn",
            "head unreadable",
        ],
    )
    def test_broken_git_gives_tree(self, tmp_path: Path, breakage: str) -> None:
        """A ``.git`` that is not a usable repository gives the tree form, no error."""
        desired = tmp_path / "desired"
        desired.mkdir()
        dot_git = tmp_path / ".git"
        if breakage == "garbage file":
            dot_git.write_bytes(b"\xff\xfe not a gitdir")
        elif breakage == "empty dir":
            dot_git.mkdir()
        elif breakage == "bad head":
            dot_git.mkdir()
            (dot_git / "HEAD").write_text("what is this\n")
        elif breakage == "dangling ref":
            dot_git.mkdir()
            (dot_git / "HEAD").write_text("ref: refs/heads/gone\n")
        elif breakage == "head unreadable":
            (dot_git / "HEAD").mkdir(parents=True)
        elif breakage == "gitdir nowhere":
            dot_git.write_text("gitdir: /nonexistent/x/.git\n")
        else:
            git(tmp_path, "init", "-q", "-b", "main")
        assert desired_revision(desired, "m") == tree_revision("m")

    def test_unreadable_git_gives_tree(self, tmp_path: Path) -> None:
        """A ``.git`` the daemon may not read gives the tree form."""
        if os.geteuid() == 0:
            pytest.skip("root reads every file whatever its mode")
        make_repo(tmp_path / "repo")
        (tmp_path / "repo" / ".git").chmod(0)
        try:
            assert desired_revision(tmp_path / "repo" / "desired", "m") == tree_revision("m")
        finally:
            (tmp_path / "repo" / ".git").chmod(0o755)

    def test_ref_escaping_the_git_dir_is_refused(self, tmp_path: Path) -> None:
        """A HEAD pointing outside ``refs/`` is not followed."""
        desired = tmp_path / "desired"
        desired.mkdir()
        (tmp_path / ".git").mkdir()
        (tmp_path / ".git" / "HEAD").write_text("ref: ../../secret\n")
        (tmp_path / "secret").write_text("a" * 40)
        assert desired_revision(desired, "m") == tree_revision("m")
