"""From the parsed documents of one device (defaults first) to its :class:`DeviceSpec`.

Pure: merge, validate against the schema, locate every problem, and turn the
validated document into the one device shape, secrets still references.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from pydantic import ValidationError

from syncd.desired.locate import locate, problem_from_error
from syncd.desired.merge import check_accounts, merge
from syncd.desired.names import name_from_path
from syncd.desired.result import FileFailed, Problem
from syncd.desired.schema import FileDoc
from syncd.desired.yamldoc import YamlMap
from syncd.model import AccountSpec, AuthMethod, AuthSpec, DeviceSpec, TlsSpec
from syncd.secrets import SecretRef

__all__ = ["build_device", "duplicates"]

_LITERAL = (
    "literal secret in the desired state; prefer {env: NAME}, {file: PATH} or {credential: NAME}"
)
_TLS_OFF = "TLS certificate and host-name checks are off for this device"
_READ_ONLY = "read-only on the device: syncd never sends it (remove it, or keep it as a note)"


def build_device(
    rel: str, docs: Sequence[tuple[str, Any]]
) -> tuple[DeviceSpec[SecretRef], list[Problem]]:
    """The spec of device file ``rel`` from ``(source, document)`` pairs, and its warnings.

    Raises :class:`FileFailed` with every problem found, each at its file and line.
    """
    merged = _merged(rel, docs)
    problems = [p for source, doc in docs if isinstance(doc, YamlMap) for p in check_accounts(doc)]
    try:
        parsed = FileDoc.model_validate(merged)
    except ValidationError as exc:
        problems += [problem_from_error(err, merged, rel) for err in exc.errors()]
    if problems:
        unique = {(p.file, p.line, p.path): p for p in reversed(problems)}
        raise FileFailed(sorted(unique.values(), key=lambda p: (p.file, p.line or 0)))
    spec = _spec(parsed, merged, rel, tuple(source for source, _ in docs))
    return spec, _warnings(spec, merged, rel)


def _merged(rel: str, docs: Sequence[tuple[str, Any]]) -> Any:
    merged: Any = None
    for source, doc in docs:
        if doc is None:
            if source == rel:
                raise FileFailed([Problem(rel, 1, "", "file is empty")])
            continue
        if not isinstance(doc, YamlMap):
            message = "must be a mapping with device: and accounts:"
            raise FileFailed([Problem(source, 1, "", message)])
        merged = doc if merged is None else merge(merged, doc)
    return merged


def _spec(parsed: FileDoc, doc: Any, rel: str, sources: tuple[str, ...]) -> DeviceSpec[SecretRef]:
    """The validated document as the device shape; each secret knows where it was written."""

    def placed(ref: SecretRef | None, loc: tuple[int | str, ...]) -> SecretRef | None:
        if ref is None:
            return None
        pos, path = locate(doc, loc, rel)
        return replace(ref, where=(pos.file, pos.line, path))

    device = parsed.device
    # No authentication means no credentials: ones inherited from a _defaults.yaml
    # (merged key by key under `method: none`) are neither resolved nor sent.
    credentials = device.auth.method is not AuthMethod.NONE
    accounts = {
        a.account: AccountSpec(
            a.account, a.managed(), placed(a.password, ("accounts", i, "password"))
        )
        for i, a in enumerate(parsed.accounts)
    }
    url_pos, _ = locate(doc, ("device", "url"), rel)
    return DeviceSpec(
        name=device.name or name_from_path(rel),
        file=rel,
        url=device.url,
        auth=AuthSpec(
            device.auth.method,
            device.auth.username if credentials else None,
            placed(device.auth.password, ("device", "auth", "password")) if credentials else None,
        ),
        tls=TlsSpec(device.tls.verify, device.tls.caFile),
        mode=device.mode,
        accounts=accounts,
        sources=sources,
        url_at=(url_pos.file, url_pos.line),
    )


def _warnings(spec: DeviceSpec[SecretRef], doc: Any, rel: str) -> list[Problem]:
    """Valid but worth an operator's attention at every load."""
    out = []
    if not spec.tls.verify:
        pos, path = locate(doc, ("device", "tls", "verify"), rel)
        out.append(Problem(pos.file, pos.line, path, _TLS_OFF, warning=True))
    refs = [spec.auth.password, *(a.password for a in spec.accounts.values())]
    for ref in refs:
        if ref is not None and ref.source == "literal" and ref.where is not None:
            file, line, path = ref.where
            out.append(Problem(file, line, path, _LITERAL, warning=True))
    accounts = doc.get("accounts") if isinstance(doc, dict) else None
    for i, account in enumerate(accounts if isinstance(accounts, list) else ()):
        if isinstance(account, dict) and "accountType" in account:
            pos, path = locate(doc, ("accounts", i, "accountType"), rel)
            out.append(Problem(pos.file, pos.line, path, _READ_ONLY, warning=True))
    return out


def duplicates(specs: Sequence[DeviceSpec[SecretRef]]) -> list[Problem]:
    """Files naming one device (same name, or same URL): each of them is a problem."""
    problems: list[Problem] = []
    for what in ("name", "URL"):
        groups: dict[str, list[DeviceSpec[SecretRef]]] = {}
        for spec in specs:
            groups.setdefault(spec.name if what == "name" else _address(spec.url), []).append(spec)
        for group in groups.values():
            for spec in group if len(group) > 1 else ():
                others = ", ".join(o.file for o in group if o is not spec)
                message = f"same device {what} as {others}"
                line, path = 1, "device"
                if what == "URL" and spec.url_at is not None:
                    path = "device.url"
                    file, at = spec.url_at
                    if file == spec.file:
                        line = at
                    else:  # inherited: the device file does not say it
                        message += f" (its url is set in {file}:{at})"
                problems.append(Problem(spec.file, line, path, message))
    return problems


_DEFAULT_PORTS = {"http": ":80", "https": ":443"}


def _address(url: str) -> str:
    """Where a (normalised) URL leads: ``http://host:80`` is ``http://host``."""
    scheme, _, netloc = url.partition("://")
    default = _DEFAULT_PORTS.get(scheme, "")
    return url[: -len(default)] if default and netloc.endswith(default) else url
