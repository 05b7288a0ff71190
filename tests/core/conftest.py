"""Fixtures for the core tests: desired-state trees written from plain text."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
from core_helpers import write_tree

from syncd.desired import DesiredState, load_desired


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A fresh, empty desired dir."""
    path = tmp_path / "desired"
    path.mkdir()
    return path


@pytest.fixture
def tree(root: Path) -> Callable[[Mapping[str, str | bytes]], Path]:
    """Return ``tree(files)``: write files (relative path -> text) under the desired dir."""

    def make(files: Mapping[str, str | bytes]) -> Path:
        return write_tree(root, files)

    return make


@pytest.fixture
def load(
    tree: Callable[[Mapping[str, str | bytes]], Path],
) -> Callable[[Mapping[str, str | bytes]], DesiredState]:
    """Return ``load(files)``: write the tree and load it once."""

    def run(files: Mapping[str, str | bytes]) -> DesiredState:
        return load_desired(tree(files))

    return run
