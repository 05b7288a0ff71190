"""Read the desired-state tree: find the files, read them, cache what is unchanged.

This is the I/O of :mod:`syncd.desired`; merging and validating one device is
pure (:mod:`syncd.desired.build`). The result is a :class:`DesiredState`: every
valid device as a ``DeviceSpec[SecretRef]`` (secrets still references), and
every problem as a :class:`Problem` that names file, line and field. A bad file
never hides a good one, and a bad ``_defaults.yaml`` invalidates only the
devices below it.
"""

from __future__ import annotations

import functools
import os
import re
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from syncd.desired import plain
from syncd.desired.build import build_device, duplicates
from syncd.desired.names import (
    DEFAULTS_FILE,
    FLEET_FILE,
    SUFFIXES,
    fleet_file_problem,
    path_name_problem,
)
from syncd.desired.result import DesiredState, FileFailed, Problem
from syncd.desired.spread import spread
from syncd.desired.yamldoc import YamlError, parse_yaml
from syncd.gctune import collector_paused
from syncd.model import DeviceSpec
from syncd.secrets import SecretRef

__all__ = ["MAX_FILE_BYTES", "Loader", "load_desired", "read_doc"]

#: Special files spelt with the other suffix device files may have: not read as either.
_MISSPELT = {f"{Path(name).stem}.yml": name for name in (DEFAULTS_FILE, FLEET_FILE)}

#: Larger files are refused unread: a device file is a few hundred bytes.
MAX_FILE_BYTES = 1024 * 1024


class _Stamp(NamedTuple):
    """A file's identity: any edit, rename-into-place or checkout swap changes it."""

    mtime_ns: int
    size: int
    ino: int


_Built = tuple[DeviceSpec[SecretRef], list[Problem]]
_Result = _Built | FileFailed


