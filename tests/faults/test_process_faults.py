"""Process faults: SIGKILL mid-apply, a desired dir removed under a running daemon, and
fatal start-up problems (state dir, desired dir, settings) reported as one sentence."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import SYNCD, device_yaml, syncd, write
from tests.faults.helpers import (
    account,
    check_state_dir,
    converged,
    pass_args,
    run_args,
    wait_until,
)

SEED = int(os.environ.get("SYNCD_TEST_FAULT_SEED", "20240611"))


def _write_round(root: Path, fleet, rnd: int) -> dict[int, str]:
    """Desired files of round ``rnd``: new display names, a new SIP password every other device."""
    passwords = {}
    for n, dev in enumerate(fleet.devices, start=1):
        passwords[n] = f"sip-{n}-{rnd if n % 2 else 0}"
        text = account(f"Door {n} r{rnd}", password=f"{{env: SIP_PW_{n}}}")
        write(root, f"dev{n}.yaml", device_yaml(dev.url, text))
    return passwords


class TestKilled:
    def test_sigkill_mid_apply_leaves_readable_state_and_restart_converges(
        self, sim, daemon, tmp_path
    ):
        """SIGKILL at random moments while slow PUTs (with passwords) are in flight leaves every state file parseable and the key unchanged; a restart converges every device, passwords included, and stops cleanly."""
        rng = random.Random(SEED)
        print(f"seed {SEED}")
        fleet = sim(devices=6)
        root = tmp_path / "desired"
        state = tmp_path / "state"
        key = None
        for rnd in range(3):
            passwords = _write_round(root, fleet, rnd)
            for dev in fleet.devices:
                dev.clear_faults()
                dev.inject(kind="delay", delay=rng.uniform(0.3, 1.2), method="PUT")
            env = {f"SIP_PW_{n}": pw for n, pw in passwords.items()}
            proc = daemon(*run_args(root, state, resync=1), env=env)
            proc.wait_for("change.pending", timeout=20)
            time.sleep(rng.uniform(0.0, 1.5))
            proc.proc.send_signal(signal.SIGKILL)
            assert proc.proc.wait(timeout=10) == -signal.SIGKILL
            # Let the devices finish the PUTs the dead process left behind: one landing after
            # the next process's newer PUT would leave an older password, which no GET shows.
            time.sleep(1.4)
            found = check_state_dir(state)
            assert key in (None, found), "the key changed: every password would be sent again"
            key = found
        for dev in fleet.devices:
            dev.clear_faults()
        begun = time.time()
        proc = daemon(*run_args(root, state, resync=1), env=env)
        for n, dev in enumerate(fleet.devices, start=1):
            wait_until(lambda d=dev, n=n: converged(d, f"Door {n} r2"), 20, f"dev{n} converged")
            wait_until(lambda d=dev, n=n: d.passwords[1] == passwords[n], 20, f"dev{n} password")
            # The values may have landed from the killed process; its restart sends the
            # passwords it has no record of in its first visit, before the second.
            wait_until(lambda d=dev: _config_reads_since(d, begun) >= 2, 20, f"dev{n} visited")
        # Once converged the password records are complete: no password is sent again.
        time.sleep(2)
        sent = sum(1 for d in fleet.devices for e in d.journal if "password" in (e.blob_text or ""))
        time.sleep(2)
        assert (
            sum(1 for d in fleet.devices for e in d.journal if "password" in (e.blob_text or ""))
            == sent
        )
        started = time.monotonic()
        assert proc.stop(signal.SIGTERM) == 0
        assert time.monotonic() - started < 10
        assert check_state_dir(state) == key

    def test_sigusr1_writes_the_stacks_to_stderr_and_the_daemon_goes_on(self, daemon, tmp_path):
        """kill -USR1 (a daemon that seems stuck): every thread's stack on stderr; it serves on
        and stops cleanly on SIGTERM."""
        root = tmp_path / "desired"
        root.mkdir()
        proc = daemon(*run_args(root, tmp_path / "state", resync=1))
        proc.wait_for("daemon.starting")
        proc.proc.send_signal(signal.SIGUSR1)
        time.sleep(1.0)
        assert proc.proc.poll() is None
        assert proc.stop() == 0
        assert proc.proc.stderr is not None
        dumped = proc.proc.stderr.read()
        # Every thread's stack, from the main thread (a Python-level handler, holding the
        # GIL): it is the current one, in the event loop, and the other threads follow.
        main = dumped.split("Current thread", 1)[-1]
        assert "Current thread" in dumped and "loop.py" in main.split("\n\n")[0], dumped
        assert dumped.count("Thread 0x") >= 1, dumped


class TestDesiredDirGone:
    def test_desired_dir_removed_and_recloned_keeps_state_then_follows_new_tree(
        self, sim, daemon, tmp_path
    ):
        """A desired dir deleted under the daemon is desired.invalid, said once (and at SIGHUP), and the last state stays in force (drift is still corrected); a fresh copy in its place is applied at once and later edits too."""
        fleet = sim(devices=2)
        dev1, dev2 = fleet.devices
        root = tmp_path / "desired"
        write(root, "dev1.yaml", device_yaml(dev1.url, account("Door 1")))
        write(root, "dev2.yaml", device_yaml(dev2.url, account("Door 2")))
        proc = daemon(*run_args(root, tmp_path / "state", resync=1))
        proc.wait_for("apply.succeeded", device="dev1", timeout=20)
        proc.wait_for("apply.succeeded", device="dev2", timeout=20)
        shutil.rmtree(root)
        event = proc.wait_for("desired.invalid", timeout=10)
        assert "missing" in event["error"] and event["level"] == "error"
        dev1.set_live(1, displayName="Hacked")
        wait_until(lambda: converged(dev1, "Door 1"), 10, "drift corrected from the last state")

        # Said once while it stays missing, not at each watcher event; again at SIGHUP.
        def said() -> list[dict[str, Any]]:
            return [e for e in proc.events if e.get("event") == "desired.invalid"]

        assert len(said()) == 1, said()
        proc.proc.send_signal(signal.SIGHUP)
        proc.wait_for("desired.invalid", timeout=10)
        assert len(said()) == 2, said()
        # A fresh clone in the same place (a new directory, not the one watched before).
        fresh = tmp_path / ".clone"
        write(fresh, "dev1.yaml", device_yaml(dev1.url, account("Clone 1")))
        write(fresh, "dev2.yaml", device_yaml(dev2.url, account("Door 2")))
        os.rename(fresh, root)
        wait_until(lambda: converged(dev1, "Clone 1"), 10, "fresh clone applied")
        write(root, "dev2.yaml", device_yaml(dev2.url, account("Edited 2")))
        wait_until(lambda: converged(dev2, "Edited 2"), 5, "edit in the fresh clone applied")
        assert proc.stop() == 0


def _one_error(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Assert a start-up failure: non-zero exit, exactly one error sentence on stderr, no traceback."""
    assert result.returncode != 0, result.stdout
    # stderr is not a terminal: the sentence is a JSON line (command.failed or command.usage).
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    errors = [e["error"] for e in lines if e.get("event") in ("command.failed", "command.usage")]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def _state_layouts() -> dict[str, object]:
    def under_file(base: Path) -> Path:
        (base / "file").write_text("x")
        return base / "file" / "state"

    def is_file(base: Path) -> Path:
        (base / "state").write_text("x")
        return base / "state"

    def records_is_dir(base: Path) -> Path:
        (base / "state" / "devices.jsonl").mkdir(parents=True)
        return base / "state"

    def key_is_dir(base: Path) -> Path:
        (base / "state" / "key").mkdir(parents=True)
        return base / "state"

    return {
        "under-a-regular-file": under_file,
        "a-regular-file": is_file,
        "records-is-a-directory": records_is_dir,
        "key-is-a-directory": key_is_dir,
    }


