"""Read the desired-state tree: find files, merge ``_defaults.yaml``, validate.

The result is a :class:`DesiredState`: every valid device as a
:class:`DeviceEntry` (secrets still as references), and every problem as a
:class:`Problem` that names file, line and field. A bad file never hides a
good one, and a bad ``_defaults.yaml`` invalidates only the devices below it.
"""

from __future__ import annotations

import difflib
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    SecretStr,
    ValidationError,
)

from syncd.model import (
    ACCOUNT_NUMBERS,
    AccountSpec,
    AuthMethod,
    AuthSpec,
    DeviceSpec,
    Mode,
    TlsSpec,
)
from syncd.schema import FileDoc
from syncd.secrets import SecretError, SecretRef, resolve_secret
from syncd.yamldoc import Pos, YamlError, YamlList, YamlMap, parse_yaml

__all__ = [
    "DEFAULTS_FILE",
    "MAX_FILE_BYTES",
    "DesiredState",
    "DeviceEntry",
    "DeviceSecretError",
    "Loader",
    "Problem",
    "load_desired",
    "resolve_device",
]

DEFAULTS_FILE = "_defaults.yaml"
SUFFIXES = (".yaml", ".yml")
#: Larger files are refused unread: a device file is a few hundred bytes.
MAX_FILE_BYTES = 1024 * 1024


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
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


# ------------------------------------------------------------- loaded values


@dataclass(frozen=True)
class AccountEntry:
    account: int
    fields: Mapping[str, bool | str | int]
    password: SecretRef | None = None


@dataclass(frozen=True)
class DeviceEntry:
    """One device as validated from its files; secrets are still references."""

    name: str
    file: str
    url: str
    auth_method: AuthMethod
    username: str | None
    password: SecretRef | None
    tls_verify: bool
    ca_file: str | None
    mode: Mode
    accounts: Mapping[int, AccountEntry]
    sources: tuple[str, ...]
    #: Where each secret reference was written: "device" or the account number ->
    #: (file, line, path), so an unresolvable reference is reported at its line.
    secret_pos: Mapping[str | int, tuple[str, int, str]] = field(default_factory=dict)


class DeviceSecretError(SecretError):
    """Secret references of one device do not resolve; each names file, line and field."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = problems


@dataclass
class DesiredState:
    root: Path
    devices: dict[str, DeviceEntry] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    #: Files that failed, relative to root (a device file or a defaults file).
    invalid_files: set[str] = field(default_factory=set)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if not p.warning]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.warning]


# ------------------------------------------------------------------ loading


class _FileFailed(Exception):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(problems)
        self.problems = problems


@dataclass(frozen=True)
class _Stamp:
    """A file's identity: any edit, rename-into-place or checkout swap changes it."""

    mtime_ns: int
    size: int
    ino: int


_Result = tuple[DeviceEntry, list[Problem]] | _FileFailed


