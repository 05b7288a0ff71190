"""The per-device gauges, as a scrape reads them (prometheus-client's own text format)."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from syncd.metrics import Metrics


def scrape(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(metrics.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_series_appear_change_and_go_with_their_device() -> None:
    """Each setter makes its series (or removes it), and forgetting a device drops all of its."""
    metrics = Metrics()
    metrics.set_in_sync("a", True, 1000.0)
    metrics.set_in_sync("b", False, 1001.0)
    metrics.set_registration("a", [(1, True), (2, None)])
    metrics.set_failing("b", "transport")
    metrics.set_desired_invalid(["c"])
    got = scrape(metrics)
    assert got[("syncd_device_in_sync", (("device", "a"),))] == 1
    assert got[("syncd_device_in_sync", (("device", "b"),))] == 0
    assert got[("syncd_last_success_timestamp_seconds", (("device", "a"),))] == 1000.0
    assert ("syncd_last_success_timestamp_seconds", (("device", "b"),)) not in got
    assert got[("syncd_account_registered", (("account", "1"), ("device", "a")))] == 1
    assert ("syncd_account_registered", (("account", "2"), ("device", "a"))) not in got
    assert got[("syncd_device_failing", (("device", "b"), ("kind", "transport")))] == 1
    assert got[("syncd_device_desired_invalid", (("device", "c"),))] == 1

    metrics.set_failing("b", None)
    metrics.set_in_sync("b", None, 1002.0)
    metrics.set_registration("a", [(1, False)])
    metrics.forget(["a"])
    got = scrape(metrics)
    assert not [key for key in got if dict(key[1]).get("device") in ("a", "b")]
