"""From a loaded desired tree to the devices syncd can act on: secrets resolved.

Resolving reads environment variables and files (:func:`syncd.secrets.resolve_secret`);
a device whose secrets do not resolve, whose reference gives an empty or blank
password, or whose SIP password the device would refuse (the text rule), is
*broken*, with every such reference reported at the line it was written on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from syncd.desired.names import name_from_path, select_devices
from syncd.desired.result import DesiredState, Problem
from syncd.desired.schema import blank_problem, text_problem
from syncd.model import AccountSpec, AuthSpec, DeviceSpec
from syncd.secrets import SecretError, SecretRef, resolve_secret

__all__ = ["DeviceSecretError", "Resolved", "resolve_desired", "resolve_device", "rollout_specs"]


class DeviceSecretError(SecretError):
    """Secret references of one device do not resolve; each names file, line and field."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = problems


@dataclass
class Resolved:
    """The devices syncd can act on now, and why the others cannot be."""

    specs: dict[str, DeviceSpec] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    #: Device name -> problem text, for devices that were found but are unusable.
    broken: dict[str, str] = field(default_factory=dict)


def resolve_device(
    spec: DeviceSpec[SecretRef], *, environ: Mapping[str, str], base_dir: Path
) -> DeviceSpec:
    """The spec with its secret references resolved; raise :class:`DeviceSecretError`.

    Relative ``file`` references and ``caFile`` are anchored at ``base_dir``
    (the desired dir), so a checkout can be moved.
    """
    failed: list[Problem] = []

    def secret(ref: SecretRef | None, fallback: str, *, text: bool = False) -> SecretStr | None:
        if ref is None:
            return None
        try:
            value = resolve_secret(ref, environ=environ, base_dir=base_dir)
            plain = value.get_secret_value()
            # An empty file is an accident; an empty variable is set so on purpose.
            problem = blank_problem(plain) if ref.source in ("file", "credential") else None
            if problem is None and text:
                problem = text_problem(plain)
            if problem is not None:
                # The device refuses the whole PUT (code 12): say so now, never the value.
                raise SecretError(f"{ref} gives a password that {problem}")
            return value
        except SecretError as exc:
            file, line, path = ref.where or (spec.file, 1, fallback)
            failed.append(Problem(file, line, path, str(exc)))
            return None

    auth = AuthSpec(
        spec.auth.method, spec.auth.username, secret(spec.auth.password, "device.auth.password")
    )
    accounts = {
        n: AccountSpec(n, a.fields, secret(a.password, f"account {n} password", text=True))
        for n, a in spec.accounts.items()
    }
    if failed:
        raise DeviceSecretError(failed)
    ca_file = str(base_dir / spec.tls.ca_file) if spec.tls.ca_file else None
    return DeviceSpec(
        name=spec.name,
        file=spec.file,
        url=spec.url,
        auth=auth,
        tls=replace(spec.tls, ca_file=ca_file),
        mode=spec.mode,
        accounts=accounts,
        sources=spec.sources,
    )


def resolve_desired(
    desired: DesiredState,
    *,
    environ: Mapping[str, str],
    only: Iterable[str] = (),
) -> Resolved:
    """Resolve secrets of each valid device (optionally only some); collect problems."""
    resolved = Resolved(problems=list(desired.problems))
    patterns = list(only)
    specs: Mapping[str, DeviceSpec[SecretRef]] = desired.devices
    if patterns:
        wanted = select_devices(specs, patterns)
        specs = {n: s for n, s in specs.items() if n in wanted}
    seen = set(resolved.problems)
    for name, spec in specs.items():
        try:
            resolved.specs[name] = resolve_device(spec, environ=environ, base_dir=desired.root)
        except DeviceSecretError as exc:
            # A secret every device takes from _defaults.yaml is one problem, not one per device.
            resolved.problems.extend(p for p in exc.problems if p not in seen)
            seen.update(exc.problems)
            resolved.broken[name] = str(exc)
    for rel in sorted(desired.invalid_files):
        name = name_from_path(rel)
        if patterns and not select_devices([name], patterns):
            continue
        mine = [p for p in desired.errors if p.file == rel] or desired.errors
        resolved.broken.setdefault(name, str(mine[0]) if mine else f"{rel} is invalid")
    return resolved


def rollout_specs(
    desired: DesiredState, resolved: Resolved, specs: Mapping[str, DeviceSpec] | None = None
) -> dict[str, DeviceSpec[Any]]:
    """Every device of the tree that can be acted on, ``specs`` (the selected ones,
    resolved) over the rest: whose changes make a rollout when ``--device`` selects a
    few. A rollout needs only their fingerprints and modes; no other secret is read."""
    usable: dict[str, DeviceSpec[Any]] = {
        n: s for n, s in desired.devices.items() if n not in resolved.broken
    }
    usable.update(resolved.specs if specs is None else specs)
    return usable
