"""Shared fixtures for the emulator tests: a running fleet, an HTTP client, free ports."""

from __future__ import annotations

import random
import socket
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from syncd.simulator import Fleet


def free_port_block(count: int) -> int:
    """The first of ``count`` consecutive ports that are free on 127.0.0.1 right now.

    Searched below the kernel's ephemeral range, so ports handed out to
    ``port=0`` listeners and outgoing connections of concurrent tests never collide.
    """
    rng = random.Random()
    for _ in range(500):
        first = rng.randrange(10000, 32768 - count)
        sockets: list[socket.socket] = []
        try:
            for port in range(first, first + count):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
        return first
    raise RuntimeError(f"no block of {count} free ports found")


@pytest.fixture
def free_ports() -> Callable[[int], int]:
    """Finds a block of free consecutive ports."""
    return free_port_block


@pytest.fixture
async def fleet() -> AsyncIterator[Fleet]:
    """Two string-firmware devices without authentication on ephemeral ports."""
    async with Fleet(devices=2) as running:
        yield running


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """A plain HTTP client with a short timeout."""
    async with httpx.AsyncClient(timeout=5.0) as http:
        yield http
