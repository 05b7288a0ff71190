"""Which revision of the desired state is in force.

When the desired dir (symbolic links resolved, so a git-sync style link swap
shows the new checkout) lies in a Git work tree, the revision is the commit ID
of its ``HEAD``; otherwise ``tree:`` and the first 12 hex digits of a SHA-256
over the loaded desired state.

The Git metadata is read directly rather than by running ``git``: the daemon
often runs as a user that does not own the checkout (systemd's
``DynamicUser=``), and ``git`` refuses such a repository as of "dubious
ownership"; a host may also have no ``git`` at all. Anything unexpected
(unreadable files, a broken ``.git``, an unborn branch, a ref format this
reader does not know) gives the ``tree:`` form, never an error.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from syncd.model import DeviceSpec

__all__ = [
    "desired_revision",
    "git_dirs",
    "git_head",
    "names_a_ref",
    "revision_material",
    "tree_revision",
]

_OBJECT_ID = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")
_MAX_SYMREF_DEPTH = 5


def desired_revision(desired_dir: Path, material: str | bytes) -> str:
    """The revision of ``desired_dir``: its Git ``HEAD`` commit, else ``tree:`` + a hash.

    ``material`` is a stable rendering of the loaded desired state (for
    example the sorted device fingerprints); only the ``tree:`` form uses it.
    """
    return git_head(desired_dir) or tree_revision(material)


def revision_material(specs: Mapping[str, DeviceSpec[Any]]) -> str:
    """What a ``tree:`` revision hashes: one ``name=fingerprint mode`` line per spec in force,
    sorted (the fingerprint holds the URL and the accounts, the mode is written apart)."""
    return "".join(
        f"{name}={specs[name].fingerprint} {specs[name].mode.value}\n" for name in sorted(specs)
    )


def tree_revision(material: str | bytes) -> str:
    """``tree:`` and the first 12 hex digits of SHA-256 over ``material``."""
    data = material.encode() if isinstance(material, str) else material
    return "tree:" + hashlib.sha256(data).hexdigest()[:12]


def git_head(directory: Path) -> str | None:
    """The commit ID of ``HEAD`` of the work tree holding ``directory``, or None."""
    try:
        start = Path(os.path.realpath(directory))
        git_dir = _find_git_dir(start)
        if git_dir is None:
            return None
        return _resolve_head(git_dir)
    except (OSError, UnicodeDecodeError, ValueError):
        return None


def git_dirs(directory: Path) -> tuple[Path, ...]:
    """Where the ``HEAD`` and refs of the work tree holding ``directory`` live: its Git
    dir and (a linked worktree's) common dir; none outside a work tree."""
    try:
        git_dir = _find_git_dir(Path(os.path.realpath(directory)))
        if git_dir is None or not git_dir.is_dir():
            return ()
        common = _common_dir(git_dir)
    except (OSError, UnicodeDecodeError, ValueError):
        return ()
    return (git_dir,) if common == git_dir or not common.is_dir() else (git_dir, common)


def names_a_ref(path: str, git_dirs: Sequence[Path]) -> bool:
    """Whether ``path`` is ``HEAD``, ``packed-refs`` or a ref of one of ``git_dirs`` (not a
    reflog, not a ``.lock`` on the way): a file whose change may move the revision. Judged
    by the path inside the Git dir, whatever the directories above it are called."""
    for root in git_dirs:
        try:
            inside = Path(path).relative_to(root).parts
        except ValueError:
            continue
        if not inside or inside[-1].endswith(".lock"):
            return False
        return inside in (("HEAD",), ("packed-refs",)) or inside[0] == "refs"
    return False


def _find_git_dir(start: Path) -> Path | None:
    """The Git directory of the nearest enclosing work tree (``.git`` dir or ``gitdir:`` file)."""
    for folder in (start, *start.parents):
        dot_git = folder / ".git"
        if dot_git.is_dir():
            return dot_git
        if dot_git.is_file():
            text = dot_git.read_text(encoding="utf-8").strip()
            if not text.startswith("gitdir:"):
                return None
            target = Path(text.removeprefix("gitdir:").strip())
            return target if target.is_absolute() else (folder / target)
        if dot_git.exists() or dot_git.is_symlink():
            return None
    return None


def _common_dir(git_dir: Path) -> Path:
    """Where shared refs live: a linked worktree's ``commondir``, else the Git dir itself."""
    pointer = git_dir / "commondir"
    if not pointer.is_file():
        return git_dir
    target = Path(pointer.read_text(encoding="utf-8").strip())
    return target if target.is_absolute() else (git_dir / target)


def _resolve_head(git_dir: Path) -> str | None:
    common = _common_dir(git_dir)
    content = (git_dir / "HEAD").read_text(encoding="utf-8").strip()
    for _ in range(_MAX_SYMREF_DEPTH):
        if _OBJECT_ID.fullmatch(content):
            return content
        if not content.startswith("ref:"):
            return None
        ref = content.removeprefix("ref:").strip()
        if not ref.startswith("refs/") or ".." in ref.split("/"):
            return None
        found = _read_ref(git_dir, common, ref)
        if found is None:
            return None
        content = found
    return None


def _read_ref(git_dir: Path, common: Path, ref: str) -> str | None:
    """A ref's content: the loose file (per worktree, then shared), else ``packed-refs``."""
    for base in (git_dir, common):
        loose = base / ref
        if loose.is_file():
            return loose.read_text(encoding="utf-8").strip()
    packed = common / "packed-refs"
    if packed.is_file():
        for line in packed.read_text(encoding="utf-8").splitlines():
            if line.startswith(("#", "^")):
                continue
            object_id, _, name = line.partition(" ")
            if name.strip() == ref:
                return object_id.strip()
    return None