class Loader:
    """Loads the tree, re-parsing only files whose stamp changed since last time.

    The daemon keeps one Loader for its lifetime, so a change to one file
    costs one parse, not a parse of the whole fleet. It keeps each device
    file's result and the parsed ``_defaults.yaml`` files, not the device
    files' parse trees (a third of its memory at 10,000 devices): a changed
    ``_defaults.yaml`` reads the device files below it again.

    With ``spread``, a load that finds many files to build shares them with
    forked workers (:mod:`syncd.desired.spread`): for one-shot commands, which
    load once and have no other thread.
    """

    def __init__(self, root: Path, *, spread: bool = False) -> None:
        self.root = root
        self._spread = spread
        # Files are reached by string paths: pathlib's joins were a tenth of loading 10,000 files.
        self._base = os.path.join(root, "")
        self._parsed: dict[str, tuple[_Stamp, Any]] = {}
        self._results: dict[str, tuple[tuple[_Stamp, ...], _Result]] = {}
        self._stamps: dict[str, _Stamp] = {}
        self._defaults: set[str] = set()
        self._chains: dict[str, list[str]] = {}

    def load(self) -> DesiredState:
        with collector_paused():  # the specs and cached documents stay: nothing to collect
            return self._load()

    def _load(self) -> DesiredState:
        state = DesiredState(root=self.root)
        walker = _discover(self.root)
        files, self._defaults = walker.files, walker.defaults
        self._stamps = {}
        self._chains = {}
        state.problems.extend(walker.problems)
        state.invalid_files.update(walker.misnamed)
        if self._spread:
            self._build_spread([rel for rel in files if rel not in self._results])
        entries: list[DeviceSpec[SecretRef]] = []
        for rel in files:
            result = self._device_result(rel)
            if isinstance(result, FileFailed):
                state.problems.extend(result.problems)
                state.invalid_files.add(rel)
                continue
            entry, warnings = result
            state.problems.extend(warnings)
            entries.append(entry)
        for problem in duplicates(entries):
            state.problems.append(problem)
            state.invalid_files.add(problem.file)
        state.devices = {e.name: e for e in entries if e.file not in state.invalid_files}
        # Keep only the first copy of a problem reported through many devices.
        state.problems = list(dict.fromkeys(state.problems))
        live = set(files) | self._defaults
        self._parsed = {k: v for k, v in self._parsed.items() if k in live}
        self._results = {k: v for k, v in self._results.items() if k in live}
        return state

    def stamp_of(self, rel: str) -> tuple[int, int, int] | None:
        """The identity (mtime, size, inode) the last load saw of file ``rel``, if it saw it."""
        stamp = self._stamps.get(rel)
        return None if stamp is None else (stamp.mtime_ns, stamp.size, stamp.ino)

    def _build_spread(self, rels: list[str]) -> None:
        """Build ``rels`` in this process and forked workers, when that pays."""

        def here(share: Sequence[str]) -> None:
            for rel in share:
                self._device_result(rel)

        away = functools.partial(_build_away, self.root, frozenset(self._defaults))
        for data in spread(rels, here, away) or ():
            # Checked against this load's stamps in _device_result, as any cached result.
            self._results.update(plain.decode(data, _Stamp))

    def _stamp(self, rel: str) -> _Stamp:
        """The file's identity for this load (stat once per load)."""
        stamp = self._stamps.get(rel)
        if stamp is None:
            try:
                st = os.stat(self._base + rel)
            except OSError as exc:
                problem = Problem(rel, 1, "", f"cannot read: {exc.strerror}")
                raise FileFailed([problem]) from None
            if not stat.S_ISREG(st.st_mode):
                raise FileFailed([Problem(rel, 1, "", "not a regular file")])
            stamp = _Stamp(st.st_mtime_ns, st.st_size, st.st_ino)
            self._stamps[rel] = stamp
        return stamp

    def _parse(self, rel: str) -> Any:
        stamp = self._stamp(rel)
        cached = self._parsed.get(rel)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        doc = read_doc(self._base + rel, rel, stamp.size)
        if rel in self._defaults:  # a device file's own result is kept: its parse is not needed
            self._parsed[rel] = (stamp, doc)
        return doc

    def _defaults_chain(self, rel: str) -> list[str]:
        folder = rel.rpartition("/")[0]
        chain = self._chains.get(folder)
        if chain is None:  # once per folder and load: a folder holds many devices
            parts = folder.split("/") if folder else []
            candidates = [
                "/".join([*parts[:depth], DEFAULTS_FILE]) for depth in range(len(parts) + 1)
            ]
            chain = self._chains[folder] = [c for c in candidates if c in self._defaults]
        return chain

    def _device_result(self, rel: str) -> _Result:
        """Validated entry of one device file, reused while it and its defaults are unchanged."""
        sources = [*self._defaults_chain(rel), rel]
        try:
            stamps = tuple(self._stamp(s) for s in sources)
        except FileFailed as failed:
            return failed
        cached = self._results.get(rel)
        if cached is not None and cached[0] == stamps:
            return cached[1]
        result: _Result
        try:
            result = self._load_device(rel, sources)
        except FileFailed as failed:
            result = failed
        self._results[rel] = (stamps, result)
        return result

    def _load_device(self, rel: str, sources: list[str]) -> _Built:
        return build_device(rel, [(source, self._parse(source)) for source in sources])


def _build_away(root: Path, defaults: frozenset[str], rels: Sequence[str]) -> bytes:
    """A worker's share of a spread load: the results of device files ``rels``, encoded."""
    loader = Loader(root)
    loader._defaults = set(defaults)
    for rel in rels:
        loader._device_result(rel)
    return plain.encode({rel: loader._results[rel] for rel in rels if rel in loader._results})


def load_desired(root: Path) -> DesiredState:
    """Load the desired-state tree under ``root`` once."""
    return Loader(root).load()


def _discover(root: Path) -> _Walker:
    """Every device file under root (sorted, relative), and problems met finding them.

    Symbolic links are followed only while they stay inside the tree, and a
    directory is entered once, so link loops end. Linked folders are entered
    after the real tree, so a folder is read (and named) by its own path.
    """
    walker = _Walker(root)
    walker.walk(root, "")
    while walker.linked:
        walker.walk(*walker.linked.pop(0))
    walker.files.sort()
    return walker


