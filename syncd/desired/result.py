"""What loading the desired tree yields: devices, and problems that name file and line."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from syncd.model import DeviceSpec
from syncd.secrets import SecretRef

__all__ = ["DesiredState", "FileFailed", "Problem"]


@dataclass(frozen=True)
class Problem:
    """One thing wrong (or, with ``warning``, worth knowing) in the desired state."""

    file: str
    line: int | None
    path: str
    message: str
    warning: bool = False

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.detail}"

    @property
    def detail(self) -> str:
        """What is wrong, without where (for a view that shows the file and line itself)."""
        return f"{self.path}: {self.message}" if self.path else self.message


class FileFailed(Exception):
    """A device (or defaults) file cannot be used; ``problems`` say why."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(problems)
        self.problems = problems


@dataclass
class DesiredState:
    """Every valid device (secrets still references) and every problem met."""

    root: Path
    devices: dict[str, DeviceSpec[SecretRef]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    #: Files that failed, relative to root (a device file or a defaults file).
    invalid_files: set[str] = field(default_factory=set)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if not p.warning]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.warning]
