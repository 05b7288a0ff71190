"""The daemon's control socket: a small HTTP API on a Unix socket (mode 0600).

Routes (anything else answers 404, and the server goes on):

- ``GET /status`` — the JSON of ``syncd status --json``;
- ``POST /rollout/pause`` and ``POST /rollout/resume``;
- ``POST /passwords/resend`` with ``{"device": NAME}``.

The server runs stdlib ``http.server`` on a threading Unix-socket server in a
daemon thread. Its :class:`ControlHandlers` are called **in that thread** (one
thread per request): the daemon's implementation must be thread-safe, e.g. by
handing work to its event loop with ``loop.call_soon_threadsafe`` or
``asyncio.run_coroutine_threadsafe(...).result(timeout)``, and by answering
``status()`` from a snapshot that the loop replaces whole.

Only the owner of the socket file (the daemon's user, or root) may connect:
the file is created 0600. At start-up a socket file left by a killed daemon
(nothing accepts on it) is replaced; one that answers belongs to a live syncd
and is left alone.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import socketserver
import stat
import threading
from collections.abc import Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Protocol

import httpx

__all__ = [
    "SOCKET_NAME",
    "ControlClient",
    "ControlError",
    "ControlHandlers",
    "ControlServer",
    "ControlUnavailable",
    "NoDaemon",
    "default_socket_path",
]

SOCKET_NAME = "syncd.sock"
_MAX_BODY = 64 * 1024


class ControlError(Exception):
    """The control socket cannot be served, or the daemon refused a request (one sentence)."""


class ControlUnavailable(ControlError):
    """No daemon answers on the socket; the message says where it looked."""


class NoDaemon(ControlUnavailable):
    """Nothing listens on the socket at all (not: no permission, or a daemon too slow)."""


class ControlHandlers(Protocol):
    """What the daemon offers on the socket. Called from the server's threads: be thread-safe.

    ``resend_passwords`` raises KeyError (unknown device, answered 404) or
    ValueError (answered 400) with a one-sentence message.
    """

    def status(self) -> dict[str, Any]: ...
    def pause(self) -> str: ...
    def resume(self) -> str: ...
    def resend_passwords(self, device: str) -> str: ...


def default_socket_path(state_dir: Path, environ: Mapping[str, str] | None = None) -> Path:
    """``$RUNTIME_DIRECTORY/syncd.sock`` under systemd, else ``STATE_DIR/syncd.sock``."""
    env = os.environ if environ is None else environ
    runtime = env.get("RUNTIME_DIRECTORY", "").split(":")[0]
    return Path(runtime) / SOCKET_NAME if runtime else state_dir / SOCKET_NAME


def _message(exc: BaseException) -> str:
    """An exception's sentence (KeyError's ``str`` would add quotes)."""
    return str(exc.args[0]) if exc.args else type(exc).__name__


class _RequestHandler(BaseHTTPRequestHandler):
    server: _UnixHTTPServer
    server_version = "syncd-control"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the daemon's own events say what happened

    def address_string(self) -> str:
        return "control-socket"  # a Unix peer has no address

    def _answer(self, status: HTTPStatus, body: Mapping[str, Any]) -> None:
        data = (json.dumps(body) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _not_found(self) -> None:
        self._answer(HTTPStatus.NOT_FOUND, {"error": f"no such route: {self.command} {self.path}"})

    def _body(self) -> dict[str, Any] | None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= _MAX_BODY:
            self._answer(HTTPStatus.BAD_REQUEST, {"error": "the request body is too large"})
            return None
        try:
            data = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            data = None
        if not isinstance(data, dict):
            self._answer(HTTPStatus.BAD_REQUEST, {"error": "the request body is not a JSON object"})
            return None
        return data

    def _run(self, action: str, body: Mapping[str, Any]) -> None:
        handlers = self.server.handlers
        try:
            if action == "status":
                self._answer(HTTPStatus.OK, handlers.status())
                return
            if action == "pause":
                message = handlers.pause()
            elif action == "resume":
                message = handlers.resume()
            else:
                device = body.get("device")
                if not isinstance(device, str) or not device:
                    raise ValueError('give the device as {"device": NAME}')
                message = handlers.resend_passwords(device)
        except KeyError as exc:
            self._answer(HTTPStatus.NOT_FOUND, {"error": _message(exc)})
        except ValueError as exc:
            self._answer(HTTPStatus.BAD_REQUEST, {"error": _message(exc)})
        except Exception as exc:  # the daemon must keep serving whatever a handler does
            self._answer(
                HTTPStatus.INTERNAL_SERVER_ERROR,
                {"error": f"the daemon failed to answer: {type(exc).__name__}"},
            )
        else:
            self._answer(HTTPStatus.OK, {"message": message})

    def do_GET(self) -> None:
        if self.path == "/status":
            self._run("status", {})
        else:
            self._not_found()

    _POSTS = {
        "/rollout/pause": "pause",
        "/rollout/resume": "resume",
        "/passwords/resend": "resend",
    }

    def do_POST(self) -> None:
        action = self._POSTS.get(self.path)
        if action is None:
            self._not_found()
            return
        body = self._body()
        if body is not None:
            self._run(action, body)

    def do_HEAD(self) -> None:
        self._not_found()

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD


class _UnixHTTPServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    handlers: ControlHandlers
    inode = 0

    def server_bind(self) -> None:
        path = str(self.server_address)
        old = os.umask(0o177)  # created 0600: no moment where others could connect
        try:
            self.socket.bind(path)
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        self.inode = os.stat(path).st_ino

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hung up mid-answer is no news; the server goes on


def _claim(path: Path) -> None:
    """Remove a stale socket file at ``path``; refuse a live one or anything not a socket."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ControlError(f"{path} exists and is not a socket; remove it or set `socket`")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        path.unlink(missing_ok=True)  # left by a daemon that was killed
        return
    except OSError as exc:
        raise ControlError(f"cannot use the control socket {path}: {exc.strerror or exc}") from None
    finally:
        probe.close()
    raise ControlError(f"another syncd is already serving {path}")


