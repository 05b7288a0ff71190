"""The command line (`python -m syncd.simulator`, wired as `syncd simulate`), as a subprocess."""

from __future__ import annotations

import json
import queue
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from syncd.simulator.cli import main

ROOT = Path(__file__).resolve().parents[2]


class Simulator:
    """A running `python -m syncd.simulator` whose stdout lines arrive on a queue."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "syncd.simulator", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put("")

    def read_lines(self, count: int, *, timeout: float) -> list[str]:
        deadline = time.monotonic() + timeout
        lines: list[str] = []
        while len(lines) < count:
            line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            if line == "":
                raise AssertionError(f"simulator ended early: {self.stop_and_stderr()}")
            lines.append(line)
        return lines

    def stop(self, signum: int = signal.SIGTERM) -> int:
        self.process.send_signal(signum)
        return self.process.wait(timeout=10)

    def stop_and_stderr(self) -> str:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        assert self.process.stderr is not None
        return self.process.stderr.read()


@pytest.fixture
def simulators() -> Iterator[Callable[..., Simulator]]:
    started: list[Simulator] = []

    def start(*args: str) -> Simulator:
        simulator = Simulator(*args)
        started.append(simulator)
        return simulator

    yield start
    for simulator in started:
        if simulator.process.poll() is None:
            simulator.process.kill()
        simulator.process.wait(timeout=10)
        for stream in (simulator.process.stdout, simulator.process.stderr):
            if stream is not None:
                stream.close()


class TestCommandLine:
    def test_prints_devices_and_serves_until_sigterm(
        self, simulators: Callable[..., Simulator], free_ports: Callable[[int], int]
    ) -> None:
        """It prints `device N: URL` per device, serves them, and exits 0 on SIGTERM."""
        first = free_ports(3)
        simulator = simulators("--devices", "3", "--port", str(first))
        lines = simulator.read_lines(3, timeout=15)
        assert lines == [f"device {n}: http://127.0.0.1:{first + n - 1}" for n in (1, 2, 3)]
        for n in (1, 2, 3):
            response = httpx.get(f"http://127.0.0.1:{first + n - 1}/api/system/info")
            assert response.json()["result"]["deviceName"].endswith(str(n))
        assert simulator.stop() == 0
        assert simulator.stop_and_stderr() == ""

    def test_sigint_exits_zero(
        self, simulators: Callable[..., Simulator], free_ports: Callable[[int], int]
    ) -> None:
        """SIGINT (Ctrl-C) also ends it with status 0 and no traceback."""
        simulator = simulators("--devices", "1", "--port", str(free_ports(1)))
        simulator.read_lines(1, timeout=15)
        assert simulator.stop(signal.SIGINT) == 0
        assert "Traceback" not in simulator.stop_and_stderr()

    def test_port_in_use(
        self, simulators: Callable[..., Simulator], free_ports: Callable[[int], int]
    ) -> None:
        """A port already in use is one sentence on stderr and exit status 1."""
        first = free_ports(3)
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", first + 2))
            taken.listen()
            simulator = simulators("--devices", "3", "--port", str(first))
            assert simulator.process.wait(timeout=15) == 1
            stderr = simulator.stop_and_stderr()
        assert "Traceback" not in stderr
        assert stderr.count("\n") == 1
        assert f"port {first + 2}" in stderr
        assert "already in use" in stderr

    def test_main_returns_one_on_port_in_use(
        self, free_ports: Callable[[int], int], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """main() itself returns 1 (not raising) when it cannot listen."""
        first = free_ports(1)
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", first))
            taken.listen()
            assert main(["--devices", "1", "--port", str(first)]) == 1
        captured = capsys.readouterr()
        assert captured.out == ""
        assert "already in use" in captured.err

    def test_a_port_taken_in_the_ephemeral_range_says_so(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """After heavy loopback traffic, ports of the ephemeral range stay taken a minute by
        closed connections: the sentence says where to choose instead."""
        with open("/proc/sys/net/ipv4/ip_local_port_range") as fh:
            low, high = (int(part) for part in fh.read().split())
        with socket.socket() as outgoing:
            outgoing.bind(("127.0.0.1", 0))  # a port of the ephemeral range, as connect() takes
            port = outgoing.getsockname()[1]
            assert main(["--devices", "1", "--port", str(port)]) == 1
        err = capsys.readouterr().err
        assert f"port {port} on 127.0.0.1 (device 1) is already in use" in err
        assert f"ports {low}-{high} are the system's ephemeral range" in err
        assert f"choose a port below {low}" in err

    @pytest.mark.parametrize(
        "args",
        [
            ["--devices", "0"],
            ["--port", "70000"],
            ["--port", "65535", "--devices", "2"],
            ["--auth", "ntlm"],
            ["--cert-dir", "certs"],
            ["--accounts", "3"],
            ["--register-delay", "-1"],
            ["--latency", "soon"],
            ["--nonce-uses", "-2"],
            ["--dual-challenge"],
        ],
    )
    def test_bad_arguments(self, args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
        """Impossible flags are a usage error (exit 2) before anything listens."""
        with pytest.raises(SystemExit) as exited:
            main(args)
        assert exited.value.code == 2
        assert "usage: syncd simulate" in capsys.readouterr().err

    def test_tls_digest_integer(
        self,
        simulators: Callable[..., Simulator],
        free_ports: Callable[[int], int],
        tmp_path: Path,
    ) -> None:
        """--tls --cert-dir --auth digest --firmware integer all take effect."""
        first = free_ports(2)
        simulator = simulators(
            "--devices", "2", "--port", str(first), "--tls", "--cert-dir", str(tmp_path),
            "--auth", "digest", "--username", "ops", "--password", "pw", "--firmware", "integer",
        )  # fmt: skip
        assert simulator.read_lines(2, timeout=15)[1] == f"device 2: https://127.0.0.1:{first + 1}"
        cert = tmp_path / "cert.pem"
        result = subprocess.run(
            ["curl", "-sS", "--max-time", "10", "--cacert", str(cert), "--digest", "-u", "ops:pw",
             f"https://127.0.0.1:{first + 1}/api/phone/config?account=1"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        (account,) = json.loads(result.stdout)["result"]["accounts"]
        assert account["domainPort"] == 0
        assert simulator.stop() == 0
        assert f"certificate: {cert}" in simulator.stop_and_stderr()

    @pytest.mark.slow
    def test_a_thousand_devices(
        self, simulators: Callable[..., Simulator], free_ports: Callable[[int], int]
    ) -> None:
        """One process serves 1,000 devices, all listening within a few seconds."""
        first = free_ports(1000)
        started = time.monotonic()
        simulator = simulators("--devices", "1000", "--port", str(first))
        lines = simulator.read_lines(1000, timeout=30)
        elapsed = time.monotonic() - started
        assert lines[-1] == f"device 1000: http://127.0.0.1:{first + 999}"
        assert elapsed < 10, f"1,000 devices took {elapsed:.1f} s to start"
        with httpx.Client() as client:
            for port in (first, first + 500, first + 999):
                response = client.get(f"http://127.0.0.1:{port}/api/phone/config")
                assert response.json()["success"] is True
        assert simulator.stop() == 0

    def test_help_lists_every_flag(self, capsys: pytest.CaptureFixture[str]) -> None:
        """--help documents every flag."""
        with pytest.raises(SystemExit):
            main(["--help"])
        out = capsys.readouterr().out
        for flag in (
            "--devices", "--port", "--host", "--tls", "--cert-dir", "--auth", "--username",
            "--password", "--firmware", "--accounts", "--pbx", "--register-delay", "--latency",
            "--nonce-uses", "--dual-challenge",
        ):  # fmt: skip
            assert flag in out

    def test_pbx_accounts_latency_and_auth_flags(
        self, simulators: Callable[..., Simulator], free_ports: Callable[[int], int]
    ) -> None:
        """--accounts 4, --pbx (twice), --register-delay 0, --latency, --nonce-uses and --dual-challenge take effect."""
        first = free_ports(1)
        simulator = simulators(
            "--devices", "1", "--port", str(first), "--accounts", "4", "--firmware", "integer",
            "--pbx", "a.example", "--pbx", "B.example", "--register-delay", "0",
            "--latency", "0.2", "--auth", "digest", "--username", "ops", "--password", "pw",
            "--nonce-uses", "1", "--dual-challenge",
        )  # fmt: skip
        simulator.read_lines(1, timeout=15)
        url = f"http://127.0.0.1:{first}"
        with httpx.Client(timeout=5) as client:
            denied = client.get(f"{url}/api/phone/config")
            assert [h.split()[0] for h in denied.headers.get_list("WWW-Authenticate")] == [
                "Basic",
                "Digest",
            ]
            basic = ("ops", "pw")
            blob = {"accounts": [{"account": 3, "enabled": True, "registrationEnabled": True,
                                  "domain": "b.EXAMPLE", "password": "x"}]}  # fmt: skip
            put = client.put(f"{url}/api/phone/config", json=blob, auth=basic)
            assert put.json() == {"success": True}
            started = time.monotonic()
            status = client.get(f"{url}/api/phone/status?account=3", auth=basic).json()
            assert time.monotonic() - started >= 0.2
            assert status["result"]["accounts"][0]["registered"] is True
            local = client.get(f"{url}/api/phone/status?account=4", auth=basic).json()
            assert "registered" not in local["result"]["accounts"][0]
            with httpx.Client(auth=httpx.DigestAuth("ops", "pw"), timeout=5) as digest_client:
                for _ in range(3):
                    assert digest_client.get(f"{url}/api/call/status").status_code == 200
            journal = client.get(f"{url}/_emulator/journal").json()
        stale = [e for e in journal if e["path"] == "/api/call/status" and e["status"] == 401]
        assert len(stale) == 3  # the first challenge, then one stale nonce per request after it
        assert simulator.stop() == 0

    @pytest.mark.slow
    def test_ten_thousand_devices(self, simulators: Callable[..., Simulator]) -> None:
        """One process serves 10,000 devices; a few of them answer, and it stops cleanly."""
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard != resource.RLIM_INFINITY and hard < 10_100:
            pytest.skip(f"the open-file hard limit ({hard}) is below 10,000 sockets")
        for _ in range(3):
            # a run of consecutive free ports, or (a busy machine) one ephemeral port each
            first = free_port_run(10_000)
            simulator = simulators("--devices", "10000", "--port", str(first or 0))
            try:
                lines = simulator.read_lines(10_000, timeout=60)
            except AssertionError as exc:  # a port was taken between the search and the bind
                if "already in use" in str(exc):
                    continue
                raise
            break
        else:
            pytest.fail("no free run of 10,000 ports stayed free long enough")
        urls = [line.split(": ", 1)[1] for line in lines]
        assert lines[-1].startswith("device 10000: http://127.0.0.1:")
        assert len(set(urls)) == 10_000
        if first:
            assert urls[-1] == f"http://127.0.0.1:{first + 9999}"
        with httpx.Client(timeout=10) as client:
            for url in (urls[0], urls[4999], urls[9999]):
                response = client.get(f"{url}/api/phone/status?account=1")
                assert response.json()["result"]["accounts"][0]["registered"] is False
            info = client.get(f"{urls[9999]}/api/system/info").json()
            assert info["result"]["deviceName"] == "Emulated intercom 10000"
        assert simulator.stop() == 0


def free_port_run(count: int) -> int | None:
    """The first of ``count`` consecutive ports free right now, below the ephemeral range
    (None if other processes leave no such run).

    Checks one port at a time (binding and closing), so it needs no more file
    descriptors than one; a port taken later makes the caller retry.
    """
    first = 10_000
    while first + count <= 32_768:
        for port in range(first, first + count):
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    first = port + 1  # the next run starts after the taken port
                    break
        else:
            return first
    return None
