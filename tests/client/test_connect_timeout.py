"""A device that never completes the TCP handshake costs connect_timeout, not request_timeout."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

import pytest

from syncd.client import ClientPool, DeviceClient, TransportError
from syncd.settings import load_settings


@pytest.fixture
def unanswered_port() -> Iterator[int]:
    """A loopback port whose accept queue is full: the kernel drops further SYNs, as a host that is off does."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):  # the handshake completes in the background
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    yield port
    for sock in (*fillers, server):
        sock.close()


class TestConnectTimeout:
    async def test_an_unanswered_handshake_fails_after_the_connect_timeout(
        self, unanswered_port: int
    ) -> None:
        """With a 5 s request timeout and a 0.3 s connect timeout, a silent host is a TransportError well before 5 s."""
        async with ClientPool(timeout=5.0, connect_timeout=0.3) as pool:
            client = DeviceClient(url=f"http://127.0.0.1:{unanswered_port}", pool=pool)
            started = asyncio.get_running_loop().time()
            with pytest.raises(TransportError, match=f"127.0.0.1:{unanswered_port}"):
                await client.get_accounts()
            assert asyncio.get_running_loop().time() - started < 2.5

    def test_the_connect_timeout_never_exceeds_the_request_timeout(self) -> None:
        """A connect timeout longer than the request timeout is cut to it; none given means the request timeout."""
        assert ClientPool(timeout=1.0, connect_timeout=3.0).connect_timeout == 1.0
        assert ClientPool(timeout=10.0, connect_timeout=3.0).connect_timeout == 3.0
        assert ClientPool(timeout=4.0).connect_timeout == 4.0

    def test_setting_defaults_to_three_seconds_and_reads_the_environment(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """connect_timeout is 3 s unless SYNCD_CONNECT_TIMEOUT (or the flag) says otherwise."""
        monkeypatch.delenv("SYNCD_CONNECT_TIMEOUT", raising=False)
        assert load_settings(None).connect_timeout == 3.0
        monkeypatch.setenv("SYNCD_CONNECT_TIMEOUT", "1.5")
        assert load_settings(None).connect_timeout == 1.5
        assert load_settings(None, connect_timeout=0.5).connect_timeout == 0.5