class Loader:
    """Loads the tree, re-parsing only files whose stamp changed since last time.

    The daemon keeps one Loader for its lifetime, so a change to one file
    costs one parse, not a parse of the whole fleet.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._parsed: dict[str, tuple[_Stamp, Any]] = {}
        self._results: dict[str, tuple[tuple[_Stamp, ...], _Result]] = {}
        self._stamps: dict[str, _Stamp] = {}
        self._defaults: set[str] = set()

    def load(self) -> DesiredState:
        state = DesiredState(root=self.root)
        files, self._defaults, problems = _discover(self.root)
        self._stamps = {}
        state.problems.extend(problems)
        entries: list[DeviceEntry] = []
        for rel in files:
            result = self._device_result(rel)
            if isinstance(result, _FileFailed):
                state.problems.extend(result.problems)
                state.invalid_files.add(rel)
                continue
            entry, warnings = result
            state.problems.extend(warnings)
            entries.append(entry)
        # Files naming one device (same name, or same URL) are all invalid, however many.
        for what in ("name", "URL"):
            groups: dict[str, list[DeviceEntry]] = {}
            for entry in entries:
                groups.setdefault(entry.name if what == "name" else entry.url, []).append(entry)
            for group in groups.values():
                for entry in group if len(group) > 1 else ():
                    others = ", ".join(o.file for o in group if o is not entry)
                    message = f"same device {what} as {others}"
                    state.problems.append(Problem(entry.file, 1, "device", message))
                    state.invalid_files.add(entry.file)
        state.devices = {e.name: e for e in entries if e.file not in state.invalid_files}
        # Keep only the first copy of a problem reported through many devices.
        state.problems = list(dict.fromkeys(state.problems))
        live = set(files) | self._defaults
        self._parsed = {k: v for k, v in self._parsed.items() if k in live}
        self._results = {k: v for k, v in self._results.items() if k in live}
        return state

    def _stamp(self, rel: str) -> _Stamp:
        """The file's identity for this load (stat once per load)."""
        stamp = self._stamps.get(rel)
        if stamp is None:
            try:
                st = os.stat(self.root / rel)
            except OSError as exc:
                problem = Problem(rel, 1, "", f"cannot read: {exc.strerror}")
                raise _FileFailed([problem]) from None
            if not stat.S_ISREG(st.st_mode):
                raise _FileFailed([Problem(rel, 1, "", "not a regular file")])
            stamp = _Stamp(st.st_mtime_ns, st.st_size, st.st_ino)
            self._stamps[rel] = stamp
        return stamp

    def _parse(self, rel: str) -> Any:
        stamp = self._stamp(rel)
        cached = self._parsed.get(rel)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        doc = _read_doc(self.root / rel, rel, stamp.size)
        self._parsed[rel] = (stamp, doc)
        return doc

    def _defaults_chain(self, rel: str) -> list[str]:
        parts = rel.split("/")[:-1]
        candidates = ["/".join([*parts[:depth], DEFAULTS_FILE]) for depth in range(len(parts) + 1)]
        return [c for c in candidates if c in self._defaults]

    def _device_result(self, rel: str) -> _Result:
        """Validated entry of one device file, reused while it and its defaults are unchanged."""
        sources = [*self._defaults_chain(rel), rel]
        try:
            stamps = tuple(self._stamp(s) for s in sources)
        except _FileFailed as failed:
            return failed
        cached = self._results.get(rel)
        if cached is not None and cached[0] == stamps:
            return cached[1]
        result: _Result
        try:
            result = self._load_device(rel, sources)
        except _FileFailed as failed:
            result = failed
        self._results[rel] = (stamps, result)
        return result

    def _load_device(self, rel: str, sources: list[str]) -> tuple[DeviceEntry, list[Problem]]:
        problems: list[Problem] = []
        merged: Any = None
        for source in sources:
            doc = self._parse(source)
            if doc is None:
                if source == rel:
                    raise _FileFailed([Problem(rel, 1, "", "file is empty")])
                continue
            if not isinstance(doc, YamlMap):
                raise _FileFailed(
                    [Problem(source, 1, "", "must be a mapping with device: and accounts:")]
                )
            _check_accounts(doc, problems)
            merged = doc if merged is None else _merge(merged, doc)
        try:
            parsed = FileDoc.model_validate(merged)
        except ValidationError as exc:
            problems += [_problem(err, merged, rel) for err in exc.errors()]
        if problems:
            unique = {(p.file, p.line, p.path): p for p in reversed(problems)}
            raise _FileFailed(sorted(unique.values(), key=lambda p: (p.file, p.line or 0)))
        warnings = _warnings(parsed, merged, rel)
        name = parsed.device.name or rel.rsplit(".", 1)[0]
        accounts = {
            a.account: AccountEntry(a.account, a.managed(), a.password) for a in parsed.accounts
        }
        entry = DeviceEntry(
            name=name,
            file=rel,
            url=parsed.device.url,
            auth_method=parsed.device.auth.method,
            username=parsed.device.auth.username,
            password=parsed.device.auth.password,
            tls_verify=parsed.device.tls.verify,
            ca_file=parsed.device.tls.caFile,
            mode=parsed.device.mode,
            accounts=accounts,
            sources=tuple(sources),
            secret_pos=_secret_positions(parsed, merged, rel),
        )
        return entry, warnings


