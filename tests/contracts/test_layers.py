"""The layering contract: the pure core imports nothing from the shell; the emulator nothing from syncd."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "syncd"

#: Decisions and values: testable and trustworthy alone, without a network, a clock or a disk.
PURE_CORE = frozenset(
    {
        "syncd.model",
        "syncd.pending_put",
        "syncd.diff",
        "syncd.schedule",
        "syncd.spacing",
        "syncd.cluster.agreement",
        "syncd.cluster.snapshot",
        "syncd.cluster.state_codec",
        "syncd.desired.build",
        "syncd.desired.locate",
        "syncd.desired.merge",
        "syncd.desired.names",
        "syncd.desired.result",
        "syncd.desired.schema",
        "syncd.desired.yamldoc",
        "syncd.export.render",
        "syncd.export.request",
        "syncd.state.records",
        "syncd.policy",
        "syncd.policy_schema",
        "syncd.rollout",
        "syncd.rollout_values",
        "syncd.saved_rollout",
        "syncd.settings_change",
        "syncd.settings_errors",
        "syncd.waves",
        "syncd.windows",
    }
)
#: What else the pure core may use of syncd: the package's version, and the secret
#: reference value type (``syncd.secrets.SecretRef``), which it carries but never resolves.
PURE_MAY_ALSO_IMPORT = frozenset({"syncd", "syncd.secrets"})
#: Third-party and standard modules that mean I/O, concurrency or a network.
IO_MODULES = frozenset(
    {"asyncio", "httpx", "watchfiles", "socket", "subprocess", "tempfile", "prometheus_client"}
)


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports (``from X import y`` yields ``X`` and, if a module, ``X.y``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = (
        module_name(path) if path.name == "__init__.py" else module_name(path).rsplit(".", 1)[0]
    )
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            found.add(base)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                if (PACKAGE.parent / candidate.replace(".", "/")).with_suffix(".py").exists() or (
                    PACKAGE.parent / candidate.replace(".", "/") / "__init__.py"
                ).exists():
                    found.add(candidate)
    return found


def sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


class TestLayers:
    def test_pure_core_modules_exist(self) -> None:
        """Every module named in the contract is a real module (a rename must update the contract)."""
        names = {module_name(p) for p in sources()}
        assert names >= PURE_CORE, sorted(PURE_CORE - names)

    @pytest.mark.parametrize("name", sorted(PURE_CORE))
    def test_pure_core_imports_only_pure_core(self, name: str) -> None:
        """A pure-core module imports from syncd only other pure-core modules, and no I/O library."""
        path = next(p for p in sources() if module_name(p) == name)
        found = imports(path)
        syncd = {m for m in found if m == "syncd" or m.startswith("syncd.")}
        assert syncd <= PURE_CORE | PURE_MAY_ALSO_IMPORT, sorted(
            syncd - PURE_CORE - PURE_MAY_ALSO_IMPORT
        )
        io = {m for m in found if m.split(".")[0] in IO_MODULES}
        assert not io, sorted(io)

    def test_emulator_imports_nothing_from_syncd(self) -> None:
        """syncd/simulator is an independent device: it imports only from syncd.simulator."""
        offending = {
            f"{module_name(path)} imports {m}"
            for path in sources()
            if module_name(path).startswith("syncd.simulator")
            for m in imports(path)
            if (m == "syncd" or m.startswith("syncd.")) and not m.startswith("syncd.simulator")
        }
        assert not offending, sorted(offending)

    def test_the_contract_can_fail(self) -> None:
        """The import reader sees absolute and relative imports (so the checks above can fail)."""
        sample = PACKAGE / "desired" / "merge.py"
        assert "syncd.desired.yamldoc" in imports(sample)
        assert "syncd.model" in imports(sample)
