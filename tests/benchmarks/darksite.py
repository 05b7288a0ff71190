"""A site goes dark (issue 17): how long healthy devices wait for drift correction.

``syncd simulate`` and ``syncd run`` each in their own process. The fleet is
put in its desired state through the emulator, the daemon started and
awaited until every device is in sync; then the first ``dark`` devices (one
site, in the benchmark's site folders) start hanging (they accept every
request and never answer, ``{"kind": "hang"}``). Healthy devices are changed
by hand (``PUT /_emulator/state``) and the time until syncd put each back is
read from the device's journal (the ``finished`` time of the first PUT
accepted after the drift). The dark devices are drifted too; when the hang
is cleared, the time until all of them are converged is the recovery figure.

Two ways to run it, from the repository root::

    # the issue's scenario: 60 devices, 24 dark, concurrency 8, timeout 3 s, resync 4 s
    .venv/bin/python -m tests.benchmarks.darksite --devices 60 --dark 24 --dark 40 \\
        --concurrency 8 --request-timeout 3 --resync 4 --drifts 10 --first-drift 0.2 --spacing 2
    # the README's row: 1,000 devices at the default settings, 0 %, 10 % and 40 % dark
    .venv/bin/python -m tests.benchmarks.darksite --devices 1000 --dark-percent 0,10,40

Every wait has a limit; a drift not corrected within it shows as ``>``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import httpx

from tests.benchmarks.harness import (
    DaemonProcess,
    Emulator,
    desired_account,
    device_path,
    machine,
    write_tree,
)
from tests.bytecode import compile_syncd

__all__ = ["Result", "Scenario", "main", "run_scenario"]

HANG = {"kind": "hang", "count": None}


@dataclass(frozen=True)
class Scenario:
    """One run: which devices go dark, which healthy ones drift, and the daemon's settings."""

    dark: int
    drifts: int
    concurrency: int | None = None  # None: the daemon's default
    request_timeout: float | None = None
    resync: float = 60.0
    #: Seconds after the hang when the first healthy device is drifted, and between drifts.
    first_drift: float = 1.0
    spacing: float = 0.0
    #: Longest wait for the drifts, and for the recovery, in resync intervals.
    limit_resyncs: float = 6.0


@dataclass
class Result:
    scenario: Scenario
    corrections: list[float | None] = field(default_factory=list)
    dark_reported: int = 0
    #: Seconds from the hang until the last dark device was reported unreachable.
    reported_after: float | None = None
    recovery: float | None = None
    converge_start: float = 0.0

    def quantile(self, q: float) -> float | None:
        """Nearest-rank quantile of the corrections; None when one beyond it was never made."""
        done = sorted(c if c is not None else math.inf for c in self.corrections)
        if not done:
            return None
        value = done[max(0, math.ceil(q * len(done)) - 1)]
        return None if math.isinf(value) else value


def log(message: str) -> None:
    print(f"[darksite] {message}", file=sys.stderr, flush=True)


async def _admin(
    client: httpx.AsyncClient, urls: Sequence[str], method: str, path: str, body: Any = None
) -> list[Any]:
    """One admin request per URL, 32 at a time; the JSON answers in order."""
    gate = asyncio.Semaphore(32)

    async def one(url: str) -> Any:
        async with gate:
            response = await client.request(method, url + path, json=body)
            response.raise_for_status()
            return response.json()

    return list(await asyncio.gather(*(one(u) for u in urls)))


def _display(state: Any) -> str:
    accounts = state["accounts"]
    return str(next(a for a in accounts if a["account"] == 1)["displayName"])


async def _drift(client: httpx.AsyncClient, url: str, number: int) -> float:
    body = {"accounts": [desired_account(number, display=f"Hacked {number}")]}
    response = await client.put(url + "/_emulator/state", json=body)
    response.raise_for_status()
    return time.time()


async def _corrected_at(client: httpx.AsyncClient, url: str, since: float) -> float | None:
    """When the first PUT accepted after ``since`` finished (the emulator's clock), if any."""
    response = await client.get(url + "/_emulator/journal")
    response.raise_for_status()
    for entry in response.json():
        if entry["method"] == "PUT" and entry["status"] == 200 and entry["started"] >= since:
            return float(entry["finished"])
    return None