class ControlServer:
    """The control socket, served in a daemon thread from :meth:`start` to :meth:`close`."""

    def __init__(self, path: Path, handlers: ControlHandlers) -> None:
        self.path = path
        self.handlers = handlers
        self._server: _UnixHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"ControlServer({str(self.path)!r})"

    def start(self) -> None:
        """Bind and serve; ControlError (one sentence) when the socket cannot be had."""
        try:
            _claim(self.path)
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            server = _UnixHTTPServer(str(self.path), _RequestHandler, bind_and_activate=False)
            server.handlers = self.handlers
            try:
                server.server_bind()
                server.server_activate()
            except BaseException:
                server.server_close()
                raise
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ControlError(f"another syncd is already serving {self.path}") from None
            reason = exc.strerror or str(exc)
            raise ControlError(f"cannot serve the control socket {self.path}: {reason}") from None
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="control", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        """Stop serving and remove the socket file (if it is still ours)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino == server.inode:
                self.path.unlink()

    def __enter__(self) -> ControlServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ControlClient:
    """Talks to a running daemon over its control socket."""

    def __init__(self, path: Path, *, timeout: float = 10.0) -> None:
        self.path = path
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"ControlClient({str(self.path)!r})"

    def _probe(self) -> None:
        """Connect once by hand: a refused connect through httpx would leak its socket."""
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(self._timeout)
        try:
            probe.connect(str(self.path))
        except PermissionError:
            raise ControlUnavailable(
                f"no permission to use the control socket {self.path} (run as the daemon's user)"
            ) from None
        except OSError:
            raise NoDaemon(
                f"no syncd daemon answers on {self.path} (is `syncd run` running with this socket?)"
            ) from None
        finally:
            probe.close()

    def _request(self, method: str, route: str, body: Mapping[str, Any] | None = None) -> Any:
        self._probe()
        transport = httpx.HTTPTransport(uds=str(self.path))
        # trust_env=False: a proxy from the environment must not take the request elsewhere.
        with httpx.Client(
            transport=transport, base_url="http://syncd", timeout=self._timeout, trust_env=False
        ) as client:
            try:
                response = client.request(method, route, json=body)
            except httpx.TimeoutException:
                raise ControlUnavailable(
                    f"the daemon on {self.path} did not answer within {self._timeout:g} s"
                ) from None
            except httpx.TransportError as exc:
                raise ControlUnavailable(
                    f"the daemon on {self.path} broke off the request: {type(exc).__name__}"
                ) from None
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.status_code != 200:
            error = data.get("error") if isinstance(data, dict) else None
            raise ControlError(error or f"the daemon answered HTTP {response.status_code}")
        return data

    def status(self) -> dict[str, Any]:
        """The daemon's status JSON (SPEC section 10)."""
        data = self._request("GET", "/status")
        if not isinstance(data, dict):
            raise ControlError(f"the daemon on {self.path} answered something other than JSON")
        return data

    def _message(self, route: str, body: Mapping[str, Any] | None = None) -> str:
        data = self._request("POST", route, body or {})
        return str(data.get("message", "")) if isinstance(data, dict) else ""

    def pause(self) -> str:
        return self._message("/rollout/pause")

    def resume(self) -> str:
        return self._message("/rollout/resume")

    def resend(self, device: str) -> str:
        return self._message("/passwords/resend", {"device": device})
