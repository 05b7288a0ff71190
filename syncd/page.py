"""The read-only status page served at ``/`` next to the metrics.

Server-side rendering with Jinja2, autoescaping on: device names and error
messages come from files and devices and must never become markup. The page
loads nothing from outside the host (a management LAN has no internet): its
CSS and script are inline, and a Content-Security-Policy allows only those
(the script by its hash) and requests back to the page's own origin, which
the script uses to refresh the page every few seconds without losing the
filter. Without JavaScript, a meta refresh does the same.

The page lists at most :data:`PAGE_ROWS` devices, worst first, and says how
many more match: all 10,000 rows of a big fleet were 7.5 MB, fetched again
every few seconds (a tenth of a core of the daemon per open tab). The filter
is applied by the server too (``/?q=TEXT``, which the script asks for as you
type), so any device can be found.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import cache
from typing import Any

import jinja2
from markupsafe import Markup

from syncd.history import parse_time
from syncd.status import STATES, WORST_FIRST, format_age, short_revision

__all__ = ["PAGE_ROWS", "REFRESH_SECONDS", "content_security_policy", "render_page"]

REFRESH_SECONDS = 5
#: Devices the page lists at most (worst first); the filter finds the others.
PAGE_ROWS = 300
_UNSETTLED = frozenset({"changing", "waiting", "unknown"})


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("syncd", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


@cache
def _asset(name: str) -> str:
    source, _, _ = _environment().loader.get_source(_environment(), name)  # type: ignore[union-attr]
    return source


def _sha256(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


@cache
def content_security_policy() -> str:
    """The page's policy: its own inline CSS and script (by hash), fetches to itself only."""
    return "; ".join(
        (
            "default-src 'none'",
            f"style-src '{_sha256(_asset('status.css'))}'",
            f"script-src '{_sha256(_asset('status.js'))}'",
            "connect-src 'self'",
            "img-src data:",
            "base-uri 'none'",
            "form-action 'none'",
        )
    )


def _clock(moment: str | None) -> str | None:
    """An ISO time as ``2024-05-01 22:00 UTC``."""
    if moment is None:
        return None
    return parse_time(moment).strftime("%Y-%m-%d %H:%M UTC")


def _age(moment: str | None, now: datetime) -> str:
    if moment is None:
        return "never"
    return format_age((now - parse_time(moment)).total_seconds()) + " ago"


_REGISTRATION = {
    True: ("yes", "✓", "registered"),
    False: ("no", "✗", "not registered"),
    None: ("unknown", "?", "registration not known"),
}


def _search_text(device: Mapping[str, Any]) -> str:
    """What the filter matches: name, state, wave, message and URL, lower case."""
    searchable = (
        device["device"],
        device["state"],
        device["wave"],
        device["message"],
        device["url"],
    )
    return " ".join(str(s) for s in searchable if s).lower()


def _device_view(device: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    accounts = []
    for account in device["accounts"]:
        css, mark, text = _REGISTRATION[account["registered"]]
        accounts.append({"account": account["account"], "css": css, "mark": mark, "text": text})
    return {
        **device,
        "revision_short": short_revision(device["revision"]),
        "last_sync_age": _age(device["last_sync"], now),
        "last_change_age": _age(device["last_change"], now),
        "accounts": accounts,
        "search": _search_text(device),
    }


def _waves(devices: list[Mapping[str, Any]], current: str | None) -> list[dict[str, Any]]:
    """Per wave: device counts, in rollout order as far as the JSON tells it.

    The status JSON does not list the waves in order; the rollout runs them in
    order, so finished waves come before the current one and pending ones after.
    """
    waves: dict[str, dict[str, Any]] = {}
    for device in devices:
        name = device["wave"]
        if name is None:
            continue
        wave = waves.setdefault(
            name, {"name": name, "devices": 0, "in_sync": 0, "failed": 0, "pending": 0}
        )
        wave["devices"] += 1
        state = device["state"]
        if state == "in_sync":
            wave["in_sync"] += 1
        elif state == "failed":
            wave["failed"] += 1
        elif state in _UNSETTLED:
            wave["pending"] += 1
    for wave in waves.values():
        wave["current"] = wave["name"] == current
        wave["step"] = 1 if wave["current"] else (2 if wave["pending"] else 0)
    return sorted(waves.values(), key=lambda w: (w["step"], w["name"]))


def render_page(
    status: Mapping[str, Any],
    now: datetime | None = None,
    *,
    query: str = "",
    limit: int | None = None,
) -> str:
    """The HTML page for a status JSON object (SPEC section 10 shape): the devices that
    match ``query`` (all when empty), worst first, at most ``limit`` (:data:`PAGE_ROWS`)."""
    now = now or datetime.now(UTC)
    limit = PAGE_ROWS if limit is None else limit
    ranks = {state: rank for rank, state in enumerate(WORST_FIRST)}
    devices = sorted(
        status["devices"], key=lambda d: (ranks.get(d["state"], len(ranks)), d["device"])
    )
    wanted = query.strip().lower()
    matching = [d for d in devices if wanted in _search_text(d)] if wanted else devices
    rollout = status["rollout"]
    summary = status["summary"]
    template = _environment().get_template("status.html")
    return template.render(
        csp=content_security_policy(),
        css=Markup(_asset("status.css")),  # our own file, hashed in the CSP
        js=Markup(_asset("status.js")),  # our own file, hashed in the CSP
        refresh=REFRESH_SECONDS,
        title=f"{summary.get('devices', 0)} devices",
        revision=status["revision"],
        revision_short=short_revision(status["revision"]),
        node=status["node"],
        window={**status["window"], "next_open": _clock(status["window"]["next_open"])},
        generated=now.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ"),
        summary=summary,
        counts=[(state, summary.get(state, 0)) for state in STATES],
        invalid_files=status["invalid_files"],
        rollout={**rollout, "revision_short": short_revision(rollout["revision"])},
        waves=_waves(devices, rollout["wave"]),
        devices=[_device_view(d, now) for d in matching[:limit]],
        matching=len(matching),
        total=len(devices),
        query=query.strip(),
        clustered=any(d["owner"] for d in devices),
    )
