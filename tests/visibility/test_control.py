"""The control socket: HTTP over a Unix socket, 0600, one daemon per socket."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import stat
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from syncd.control import (
    ControlClient,
    ControlError,
    ControlServer,
    ControlUnavailable,
    default_socket_path,
)
from syncd.daemon_control import resend_passwords
from syncd.model import AccountSpec, DeviceSpec
from syncd.permits import Permits
from syncd.status import status_json
from syncd.worker import DeviceWorker, Timing

from .fleet_samples import sample_fleet


class FakeDaemon:
    """Handlers recording the calls, as the daemon would implement them."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.release = threading.Event()
        self.release.set()
        self.explode = False

    def status(self) -> dict[str, Any]:
        if self.explode:
            raise RuntimeError("boom with a secret hunter2")
        return status_json(sample_fleet())

    def pause(self) -> str:
        self.release.wait(5)
        self.calls.append("pause")
        return "rollout paused"

    def resume(self) -> str:
        self.calls.append("resume")
        return "rollout resumed"

    def resend_passwords(self, device: str) -> str:
        if device == "bad":
            raise ValueError("device bad is in suspend mode")
        if device != "site-0/lobby":
            raise KeyError(f"no device named {device}")
        self.calls.append(f"resend {device}")
        return f"passwords of {device} will be sent again"


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    """A short directory (Unix socket paths are limited to 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="syncd-ctl-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def daemon() -> FakeDaemon:
    return FakeDaemon()


@pytest.fixture
def served(sock_dir: Path, daemon: FakeDaemon) -> Iterator[Path]:
    """A control server on ``sock_dir/syncd.sock``, closed afterwards."""
    path = sock_dir / "syncd.sock"
    with ControlServer(path, daemon):
        yield path


def raw(path: Path, method: str, route: str, **kw: Any) -> httpx.Response:
    """A request straight to the socket."""
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(path)), base_url="http://x") as client:
        return client.request(method, route, **kw)


class TestRoutes:
    def test_status(self, served: Path) -> None:
        """GET /status answers the daemon's status JSON."""
        assert ControlClient(served).status() == status_json(sample_fleet())

    def test_pause_resume(self, served: Path, daemon: FakeDaemon) -> None:
        """POST /rollout/pause and /rollout/resume call the daemon and return its sentence."""
        client = ControlClient(served)
        assert client.pause() == "rollout paused"
        assert client.resume() == "rollout resumed"
        assert daemon.calls == ["pause", "resume"]

    def test_resend(self, served: Path, daemon: FakeDaemon) -> None:
        """POST /passwords/resend with a device name calls the daemon for that device."""
        assert (
            ControlClient(served).resend("site-0/lobby")
            == "passwords of site-0/lobby will be sent again"
        )
        assert daemon.calls == ["resend site-0/lobby"]

    def test_resend_unknown_device_is_404_with_sentence(self, served: Path) -> None:
        """An unknown device answers 404 and the client raises the daemon's sentence."""
        assert raw(served, "POST", "/passwords/resend", json={"device": "nope"}).status_code == 404
        with pytest.raises(ControlError, match=r"^no device named nope$"):
            ControlClient(served).resend("nope")

    def test_resend_refused_is_400(self, served: Path) -> None:
        """A ValueError from the daemon answers 400 with its sentence."""
        response = raw(served, "POST", "/passwords/resend", json={"device": "bad"})
        assert response.status_code == 400
        assert response.json() == {"error": "device bad is in suspend mode"}

    @pytest.mark.parametrize("body", [b"not json", b"[1]", b"{}", b'{"device": 5}'])
    def test_resend_bad_body_is_400(self, served: Path, body: bytes, daemon: FakeDaemon) -> None:
        """A body that is not {"device": NAME} answers 400 and calls nothing."""
        response = raw(served, "POST", "/passwords/resend", content=body)
        assert response.status_code == 400
        assert "error" in response.json()
        assert daemon.calls == []

    @pytest.mark.parametrize(
        ("method", "route"),
        [("GET", "/"), ("GET", "/rollout/pause"), ("POST", "/status"), ("DELETE", "/status"),
         ("GET", "/status/../etc"), ("PUT", "/rollout/resume"), ("HEAD", "/status")],
    )  # fmt: skip
    def test_other_routes_404_and_server_goes_on(
        self, served: Path, method: str, route: str, daemon: FakeDaemon
    ) -> None:
        """Any other method or path answers 404 (JSON) and the server keeps serving."""
        response = raw(served, method, route)
        assert response.status_code == 404
        if method != "HEAD":
            assert "no such route" in response.json()["error"]
        assert daemon.calls == []
        assert ControlClient(served).status()["node"] == "host-a"

    def test_handler_crash_is_500_and_server_goes_on(
        self, served: Path, daemon: FakeDaemon
    ) -> None:
        """A handler that raises answers 500 without its message; the next request is served."""
        daemon.explode = True
        response = raw(served, "GET", "/status")
        assert response.status_code == 500
        assert "hunter2" not in response.text
        daemon.explode = False
        assert ControlClient(served).status()["node"] == "host-a"

    def test_a_slow_request_does_not_block_status(self, served: Path, daemon: FakeDaemon) -> None:
        """Requests are served in threads: status answers while a pause is still running."""
        daemon.release.clear()
        worker = threading.Thread(target=ControlClient(served).pause)
        worker.start()
        try:
            assert ControlClient(served, timeout=5).status()["node"] == "host-a"
        finally:
            daemon.release.set()
            worker.join(5)
        assert daemon.calls == ["pause"]