async def _wait_converged(
    client: httpx.AsyncClient, urls: dict[int, str], deadline: float
) -> set[int]:
    """Poll until every device shows its desired display name; the ones that never did."""
    left = dict(urls)
    while left and time.monotonic() < deadline:
        states = await _admin(client, list(left.values()), "GET", "/_emulator/state")
        for number, state in zip(list(left), states, strict=True):
            if _display(state) == f"Door {number:05d}":
                del left[number]
        if left:
            await asyncio.sleep(0.25)
    return set(left)


def _daemon_events(workdir: Path) -> list[dict[str, Any]]:
    out = []
    for line in (workdir / "daemon.stdout").read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


def stamp(event: dict[str, Any]) -> float:
    """An event's timestamp as POSIX seconds."""
    return datetime.fromisoformat(str(event["timestamp"]).replace("Z", "+00:00")).timestamp()


def _pick_healthy(devices: int, dark: int, drifts: int, rng: random.Random) -> list[int]:
    healthy = list(range(dark + 1, devices + 1))
    return sorted(rng.sample(healthy, min(drifts, len(healthy))))


async def _measure(
    sc: Scenario, emu: Emulator, daemon: DaemonProcess, workdir: Path, result: Result
) -> None:
    n = len(emu.urls)
    urls = {number: emu.urls[number - 1] for number in range(1, n + 1)}
    dark = {k: urls[k] for k in range(1, sc.dark + 1)}
    limit = sc.limit_resyncs * sc.resync * 1.1 + 30
    async with httpx.AsyncClient(timeout=30.0, trust_env=False) as client:
        hung_at = time.time()
        await _admin(client, list(dark.values()), "POST", "/_emulator/faults", HANG)
        for number, url in dark.items():  # a factory reset in the dark: seen once it is back
            await _drift(client, url, number)
        log(f"{sc.dark} devices hang; drifting {sc.drifts} healthy ones")
        targets = _pick_healthy(n, sc.dark, sc.drifts, random.Random(17))
        drifted: list[tuple[int, float]] = []
        start = time.monotonic()
        for k, number in enumerate(targets):
            due = start + sc.first_drift + k * sc.spacing
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            drifted.append((number, await _drift(client, urls[number], number)))
        missed = await _wait_converged(
            client, {k: urls[k] for k, _ in drifted}, time.monotonic() + limit
        )
        for number, at in drifted:
            done = None if number in missed else await _corrected_at(client, urls[number], at)
            result.corrections.append(None if done is None else done - at)
        names = {str(device_path(Path(), k).with_suffix("")): k for k in dark}
        while True:
            reported = {
                e.get("device"): stamp(e)
                for e in reversed(_daemon_events(workdir))
                if e.get("event") == "device.unreachable" and stamp(e) >= hung_at
            }
            seen = [reported[name] for name in names if name in reported]
            if len(seen) == len(names) or time.monotonic() > start + limit:
                break
            await asyncio.sleep(0.5)
        result.dark_reported = len(seen)
        result.reported_after = max(seen) - hung_at if len(seen) == len(names) and seen else None
        log(f"corrections {[None if c is None else round(c, 1) for c in result.corrections]}")
        cleared = time.monotonic()
        await _admin(client, list(dark.values()), "DELETE", "/_emulator/faults")
        left = await _wait_converged(client, dark, cleared + limit)
        result.recovery = None if left else time.monotonic() - cleared
        log(
            f"dark reported {result.dark_reported}/{sc.dark} "
            f"(last after {result.reported_after}); recovery {result.recovery}"
        )


