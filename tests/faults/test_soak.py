"""Chaos soak: 50 emulated devices, random faults, desired edits and drift at once.

Bounded: ``SYNCD_TEST_SOAK_SECONDS`` (default 30; more for a long soak) of chaos, then
the faults stop and every device must equal its desired state within two resync
intervals plus slack. Over the whole run no PUT may carry an unmanaged field or account, no
SIP password may be accepted twice for the same value, and the daemon's memory
must stay flat. The seed is printed (``SYNCD_TEST_SOAK_SEED`` to replay one).
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.conftest import write
from tests.faults.helpers import wait_until

SOAK_SECONDS = float(os.environ.get("SYNCD_TEST_SOAK_SECONDS", "30"))
SEED = int(os.environ.get("SYNCD_TEST_SOAK_SEED", "424242"))
DEVICES = 50
RESYNC = 1.0
#: Slack on top of two resync intervals for the last faults' retries and a busy 2-core host.
SLACK = 10.0
#: The only fields the desired files ever manage.
MANAGED_1 = {"account", "displayName", "sipNumber", "enabled", "domainPort", "password"}
MANAGED_2 = {"account", "displayName"}


@dataclass
class Desired:
    """What one device's desired file says now."""

    n: int
    gen: int = 0
    pw_gen: int = 0
    enabled: bool = True
    port: int = 5060

    @property
    def password_source(self) -> str:
        return ("env", "file", "none")[self.n % 3]

    @property
    def manages_account_2(self) -> bool:
        return self.n % 2 == 0

    def password(self) -> str | None:
        if self.password_source == "env":
            return f"env-pw-{self.n}"
        if self.password_source == "file":
            return f"file-pw-{self.n}-{self.pw_gen}"
        return None

    def account_1(self) -> dict[str, object]:
        return {
            "displayName": f"Door {self.n} g{self.gen}",
            "sipNumber": str(4000 + self.n),
            "enabled": self.enabled,
            "domainPort": str(self.port),  # string firmware reports ports as strings
        }

    def account_2(self) -> dict[str, object]:
        return {"displayName": f"Side {self.n} g{self.gen}"}

    def yaml(self, url: str, secrets: Path) -> str:
        a1 = self.account_1()
        text = f"device:\n  url: {url}\n  auth:\n    method: none\naccounts:\n  - account: 1\n"
        text += f'    displayName: "{a1["displayName"]}"\n    sipNumber: "{a1["sipNumber"]}"\n'
        text += f"    enabled: {'true' if self.enabled else 'false'}\n    domainPort: {self.port}\n"
        if self.password_source == "env":
            text += f"    password: {{env: SOAK_PW_{self.n}}}\n"
        elif self.password_source == "file":
            text += f"    password: {{file: {secrets / f'dev{self.n}-{self.pw_gen}.pw'}}}\n"
        if self.manages_account_2:
            text += f'  - account: 2\n    displayName: "{self.account_2()["displayName"]}"\n'
        return text


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _write(root: Path, secrets: Path, url: str, want: Desired) -> None:
    password = want.password()
    if want.password_source == "file" and password is not None:
        write(secrets, f"dev{want.n}-{want.pw_gen}.pw", password + "\n")
    write(root, f"dev{want.n}.yaml", want.yaml(url, secrets))


def _differences(dev, want: Desired) -> list[str]:
    live = {a["account"]: a for a in dev.accounts}
    out = [f"{k}={live[1][k]!r}" for k, v in want.account_1().items() if live[1][k] != v]
    if want.manages_account_2:
        out += [f"2.{k}={live[2][k]!r}" for k, v in want.account_2().items() if live[2][k] != v]
    if dev.passwords[1] != want.password():
        out.append("password")
    return out


