"""Hostile desired files: each is refused with file (and line) and never reaches its device,
while a good device beside it converges; the daemon survives them arriving at any time."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from tests.e2e.conftest import device_yaml, puts, syncd, write
from tests.faults.helpers import account, converged, events, named, pass_args, run_args, wait_until

HEAD = "device:\n  url: {url}\n  auth:\n    method: none\naccounts:\n  - account: 1\n"
ROW = 7  # the line of the first field under account 1 in HEAD

LAUGHS = "".join(
    f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]\n" for a, b in zip("abcdefgh", "bcdefghi", strict=True)
)


def _text(body: str) -> Callable[[Path, str, str], None]:
    def make(root: Path, rel: str, url: str) -> None:
        write(root, rel, HEAD.format(url=url) + body)

    return make


def _bytes(body: bytes) -> Callable[[Path, str, str], None]:
    def make(root: Path, rel: str, url: str) -> None:
        (root / rel).write_bytes(HEAD.format(url=url).encode() + body)

    return make


def _alias_bomb(root: Path, rel: str, url: str) -> None:
    write(
        root,
        rel,
        f"device:\n  url: {url}\n  auth:\n    method: none\na: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
        + LAUGHS,
    )


def _over_one_mib(root: Path, rel: str, url: str) -> None:
    write(root, rel, HEAD.format(url=url) + '    displayName: "x"\n' + "#" * (1024 * 1024) + "\n")


def _link_outside(root: Path, rel: str, url: str) -> None:
    outside = root.parent / "outside"
    write(outside, "real.yaml", HEAD.format(url=url) + '    displayName: "outside"\n')
    (root / rel).symlink_to(outside / "real.yaml")


def _link_loop(root: Path, rel: str, url: str) -> None:
    (root / rel).symlink_to(root / rel)


def _merge_key(root: Path, rel: str, url: str) -> None:
    write(
        root, rel, f"base: &base\n  url: {url}\ndevice:\n  <<: *base\n  auth:\n    method: none\n"
    )


#: name -> (how to make the file, expected line or None for file-level problems, message words)
HOSTILE: dict[str, tuple[Callable[[Path, str, str], None], int | None, str]] = {
    "alias-bomb": (_alias_bomb, None, "alias bomb"),
    "over-1-mib": (_over_one_mib, None, "larger than"),
    "not-utf8": (_bytes(b"    displayName: caf\xe9\n"), ROW, "UTF-8"),
    "duplicate-key": (
        _text('    displayName: "a"\n    displayName: "b"\n'),
        ROW + 1,
        "duplicate key",
    ),
    "deep-nesting": (_text("    displayName: " + "[" * 300 + "]" * 300 + "\n"), ROW, "nested"),
    "huge-string": (_text("    displayName: " + "x" * 300_000 + "\n"), ROW, "characters long"),
    "huge-number": (_text("    domainPort: " + "9" * 5000 + "\n"), ROW, "not a valid int"),
    "raw-control-char": (_bytes(b'    displayName: "a\x07b"\n'), ROW, "control character"),
    "escaped-control-char": (_text('    displayName: "a\\x1bb"\n'), ROW, "control character"),
    "raw-del": (_bytes(b"    displayName: a\x7fb\n"), ROW, "not allowed"),
    "bad-timestamp": (_text("    displayName: 2024-13-45\n"), ROW, "not a valid timestamp"),
    "bad-bool-tag": (_text("    enabled: !!bool maybe\n"), ROW, "not a valid bool"),
    "python-tag": (
        _text("    displayName: !!python/object/apply:os.system true\n"),
        ROW,
        "constructor",
    ),
    "merge-key": (_merge_key, 4, "merge keys"),
    "link-outside": (_link_outside, None, "outside the desired dir"),
    "link-loop": (_link_loop, None, "looping symbolic link"),
}


def _hostile_tree(root: Path, fleet) -> dict[str, object]:
    """One hostile file per case, each naming its own device; the last device gets a good file."""
    root.mkdir(parents=True, exist_ok=True)
    devices = {}
    for (name, (make, _, _)), dev in zip(HOSTILE.items(), fleet.devices, strict=False):
        make(root, f"{name}.yaml", dev.url)
        devices[name] = dev
    write(root, "good.yaml", device_yaml(fleet.devices[-1].url, account("Good")))
    return devices


def test_hostile_files_are_refused_with_file_and_line_and_never_sent(sim, tmp_path):
    """syncd apply refuses every hostile file (alias bomb, >1 MiB, not UTF-8, duplicate keys, deep nesting, huge values, control characters, bad tags, links out or looping) with desired.invalid naming file and line, sends nothing to its device, and converges the good one."""
    fleet = sim(devices=len(HOSTILE) + 1)
    root = tmp_path / "desired"
    devices = _hostile_tree(root, fleet)
    result = syncd("apply", *pass_args(root, tmp_path / "state"), timeout=60)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "unexpected" not in result.stderr
    evs = events(result.stderr)
    for name, (_, line, words) in HOSTILE.items():
        found = named(evs, "desired.invalid", file=f"{name}.yaml")
        assert len(found) == 1, (name, [e for e in evs if e.get("event") == "desired.invalid"])
        event = found[0]
        assert event["level"] == "error" and words in event["error"], (name, event)
        if line is not None:
            assert event["line"] == line, (name, event)
            assert event["error"].startswith(f"{name}.yaml:{line}: "), (name, event)
        elif name == "alias-bomb":
            assert isinstance(event["line"], int) and event["error"].startswith(f"{name}.yaml:")
        else:
            assert event["error"].startswith(f"{name}.yaml"), (name, event)
        assert devices[name].journal == [], f"{name}: a request reached the device"
    assert converged(fleet.devices[-1], "Good")
    assert len(result.stderr) < 100_000  # no hostile value is echoed back in full

    check = syncd("validate", str(root), timeout=60)
    assert check.returncode == 1 and check.stderr == ""  # the problems are its result: stdout
    for name, (_, line, _) in HOSTILE.items():
        where = f"{name}.yaml:{line}: " if line else f"{name}.yaml"
        assert where in check.stdout, name
    assert all(dev.journal == [] for dev in devices.values())


def test_daemon_survives_hostile_files_at_start_and_mid_run(sim, daemon, tmp_path):
    """The daemon starts beside every hostile file, serves the good device, never contacts the hostile ones, and a hostile edit mid-run keeps the last valid state while later edits still apply at once."""
    fleet = sim(devices=len(HOSTILE) + 2)
    root = tmp_path / "desired"
    devices = _hostile_tree(root, fleet)
    spare = fleet.devices[-2]
    write(root, "spare.yaml", device_yaml(spare.url, account("Spare")))
    proc = daemon(*run_args(root, tmp_path / "state"))
    proc.wait_for("apply.succeeded", device="good", timeout=30)
    proc.wait_for("apply.succeeded", device="spare", timeout=30)
    invalid = {e["file"] for e in proc.events if e.get("event") == "desired.invalid"}
    assert {f"{name}.yaml" for name in HOSTILE} <= invalid
    # The good file turns hostile: the last valid state stays in force.
    good = fleet.devices[-1]
    write(root, "good.yaml", HEAD.format(url=good.url) + "    domainPort: " + "9" * 5000 + "\n")
    event = proc.wait_for("desired.invalid", file="good.yaml", timeout=10)
    assert event["line"] == ROW
    good.set_live(1, displayName="Hacked")
    wait_until(lambda: converged(good, "Good"), 10, "last valid state enforced")
    # The watcher is alive: an edit of another file still applies at once.
    write(root, "spare.yaml", device_yaml(spare.url, account("Spare v2")))
    wait_until(lambda: converged(spare, "Spare v2"), 5, "edit after a hostile file")
    assert all(dev.journal == [] for dev in devices.values())
    assert all("domainPort" not in (e.blob_text or "") for e in puts(good))
    assert proc.proc.poll() is None
    assert proc.stop() == 0
    assert not [line for line in proc.lines if "Traceback" in line]
    assert os.path.isdir(tmp_path / "state")