def run_scenario(sc: Scenario, emu: Emulator, workdir: Path) -> Result:
    """Run one scenario against a running emulator with a fresh state dir and daemon."""
    n = len(emu.urls)
    workdir.mkdir(parents=True, exist_ok=True)
    tree, state = workdir / "desired", workdir / "state"
    if not tree.exists():
        write_tree(tree, emu.urls)

    async def reset() -> None:
        async with httpx.AsyncClient(timeout=30.0, trust_env=False) as client:
            await _admin(client, emu.urls, "DELETE", "/_emulator/faults")
            await asyncio.gather(
                *(
                    _admin(
                        client,
                        [url],
                        "PUT",
                        "/_emulator/state",
                        {"accounts": [desired_account(k)]},
                    )
                    for k, url in enumerate(emu.urls, start=1)
                )
            )
            await _admin(client, emu.urls, "DELETE", "/_emulator/journal")

    asyncio.run(reset())
    args = ["--desired", str(tree), "--state-dir", str(state), "--log-format", "json"]
    args += ["--resync-interval", str(sc.resync)]
    if sc.concurrency is not None:
        args += ["--concurrency", str(sc.concurrency)]
    if sc.request_timeout is not None:
        args += ["--request-timeout", str(sc.request_timeout)]
    result = Result(sc)
    daemon = DaemonProcess(args, workdir)
    try:
        result.converge_start = daemon.wait_status(
            lambda s: s == f"{n} devices: {n} in sync", 120 + 0.05 * n
        )
        asyncio.run(_measure(sc, emu, daemon, workdir, result))
    finally:
        daemon.stop()
    return result


def _fmt(value: float | None, limit: float) -> str:
    return f"> {limit:.0f} s" if value is None else f"{value:.1f} s"


def _reported(r: Result, limit: float) -> str:
    if not r.scenario.dark:
        return "-"
    if r.reported_after is None:
        return f"{r.dark_reported} of {r.scenario.dark} within {limit:.0f} s"
    return f"all {r.scenario.dark}, the last {r.reported_after:.1f} s after the hang"


def table(results: Sequence[Result], devices: int) -> str:
    rows = [
        "| dark | healthy drift corrected p50 | p95 | max | dark reported unreachable "
        "| all dark converged after the hang clears |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        sc = r.scenario
        limit = sc.limit_resyncs * sc.resync * 1.1 + 30
        worst = r.quantile(1.0)
        pct = 100 * sc.dark / devices
        rows.append(
            f"| {sc.dark} of {devices} ({pct:.0f} %) | {_fmt(r.quantile(0.5), limit)} "
            f"| {_fmt(r.quantile(0.95), limit)} | {_fmt(worst, limit)} "
            f"| {_reported(r, limit)} | {_fmt(r.recovery, limit) if sc.dark else '-'} |"
        )
    return "\n".join(rows)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tests.benchmarks.darksite", description=__doc__)
    p.add_argument("--devices", type=int, default=1000)
    p.add_argument("--dark", type=int, action="append", help="dark devices (repeatable)")
    p.add_argument("--dark-percent", default=None, help="comma-separated, e.g. 0,10,40")
    p.add_argument("--drifts", type=int, default=50, help="healthy devices drifted")
    p.add_argument("--concurrency", type=int, default=None)
    p.add_argument("--request-timeout", type=float, default=None)
    p.add_argument("--resync", type=float, default=60.0)
    p.add_argument("--first-drift", type=float, default=None, help="default: one resync")
    p.add_argument("--spacing", type=float, default=0.0, help="seconds between drifts")
    return p


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    args = _parser().parse_args(argv)
    out = out or sys.stdout
    darks = list(args.dark or [])
    if args.dark_percent:
        darks += [round(args.devices * float(p) / 100) for p in args.dark_percent.split(",")]
    darks = darks or [0]
    first = args.first_drift if args.first_drift is not None else args.resync
    compile_syncd()  # syncd's processes start as an installed syncd does
    results = []
    with tempfile.TemporaryDirectory(prefix="syncd-darksite-") as tmp:
        work = Path(tmp)
        with Emulator(args.devices, work) as emu:
            for k, dark in enumerate(darks):
                sc = Scenario(
                    dark=dark,
                    drifts=args.drifts,
                    concurrency=args.concurrency,
                    request_timeout=args.request_timeout,
                    resync=args.resync,
                    first_drift=first,
                    spacing=args.spacing,
                )
                log(f"scenario {k + 1}/{len(darks)}: {sc}")
                results.append(run_scenario(sc, emu, work / f"run-{k}"))
    m = machine()
    settings = (
        f"concurrency {args.concurrency or 'default'}, request_timeout "
        f"{args.request_timeout or 'default'}, resync {args.resync:g} s"
    )
    print(f"machine: {m}", file=out)
    print(f"{args.devices} devices, {settings}, {args.drifts} healthy drifts\n", file=out)
    print(table(results, args.devices), file=out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