@pytest.mark.slow
@pytest.mark.timeout(SOAK_SECONDS + 150)
def test_chaos_soak(sim, daemon, tmp_path):
    """Under random 5xx, delays, drops, malformed answers, rejections, edits and drift on 50 devices, every device equals its desired state within two resync intervals of the faults stopping, no PUT ever carries an unmanaged field, no password is accepted twice, and the daemon's memory stays flat."""
    rng = random.Random(SEED)
    print(f"soak seed {SEED}, {SOAK_SECONDS:.0f}s of chaos on {DEVICES} devices")
    fleet = sim(devices=DEVICES, journal_limit=1_000_000)
    root = tmp_path / "desired"
    secrets = tmp_path / "secrets"
    wants = {n: Desired(n) for n in range(1, DEVICES + 1)}
    for n, want in wants.items():
        _write(root, secrets, fleet.device(n).url, want)
    env = {f"SOAK_PW_{n}": w.password() for n, w in wants.items() if w.password_source == "env"}
    proc = daemon(
        "--desired",
        str(root),
        "--state-dir",
        str(tmp_path / "state"),
        "--resync-interval",
        str(RESYNC),
        "--request-timeout",
        "5",
        env=env,
    )
    for n in wants:
        proc.wait_for("apply.succeeded", device=f"dev{n}", timeout=60)

    rejected: set[int] = set()
    actions: Counter[str] = Counter()
    started = time.monotonic()
    rss_mid = None
    while (elapsed := time.monotonic() - started) < SOAK_SECONDS:
        if rss_mid is None and elapsed >= SOAK_SECONDS / 2:
            rss_mid = _rss_kib(proc.proc.pid)
        n = rng.randint(1, DEVICES)
        dev = fleet.device(n)
        roll = rng.random()
        if roll < 0.45:
            kind = rng.choices(
                ["status", "delay", "drop", "malformed", "reject"], [30, 25, 20, 20, 5]
            )[0]
            count = rng.randint(1, 3)
            method = rng.choice([None, "GET", "PUT"])
            if kind == "status":
                dev.inject(
                    kind="status", status=rng.choice([500, 502, 503]), count=count, method=method
                )
            elif kind == "delay":
                # Shorter than the request timeout: a PUT that times out but was applied would
                # rightly be sent again, and this run counts every accepted password.
                dev.inject(kind="delay", delay=rng.uniform(0.1, 1.5), count=count, method=method)
            elif kind == "reject":
                dev.inject(kind="reject", code=12, param="displayName", method="PUT")
                rejected.add(n)
            else:
                dev.inject(kind=kind, count=count, method=method)
            actions[f"fault:{kind}"] += 1
        elif roll < 0.75:
            want = wants[n]
            want.gen += 1
            if rng.random() < 0.3:
                want.enabled = not want.enabled
                want.port = rng.choice([5060, 5061, 5070])
            if want.password_source == "file" and rng.random() < 0.3:
                want.pw_gen += 1
            _write(root, secrets, dev.url, want)
            actions["edit"] += 1
        else:
            field = rng.choice(["displayName", "sipNumber", "domain", "account2"])
            if field == "account2":
                dev.set_live(2, displayName=f"drift {rng.randint(0, 999)}")
            else:
                dev.set_live(1, **{field: f"drift{rng.randint(0, 999)}"})
            actions[f"drift:{field}"] += 1
        time.sleep(rng.uniform(0.02, 0.15))
    print("actions:", dict(sorted(actions.items())))

    # The faults stop. A rejected PUT waits for a new desired state: give those devices one.
    for dev in fleet.devices:
        dev.clear_faults()
    for n in sorted(rejected):
        wants[n].gen += 1
        _write(root, secrets, fleet.device(n).url, wants[n])
    stopped = time.monotonic()
    deadline = 2 * RESYNC + SLACK
    try:
        wait_until(
            lambda: all(not _differences(fleet.device(n), w) for n, w in wants.items()),
            deadline,
            "every device converged",
        )
    except AssertionError:
        left = {n: _differences(fleet.device(n), w) for n, w in wants.items()}
        raise AssertionError(f"not converged: { {n: d for n, d in left.items() if d} }") from None
    print(f"converged {time.monotonic() - stopped:.1f}s after the faults stopped")
    rss_end = _rss_kib(proc.proc.pid)
    assert proc.proc.poll() is None, "the daemon died"
    assert proc.stop() == 0

    # Across the whole run: only managed fields and accounts were ever sent.
    accepted: Counter[tuple[int, int, str]] = Counter()
    total_puts = 0
    for n, want in wants.items():
        for entry in fleet.device(n).journal:
            if entry.method != "PUT":
                continue
            total_puts += 1
            for acc in entry.blob["accounts"]:
                allowed = MANAGED_1 if acc["account"] == 1 else MANAGED_2
                assert acc["account"] == 1 or want.manages_account_2, (n, entry.blob_text)
                assert set(acc) <= allowed, (n, entry.blob_text)
                ok = entry.status == 200 and entry.code is None and entry.fault in (None, "delay")
                if "password" in acc and ok:
                    accepted[(n, acc["account"], acc["password"])] += 1
    twice = {k: c for k, c in accepted.items() if c > 1}
    assert not twice, f"passwords accepted more than once: {twice}"
    assert len(accepted) >= sum(1 for w in wants.values() if w.password() is not None)
    # The chaos really happened, and was seen.
    kinds = Counter(e.get("event") for e in proc.events)
    print(
        "events:",
        {
            k: kinds[k]
            for k in (
                "apply.retrying",
                "device.unreachable",
                "apply.failed",
                "drift.detected",
                "change.pending",
                "apply.succeeded",
            )
        },
    )
    # (retried PUTs log apply.retrying at warning; retried reads only request.retrying at debug)
    assert kinds["apply.retrying"] and kinds["drift.detected"] and kinds["change.pending"]
    assert total_puts > DEVICES
    assert not [line for line in proc.lines if "Traceback" in line]
    assert kinds["(not json)"] == 0
    # Memory stays flat: the end of the run is not much above its middle.
    assert rss_mid is not None
    print(f"daemon RSS: {rss_mid} KiB at half time, {rss_end} KiB at the end")
    assert rss_end <= 1.5 * rss_mid, (rss_mid, rss_end)
