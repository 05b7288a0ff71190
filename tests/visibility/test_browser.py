"""The status page in a real headless Chromium: loads clean, lists every device, filters, never runs a name."""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from syncd.metrics import Metrics, serve_metrics
from syncd.status import DeviceStatus, FleetStatus, status_json

from .fleet_samples import SCRIPT_NAME, sample_fleet

PACKAGES = "chromium chromium-driver"
FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--window-size=1280,900",
)  # fmt: skip


def _find(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


def _browser_or_skip() -> tuple[str, str]:
    """Chromium and its driver; without them skip (fail under CI=true) naming the packages."""
    browser = _find("chromium", "chromium-browser")
    driver = _find("chromedriver")
    missing = [n for n, p in (("chromium", browser), ("chromedriver", driver)) if p is None]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package (pip install -e '.[dev]')")
    if missing:
        reason = f"{', '.join(missing)} not found: install the Debian packages {PACKAGES}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    assert browser is not None and driver is not None
    return browser, driver


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Fleet:
    """A status source whose fleet a test can change while the page is open."""

    def __init__(self) -> None:
        self.fleet = sample_fleet()

    def __call__(self) -> dict[str, Any]:
        return status_json(self.fleet)


@pytest.fixture(scope="module")
def source() -> Fleet:
    return Fleet()


@pytest.fixture(scope="module")
def base_url(source: Fleet) -> Iterator[str]:
    """The metrics server with the status page, on loopback."""
    server, _ = serve_metrics(Metrics(), f"127.0.0.1:{_free_port()}", stale_after=60, status=source)
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    """One headless Chromium for the module, with browser and network logs."""
    browser, chromedriver = _browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="syncd-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SE_OFFLINE", "true")  # Selenium Manager must never download anything
        chrome = webdriver.Chrome(service=Service(chromedriver), options=options)
    chrome.set_page_load_timeout(30)
    yield chrome
    chrome.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def page(driver: Any, base_url: str, source: Fleet) -> Any:
    """The page freshly loaded, logs drained of anything earlier."""
    source.fleet = sample_fleet()
    driver.get(base_url + "/")
    driver.execute_script("sessionStorage.clear();")  # the page's own: what an earlier test typed
    driver.get("about:blank")
    driver.get_log("browser")
    driver.get_log("performance")
    driver.get(base_url + "/")
    return driver


def visible_names(driver: Any) -> list[str]:
    """The names in the device rows a person sees, read in one go (the page may refresh)."""
    names: list[str] = driver.execute_script(
        "return Array.from(document.querySelectorAll('#devices tbody tr'))"
        ".filter(function (row) { return row.offsetParent !== null; })"
        ".map(function (row) { return row.querySelector('td.name').innerText; });"
    )
    return names


def settled_names(driver: Any, done: Callable[[list[str]], bool], timeout: float = 10) -> list[str]:
    """The visible names once ``done`` holds for them (the rows of a filter come from the
    server within a moment), or as they are at the timeout."""
    deadline = time.monotonic() + timeout
    names = visible_names(driver)
    while not done(names) and time.monotonic() < deadline:
        time.sleep(0.1)
        names = visible_names(driver)
    return names


def severe(driver: Any) -> list[dict[str, Any]]:
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def requested(driver: Any) -> list[str]:
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def test_loads_without_console_errors_and_lists_every_device(page: Any, base_url: str) -> None:
    """The page loads with no console error and shows all 20 devices, worst first."""
    assert page.title.startswith("syncd")
    names = visible_names(page)
    assert len(names) == 20
    assert names[0] == "site-0/lobby"
    assert severe(page) == []


def test_script_name_is_text(page: Any) -> None:
    """A device named <script>alert(1)</script> shows as that text and runs nothing."""
    from selenium.common.exceptions import NoAlertPresentException

    assert SCRIPT_NAME in visible_names(page)
    with pytest.raises(NoAlertPresentException):
        _ = page.switch_to.alert.text
    assert page.execute_script("return document.querySelectorAll('#devices script').length") == 0