def load_desired(root: Path) -> DesiredState:
    """Load the desired-state tree under ``root`` once."""
    return Loader(root).load()


def _discover(root: Path) -> tuple[list[str], set[str], list[Problem]]:
    """Every device file under root (sorted, relative), and problems met finding them.

    Symbolic links are followed only while they stay inside the tree, and a
    directory is entered once, so link loops end. Linked folders are entered
    after the real tree, so a folder is read (and named) by its own path.
    """
    files: list[str] = []
    defaults: set[str] = set()
    problems: list[Problem] = []
    real_root = root.resolve()
    visited: set[Path] = set()
    linked: list[tuple[Path, str]] = []

    def walk(directory: Path, rel: str) -> None:
        real = directory.resolve()
        if real in visited:
            problems.append(
                Problem(
                    rel, None, "", "symbolic link to a folder already read (a loop?); not followed"
                )
            )
            return
        visited.add(real)
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as exc:
            problems.append(Problem(rel or ".", None, "", f"cannot read directory: {exc.strerror}"))
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            child_rel = f"{rel}/{entry.name}" if rel else entry.name
            path = Path(entry.path)
            try:
                is_dir = entry.is_dir(follow_symlinks=True)
            except OSError:  # e.g. ELOOP: a link that points at itself
                problems.append(Problem(child_rel, 1, "", "broken or looping symbolic link"))
                continue
            wanted = is_dir or entry.name.endswith(SUFFIXES)
            if not wanted:
                continue
            if entry.is_symlink():
                try:
                    target = path.resolve(strict=True)
                except (OSError, RuntimeError):
                    problems.append(Problem(child_rel, 1, "", "broken or looping symbolic link"))
                    continue
                if not target.is_relative_to(real_root):
                    problems.append(
                        Problem(child_rel, 1, "", "symbolic link points outside the desired dir")
                    )
                    continue
            if is_dir and entry.is_symlink():
                linked.append((path, child_rel))
            elif is_dir:
                walk(path, child_rel)
            elif entry.name == DEFAULTS_FILE:
                defaults.add(child_rel)
            else:
                files.append(child_rel)

    walk(root, "")
    while linked:
        walk(*linked.pop(0))
    return sorted(files), defaults, problems