STATE_LAYOUTS = _state_layouts()


def as_nobody_or_skip() -> list[str]:
    """The command prefix that runs syncd as user nobody, or a skip saying why it cannot:
    not root, no setpriv, or a checkout nobody cannot read (``mktemp -d`` makes its
    directory 0700)."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv (util-linux) to run syncd as another user")
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    probe = subprocess.run([*nobody, *SYNCD, "--version"], capture_output=True, check=False)
    if probe.returncode != 0:
        why = (probe.stderr.decode(errors="replace").strip().splitlines() or ["no output"])[-1]
        pytest.skip(
            f"user nobody cannot run syncd from this checkout (a parent directory "
            f"it cannot enter?): {why}"
        )
    return nobody


class TestStartupErrors:
    @pytest.mark.parametrize("layout", STATE_LAYOUTS.values(), ids=STATE_LAYOUTS.keys())
    @pytest.mark.parametrize("command", ["run", "apply"])
    def test_unusable_state_dir(self, tmp_path, layout, command):
        """A state dir that cannot be used is one sentence naming it and exit 1, for the daemon and for apply."""
        desired = tmp_path / "desired"
        desired.mkdir()
        state = layout(tmp_path)
        result = syncd(command, "--desired", str(desired), "--state-dir", str(state), timeout=30)
        _one_error(result, "state directory", str(state))

    def test_missing_state_dir_is_created_private(self, sim, tmp_path):
        """A state dir that does not exist yet is created (mode 0700, every file 0600) and used."""
        fleet = sim(devices=1)
        root = tmp_path / "desired"
        write(root, "dev1.yaml", device_yaml(fleet.devices[0].url, account("Door 1")))
        state = tmp_path / "new" / "state"
        result = syncd("apply", *pass_args(root, state))
        assert result.returncode == 0, result.stderr
        assert state.stat().st_mode & 0o777 == 0o700
        assert (state / "key").stat().st_mode & 0o777 == 0o600
        files = [f for f in state.rglob("*") if f.is_file()]
        assert state / "history.jsonl" in files
        assert {f.name: f.stat().st_mode & 0o077 for f in files} == dict.fromkeys(
            (f.name for f in files), 0
        )
        check_state_dir(state)

    @pytest.mark.parametrize("kind", ["missing", "regular-file", "dangling-link", "link-loop"])
    def test_missing_desired_dir(self, tmp_path, kind):
        """A desired dir that is missing, a file, a dangling link or a link loop stops the daemon with one sentence naming it."""
        desired = tmp_path / "desired"
        if kind == "regular-file":
            desired.write_text("x")
        elif kind == "dangling-link":
            desired.symlink_to(tmp_path / "nowhere")
        elif kind == "link-loop":
            desired.symlink_to(desired)
        result = syncd(
            "run", "--desired", str(desired), "--state-dir", str(tmp_path / "s"), timeout=30
        )
        _one_error(result, "desired dir", str(desired))

    def test_unreadable_desired_dir(self):
        """A desired dir the daemon's user cannot read (mode 000, syncd run as nobody) stops it with one sentence saying so."""
        nobody = as_nobody_or_skip()
        base = Path(tempfile.mkdtemp(prefix="syncd-unreadable-"))
        try:
            base.chmod(0o755)
            desired = base / "desired"
            desired.mkdir()
            desired.chmod(0o000)
            state = base / "state"
            state.mkdir()
            os.chown(state, 65534, 65534)
            result = subprocess.run(
                [*nobody, *SYNCD, "run", "--desired", str(desired), "--state-dir", str(state)],
                capture_output=True,
                text=True,
                timeout=30,
                cwd="/",
                check=False,
            )
            _one_error(result, "desired dir", "not readable")
        finally:
            shutil.rmtree(base, ignore_errors=True)

    def test_a_root_shell_leaves_the_daemons_state_dir_to_the_daemons_user(self):
        """Run as root in a state dir its daemon's user owns (DynamicUser=), a command hands
        every file it wrote back; a file the daemon's user cannot read is refused by name, so
        a pause is never dropped."""
        nobody = as_nobody_or_skip()
        base = Path(tempfile.mkdtemp(prefix="syncd-owner-"))
        try:
            base.chmod(0o755)
            desired = base / "desired"
            write(desired, "lobby.yaml", device_yaml("http://127.0.0.1:9", ""))
            state = base / "state"
            state.mkdir(mode=0o700)
            os.chown(state, 65534, 65534)
            paused = syncd("rollout", "pause", "--state-dir", str(state), timeout=30)
            assert paused.returncode == 0, paused.stderr
            written = [p for p in state.rglob("*")]
            assert {"key", "lock", "rollout.json"} <= {p.name for p in written}
            assert {p.name: p.stat().st_uid for p in written} == {p.name: 65534 for p in written}
            (state / "rollout.json").chmod(0o600)
            os.chown(state / "rollout.json", 0, 0)  # as left by a syncd without the hand-back
            args = ["run", "--desired", str(desired), "--state-dir", str(state)]
            result = subprocess.run(
                [*nobody, *SYNCD, *args],
                capture_output=True,
                text=True,
                timeout=30,
                cwd="/",
                check=False,
            )
            _one_error(result, f"{state / 'rollout.json'} cannot be read and written", "chown")
        finally:
            shutil.rmtree(base, ignore_errors=True)

    def test_device_filter_matching_nothing(self, tmp_path):
        """syncd run --device naming no device stops at start, as plan and apply refuse it."""
        desired = tmp_path / "desired"
        write(desired, "site-a/lobby.yaml", device_yaml("http://127.0.0.1:9", ""))
        args = ["--desired", str(desired), "--state-dir", str(tmp_path / "state")]
        result = syncd("run", *args, "--device", "site-a/lobbby", timeout=30)
        assert result.returncode == 1
        _one_error(result, "no device matches --device site-a/lobbby")
        assert not (tmp_path / "state" / "syncd.sock").exists()

    def test_missing_desired_dir_stops_before_a_state_dir_is_made(self, tmp_path):
        """syncd run with a desired dir that is not there: one sentence, exit 1, and no state
        dir left behind for a path that was mistyped."""
        args = ["--desired", str(tmp_path / "nope"), "--state-dir", str(tmp_path / "state")]
        result = syncd("run", *args, timeout=30)
        assert result.returncode == 1
        _one_error(result, f"desired dir {tmp_path / 'nope'} does not exist")
        assert not (tmp_path / "state").exists()

    def test_state_dir_in_use_is_said_once_where_both_streams_meet(self, tmp_path):
        """A locked state dir: daemon.failed on stdout and the sentence on stderr, one line for 2>&1."""
        from syncd.lock import StateLock

        desired = tmp_path / "desired"
        desired.mkdir()
        args = ["run", "--desired", str(desired), "--state-dir", str(tmp_path / "state")]
        with StateLock.acquire(tmp_path / "state"):
            apart = syncd(*args, timeout=30)
            together = subprocess.run(
                [*SYNCD, *args],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=30,
                check=False,
            )
        _one_error(apart, "in use by another syncd", f"PID {os.getpid()}")
        assert [json.loads(line)["event"] for line in apart.stdout.splitlines()] == [
            "daemon.failed"
        ]
        assert together.returncode == 1
        (line,) = together.stdout.splitlines()
        assert json.loads(line)["event"] == "daemon.failed"
        assert "in use by another syncd" in json.loads(line)["error"]


