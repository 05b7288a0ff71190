"""Which devices an export reads, and where each one's YAML goes."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from syncd.desired import name_from_path, select_devices
from syncd.desired.schema import UrlError, normalise_url, text_problem
from syncd.export.request import ExportError, ExportRequest, Target
from syncd.secrets import hide_credentials

__all__ = ["targets"]


def targets(request: ExportRequest, *, report: list[str]) -> list[Target]:
    """The devices to export; problems of a device list beyond the last go to ``report``."""
    output = request.output
    if request.from_list is not None:
        assert output is not None  # the CLI checks --from-list comes with --output
        found = read_device_list(request.from_list, output, report=report)
        if not request.devices:
            return found
        labels = [t.label for t in found]
        for pattern in request.devices:
            if not select_devices(labels, [pattern]):
                raise ExportError(f"no device in {request.from_list} matches --device {pattern}")
        wanted = select_devices(labels, request.devices)
        return [t for t in found if t.label in wanted]
    assert request.url is not None
    url = device_url(request.url, what=f"--url {request.url}")
    name = request.name
    if output is None:
        return [Target(url=url, name=name)]
    file_name = name if name is not None else name_from_url(url)
    rel = check_device_name(file_name, what=f"--name {name}" if name else "the name from --url")
    explicit = rel if name is not None else None
    return [Target(url=url, name=explicit, path=output / f"{rel}.yaml", label=rel)]


def device_url(raw: str, *, what: str) -> str:
    """The URL as the loader would normalise it, or ExportError naming ``what``."""
    try:
        return normalise_url(raw, credentials_hint="use --username")
    except UrlError as exc:
        raise ExportError(f"{hide_credentials(what)}: the URL {exc}") from None


def name_from_url(url: str) -> str:
    """A file name for a device known only by URL: its host, and its port if given."""
    parts = urlsplit(url)
    host = (parts.hostname or "device").replace(":", "-")
    return f"{host}-{parts.port}" if parts.port is not None else host


def check_device_name(name: str, *, what: str) -> str:
    """A device name usable as a path under the output dir (``site-a/lobby``), or ExportError.

    A trailing ``.yaml`` is dropped. Parts starting with ``.`` would be ignored by
    the loader and ``..`` would leave the tree, so both are refused.
    """
    name = name_from_path(name)
    parts = name.split("/")
    if not name or any(p in ("", ".", "..") for p in parts):
        raise ExportError(f"{what}: '{name}' is not a relative path of names such as site-a/lobby")
    if any(p.startswith(".") for p in parts):
        raise ExportError(f"{what}: '{name}' has a part starting with '.', which syncd ignores")
    if parts[-1] == "_defaults":
        raise ExportError(f"{what}: '_defaults' is the name of the defaults file")
    if "\\" in name or text_problem(name) is not None:
        raise ExportError(f"{what}: '{name}' contains characters not allowed in a device name")
    return name


def read_device_list(path: Path, output: Path, *, report: list[str]) -> list[Target]:
    """Parse ``NAME URL`` lines (blank lines and ``#`` comments ignored) into targets.

    Every problem of the file is found, each as ``FILE:LINE: ...``: all but the
    last go to ``report``, the last is raised; a list with any problem exports nothing.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ExportError(f"device list {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not UTF-8 text"
        raise ExportError(f"cannot read device list {path}: {reason}") from None
    found: list[Target] = []
    problems: list[str] = []
    names: dict[str, int] = {}
    urls: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        words = line.split()
        comment = next((i for i, w in enumerate(words) if w.startswith("#")), len(words))
        words = words[:comment]
        if not words:
            continue
        where = f"{path}:{number}"
        try:
            name, url = _entry(words, where)
        except ExportError as exc:
            problems.append(str(exc))
            continue
        if name in names:
            problems.append(f"{where}: device {name} is already listed on line {names[name]}")
        elif url in urls:
            problems.append(f"{where}: {url} is already listed on line {urls[url]}")
        else:
            names[name] = urls[url] = number
            found.append(Target(url=url, path=output / f"{name}.yaml", label=name))
    if problems:
        report.extend(problems[:-1])
        raise ExportError(problems[-1])
    if not found:
        raise ExportError(f"device list {path} names no device")
    return found


def _entry(words: list[str], where: str) -> tuple[str, str]:
    if len(words) != 2:
        raise ExportError(f"{where}: expected 'NAME URL', found {len(words)} word(s)")
    name = check_device_name(words[0], what=where)
    return name, device_url(words[1], what=f"{where}: {words[1]}")
