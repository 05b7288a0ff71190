"""Log lines: syncd's events as they are, the etcd and HTTP clients' free-text records at debug only."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from syncd import events
from syncd.logs import configure_logging, get_logger


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """A buffer to log to; the logging configuration is put back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    config = structlog.get_config()
    yield io.StringIO()
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.configure(**config)


def write_some(stream: io.StringIO, level: str) -> list[dict[str, Any]]:
    """Log as syncd does while etcd is down; the JSON lines written."""
    configure_logging(level=level, fmt="json", stream=stream)
    # etcd3aio, while etcd does not answer: a warning per retry, in free text.
    logging.getLogger("etcd3aio.watch").warning(
        "watch: transient error (%s), reconnecting in %.2f s", "UNAVAILABLE", 1.0
    )
    logging.getLogger("etcd3aio.lease").warning("lease-keepalive: request failed")
    # httpx, for every request it makes (export, status through the socket): at INFO.
    logging.getLogger("httpx").info('HTTP Request: GET http://192.0.2.1 "HTTP/1.1 200 OK"')
    events.cluster_unavailable(get_logger(), node="n1", error="etcd does not answer")
    logging.getLogger("syncd.cluster.node").warning("a record of syncd's own")
    return [json.loads(line) for line in stream.getvalue().splitlines()]


class TestEtcdClientRecords:
    def test_not_written_at_info(self, stream: io.StringIO) -> None:
        """At info the etcd client's retry warnings are not written; syncd's own lines are, as before."""
        lines = write_some(stream, "info")
        assert [(line["level"], line["event"]) for line in lines] == [
            ("warning", "cluster.unavailable"),
            ("warning", "a record of syncd's own"),
        ]

    def test_written_at_debug_with_debug_on(self, stream: io.StringIO) -> None:
        """With debug logging on, the etcd client's records are written at debug, not warning."""
        lines = write_some(stream, "debug")
        assert [(line["level"], line["event"]) for line in lines] == [
            ("debug", "watch: transient error (UNAVAILABLE), reconnecting in 1.00 s"),
            ("debug", "lease-keepalive: request failed"),
            ("debug", 'HTTP Request: GET http://192.0.2.1 "HTTP/1.1 200 OK"'),
            ("warning", "cluster.unavailable"),
            ("warning", "a record of syncd's own"),
        ]


class TestLevelChangedLive:
    def test_a_long_lived_logger_with_context_follows_a_new_level(
        self, stream: io.StringIO
    ) -> None:
        """A logger made at start with context (the cluster's, per node) logs debug once a SIGHUP
        turns debug on, and stops when it is turned off again; its context stays on each line."""
        configure_logging(level="info", fmt="json", stream=stream)
        log = get_logger(node="n1")
        log.debug("before")
        configure_logging(level="debug", fmt="json", stream=stream)
        log.debug("during")
        configure_logging(level="info", fmt="json", stream=stream)
        log.debug("after")
        log.info("still")
        lines = [json.loads(line) for line in stream.getvalue().splitlines()]
        assert [(line["event"], line["node"]) for line in lines] == [
            ("during", "n1"),
            ("still", "n1"),
        ]
