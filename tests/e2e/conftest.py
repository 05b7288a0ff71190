"""Shared helpers for end-to-end tests: emulated fleets, desired trees, syncd as a subprocess."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from syncd.simulator import Fleet, run_fleet_in_thread

SYNCD = [sys.executable, "-m", "syncd"]


@pytest.fixture
def sim() -> Iterator[Callable[..., Fleet]]:
    """Start emulated fleets in background threads; all are stopped after the test."""
    with ExitStack() as stack:

        def start(**options: Any) -> Fleet:
            return stack.enter_context(run_fleet_in_thread(**options))

        yield start


def write(root: Path, rel: str, text: str) -> Path:
    """Write a desired-state file atomically (as an editor or git would)."""
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp"
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def device_yaml(url: str, accounts: str = "", device_extra: str = "") -> str:
    """A device file: ``accounts`` is the YAML body under ``accounts:`` (indented 2)."""
    text = f"device:\n  url: {url}\n  auth:\n    method: none\n{device_extra}"
    if accounts:
        text += "accounts:\n" + accounts
    return text


def syncd(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a one-shot syncd command; stdout and stderr captured as text."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [*SYNCD, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        cwd=cwd,
        check=False,
    )


def puts(device: Any) -> list[Any]:
    return [e for e in device.journal if e.method == "PUT"]


class DaemonProcess:
    """``syncd run`` as systemd would run it, with its stdout read line by line."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [*SYNCD, "run", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.lines: list[str] = []
        self.events: list[dict[str, Any]] = []
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue()
        self._pending: list[dict[str, Any]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            try:
                event = json.loads(line)
            except ValueError:
                event = {"event": "(not json)", "line": line}
            self.events.append(event)
            self._queue.put(event)

    def wait_for(self, name: str, timeout: float = 15, **match: Any) -> dict[str, Any]:
        """The first not yet awaited event called ``name`` whose fields include ``match``.

        Each event is returned at most once, so waiting twice for the same
        name waits for a second occurrence; events of other names stay
        available in the order they came.
        """
        deadline = time.monotonic() + timeout
        while True:
            while True:
                try:
                    self._pending.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            for i, event in enumerate(self._pending):
                if event.get("event") == name and all(event.get(k) == v for k, v in match.items()):
                    return self._pending.pop(i)
            left = deadline - time.monotonic()
            if left <= 0:
                seen = [e.get("event") for e in self.events][-30:]
                raise AssertionError(f"no {name} {match} within {timeout}s; last events: {seen}")
            try:
                self._pending.append(self._queue.get(timeout=min(left, 0.5)))
            except queue.Empty:
                if self.proc.poll() is not None and self._queue.empty():
                    err = self.proc.stderr.read() if self.proc.stderr else ""
                    raise AssertionError(f"daemon exited {self.proc.returncode}: {err}") from None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self._reader.join(timeout=5)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def discard(self) -> None:
        """After a test: killed if still running, its pipes closed."""
        self.kill()
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


@pytest.fixture
def daemon() -> Iterator[Callable[..., DaemonProcess]]:
    """Start ``syncd run`` subprocesses; any still running are killed after the test."""
    started: list[DaemonProcess] = []

    def start(*args: str, env: dict[str, str] | None = None) -> DaemonProcess:
        proc = DaemonProcess(list(args), env)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.discard()
