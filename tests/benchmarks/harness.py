"""The benchmark's plumbing: the machine, free ports, /proc readings, desired trees,
and ``syncd simulate`` / ``syncd run`` as subprocesses that are always stopped.

Nothing here measures anything; :mod:`tests.benchmarks.fleet` does.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import platform
import queue
import random
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

__all__ = [
    "HOST",
    "SYNCD",
    "BenchError",
    "DaemonProcess",
    "Emulator",
    "StepTimeout",
    "cpu_seconds",
    "desired_account",
    "device_file",
    "device_path",
    "die_with_parent",
    "free_port_block",
    "machine",
    "raise_open_files",
    "rss_mb",
    "run_delay",
    "write_atomic",
    "write_tree",
]

SYNCD = [sys.executable, "-m", "syncd"]
HOST = "127.0.0.1"
_CLK_TCK = os.sysconf("SC_CLK_TCK")
_PR_SET_PDEATHSIG = 1
try:  # resolved here, not in the forked child
    _prctl: Any = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):
    _prctl = None


#: Open files a child may have: an emulated device is a listening socket, and a
#: client that keeps a connection per device holds one more socket per device
#: in the emulator, so 10,000 devices need more than 20,000 descriptors.
OPEN_FILES = 65_536


def raise_open_files(limit: int = OPEN_FILES) -> None:
    """Raise this process's open-files limits to ``limit`` where allowed (root may raise both)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for wanted in ((max(soft, limit), max(hard, limit)), (hard, hard)):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, wanted)
            return
        except (OSError, ValueError):
            continue


def die_with_parent() -> None:
    """``preexec_fn`` of every child: SIGTERM it when the benchmark dies, however it dies.

    Also lifts its open-files limit (see :data:`OPEN_FILES`).
    """
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    raise_open_files()


class BenchError(Exception):
    """A step of the benchmark could not be done; the message says which and why."""


class StepTimeout(BenchError):
    """A measured step hit its time limit; ``seconds`` is the limit."""

    def __init__(self, what: str, seconds: float) -> None:
        super().__init__(f"{what} did not finish within {seconds:.0f} s")
        self.seconds = seconds


# ------------------------------------------------------------------ machine


