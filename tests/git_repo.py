"""Git as the tests run it: in a folder, with no user or system configuration of the host."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

__all__ = ["git"]

_GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.invalid",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.invalid",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    "HOME": os.environ.get("HOME", "/tmp"),
}


def git(cwd: Path, *args: str) -> str:
    """Run git in ``cwd`` and return its stripped output (a failure raises)."""
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=_GIT_ENV, check=True, capture_output=True, text=True
    )
    return done.stdout.strip()
