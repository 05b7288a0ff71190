"""Smoke test of the fleet benchmark: tiny sizes, every figure printed; no timing assertions."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.benchmarks.fleet import FIGURE_KEYS, TARGETS

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