def machine() -> dict[str, Any]:
    """nproc, CPU model, Python and kernel, and the load when the run started."""
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "kernel": platform.release(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


# -------------------------------------------------------------------- /proc


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc/PID/stat."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def run_delay(pid: int | None = None) -> float:
    """Seconds a process's main thread has waited, runnable, for a CPU (/proc/PID/schedstat).

    ``pid`` None is this process. On a shared machine this is the part of a
    wall-clock time that other processes took; 0.0 where the kernel does not
    report it.
    """
    try:
        where = "self" if pid is None else str(pid)
        return int(Path(f"/proc/{where}/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def rss_mb(pid: int) -> float:
    """Resident set size from /proc/PID/status (VmRSS), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise BenchError(f"no VmRSS for process {pid}")


# -------------------------------------------------------------------- ports


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def _can_bind(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def free_port_block(count: int, *, attempts: int = 40) -> int:
    """First port of ``count`` consecutive free ports on loopback.

    Chosen below the ephemeral range when it fits there, so the benchmark's
    own outgoing connections cannot be sitting on one of them.
    """
    eph_low, eph_high = _ephemeral_range()
    ranges = [(20000, eph_low), (1024, eph_low), (eph_high + 1, 65536), (1024, 65536)]
    for low, high in ranges:
        if high - low < count:
            continue
        for _ in range(attempts):
            base = random.randrange(low, high - count + 1)
            if all(_can_bind(p) for p in range(base, base + count)):
                return base
    raise BenchError(f"found no {count} consecutive free ports on {HOST}")


# ------------------------------------------------------------ desired trees


#: Account 1 fields every device shares, written once in the root ``_defaults.yaml``.
SHARED_FIELDS: dict[str, Any] = {
    "enabled": True,
    "domain": "pbx.example.com",
    "domainPort": 5060,
    "proxyAddress": "",
    "proxyPort": "",
    "registrationEnabled": True,
    "registrarAddress": "pbx.example.com",
    "registrarPort": 5060,
    "answerMode": 1,
}


def _own_fields(number: int, display: str | None) -> dict[str, str]:
    name = display if display is not None else f"Door {number:05d}"
    return {"displayName": name, "sipNumber": str(40000 + number), "authId": f"bench{number}"}


def desired_account(number: int, *, display: str | None = None) -> dict[str, Any]:
    """Account 1 of device ``number`` as its desired state says, for ``PUT /_emulator/state``.

    No SIP password is managed: whether a password is due depends on syncd's
    own state dir, and the fleet must be put in sync without syncd's help.
    """
    return {"account": 1, **SHARED_FIELDS, **_own_fields(number, display)}


def device_file(number: int, url: str, *, display: str | None = None) -> str:
    """One device's YAML: its URL and the per-device fields of account 1."""
    lines = [f"# device {number} of the benchmark fleet", "device:", f"  url: {url}"]
    lines += ["accounts:", "  - account: 1"]
    lines += [f"    {k}: {json.dumps(v)}" for k, v in _own_fields(number, display).items()]
    return "\n".join(lines) + "\n"


def _defaults_file(ca_file: Path | None) -> str:
    # No auth: the default (Digest, asked for only when the device challenges), as a
    # desired state that says nothing about it gets; the emulator asks for none.
    lines = ["# shared by every device of the benchmark fleet", "device:"]
    if ca_file is not None:
        lines += ["  tls:", f"    caFile: {json.dumps(str(ca_file))}"]
    lines += ["accounts:", "  - account: 1"]
    lines += [f"    {k}: {json.dumps(v)}" for k, v in SHARED_FIELDS.items()]
    return "\n".join(lines) + "\n"


def device_path(root: Path, number: int) -> Path:
    """Where device ``number`` (from 1) lives: 100 devices per site folder."""
    return root / f"site-{(number - 1) // 100 + 1:03d}" / f"door-{number:05d}.yaml"


def write_tree(root: Path, urls: Sequence[str], *, ca_file: Path | None = None) -> None:
    """A desired tree: a root ``_defaults.yaml`` and one file per URL, in site folders."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "_defaults.yaml").write_text(_defaults_file(ca_file))
    made: set[Path] = set()
    for number, url in enumerate(urls, start=1):
        path = device_path(root, number)
        if path.parent not in made:
            path.parent.mkdir(parents=True, exist_ok=True)
            made.add(path.parent)
        path.write_text(device_file(number, url))


def write_atomic(path: Path, text: str) -> float:
    """Write a hidden temp file, rename it into place (as editors do); the rename's time.time()."""
    tmp = path.parent / f".{path.name}.tmp"
    tmp.write_text(text)
    os.replace(tmp, path)
    return time.time()


# ------------------------------------------------------------ subprocesses


def _stop(proc: subprocess.Popen[Any], *, grace: float = 10.0) -> int | None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; the exit status."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=grace)
    return proc.returncode


def _tail(path: Path, limit: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-limit:].strip()
    except OSError:
        return ""


class Emulator:
    """``syncd simulate --devices N`` in its own process, on a free block of ports."""

    def __init__(
        self, devices: int, workdir: Path, *, tls_dir: Path | None = None, latency: float = 0.0
    ) -> None:
        self.devices = devices
        self.workdir = workdir
        self.tls_dir = tls_dir
        self.latency = latency
        self.urls: list[str] = []
        self.proc: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader: threading.Thread | None = None
        self._stderr: IO[str] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def cert_path(self) -> Path:
        assert self.tls_dir is not None
        return self.tls_dir / "cert.pem"

    def __enter__(self) -> Emulator:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, attempts: int = 5) -> None:
        last = ""
        for _ in range(attempts):
            base = free_port_block(self.devices)
            cmd = [*SYNCD, "simulate", "--devices", str(self.devices), "--port", str(base)]
            cmd += ["--host", HOST]
            if self.tls_dir is not None:
                cmd += ["--tls", "--cert-dir", str(self.tls_dir)]
            if self.latency > 0:
                cmd += ["--latency", repr(self.latency)]
            err_path = self.workdir / f"emulator-{base}.stderr"
            if self._launch(cmd, err_path):
                return
            last = _tail(err_path)
            if "already in use" not in last:
                break
        raise BenchError(f"syncd simulate did not start: {last or 'no message'}")

    def _launch(self, cmd: list[str], err_path: Path) -> bool:
        self._stderr = err_path.open("w")
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            bufsize=1,
            preexec_fn=die_with_parent,
        )
        self._lines = queue.Queue()
        self._reader = threading.Thread(target=self._read, args=(self.proc,), daemon=True)
        self._reader.start()
        urls: dict[int, str] = {}
        deadline = time.monotonic() + 60 + self.devices * 0.02
        while len(urls) < self.devices:
            left = deadline - time.monotonic()
            if left <= 0:
                self.stop()
                raise BenchError(f"syncd simulate printed {len(urls)}/{self.devices} devices")
            try:
                line = self._lines.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            if line is None:  # stdout closed: the emulator exited
                self.stop()
                return False
            head, _, url = line.strip().partition(": ")
            if head.startswith("device ") and url:
                urls[int(head.split()[1])] = url
        self.urls = [urls[n] for n in range(1, self.devices + 1)]
        return True

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)
            if self._reader is not None:
                self._reader.join(timeout=5)
            if self.proc.stdout is not None:
                self.proc.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None


