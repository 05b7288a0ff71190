"""Smoke tests of the benchmarks: tiny sizes, every figure printed; no timing assertions."""

from __future__ import annotations

import json
import signal
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from tests.benchmarks.fleet import FIGURE_KEYS, TARGETS
from tests.benchmarks.scenarios import KINDS, TARGET_KEYS

REPO = Path(__file__).resolve().parents[2]
SCALING_SIZES = (5, 10)


@pytest.mark.timeout(300)
def test_benchmark_prints_every_figure(tmp_path: Path) -> None:
    """A 20-device run completes and prints (and saves) every figure next to its target."""
    saved = tmp_path / "bench.json"
    command = [
        sys.executable,
        "-m",
        "tests.benchmarks.fleet",
        "--devices=20",
        "--edits=3",
        "--idle-window=1",
        "--validate-files=50",
        "--repeat=1",
        "--scaling",
        "--scaling-sizes=" + ",".join(map(str, SCALING_SIZES)),
        f"--json={saved}",
    ]
    proc = subprocess.Popen(
        command,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # the benchmark stops its emulator and daemon
        out, err = proc.communicate(timeout=30)
        pytest.fail(f"benchmark did not finish in 240 s:\n{err[-3000:]}")
    assert proc.returncode == 0, f"exit {proc.returncode}\n{out}\n{err[-3000:]}"

    header = out.splitlines()[1]
    for part in ("nproc", "CPU", "Python"):
        assert part in header
    figures = json.loads(saved.read_text())["figures"]
    expected = list(FIGURE_KEYS)
    for size in SCALING_SIZES:
        expected += [f"scaling_{size}_pass_s", f"scaling_{size}_per_device_ms"]
        expected.append(f"scaling_{size}_ratio")
    for key in expected:
        assert key in figures, f"figure {key} missing"
        figure = figures[key]
        assert isinstance(figure["value"], int | float), f"figure {key} has no value"
        assert figure["label"] in out, f"figure {key} not printed"
    rows = {line.strip() for line in out.splitlines()}
    for key, target in TARGETS.items():
        assert figures[key]["target"] == target, key
        row = next(r for r in rows if r.startswith(figures[key]["label"]))
        assert "<=" in row and row.split()[-1] in ("ok", "MISSED"), row
    assert "targets missed:" in out


@pytest.mark.timeout(300)
def test_scenarios_print_every_row_and_target(tmp_path: Path) -> None:
    """The realistic-fleet scenarios at tiny sizes print each scenario with its bounds and ratio, and every target."""
    saved = tmp_path / "scenarios.json"
    command = [sys.executable, "-m", "tests.benchmarks.scenarios", "--smoke", f"--json={saved}"]
    proc = subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        out, err = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # the benchmark stops its emulators and daemon
        out, err = proc.communicate(timeout=30)
        pytest.fail(f"scenarios did not finish in 240 s:\n{err[-3000:]}")
    assert proc.returncode == 0, f"exit {proc.returncode}\n{out}\n{err[-3000:]}"

    saved_doc = json.loads(saved.read_text())
    rows = saved_doc["rows"]
    kinds = {
        (r["scenario"]["scheme"], r["scenario"]["latency"], r["scenario"]["kind"]) for r in rows
    }
    for scheme in ("http", "https"):
        for latency in (0, 0.01):
            for kind in KINDS:
                assert (scheme, latency, kind) in kinds, (scheme, latency, kind)
    assert any(r["scenario"]["scheme"] == "daemon" for r in rows)
    for row in rows:
        assert isinstance(row["pass_s"], float), row
        assert isinstance(row["ratio"], float), row
        # Every row has its CPU bound; at a latency, measured in turn at latency 0.
        assert isinstance(row["cpu_bound"], float) and row["cpu_bound"] > 0, row
        if row["scenario"]["latency"] > 0:
            in_turn = row["bound_runs"]
            assert len(in_turn) == max(1, len(row["runs"])), row
            assert statistics.median(in_turn) == pytest.approx(row["cpu_bound"]), row
        s = row["scenario"]
        want = s["devices"] * KINDS[s["kind"]] * s["latency"] / s["concurrency"]
        assert row["latency_bound"] == pytest.approx(want)
    targets = saved_doc["targets"]
    for key in TARGET_KEYS:
        if key == "emulator_devices":
            continue  # only measured at 10,000 devices
        assert key in targets, f"target {key} missing"
        assert isinstance(targets[key]["value"], float), key
        assert targets[key]["label"] in out
        assert targets[key]["ok"] in (True, False)
    assert "scenarios over 1.25:" in out and "targets missed:" in out
