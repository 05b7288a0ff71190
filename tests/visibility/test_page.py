"""The status page and /status on the metrics server: escaped, self-contained, 404 elsewhere."""

from __future__ import annotations

import base64
import hashlib
import re
import socket
from collections.abc import Callable, Iterator
from dataclasses import replace
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from syncd.metrics import Metrics, serve_metrics
from syncd.page import PAGE_ROWS, content_security_policy, render_page
from syncd.status import DeviceStatus, FleetStatus, status_json

from .fleet_samples import NOW, SCRIPT_NAME, sample_fleet


class Elements(HTMLParser):
    """Collects tags with their attributes, and the text of script/style elements."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.inline: dict[str, list[str]] = {"script": [], "style": []}
        self._open: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._open = tag if tag in self.inline else None

    def handle_endtag(self, tag: str) -> None:
        self._open = None

    def handle_data(self, data: str) -> None:
        if self._open:
            self.inline[self._open].append(data)


def parse(html: str) -> Elements:
    parser = Elements()
    parser.feed(html)
    return parser


def digest(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


@pytest.fixture
def page() -> str:
    return render_page(status_json(sample_fleet()), NOW)


class TestRender:
    def test_markup_in_names_and_messages_is_escaped(self, page: str) -> None:
        """A device name or message with markup appears escaped, never as an element."""
        assert SCRIPT_NAME not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        assert "<b>bad</b>" not in page and "&lt;b&gt;bad&lt;/b&gt;" in page
        assert len(parse(page).inline["script"]) == 1

    def test_every_device_is_a_row_worst_first(self, page: str) -> None:
        """Each device has one row, the failed one first."""
        rows = re.findall(r'<tr class="device" data-search="([^"]*)"', page)
        assert len(rows) == 20
        assert rows[0].startswith("site-0/lobby failed")

    def test_a_clusters_page_names_each_devices_node(self, page: str) -> None:
        """In a cluster (owners set) a node column names the owner; standalone there is none."""
        assert "<th>node</th>" in page and '<td data-label="node">host-a</td>' in page
        fleet = sample_fleet()
        alone = replace(fleet, devices=tuple(replace(d, owner=None) for d in fleet.devices))
        assert "<th>node</th>" not in render_page(status_json(alone), NOW)

    def test_summary_rollout_registration_and_ages(self, page: str) -> None:
        """The page shows counts, the rollout and its waves, SIP registration per account and ages."""
        text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page))
        assert "20 devices" in text and "1 failed" in text and "2 unreachable" in text
        assert "Rollout : running" in text.replace("Rollout:", "Rollout :")
        assert "wave canary" in text
        assert 'title="account 1: not registered"' in page
        assert 'title="account 2: registered"' in page
        assert 'title="account 2: registration not known"' in page
        assert "5m ago" in text and "2d ago" in text
        assert "site-b/broken.yaml:3" in text

    def test_waves_current_first_pending_after(self, page: str) -> None:
        """Wave rows: the current wave, then those with devices still pending."""
        waves = re.findall(
            r'<td class="name">(\w+)', page.split('class="waves"')[1].split("</table>")[0]
        )
        assert waves == ["canary", "rest"]

    def test_no_outside_assets(self, page: str) -> None:
        """Nothing is loaded from elsewhere: no src/href but data:, the policy allows only self."""
        for tag, attrs in parse(page).tags:
            for key in ("src", "href", "action"):
                value = attrs.get(key)
                assert value is None or value.startswith("data:"), (tag, attrs)
        assert 'http-equiv="Content-Security-Policy"' in page
        assert "default-src 'none'" in content_security_policy()
        assert "connect-src 'self'" in content_security_policy()

    def test_policy_hashes_match_the_inline_code(self, page: str) -> None:
        """The policy's hashes are those of the page's own script and style, so both run."""
        found = parse(page)
        policy = content_security_policy()
        assert f"script-src '{digest(found.inline['script'][0])}'" in policy
        assert f"style-src '{digest(found.inline['style'][0])}'" in policy

    def test_phone_viewport_and_refresh(self, page: str) -> None:
        """The page has a viewport for phones and refreshes itself."""
        assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
        assert '<meta http-equiv="refresh" content="5">' in page
        assert "later(box.value.trim() ? 0 : 5)" in page and "later(5)" in page

    def test_a_big_fleet_lists_its_worst_devices_and_the_filter_finds_the_rest(
        self,
    ) -> None:
        """350 devices: the page lists PAGE_ROWS of them, worst first, and says how many
        match; a query lists the devices that match it, however far down they are."""
        base = sample_fleet()
        many = tuple(
            DeviceStatus(
                f"site-9/door-{n:04d}", f"http://127.0.0.1:{9000 + n}", "enforce", "in_sync"
            )
            for n in range(350)
        )
        data = status_json(replace(base, devices=(*base.devices, *many)))
        total = len(data["devices"])
        html = render_page(data, NOW)
        rows = html.count('<tr class="device"')
        assert rows == PAGE_ROWS
        assert f"{PAGE_ROWS} of {total} devices shown, worst first" in html
        assert f'data-total="{total}"' in html
        assert "site-0/lobby" in html  # the worst come first
        found = render_page(data, NOW, query="DOOR-0349")
        assert found.count('<tr class="device"') == 1 and "site-9/door-0349" in found
        none = render_page(data, NOW, query="nowhere")
        assert "No device matches “nowhere”." in none and '<tr class="device"' not in none
        assert len(html) < 400_000  # 10,000 rows were 7.5 MB

    def test_empty_fleet(self) -> None:
        """A fleet without devices renders and says so."""
        html = render_page(status_json(FleetStatus(revision="tree:abcdef012345", node="n")), NOW)
        assert "No devices under management." in html
        assert 'class="waves"' not in html


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def serve() -> Iterator[Callable[..., str]]:
    """Return ``serve(status=...)``: the metrics server on a free loopback port; its base URL."""
    servers: list[Any] = []

    def start(**kw: Any) -> str:
        metrics = Metrics()
        metrics.set_revision("0123456789abcdef0123456789abcdef01234567")
        server, _ = serve_metrics(metrics, f"127.0.0.1:{free_port()}", stale_after=60, **kw)
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


class TestServed:
    def test_page_and_json(self, serve: Callable[..., str]) -> None:
        """With a status source, / is the page and /status the JSON, neither cached."""
        data = status_json(sample_fleet())
        base = serve(status=lambda: data)
        page = httpx.get(base + "/", timeout=5)
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
        got = httpx.get(base + "/status", timeout=5)
        assert got.headers["content-type"] == "application/json"
        assert got.json() == data
        assert got.headers["cache-control"] == "no-store"

    @pytest.mark.parametrize(
        ("method", "path"),
        [("GET", "/nope"), ("GET", "/status/x"), ("GET", "/index.html"), ("POST", "/"), ("POST", "/status"),
         ("GET", "/favicon.ico")],
    )  # fmt: skip
    def test_other_paths_404_and_server_goes_on(
        self, serve: Callable[..., str], method: str, path: str
    ) -> None:
        """Anything but the routes answers 404; the server keeps serving."""
        base = serve(status=lambda: status_json(sample_fleet()))
        assert httpx.request(method, base + path, timeout=5).status_code == 404
        assert httpx.get(base + "/healthz", timeout=5).status_code == 200

    def test_without_status_source_no_page(self, serve: Callable[..., str]) -> None:
        """Without a status source / and /status are 404; /metrics and /healthz as before."""
        base = serve()
        assert httpx.get(base + "/", timeout=5).status_code == 404
        assert httpx.get(base + "/status", timeout=5).status_code == 404
        assert httpx.get(base + "/metrics", timeout=5).status_code == 200

    def test_status_source_failing_is_500(self, serve: Callable[..., str]) -> None:
        """A status source that raises answers 500 without its message; later requests are served."""
        calls = []

        def flaky() -> dict[str, Any]:
            calls.append(1)
            if len(calls) == 1:
                raise RuntimeError("secret hunter2")
            return status_json(sample_fleet())

        base = serve(status=flaky)
        bad = httpx.get(base + "/", timeout=5)
        assert bad.status_code == 500 and "hunter2" not in bad.text
        assert httpx.get(base + "/", timeout=5).status_code == 200

    def test_head(self, serve: Callable[..., str]) -> None:
        """HEAD / answers the headers without a body."""
        base = serve(status=lambda: status_json(sample_fleet()))
        response = httpx.head(base + "/", timeout=5)
        assert response.status_code == 200 and response.content == b""

    def test_desired_info_metric(self, serve: Callable[..., str]) -> None:
        """syncd_desired_info carries the revision in force as a label, value 1, only the latest."""
        metrics = Metrics()
        metrics.set_revision("tree:aaaaaaaaaaaa")
        metrics.set_revision("tree:bbbbbbbbbbbb")
        server, _ = serve_metrics(metrics, f"127.0.0.1:{free_port()}", stale_after=60)
        try:
            text = httpx.get(f"http://127.0.0.1:{server.server_port}/metrics", timeout=5).text
        finally:
            server.shutdown()
            server.server_close()
        samples = [
            s
            for family in text_string_to_metric_families(text)
            if family.name == "syncd_desired_info"
            for s in family.samples
        ]
        assert [(s.labels, s.value) for s in samples] == [({"revision": "tree:bbbbbbbbbbbb"}, 1.0)]
