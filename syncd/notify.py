"""sd_notify without libsystemd: one datagram per message to ``$NOTIFY_SOCKET``."""

from __future__ import annotations

import contextlib
import os
import socket

__all__ = ["Notifier"]


class Notifier:
    """Sends READY/STATUS/WATCHDOG/STOPPING to systemd; does nothing outside it."""

    def __init__(self, address: str | None = None) -> None:
        address = address if address is not None else os.environ.get("NOTIFY_SOCKET")
        self._address: str | None = None
        self._sock: socket.socket | None = None
        if address:
            # A leading '@' names a socket in the abstract namespace.
            self._address = "\0" + address[1:] if address.startswith("@") else address
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    @staticmethod
    def watchdog_interval() -> float | None:
        """Half of systemd's watchdog timeout, in seconds, if one is set for us."""
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        if not usec or (pid and pid != str(os.getpid())):
            return None
        try:
            return max(int(usec) / 2_000_000, 0.05)
        except ValueError:
            return None

    def send(self, *lines: str) -> None:
        if self._sock is None or self._address is None:
            return
        # systemd gone or its socket full: nothing useful to do about it.
        with contextlib.suppress(OSError):
            self._sock.sendto("\n".join(lines).encode(), self._address)

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}")

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def stopping(self) -> None:
        self.send("STOPPING=1", "STATUS=stopping")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