class DaemonProcess:
    """``syncd run`` in its own process, with a ``NOTIFY_SOCKET`` to read its fleet summary.

    The daemon logs nothing for a device found in sync; its sd_notify
    ``STATUS=`` line ("1000 devices: 1000 in sync") is how we know it converged.
    """

    def __init__(self, args: Sequence[str], workdir: Path) -> None:
        self.workdir = workdir
        self.status = ""
        self.ready = False
        self._sock_path = workdir / "notify.sock"
        self._sock_path.unlink(missing_ok=True)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(self._sock_path))
        self._sock.settimeout(0.2)
        self._stopping = threading.Event()
        self._changed = threading.Condition()
        self._listener = threading.Thread(target=self._listen, daemon=True)
        self._listener.start()
        self._stderr = (workdir / "daemon.stderr").open("w")
        self._stdout = (workdir / "daemon.stdout").open("w")
        env = {**os.environ, "NOTIFY_SOCKET": str(self._sock_path)}
        env.pop("WATCHDOG_USEC", None)
        self.proc = subprocess.Popen(
            [*SYNCD, "run", *args],
            stdout=self._stdout,
            stderr=self._stderr,
            env=env,
            preexec_fn=die_with_parent,
        )
        self.started = time.perf_counter()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _listen(self) -> None:
        while not self._stopping.is_set():
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._changed:
                for line in data.decode(errors="replace").splitlines():
                    if line == "READY=1":
                        self.ready = True
                    elif line.startswith("STATUS="):
                        self.status = line.removeprefix("STATUS=")
                self._changed.notify_all()

    def wait_status(self, predicate: Callable[[str], bool], timeout: float) -> float:
        """Wait until the STATUS line satisfies ``predicate``; seconds since the process started."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(self.status):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise StepTimeout(f"the daemon (status still {self.status!r})", timeout)
                if self.proc.poll() is not None:
                    raise BenchError(
                        f"daemon exited {self.proc.returncode}: "
                        f"{_tail(self.workdir / 'daemon.stderr')}"
                    )
                self._changed.wait(timeout=min(left, 0.5))
        return time.perf_counter() - self.started

    def stop(self) -> int | None:
        try:
            return _stop(self.proc, grace=15.0)
        finally:
            self._stopping.set()
            self._listener.join(timeout=5)
            self._sock.close()
            self._sock_path.unlink(missing_ok=True)
            self._stdout.close()
            self._stderr.close()
