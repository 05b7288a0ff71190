"""The log events of SPEC section 7: one typed function each, the interface alert rules match.

Every event syncd writes goes through a function here or in an area's own
module (:mod:`syncd.daemon_events`, :mod:`syncd.export_events`), so an event's
name, level and keys are written once. Each takes the logger to write to (bound to
``device`` where the event is about one) and keyword-only fields. Events about
the desired state and applying it take ``revision``, written when known.
Optional fields that are ``None`` are left out; fields the SPEC lists for an
event (``code``, ``param``, ``description`` of ``apply.failed``) are always there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from structlog.typing import FilteringBoundLogger

from syncd.desired.result import Problem
from syncd.listing import first_names

__all__ = [
    "apply_deferred",
    "apply_failed",
    "apply_retrying",
    "apply_reverted",
    "apply_succeeded",
    "auth_failed",
    "calls_unknown",
    "change_pending",
    "cluster_internal_error",
    "cluster_joined",
    "cluster_members",
    "cluster_revision_agrees",
    "cluster_revision_differs",
    "cluster_unavailable",
    "desired_invalid",
    "desired_loaded",
    "desired_problem",
    "desired_watch_failed",
    "device_recovered",
    "device_unreachable",
    "drift_detected",
    "health_failed",
    "health_passed",
    "password_resent",
    "passwords_unrecorded",
    "reconcile_skipped",
    "registration_lost",
    "registration_restored",
    "registration_unreadable",
    "registration_unsupported",
    "request_retrying",
    "rollout_completed",
    "rollout_halted",
    "rollout_paused",
    "rollout_resumed",
    "rollout_started",
    "rollout_wave",
    "state_key_damaged",
    "state_record_damaged",
    "state_rollout_damaged",
    "state_write_failed",
    "windows_ignored",
]

Log = FilteringBoundLogger
#: Changed fields as events list them: ``{"account", "field", "live", "desired"}`` each.
Fields = Sequence[Mapping[str, Any]]


def _given(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


def _names(key: str, names: Sequence[str]) -> dict[str, Any]:
    """``key``: the first :data:`~syncd.listing.LISTED` names; ``key_more``: how many
    more there are, when there are (a line stays short of journald's 48 KiB)."""
    shown, more = first_names(names)
    return {key: shown, f"{key}_more": more} if more else {key: shown}


# ------------------------------------------------------------ desired state


def desired_loaded(
    log: Log, *, devices: int, invalid: int, reason: str | None = None, revision: str | None = None
) -> None:
    extra = _given(reason=reason, revision=revision)
    log.info("desired.loaded", devices=devices, invalid=invalid, **extra)


def desired_invalid(
    log: Log, *, file: str, line: int | None, error: str, device: str | None = None
) -> None:
    log.error("desired.invalid", file=file, line=line, error=error, **_given(device=device))


def _desired_warning(log: Log, *, file: str, line: int | None, error: str) -> None:
    log.warning("desired.warning", file=file, line=line, error=error)


def desired_problem(log: Log, problem: Problem, *, device: str | None = None) -> None:
    """A problem of the desired state: ``desired.warning``, or ``desired.invalid`` (naming
    the ``device`` whose file it is, when known)."""
    if problem.warning:
        _desired_warning(log, file=problem.file, line=problem.line, error=str(problem))
    else:
        desired_invalid(
            log, file=problem.file, line=problem.line, error=str(problem), device=device
        )


def desired_watch_failed(log: Log, *, error: str) -> None:
    log.warning("desired.watch_failed", error=error)


# ------------------------------------------------------------ one device


def drift_detected(log: Log, *, fields: Fields, revision: str | None = None) -> None:
    log.warning("drift.detected", fields=list(fields), **_given(revision=revision))


def change_pending(log: Log, *, fields: Fields, revision: str | None = None) -> None:
    log.info("change.pending", fields=list(fields), **_given(revision=revision))


def apply_succeeded(log: Log, *, fields: Fields, revision: str | None = None) -> None:
    log.info("apply.succeeded", fields=list(fields), **_given(revision=revision))


def apply_failed(
    log: Log,
    *,
    error: str,
    code: int | None = None,
    param: str | None = None,
    description: str | None = None,
    kind: str | None = None,
    fields: Fields | None = None,
    revision: str | None = None,
    again: bool = False,
) -> None:
    """A PUT failed: at error, or at debug when it is the failure logged last time, under
    the same revision, less than an hour ago (a lasting failure is news once an hour)."""
    extra = _given(kind=kind, revision=revision)
    if fields is not None:
        extra["fields"] = list(fields)
    write = log.debug if again else log.error
    write("apply.failed", error=error, code=code, param=param, description=description, **extra)


def apply_retrying(
    log: Log,
    *,
    request: str,
    attempt: int,
    delay: float,
    error: str,
    revision: str | None = None,
    repeated: bool = False,
) -> None:
    """A PUT will be retried: at warning, or at debug when it failed the same way before."""
    write = log.debug if repeated else log.warning
    write(
        "apply.retrying",
        request=request,
        attempt=attempt,
        delay=delay,
        error=error,
        **_given(revision=revision),
    )


def request_retrying(log: Log, *, request: str, attempt: int, delay: float, error: str) -> None:
    """A read (GET, export's reads) will be retried: routine, so at debug."""
    log.debug("request.retrying", request=request, attempt=attempt, delay=delay, error=error)


def apply_deferred(
    log: Log,
    *,
    reason: str,
    until: str | None = None,
    revision: str | None = None,
    error: str | None = None,
) -> None:
    """A PUT waits; ``error`` says why a ``policy`` wait waits (``_fleet.yaml``'s error)."""
    log.info("apply.deferred", reason=reason, **_given(until=until, revision=revision, error=error))


def apply_reverted(log: Log, *, fields: Fields, revision: str | None = None) -> None:
    log.warning("apply.reverted", fields=list(fields), **_given(revision=revision))


def calls_unknown(log: Log, *, error: str) -> None:
    """The device cannot report its calls: it is treated as idle (logged once per device)."""
    log.warning("calls.unknown", error=error)


def device_unreachable(log: Log, *, error: str, code: int | None, kind: str) -> None:
    log.error("device.unreachable", error=error, code=code, kind=kind)


def auth_failed(log: Log, *, error: str, code: int | None) -> None:
    log.error("auth.failed", error=error, code=code)


def device_recovered(log: Log, *, failing_for: float) -> None:
    log.info("device.recovered", failing_for=failing_for)


def password_resent(log: Log, *, account: int, reason: str) -> None:
    log.warning("password.resent", account=account, reason=reason)


def reconcile_skipped(log: Log, *, reason: str, changes: int | None = None) -> None:
    log.info("reconcile.skipped", reason=reason, **_given(changes=changes))


def health_passed(log: Log, *, waited: float, revision: str | None = None) -> None:
    log.info("health.passed", waited=waited, **_given(revision=revision))


def health_failed(log: Log, *, account: int, waited: float, revision: str | None = None) -> None:
    log.error("health.failed", account=account, waited=waited, **_given(revision=revision))


def registration_lost(log: Log, *, account: int) -> None:
    log.warning("registration.lost", account=account)


def registration_restored(log: Log, *, account: int) -> None:
    log.info("registration.restored", account=account)


def registration_unsupported(log: Log, *, error: str) -> None:
    """The device cannot report registration (codes 1, 4, 10); not asked again until it changes."""
    log.warning("registration.unsupported", error=error)


def registration_unreadable(log: Log, *, error: str) -> None:
    log.warning("registration.unreadable", error=error)


def state_key_damaged(log: Log, *, file: str, readonly: bool) -> None:
    """The state dir's key of the password records was damaged: a new key, every password due."""
    consequence = (
        "every managed password shows as due; the next apply or run replaces the key "
        "and sends each password once more"
        if readonly
        else "a new key replaces it, so every managed password is sent once more"
    )
    log.warning(
        "state.key_damaged",
        file=file,
        message=f"the state dir's password-record key {file} is damaged: {consequence}",
    )


def state_record_damaged(
    log: Log, *, device: str | None, file: str, error: str, readonly: bool
) -> None:
    """A device's record in the state dir was damaged: taken as empty, its passwords due.

    ``device`` is None for damage that names no device (a line that is not a
    record, an unreadable file): every password recorded before it is then due
    (:mod:`syncd.state.record_log`).
    """
    if device is None:
        what = f"the state records {file} are damaged where no device is named ({error})"
        passwords = "the managed passwords recorded before the damage"
        now = f"{passwords} are all sent once more"
        later = f"{passwords} all show as due"
    else:
        what = f"the state record of device {device} in {file} is damaged ({error})"
        now = "it is taken as empty, so the device's managed passwords are sent once more"
        later = "the device's managed passwords show as due"
    again = "; the next apply or run sends them once more and writes the records anew"
    consequence = later + again if readonly else now
    fields = {"file": file, "error": error}
    if device is not None:
        fields = {"device": device, **fields}
    log.warning("state.record_damaged", **fields, message=f"{what}: {consequence}")


def state_rollout_damaged(log: Log, *, error: str) -> None:
    """The saved rollout could not be read: taken as none (a halt or undo values are lost)."""
    log.warning(
        "state.rollout_damaged",
        error=error,
        message=(
            f"the saved rollout cannot be read ({error}): it is taken as none, so a halted "
            "rollout is forgotten and changes still pending start a new rollout from the "
            "first wave"
        ),
    )


def state_write_failed(log: Log, *, error: str) -> None:
    log.error("state.write_failed", error=error)


# ------------------------------------------------------------ rollouts


def rollout_started(log: Log, *, revision: str, waves: Sequence[Mapping[str, Any]]) -> None:
    log.info("rollout.started", revision=revision, waves=list(waves))


def rollout_wave(
    log: Log, *, wave: str, devices: Sequence[str], revision: str | None = None
) -> None:
    log.info("rollout.wave", wave=wave, **_names("devices", devices), **_given(revision=revision))


def rollout_halted(
    log: Log, *, wave: str, failed: Sequence[str], revision: str | None = None
) -> None:
    log.error("rollout.halted", wave=wave, **_names("failed", failed), **_given(revision=revision))


def rollout_paused(log: Log, *, revision: str | None = None) -> None:
    log.warning("rollout.paused", **_given(revision=revision))


def rollout_resumed(log: Log, *, revision: str | None = None) -> None:
    log.info("rollout.resumed", **_given(revision=revision))


def windows_ignored(log: Log, *, revision: str | None = None) -> None:
    """``syncd apply --ignore-windows``: the maintenance windows are overridden."""
    log.warning("apply.windows_ignored", **_given(revision=revision))


def rollout_completed(
    log: Log, *, devices: int, failed: Sequence[str], revision: str | None = None
) -> None:
    extra = _given(revision=revision)
    log.info("rollout.completed", devices=devices, **_names("failed", failed), **extra)


# ------------------------------------------------------------ commands


def passwords_unrecorded(
    log: Log, *, state_dir: str | None = None, cluster: str | None = None
) -> None:
    """``plan`` found no password record (in the state dir, or in the ``cluster``'s etcd):
    every managed password shows as due."""
    if cluster is not None:
        log.warning(
            "plan.no_password_records",
            cluster=cluster,
            message=(
                "no password record exists in the cluster's etcd state, so every managed "
                "password shows as due, marked (no record); its nodes send each once"
            ),
        )
        return
    log.warning(
        "plan.no_password_records",
        state_dir=state_dir,
        message=(
            "no password record exists in the state dir, so every managed password shows "
            "as due, marked (no record); apply sends each once"
        ),
    )


# ------------------------------------------------------------ cluster (SPEC section 11)


def cluster_joined(
    log: Log, *, node: str, members: Sequence[str], leader: str | None, owned: int
) -> None:
    log.info("cluster.joined", node=node, members=list(members), leader=leader, owned=owned)


def cluster_members(
    log: Log, *, node: str, members: Sequence[str], leader: str | None, owned: int
) -> None:
    log.info("cluster.members", node=node, members=list(members), leader=leader, owned=owned)


def cluster_internal_error(log: Log, *, what: str) -> None:
    """A bug in the cluster's own machinery, caught so it does not end it: with the stack
    (a traceback for a bug report; no secret is in one), tried again."""
    log.exception("cluster.internal_error", what=what)


def cluster_unavailable(log: Log, *, node: str, error: str) -> None:
    log.warning("cluster.unavailable", node=node, error=error)


def cluster_revision_differs(
    log: Log,
    *,
    node: str,
    revision: str | None,
    revisions: Mapping[str, str],
    lagging: bool,
    differing_for: float,
) -> None:
    log.warning(
        "cluster.revision_differs",
        node=node,
        revision=revision,
        revisions=dict(revisions),
        lagging=lagging,
        differing_for=differing_for,
    )


def cluster_revision_agrees(
    log: Log, *, node: str, revision: str | None, differing_for: float
) -> None:
    log.info(
        "cluster.revision_agrees",
        node=node,
        revision=revision,
        differing_for=differing_for,
    )
