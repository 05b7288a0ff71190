"""Commands pay only for the HTTP stack they use.

aiohttp is the emulator's (a fifth of a second of start-up: it loads the
system's CA bundle twice at import); no command that speaks to devices, nor
the daemon, imports it. A command answered from the control socket (httpx
over a Unix socket) or the state dir, or one that failed before any request,
has no use for the device connections, and ``syncd validate``, run over
whole trees in CI, for neither client.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

_PROBE = """
import json, runpy, sys
sys.argv = ["syncd", *sys.argv[1:]]
try:
    runpy.run_module("syncd", run_name="__main__")
except SystemExit as exit:
    code = exit.code
print(json.dumps({"code": code, "http": sorted(m for m in ("aiohttp", "httpx._client") if m in sys.modules)}))
"""


def _imports(*argv: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, *argv], capture_output=True, text=True, timeout=60
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    ("argv", "allowed"),
    [
        (["status"], ["httpx._client"]),
        (["history"], ["httpx._client"]),
        (["rollout", "pause"], ["httpx._client"]),
        (["validate", "--desired", "{desired}"], []),
    ],
    ids=["status without a daemon", "history", "rollout pause", "validate"],
)
def test_a_command_without_device_requests_imports_no_device_client(
    argv: list[str], allowed: list[str], tmp_path: Path
) -> None:
    desired = tmp_path / "desired"
    desired.mkdir()
    (desired / "door.yaml").write_text("device:\n  url: http://127.0.0.1:8080\naccounts: []\n")
    argv = [a.format(desired=desired) for a in argv]
    seen = _imports(*argv, "--state-dir", str(tmp_path / "state"))
    extra = [m for m in seen["http"] if m not in allowed]
    assert extra == [], f"syncd {' '.join(argv)} imported {extra}"


def _loaded_after(imports: str, *modules: str) -> list[str]:
    """Which of ``modules`` (and their submodules) importing ``imports`` loads."""
    probe = (
        f"import json, sys, {imports};"
        f"print(json.dumps(sorted(m for m in sys.modules if m.startswith({modules!r}))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    return list(json.loads(done.stdout))


def test_a_one_shot_pass_loads_neither_httpx_nor_the_emulators_web_stack() -> None:
    """httpx (and urllib.request under it) waits for Digest credentials, a 401 or a compressed
    answer; aiohttp is the emulator's alone."""
    imports = "syncd.cli, syncd.commands, syncd.foreground, syncd.client"
    assert _loaded_after(imports, "aiohttp", "yarl", "httpx", "urllib.request") == []


def test_the_daemon_never_imports_the_emulators_web_stack() -> None:
    assert _loaded_after("syncd.daemon, syncd.client", "aiohttp", "yarl") == []
