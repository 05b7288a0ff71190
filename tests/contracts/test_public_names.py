"""Each module's ``__all__`` is exactly what other modules use of it: whatever is public is used."""

from __future__ import annotations

import ast
import importlib
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "syncd"

#: Names used from outside Python code: console scripts, ``python -m``, the daemon's callers.
ENTRY_POINTS = {
    "syncd.cli": {"main"},  # [project.scripts] syncd = "syncd.cli:main"
    "syncd.demo": {"main"},  # python -m syncd.demo
}
#: Modules other work is changing now: their __all__ is settled there.
LEFT_TO_OTHER_WORK = {
    "syncd.client": {"AUTH_CODES", "ApiError", "user_agent"},
    "syncd.control": {"ControlHandlers", "SOCKET_NAME"},
    "syncd.history": {"HISTORY_FILE", "PASSWORD_SET", "Result", "Trigger"},
    "syncd.http_auth": {"challenge_schemes"},
    "syncd.page": {"REFRESH_SECONDS"},
    "syncd.policy": {"DAY_NAMES", "WindowKind"},
    "syncd.status": {
        "DeviceState",
        "RolloutState",
        "summary_text",
    },
    "syncd.windows": {"HORIZON"},
    "syncd.cluster": {
        "EtcdAccess",
        "EtcdConnection",
        "open_cluster",
        "owner_of",
        "read_password_key",
    },
    "syncd.cluster.hashing": {"weight"},
    "syncd.cluster.settings": {"ETCD_PASSWORD_CREDENTIAL", "PASSWORD_KEY_CREDENTIAL"},
}
#: SPEC section 7 events that the rollout, health, history and control work will log.
#: They are defined now so that every event has its one place; remove a name as it gets a caller.
NOT_YET_CALLED: dict[str, set[str]] = {"syncd.events": set()}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> list[str]:
    """syncd's modules with an ``__all__``, the emulator apart (it has its own tests)."""
    names = [module_name(p) for p in sorted(PACKAGE.rglob("*.py"))]
    return [n for n in names if not n.startswith("syncd.simulator") and n != "syncd.__main__"]


def uses() -> dict[str, set[str]]:
    """Module -> names other files (syncd and tests) take from it, by import or attribute."""
    used: dict[str, set[str]] = defaultdict(set)
    files = [*PACKAGE.rglob("*.py"), *(ROOT / "tests").rglob("*.py")]
    for path in files:
        me = module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        aliases: dict[str, str] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for alias in node.names:
                    if node.module != me:
                        used[node.module].add(alias.name)
                    aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    aliases[alias.asname or alias.name] = alias.name
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute):
                dotted = _dotted(node.value)
                if dotted is not None:
                    head, _, rest = dotted.partition(".")
                    if head in aliases:
                        target = aliases[head] + (f".{rest}" if rest else "")
                        if target != me:
                            used[target].add(node.attr)
    return used


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return f"{inner}.{node.attr}" if inner else None
    return None


USES = uses()


@pytest.mark.parametrize("name", modules())
def test_all_is_what_others_use(name: str) -> None:
    """Every name in a module's __all__ is used by another module, and nothing private is imported."""
    module = importlib.import_module(name)
    public = set(getattr(module, "__all__", ()))
    assert public or not [n for n in vars(module) if not n.startswith("_")] or name in ("syncd",), (
        f"{name} has no __all__"
    )
    submodules = {n for n in vars(module) if f"{name}.{n}" in modules()}
    used = USES.get(name, set()) - submodules
    allowed = (
        ENTRY_POINTS.get(name, set())
        | NOT_YET_CALLED.get(name, set())
        | LEFT_TO_OTHER_WORK.get(name, set())
    )
    unused = public - used - allowed
    assert not unused, f"{name} exports names no other module uses: {sorted(unused)}"
    hidden = {n for n in used if n not in public and hasattr(module, n) and n != "__version__"}
    assert not hidden, f"other modules use names {name} does not export: {sorted(hidden)}"


def test_not_yet_called_events_are_really_not_called() -> None:
    """The allowance for future events shrinks as they get callers: none of them is used yet."""
    called = USES.get("syncd.events", set()) & NOT_YET_CALLED["syncd.events"]
    assert not called, f"remove from NOT_YET_CALLED: {sorted(called)}"