def test_filter_hides_non_matching_rows(page: Any) -> None:
    """Typing in the filter box hides the rows that do not match; clearing it shows all again."""
    from selenium.webdriver.common.by import By

    box = page.find_element(By.ID, "filter")
    box.send_keys("lobby")
    assert settled_names(page, lambda n: n == ["site-0/lobby"]) == ["site-0/lobby"]
    assert page.find_element(By.ID, "shown").text == "1 of 20 shown"
    box.clear()
    box.send_keys("UNREACHABLE")
    assert len(settled_names(page, lambda n: len(n) == 2)) == 2
    box.clear()
    box.send_keys("script")
    assert settled_names(page, lambda n: n == [SCRIPT_NAME]) == [SCRIPT_NAME]
    page.execute_script(
        "arguments[0].value = ''; arguments[0].dispatchEvent(new Event('input'));", box
    )
    assert len(settled_names(page, lambda n: len(n) == 20)) == 20
    assert severe(page) == []


def test_the_filter_finds_a_device_the_page_does_not_list(page: Any, base_url: str) -> None:
    """A page that lists fewer devices than the fleet has (only the worst of a big fleet)
    brings the row of a device it did not list from the server when its name is typed."""
    from selenium.webdriver.common.by import By

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("syncd.page.PAGE_ROWS", 5)
        page.get(base_url + "/")
        listed = visible_names(page)
        assert len(listed) == 5
        assert "5 of 20 devices shown" in page.find_element(By.ID, "more").text
        every = [d["device"] for d in status_json(sample_fleet())["devices"]]
        wanted = next(
            n for n in every if n not in listed and sum(n.lower() in m.lower() for m in every) == 1
        )
        page.find_element(By.ID, "filter").send_keys(wanted)
        assert settled_names(page, lambda n: n == [wanted]) == [wanted]
        assert page.find_element(By.ID, "shown").text == "1 of 20 shown"
    assert severe(page) == []


def test_no_request_leaves_the_host(page: Any, base_url: str) -> None:
    """Every request the page made went to its own server (or was a data: URL)."""
    urls = requested(page)
    assert base_url + "/" in urls
    assert [u for u in urls if not (u.startswith(base_url + "/") or u.startswith("data:"))] == []


def test_fits_a_phone_screen(page: Any, base_url: str) -> None:
    """On a phone-sized window the page needs no sideways scrolling, and the filter filters."""
    from selenium.webdriver.common.by import By

    page.set_window_size(390, 844)
    try:
        page.get(base_url + "/")
        width = page.execute_script(
            "return [document.documentElement.scrollWidth, window.innerWidth]"
        )
        assert width[0] <= width[1]
        assert len(visible_names(page)) == 20
        page.find_element(By.ID, "filter").send_keys("lobby")
        assert visible_names(page) == ["site-0/lobby"]
    finally:
        page.set_window_size(1280, 900)


def test_refresh_updates_and_keeps_the_filter(page: Any, source: Fleet) -> None:
    """The page refreshes itself within seconds, keeping what is typed in the filter."""
    from selenium.webdriver.common.by import By

    page.find_element(By.ID, "filter").send_keys("door")
    before = len(visible_names(page))
    fleet = source.fleet
    added = DeviceStatus(
        "site-9/door-new", "http://127.0.0.1:8100", "enforce", "failed", message="new one"
    )
    source.fleet = FleetStatus(
        fleet.revision, fleet.node, fleet.rollout, fleet.window, (*fleet.devices, added)
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and "site-9/door-new" not in visible_names(page):
        time.sleep(0.25)
    names = visible_names(page)
    assert names[0] == "site-9/door-new"
    assert len(names) == before + 1
    assert page.find_element(By.ID, "filter").get_attribute("value") == "door"
    assert severe(page) == []


def test_ci_installs_the_packages() -> None:
    """The packages named in the skip reason are the Debian ones .ci/run installs."""
    ci = (Path(__file__).parents[2] / ".ci" / "run").read_text()
    assert PACKAGES in ci


@pytest.mark.parametrize(
    ("ci", "outcome"), [("true", pytest.fail.Exception), ("", pytest.skip.Exception)]
)
def test_missing_browser_skips_or_fails_under_ci(
    monkeypatch: pytest.MonkeyPatch, ci: str, outcome: type[BaseException]
) -> None:
    """Without chromium the test skips naming the Debian packages, or fails when CI=true."""
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match=f"install the Debian packages {PACKAGES}"):
        _browser_or_skip()
