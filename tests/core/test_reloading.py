"""Which specs a reload puts in force (pure: no daemon, no files)."""

from __future__ import annotations

from pathlib import Path

from syncd.desired import Resolved
from syncd.desired.result import DesiredState
from syncd.model import DeviceSpec, Mode
from syncd.reloading import specs_in_force


def spec(name: str, mode: Mode = Mode.ENFORCE) -> DeviceSpec:
    return DeviceSpec(name=name, file=f"{name}.yaml", url=f"http://127.0.0.1:1/{name}", mode=mode)


def test_an_unchanged_spec_stays_the_current_object() -> None:
    """Equal specs are the current objects (one copy per device); a changed one is the new one,
    and a device whose file turned invalid keeps its current spec."""
    current = {"a": spec("a"), "b": spec("b"), "c": spec("c")}
    loaded = {"a": spec("a"), "b": spec("b", Mode.OBSERVE)}
    desired = DesiredState(root=Path("/desired"), invalid_files={"c.yaml"})
    specs = specs_in_force(desired, Resolved(specs=loaded), current)
    assert specs["a"] is current["a"]
    assert specs["b"] is loaded["b"] and specs["b"].mode is Mode.OBSERVE
    assert specs["c"] is current["c"]
