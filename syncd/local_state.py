"""The state store on this host's disk, opened from the settings: one way for every command.

The password records are keyed with ``password_key_file`` (or the systemd
credential ``syncd-password-key``) when one is given, else with the state
dir's own key. The daemon and every one-shot command (``plan``, ``apply``,
``passwords resend`` and ``rollout pause|resume`` without a daemon) open it
here, so they agree on which passwords were applied: a command that keyed
them otherwise would see every password as due, and send it again.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from syncd import events
from syncd.logs import get_logger
from syncd.password_key import PasswordKeyError, read_password_key
from syncd.state import FileStateStore, StateError

if TYPE_CHECKING:
    from syncd.settings import Settings

__all__ = ["open_state"]


def open_state(settings: Settings, *, readonly: bool = False) -> FileStateStore:
    """The state store of ``settings.state_dir``, its password records keyed as configured.

    ``readonly`` (for ``plan``) creates and writes nothing. A damaged key file
    in the state dir is replaced (``state.key_damaged`` says so, once); a damaged
    device record is taken as empty (``state.record_damaged``, once per damaged
    record, when it is read). Raises StateError: one sentence naming
    ``password_key_file`` or the state dir.
    """
    try:
        key = read_password_key(settings.password_key_file)
    except PasswordKeyError as exc:
        raise StateError(str(exc)) from None
    if readonly:
        store = FileStateStore.open_readonly(settings.state_dir, key=key)
    else:
        store = FileStateStore.open(settings.state_dir, key=key)
    if store.key_damaged:
        events.state_key_damaged(get_logger(), file=str(store.key_file), readonly=readonly)

    def damaged(device: str | None, path: Path, error: str) -> None:
        events.state_record_damaged(
            get_logger(), device=device, file=str(path), error=error, readonly=readonly
        )

    store.on_damaged = damaged
    return store