BAD_FLAGS = {
    "negative-resync": (["--resync-interval", "-1"], "resync_interval"),
    "zero-timeout": (["--request-timeout", "0"], "request_timeout"),
    "infinite-resync": (["--resync-interval", "inf"], "resync_interval"),
    "unknown-level": (["--log-level", "loud"], "log_level"),
    "not-a-number": (["--concurrency", "many"], "--concurrency"),
    "metrics-port": (["--metrics-address", "127.0.0.1:99999"], "metrics_address"),
    "metrics-no-port": (
        ["--metrics-address", "nonsense"],
        "metrics_address (flag --metrics-address): must be HOST:PORT",
    ),
}
BAD_ENV = {
    "resync-word": ({"SYNCD_RESYNC_INTERVAL": "soon"}, "resync_interval"),
    "concurrency-zero": ({"SYNCD_CONCURRENCY": "0"}, "concurrency"),
    "format-xml": ({"SYNCD_LOG_FORMAT": "xml"}, "log_format"),
    "timeout-nan": ({"SYNCD_REQUEST_TIMEOUT": "nan"}, "request_timeout"),
    "backoff-negative": ({"SYNCD_MAX_BACKOFF": "-3"}, "max_backoff"),
    "metrics-ipv6-open": (
        {"SYNCD_METRICS_ADDRESS": "[::1"},
        "metrics_address (SYNCD_METRICS_ADDRESS): an IPv6 address goes in brackets",
    ),
    "attempts-empty": ({"SYNCD_RETRY_ATTEMPTS": ""}, "retry_attempts"),
}
BAD_TOML = {
    "negative": ("resync_interval = -5\n", "resync_interval"),
    "string-for-int": ('concurrency = "many"\n', "concurrency"),
    "misspelt-key": ("resync_intervall = 5\n", "resync_intervall"),
    "syntax": ("resync_interval = \n", "cannot read config file"),
    "section": ("[syncd]\nresync_interval = 5\n", "syncd"),
    "desired-dir-not-a-path": (
        'desired_dir = ["a"]\n',
        "bad setting desired_dir (",  # and the file, only it: the source holding the value
    ),
}


