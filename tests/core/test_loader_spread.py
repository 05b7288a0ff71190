"""A large first load shared with forked workers gives exactly the sequential result."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from core_helpers import device, write_tree

from syncd.desired import Loader, plain, spread
from syncd.desired.result import FileFailed
from syncd.model import AuthMethod

SECRET = "hunter2-spread"


def _tree(root: Path, count: int) -> Path:
    files: dict[str, str] = {
        "_defaults.yaml": "device:\n  auth:\n    method: digest\n    username: admin\n",
        "west/_defaults.yaml": "device:\n  tls:\n    verify: false\n",
    }
    for i in range(count):
        folder = "west" if i % 2 else "east"
        kind = i % 5
        if kind == 0:  # valid, a reference to a secret
            body = device(
                f"https://192.0.2.{i % 250 + 1}:{1000 + i}",
                "auth:\n  password: {env: API_PW}\n",
                "- account: 1\n  displayName: Door\n  password: {credential: sip}\n",
            )
        elif kind == 1:  # valid, a literal secret (a warning, and a secret to keep hidden)
            body = device(
                f"https://192.0.2.{i % 250 + 1}:{1000 + i}",
                accounts=f"- account: 2\n  sipNumber: '4{i}'\n  password: {SECRET}\n",
            )
        elif kind == 2:  # invalid: a field error with its line
            body = device(f"https://192.0.2.1:{1000 + i}", accounts="- account: 9\n")
        elif kind == 3:  # invalid YAML
            body = "device:\n  url: [oops\n"
        else:  # a URL that clashes with another device's
            body = device("https://192.0.2.200:7")
        files[f"{folder}/d{i:04}.yaml"] = body
    return write_tree(root, files)


@pytest.fixture
def many(monkeypatch):
    monkeypatch.setattr(spread, "MIN_ITEMS", 10)
    monkeypatch.setattr(spread, "_cores", lambda: 2)


def test_spread_load_equals_sequential_load(tmp_path, many, monkeypatch):
    root = _tree(tmp_path, 60)
    away = []
    real = spread.spread

    def counted(items, here, far):
        got = real(items, here, far)
        away.append(got)
        return got

    monkeypatch.setattr("syncd.desired.tree.spread", counted)
    spread_state = Loader(root, spread=True).load()
    assert away and away[0], "workers built part of the tree"
    state = Loader(root).load()
    assert spread_state.devices == state.devices
    assert spread_state.problems == state.problems
    assert spread_state.invalid_files == state.invalid_files
    assert len(state.devices) == 24 and len(state.invalid_files) == 36
    assert any(p.warning for p in state.problems)
    assert [d.auth.method for d in spread_state.devices.values()] == [AuthMethod.DIGEST] * 24


def test_plain_round_trip_keeps_everything_and_shows_no_secret(tmp_path):
    root = _tree(tmp_path, 10)
    loader = Loader(root)
    loader.load()
    results = dict(loader._results)
    data = plain.encode(results)
    assert SECRET not in repr(plain.decode(data, lambda *s: s))
    back = plain.decode(data, type(next(iter(results.values()))[0][0]))
    assert back.keys() == results.keys()
    for rel, (stamps, result) in results.items():
        stamps_back, result_back = back[rel]
        assert stamps_back == stamps
        if isinstance(result, FileFailed):
            assert isinstance(result_back, FileFailed) and result_back.problems == result.problems
        else:
            assert result_back == result
            assert [a.password for a in result_back[0].accounts.values()] == [
                a.password for a in result[0].accounts.values()
            ]
            for a, b in zip(
                result[0].accounts.values(), result_back[0].accounts.values(), strict=True
            ):
                if a.password is not None:
                    assert a.password.where == b.password.where


def test_spread_falls_back_when_it_would_not_pay_or_is_unsafe(many, monkeypatch):
    ran: list[object] = []
    here = ran.extend
    assert spread.spread(list(range(5)), here, _echo) is None, "too few items"
    assert ran == []
    monkeypatch.setattr(spread, "_cores", lambda: 1)
    assert spread.spread(list(range(50)), here, _echo) is None, "one core"
    monkeypatch.setattr(spread, "_cores", lambda: 2)
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert spread.spread(list(range(50)), here, _echo) is None, "another thread"
    finally:
        stop.set()
        other.join()
    assert ran == []
    got = spread.spread(list(range(50)), here, _echo)
    assert got is not None
    assert sorted([*ran, *(n for data in got for n in data)]) == list(range(50))


def test_a_worker_that_dies_falls_back(many):
    assert spread.spread(list(range(50)), lambda share: None, _die) is None


def _echo(share) -> bytes:
    return bytes(share)


def _die(share) -> bytes:
    import os

    os._exit(3)


def test_a_worker_that_raises_falls_back(many):
    """Whatever a worker raises, the caller builds the rest itself (and meets it there)."""
    assert spread.spread(list(range(50)), lambda share: None, _raise) is None


def _raise(share) -> bytes:
    raise ValueError("unmarshallable object")