def _read_doc(path: Path, rel: str, size: int) -> Any:
    if size > MAX_FILE_BYTES:
        raise _FileFailed(
            [Problem(rel, 1, "", f"file is larger than {MAX_FILE_BYTES // 1024} KiB")]
        )
    try:
        data = path.read_bytes()[: MAX_FILE_BYTES + 1]
    except OSError as exc:
        raise _FileFailed([Problem(rel, 1, "", f"cannot read: {exc.strerror}")]) from None
    if len(data) > MAX_FILE_BYTES:
        raise _FileFailed(
            [Problem(rel, 1, "", f"file is larger than {MAX_FILE_BYTES // 1024} KiB")]
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise _FileFailed([Problem(rel, line, "", "not valid UTF-8 text")]) from None
    bad = next((c for c in text if ord(c) < 32 and c not in "\t\n\r"), None)
    if bad is not None:
        line = text[: text.index(bad)].count("\n") + 1
        raise _FileFailed([Problem(rel, line, "", f"control character {ord(bad):#04x} in file")])
    try:
        return parse_yaml(text, rel)
    except YamlError as exc:
        raise _FileFailed([Problem(rel, exc.pos.line, "", exc.message)]) from None


def _check_accounts(doc: YamlMap, problems: list[Problem]) -> None:
    """Accounts merge by number, so each source must name each account once, validly."""
    accounts = doc.get("accounts")
    if not isinstance(accounts, YamlList):
        return
    seen: dict[int, int] = {}
    for i, item in enumerate(accounts):
        pos = accounts.item_pos[i]
        if not isinstance(item, YamlMap):
            problems.append(Problem(pos.file, pos.line, f"accounts[{i}]", "must be a mapping"))
            continue
        number = item.get("account")
        where = item.key_pos.get("account", item.pos)
        if "account" not in item:
            problems.append(Problem(pos.file, pos.line, f"accounts[{i}]", "account: is missing"))
        elif not (isinstance(number, int) and not isinstance(number, bool)) or number not in (
            ACCOUNT_NUMBERS
        ):
            problems.append(
                Problem(where.file, where.line, f"accounts[{i}].account", "must be 1 to 4")
            )
        elif number in seen:
            problems.append(
                Problem(
                    where.file,
                    where.line,
                    f"accounts[{i}].account",
                    f"account {number} is listed twice (first on line {seen[number]})",
                )
            )
        else:
            seen[number] = where.line


def _merge(base: Any, top: Any) -> Any:
    """Deep-merge ``top`` over ``base`` keeping positions; accounts merge by number."""
    if isinstance(base, YamlMap) and isinstance(top, YamlMap):
        out = YamlMap(base)
        out.pos = top.pos
        out.key_pos = dict(base.key_pos)
        for key, value in top.items():
            if (
                key == "accounts"
                and isinstance(value, YamlList)
                and isinstance(base.get(key), YamlList)
            ):
                out[key] = _merge_accounts(base[key], value)
            elif key in base:
                out[key] = _merge(base[key], value)
            else:
                out[key] = value
            out.key_pos[key] = top.key_pos[key]
        return out
    return top


def _both_lists(a: Any, b: Any) -> bool:
    return isinstance(a, YamlList) and isinstance(b, YamlList)


def _merge_accounts(base: YamlList, top: YamlList) -> YamlList:
    def number(item: Any) -> Any:
        return item.get("account") if isinstance(item, YamlMap) else None

    out = YamlList()
    out.pos = top.pos
    out.item_pos = []
    index = {number(item): i for i, item in enumerate(base)}
    used: set[int] = set()
    for item, pos in zip(top, top.item_pos, strict=True):
        i = index.get(number(item))
        if i is not None:
            used.add(i)
            out.append(_merge(base[i], item))
        else:
            out.append(item)
        out.item_pos.append(pos)
    for i, item in enumerate(base):
        if i not in used:
            out.append(item)
            out.item_pos.append(base.item_pos[i])
    return out


# ------------------------------------------------------------ error messages


def _locate(doc: Any, loc: tuple[int | str, ...], fallback: str) -> tuple[Pos, str]:
    """The position of the deepest value on ``loc``, and ``loc`` as a dotted path."""
    pos = getattr(doc, "pos", None) or Pos(fallback, 1)
    node = doc
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
            if isinstance(node, YamlList) and part < len(node):
                pos = node.item_pos[part]
                node = node[part]
            else:
                break
        else:
            path += f".{part}" if path else part
            if isinstance(node, YamlMap) and part in node:
                pos = node.key_pos[part]
                node = node[part]
            else:
                if isinstance(node, YamlMap):
                    pos = node.pos
                break
    return pos, path


def _problem(err: Any, doc: Any, rel: str) -> Problem:
    loc = tuple(err["loc"])
    pos, path = _locate(doc, loc, rel)
    kind = err["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1])
        parent_model = _model_at(loc[:-1])
        known = list(parent_model.model_fields) if parent_model else []
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        if known and not close:
            hint = f"; known keys: {', '.join(known)}"
        return Problem(pos.file, pos.line, path, f"unknown key '{key}'{hint}")
    if kind == "missing":
        return Problem(pos.file, pos.line, path, "is required")
    if kind == "text_type" and pos.raw is not None:
        return Problem(
            pos.file,
            pos.line,
            path,
            f'must be a string; quote it: {loc[-1]}: "{pos.raw}" '
            "(unquoted, YAML reads it as another type, and 0123 as a different number)",
        )
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return Problem(pos.file, pos.line, path, "must be a mapping")
    if kind == "list_type":
        return Problem(pos.file, pos.line, path, "must be a list")
    message = err["msg"]
    if kind == "enum":
        message = message.replace("Input should be", "must be")
    return Problem(pos.file, pos.line, path, message)


def _model_at(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    model: type[BaseModel] = FileDoc
    for part in loc:
        if isinstance(part, int):
            continue
        info = model.model_fields.get(str(part))
        if info is None:
            return None
        annotation = info.annotation
        inner = getattr(annotation, "__args__", (annotation,))
        nested = next((a for a in inner if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if nested is None:
            return None
        model = nested
    return model


def _secret_positions(parsed: FileDoc, doc: Any, rel: str) -> dict[str | int, tuple[str, int, str]]:
    out: dict[str | int, tuple[str, int, str]] = {}
    if parsed.device.auth.password is not None:
        pos, path = _locate(doc, ("device", "auth", "password"), rel)
        out["device"] = (pos.file, pos.line, path)
    for i, account in enumerate(parsed.accounts):
        if account.password is not None:
            pos, path = _locate(doc, ("accounts", i, "password"), rel)
            out[account.account] = (pos.file, pos.line, path)
    return out


def _warnings(parsed: FileDoc, doc: Any, rel: str) -> list[Problem]:
    """Valid but worth an operator's attention at every load."""
    out = []
    if not parsed.device.tls.verify:
        pos, path = _locate(doc, ("device", "tls", "verify"), rel)
        out.append(
            Problem(
                pos.file,
                pos.line,
                path,
                "TLS certificate and host-name checks are off for this device",
                warning=True,
            )
        )
    refs: list[tuple[tuple[int | str, ...], SecretRef | None]] = [
        (("device", "auth", "password"), parsed.device.auth.password)
    ]
    refs += [(("accounts", i, "password"), a.password) for i, a in enumerate(parsed.accounts)]
    for loc, ref in refs:
        if ref is not None and ref.source == "literal":
            pos, path = _locate(doc, loc, rel)
            out.append(
                Problem(
                    pos.file,
                    pos.line,
                    path,
                    "literal secret in the desired state; prefer {env: NAME}, "
                    "{file: PATH} or {credential: NAME}",
                    warning=True,
                )
            )
    return out


def resolve_device(entry: DeviceEntry, *, environ: Mapping[str, str], base_dir: Path) -> DeviceSpec:
    """Resolve an entry's secret references; raise :class:`SecretError` naming one.

    Relative ``file`` references and ``caFile`` are anchored at ``base_dir``
    (the desired dir), so a checkout can be moved.
    """

    failed: list[Problem] = []

    def secret(ref: SecretRef | None, key: str | int) -> SecretStr | None:
        if ref is None:
            return None
        try:
            return resolve_secret(ref, environ=environ, base_dir=base_dir)
        except SecretError as exc:
            fallback = "device.auth.password" if key == "device" else f"account {key} password"
            file, line, path = entry.secret_pos.get(key, (entry.file, 1, fallback))
            failed.append(Problem(file, line, path, str(exc)))
            return None

    api_password = secret(entry.password, "device")
    accounts = {
        n: AccountSpec(n, a.fields, secret(a.password, n)) for n, a in entry.accounts.items()
    }
    if failed:
        raise DeviceSecretError(failed)
    ca_file = str(base_dir / entry.ca_file) if entry.ca_file else None
    return DeviceSpec(
        name=entry.name,
        file=entry.file,
        url=entry.url,
        auth=AuthSpec(entry.auth_method, entry.username, api_password),
        tls=TlsSpec(entry.tls_verify, ca_file),
        mode=entry.mode,
        accounts=accounts,
        sources=entry.sources,
    )
