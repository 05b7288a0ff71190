"""Failures an operator meets first, each one sentence that says what to do (issue 16, item 9)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.conftest import syncd, write

ACCOUNT = "accounts:\n  - account: 1\n    displayName: Door\n"


def plan_error(root: Path, tmp_path: Path, env: dict[str, str] | None = None) -> str:
    """The error message of the only device of a ``plan --json``."""
    result = syncd(
        "plan", "--json", "--desired", str(root), "--state-dir", str(tmp_path / "s"), env=env
    )
    assert result.returncode == 1, result.stdout + result.stderr
    (device,) = json.loads(result.stdout)["devices"]
    assert device["status"] == "error"
    assert "Traceback" not in result.stderr
    message: str = device["error"]["message"]
    return message


class TestSchemeMismatch:
    def test_http_url_on_an_https_port(self, sim, tmp_path):
        """http:// to a device that speaks only HTTPS says to use https://, not an SSL code."""
        fleet = sim(devices=1, tls=True)
        url = fleet.devices[0].url.replace("https://", "http://")
        root = tmp_path / "desired"
        write(root, "d.yaml", f"device:\n  url: {url}\n  auth:\n    method: none\n" + ACCOUNT)
        message = plan_error(root, tmp_path)
        assert message == f"{url}: the device expects HTTPS on this port; use https://"

    def test_https_url_on_an_http_port(self, sim, tmp_path):
        """https:// to a plain-HTTP device says to use http://, not WRONG_VERSION_NUMBER."""
        fleet = sim(devices=1)
        url = fleet.devices[0].url.replace("http://", "https://")
        root = tmp_path / "desired"
        write(root, "d.yaml", f"device:\n  url: {url}\n  auth:\n    method: none\n" + ACCOUNT)
        message = plan_error(root, tmp_path)
        assert message == f"{url}: the device answered plain HTTP on an HTTPS URL; use http://"
        assert "SSL" not in message


class TestAuthMethodMismatch:
    def test_names_the_method_the_device_asked_for(self, sim, tmp_path):
        """digest in the desired state against a Basic-only device names Basic, and no password."""
        fleet = sim(devices=1, auth="basic", username="syncd", password="api-pw-1")
        url = fleet.devices[0].url
        root = tmp_path / "desired"
        auth = "  auth:\n    method: digest\n    username: syncd\n    password: {env: API_PW}\n"
        write(root, "d.yaml", f"device:\n  url: {url}\n{auth}" + ACCOUNT)
        message = plan_error(root, tmp_path, env={"API_PW": "api-pw-1"})
        assert message == (
            f"{url}: the device asked for Basic authentication but the desired state names digest"
        )