class _Walker:
    def __init__(self, root: Path) -> None:
        self.real_root = root.resolve()
        self.files: list[str] = []
        self.defaults: set[str] = set()
        self.problems: list[Problem] = []
        #: Device files refused for their name (as shown): invalid files, never read.
        self.misnamed: set[str] = set()
        self.visited: set[Path] = set()
        self.linked: list[tuple[Path, str]] = []

    def walk(self, directory: Path, rel: str) -> None:
        real = directory.resolve()
        if real in self.visited:
            message = "symbolic link to a folder already read (a loop?); not followed"
            self.problems.append(Problem(rel, None, "", message))
            return
        self.visited.add(real)
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as exc:
            message = f"cannot read directory: {exc.strerror}"
            self.problems.append(Problem(rel or ".", None, "", message))
            return
        for entry in entries:
            if not entry.name.startswith("."):
                self._entry(entry, f"{rel}/{entry.name}" if rel else entry.name)

    def _entry(self, entry: os.DirEntry[str], rel: str) -> None:
        try:
            is_dir = entry.is_dir(follow_symlinks=True)
        except OSError:  # e.g. ELOOP: a link that points at itself
            self.problems.append(Problem(rel, 1, "", "broken or looping symbolic link"))
            return
        if not (is_dir or entry.name.endswith(SUFFIXES)):
            return
        misnamed = path_name_problem(rel, folder=is_dir)
        if misnamed is not None:  # its name would be a device name no output can carry
            self.problems.append(misnamed)
            if not is_dir:
                self.misnamed.add(misnamed.file)
            return
        if entry.is_symlink() and not self._link_inside(Path(entry.path), rel):
            return
        if is_dir and entry.name in (DEFAULTS_FILE, FLEET_FILE):
            if rel != FLEET_FILE:  # the root's _fleet.yaml is the policy loader's to report
                self.problems.append(
                    Problem(rel, 1, "", f"cannot read: is a directory; {entry.name} must be a file")
                )
            return
        if is_dir and entry.is_symlink():
            self.linked.append((Path(entry.path), rel))
        elif is_dir:
            self.walk(Path(entry.path), rel)
        elif entry.name == DEFAULTS_FILE:
            self.defaults.add(rel)
        elif entry.name == FLEET_FILE:
            misplaced = fleet_file_problem(rel)  # at the root it is the policy, not a device
            if misplaced is not None:
                self.problems.append(misplaced)
        elif entry.name in _MISSPELT:
            wanted = _MISSPELT[entry.name]
            self.problems.append(Problem(rel, 1, "", f"only {wanted} is read: rename the file"))
        else:
            self.files.append(rel)

    def _link_inside(self, path: Path, rel: str) -> bool:
        try:
            target = path.resolve(strict=True)
        except (OSError, RuntimeError):
            self.problems.append(Problem(rel, 1, "", "broken or looping symbolic link"))
            return False
        if not target.is_relative_to(self.real_root):
            message = "symbolic link points outside the desired dir"
            self.problems.append(Problem(rel, 1, "", message))
            return False
        return True


#: The C0 controls other than tab, line feed and carriage return.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")


def _read_bytes(path: str | Path, size: int) -> bytes:
    """The file's bytes (``size`` from a stat just before), at most a little over the limit.

    Plain ``os.read`` calls: Python's file objects (a buffer, an isatty check) were half
    the cost of reading 10,000 small files.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        data = os.read(fd, size + 1)
        if len(data) <= size:
            return data
        parts = [data]  # it grew since the stat: read on, as far as the limit
        total = len(data)
        while total <= MAX_FILE_BYTES:
            chunk = os.read(fd, 64 * 1024)
            if not chunk:
                break
            parts.append(chunk)
            total += len(chunk)
        return b"".join(parts)
    finally:
        os.close(fd)


def read_doc(path: str | Path, rel: str, size: int) -> Any:
    if size > MAX_FILE_BYTES:
        raise FileFailed([Problem(rel, 1, "", f"file is larger than {MAX_FILE_BYTES // 1024} KiB")])
    try:
        data = _read_bytes(path, size)
    except OSError as exc:
        raise FileFailed([Problem(rel, 1, "", f"cannot read: {exc.strerror}")]) from None
    if len(data) > MAX_FILE_BYTES:
        raise FileFailed([Problem(rel, 1, "", f"file is larger than {MAX_FILE_BYTES // 1024} KiB")])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise FileFailed([Problem(rel, line, "", "not valid UTF-8 text")]) from None
    found = _CONTROL.search(text)  # a regex: a per-character loop was a fifth of validate
    if found is not None:
        bad = found.group()
        line = text[: found.start()].count("\n") + 1
        raise FileFailed([Problem(rel, line, "", f"control character {ord(bad):#04x} in file")])
    try:
        return parse_yaml(text, rel)
    except YamlError as exc:
        raise FileFailed([Problem(rel, exc.pos.line, "", exc.message)]) from None