class TestSocketFile:
    def test_mode_0600(self, served: Path) -> None:
        """The socket file is a socket with mode 0600."""
        mode = served.stat().st_mode
        assert stat.S_ISSOCK(mode)
        assert stat.S_IMODE(mode) == 0o600

    def test_stale_socket_replaced(self, sock_dir: Path, daemon: FakeDaemon) -> None:
        """A socket file nothing listens on (a killed daemon's) is replaced."""
        path = sock_dir / "syncd.sock"
        dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        dead.bind(str(path))
        dead.close()
        assert path.exists()
        with ControlServer(path, daemon):
            assert ControlClient(path).status()["node"] == "host-a"

    def test_live_socket_refused(self, served: Path, daemon: FakeDaemon) -> None:
        """A second server on a socket that answers fails with one sentence; the first goes on."""
        with pytest.raises(ControlError) as caught:
            ControlServer(served, FakeDaemon()).start()
        assert str(caught.value) == f"another syncd is already serving {served}"
        assert ControlClient(served).status()["node"] == "host-a"

    def test_not_a_socket_refused(self, sock_dir: Path, daemon: FakeDaemon) -> None:
        """A regular file at the socket path is not removed: one sentence naming it."""
        path = sock_dir / "syncd.sock"
        path.write_text("precious")
        with pytest.raises(ControlError, match="exists and is not a socket"):
            ControlServer(path, daemon).start()
        assert path.read_text() == "precious"

    def test_close_removes_the_socket(self, sock_dir: Path, daemon: FakeDaemon) -> None:
        """After close the socket file is gone and the client says no daemon answers."""
        path = sock_dir / "syncd.sock"
        with ControlServer(path, daemon):
            pass
        assert not path.exists()
        with pytest.raises(ControlUnavailable):
            ControlClient(path).status()

    def test_unusable_directory_is_one_sentence(self, sock_dir: Path, daemon: FakeDaemon) -> None:
        """A socket path whose directory is a file fails with one sentence naming the path."""
        (sock_dir / "file").write_text("")
        path = sock_dir / "file" / "syncd.sock"
        with pytest.raises(ControlError, match=f"^cannot serve the control socket {path}: "):
            ControlServer(path, daemon).start()