class TestBadSettings:
    @pytest.mark.parametrize(("args", "needle"), BAD_FLAGS.values(), ids=BAD_FLAGS.keys())
    def test_bad_flag(self, tmp_path, args, needle):
        """A bad flag value stops the daemon with one sentence naming the setting, exit non-zero."""
        result = syncd(
            "run", "--desired", str(tmp_path), "--state-dir", str(tmp_path / "s"), *args, timeout=30
        )
        _one_error(result, needle)

    def test_metrics_port_in_use_says_so(self, tmp_path):
        """A metrics address another process listens on: one sentence saying that, naming
        the setting, not the bare errno."""
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            address = f"127.0.0.1:{taken.getsockname()[1]}"
            result = syncd(
                "run", "--desired", str(tmp_path), "--state-dir", str(tmp_path / "s"),
                "--metrics-address", address, timeout=30,
            )  # fmt: skip
        error = _one_error(result, f"metrics_address '{address}'")
        assert "already listens there" in error and "Errno" not in error

    @pytest.mark.parametrize(("env", "needle"), BAD_ENV.values(), ids=BAD_ENV.keys())
    def test_bad_environment(self, tmp_path, env, needle):
        """A bad SYNCD_* value stops the daemon with one sentence naming the setting and the variable."""
        result = syncd(
            "run",
            "--desired",
            str(tmp_path),
            "--state-dir",
            str(tmp_path / "s"),
            env=env,
            timeout=30,
        )
        error = _one_error(result, needle, next(iter(env)))
        if needle in ("max_backoff", "retry_attempts"):
            assert "flag" not in error  # these settings have no command-line flag

    @pytest.mark.parametrize(("text", "needle"), BAD_TOML.values(), ids=BAD_TOML.keys())
    def test_bad_config_file(self, tmp_path, text, needle):
        """A bad value, unknown key or syntax error in the --config TOML stops the daemon with one sentence naming it and the file."""
        config = tmp_path / "syncd.toml"
        config.write_text(text)
        args = ["--state-dir", str(tmp_path / "s"), "--config", str(config)]
        _one_error(syncd("run", *args, timeout=30, cwd=tmp_path), needle, str(config))

    def test_missing_config_file(self, tmp_path):
        """--config naming a file that does not exist stops the daemon with one sentence naming it."""
        config = tmp_path / "nope.toml"
        result = syncd("run", "--desired", str(tmp_path), "--config", str(config), timeout=30)
        _one_error(result, str(config), "does not exist")


def _config_reads_since(device: Any, since: float) -> int:
    return sum(
        1
        for e in device.journal
        if e.method == "GET" and e.path == "/api/phone/config" and e.started >= since
    )
