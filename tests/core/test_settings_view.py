"""daemon.starting shows every effective setting, and never a credential."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, SecretStr

from syncd.settings import Settings
from syncd.settings_view import settings_view


class WithSecrets(BaseModel):
    desired_dir: Path = Path("/srv/d")
    etcd_password: str = "hunter2-plain"
    api_token: SecretStr = SecretStr("tok-123")
    password_key_file: Path = Path("/etc/syncd/key")
    etcd_password_credential: str = "etcd-pw"


def test_every_setting_is_shown_as_json() -> None:
    """All of Settings' fields appear, paths as strings."""
    settings = Settings(desired_dir=Path("/srv/x/desired"), concurrency=7)
    view = settings_view(settings)
    assert set(view) == set(Settings.model_fields)
    assert view["desired_dir"] == "/srv/x/desired" and view["concurrency"] == 7


def test_credentials_are_left_out_but_where_they_live_is_shown() -> None:
    """Secret values and password-named values are left out; *_file and *_credential names stay."""
    view = settings_view(WithSecrets())
    assert view == {
        "desired_dir": "/srv/d",
        "password_key_file": "/etc/syncd/key",
        "etcd_password_credential": "etcd-pw",
    }
    assert "hunter2" not in repr(view) and "tok-123" not in repr(view)