class TestClientWithoutDaemon:
    def test_no_socket_file(self, sock_dir: Path) -> None:
        """No socket file: ControlUnavailable, one sentence naming where it looked."""
        path = sock_dir / "syncd.sock"
        with pytest.raises(ControlUnavailable) as caught:
            ControlClient(path).status()
        message = str(caught.value)
        assert str(path) in message and "\n" not in message
        assert message.startswith("no syncd daemon answers on")

    def test_stale_socket_file(self, sock_dir: Path) -> None:
        """A socket file nobody serves: the same sentence."""
        path = sock_dir / "syncd.sock"
        dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        dead.bind(str(path))
        dead.close()
        with pytest.raises(ControlUnavailable, match="no syncd daemon answers on"):
            ControlClient(path).pause()

    def test_proxy_environment_ignored(self, served: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A proxy in the environment does not divert the socket request."""
        monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
        monkeypatch.setenv("ALL_PROXY", "http://127.0.0.1:9")
        assert ControlClient(served).status()["node"] == "host-a"


class TestDefaultPath:
    def test_runtime_directory(self, tmp_path: Path) -> None:
        """Under systemd the socket is in $RUNTIME_DIRECTORY."""
        got = default_socket_path(tmp_path / "state", {"RUNTIME_DIRECTORY": "/run/syncd"})
        assert got == Path("/run/syncd/syncd.sock")

    def test_state_dir(self, tmp_path: Path) -> None:
        """Otherwise it is in the state dir."""
        assert default_socket_path(tmp_path, {}) == tmp_path / "syncd.sock"
        assert default_socket_path(tmp_path, {"RUNTIME_DIRECTORY": ""}) == tmp_path / "syncd.sock"

    def test_process_environment_by_default(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without an explicit mapping the process environment is used."""
        monkeypatch.setenv("RUNTIME_DIRECTORY", str(tmp_path / "run"))
        assert default_socket_path(tmp_path) == tmp_path / "run" / "syncd.sock"
        assert os.environ["RUNTIME_DIRECTORY"]


async def test_a_pause_or_resume_rebuilds_the_status_at_once(tmp_path: Path) -> None:
    """The daemon's handlers run ``changed`` after a pause or resume (the status snapshot is
    otherwise rebuilt at most once a second), not after a status read."""
    import asyncio

    from syncd.daemon_control import control_server

    class Rollout:
        def pause(self) -> str:
            return "rollout paused"

        def resume(self) -> str:
            return "rollout resumed"

    rebuilt: list[str] = []
    server = control_server(
        tmp_path / "syncd.sock",
        snapshot=lambda: {"rebuilt": len(rebuilt)},
        rollout=Rollout(),  # type: ignore[arg-type]
        resend=lambda device: device,
        changed=lambda: rebuilt.append("now"),
    )
    handlers = server.handlers
    assert await asyncio.to_thread(handlers.pause) == "rollout paused"
    assert await asyncio.to_thread(handlers.resume) == "rollout resumed"
    assert await asyncio.to_thread(handlers.status) == {"rebuilt": 2}
    assert rebuilt == ["now", "now"]


async def test_a_resend_on_a_node_that_does_not_own_the_device_names_its_owner(
    reconciler: Any, state_store: Any
) -> None:
    """Through a cluster node that does not own the device the passwords are marked due,
    and the answer says which node sends them and when, not that a reconcile starts now."""
    account = AccountSpec(1, {"displayName": "Door"}, SecretStr("pw"))
    spec = DeviceSpec(name="d", file="d.yaml", url="http://192.0.2.1", accounts={1: account})
    worker = DeviceWorker(
        spec,
        run=reconciler.reconcile,
        report=lambda outcome: None,
        gate=Permits(1),
        stopping=asyncio.Event(),
        timing=Timing(resync_interval=60, max_backoff=60),
    )
    parts = {"workers": {"d": worker}, "state": state_store, "reconciler": reconciler}
    there = resend_passwords("d", **parts, elsewhere=lambda device: "n3")
    assert "node n3 owns it and sends them at its next resync" in there, there
    assert "starts now" not in there
    assert "its reconcile starts now" in resend_passwords("d", **parts)
