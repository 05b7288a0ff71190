"""The README and the shipped settings tell the truth about the repository and the install."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_links_stay_inside_the_repository() -> None:
    """Every relative link in the README names a file that exists in this repository."""
    targets = re.findall(r"\]\(([^)\s]+)\)", README)
    local = [t.split("#", 1)[0] for t in targets if not re.match(r"[a-z]+://|#|mailto:", t)]
    for target in local:
        path = (ROOT / target).resolve()
        assert path.is_relative_to(ROOT), f"{target} leaves the repository"
        assert path.exists(), f"{target} does not exist"


def test_install_points_at_the_repos_desired_folder() -> None:
    """The unit and the TOML example agree on desired_dir, the checkout's desired/ folder."""
    toml = tomllib.loads((ROOT / "systemd" / "syncd.toml").read_text())
    unit = (ROOT / "systemd" / "syncd.service").read_text()
    (from_unit,) = re.findall(r"^Environment=SYNCD_DESIRED_DIR=(\S+)$", unit, re.MULTILINE)
    assert toml["desired_dir"] == from_unit
    assert from_unit.endswith("/desired")
    checkout = from_unit.rsplit("/", 1)[0]
    assert f"git clone https://git.example.com/ops/intercoms.git {checkout}\n" in README
    assert f"git -C {checkout} pull" in README


def test_the_config_names_the_units_state_directory() -> None:
    """Commands run from a shell read /etc/syncd/syncd.toml: its state_dir is the unit's
    StateDirectory=, or they would work on a state dir of their own."""
    toml = tomllib.loads((ROOT / "systemd" / "syncd.toml").read_text())
    unit = (ROOT / "systemd" / "syncd.service").read_text()
    (directory,) = re.findall(r"^StateDirectory=(\S+)$", unit, re.MULTILINE)
    assert toml["state_dir"] == f"/var/lib/{directory}"


def test_every_event_the_code_logs_is_in_the_events_table() -> None:
    """Event names are a stable interface: each one syncd logs has a row in the README."""
    call = re.compile(r"\.(?:debug|info|warning|error|exception)\(\s*\"([a-z_]+(?:\.[a-z_]+)+)\"")
    logged = {
        name
        for path in (ROOT / "syncd").rglob("*.py")
        for name in call.findall(path.read_text(encoding="utf-8"))
    }
    assert len(logged) > 50  # the pattern still finds the calls
    rows = set(re.findall(r"^\|[^|\n]*", README, re.M))
    documented = {name for row in rows for name in re.findall(r"`([a-z_]+(?:\.[a-z_]+)+)`", row)}
    assert sorted(logged - documented) == []
