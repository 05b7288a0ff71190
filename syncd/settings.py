"""Daemon and command settings: flags, then ``SYNCD_*``, then a TOML file, then defaults."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

__all__ = ["LOCAL_STATE_DIR", "Settings", "SettingsError", "load_settings"]

DEFAULT_CONFIG = Path("/etc/syncd/syncd.toml")


class SettingsError(Exception):
    """A setting is missing or wrong; the message names it."""


#: The state dir when nothing names one and systemd gives none: in the working directory.
LOCAL_STATE_DIR = Path(".syncd-state")


def _default_state_dir() -> Path:
    # systemd's StateDirectory= hands us $STATE_DIRECTORY (possibly several, ':'-separated).
    under_systemd = os.environ.get("STATE_DIRECTORY")
    return Path(under_systemd.split(":")[0]) if under_systemd else LOCAL_STATE_DIR


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SYNCD_", extra="forbid", frozen=True)

    _toml_file: ClassVar[Path | None] = None

    desired_dir: Path = Path("desired")
    state_dir: Path = Field(default_factory=_default_state_dir)
    resync_interval: float = Field(60.0, gt=0, allow_inf_nan=False)
    concurrency: int = Field(32, ge=1, le=10_000)
    request_timeout: float = Field(10.0, gt=0, allow_inf_nan=False)
    #: Seconds to wait for a device to accept a connection (at most request_timeout):
    #: a powered-down device costs this, not the request timeout.
    connect_timeout: float = Field(3.0, gt=0, allow_inf_nan=False)
    log_format: Literal["json", "console"] | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    metrics_address: str | None = None
    #: The control socket (SPEC section 10); None: ``$RUNTIME_DIRECTORY/syncd.sock``
    #: under systemd, else ``STATE_DIR/syncd.sock`` (:func:`syncd.control.default_socket_path`).
    socket: Path | None = None
    #: Attempts per request before a device counts as failed for this pass.
    retry_attempts: int = Field(3, ge=1, le=20)
    #: Longest wait between a failing device's reconciles in the daemon.
    max_backoff: float = Field(300.0, gt=0, allow_inf_nan=False)
    # Cluster mode (SPEC section 11, checked in syncd.cluster.settings); unset: standalone.
    cluster_endpoints: str | None = None
    cluster_name: str = "syncd"
    node_name: str | None = None
    lease_ttl: float = Field(10.0, ge=2, le=3600, allow_inf_nan=False)
    cluster_ca_file: Path | None = None
    cluster_cert_file: Path | None = None
    cluster_key_file: Path | None = None
    cluster_username: str | None = None
    cluster_password_file: Path | None = None
    #: The password-record key (cluster: the same on every node); else credential or generated.
    password_key_file: Path | None = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: tuple[PydanticBaseSettingsSource, ...] = (init_settings, env_settings)
        if cls._toml_file is not None:
            sources += (TomlConfigSettingsSource(settings_cls, toml_file=cls._toml_file),)
        return sources


#: The command-line flag of each setting whose flag is not ``--`` plus its name (None: no flag).
_FLAGS: dict[str, str | None] = {
    "desired_dir": "--desired",
    "retry_attempts": None,
    "max_backoff": None,
}


def load_settings(config: Path | None = None, **overrides: Any) -> Settings:
    """Build settings; ``overrides`` are command-line flags (None means not given).

    Raises :class:`SettingsError` with one sentence naming the setting.
    """
    toml_file = config
    if toml_file is None and DEFAULT_CONFIG.is_file():
        toml_file = DEFAULT_CONFIG
    if toml_file is not None and not toml_file.is_file():
        raise SettingsError(f"config file {toml_file} does not exist")
    flags = {k: v for k, v in overrides.items() if v is not None}
    source_cls = type("FileSettings", (Settings,), {"_toml_file": toml_file})
    try:
        settings: Settings = source_cls(**flags)
    except ValidationError as exc:
        err = exc.errors()[0]
        name = ".".join(str(p) for p in err["loc"]) or "settings"
        sources = []
        if name in Settings.model_fields:  # not for an unknown key in the TOML file
            flag = _FLAGS.get(name, f"--{name.replace('_', '-')}")
            sources += [f"flag {flag}"] if flag else []
            sources.append(f"SYNCD_{name.upper()}")
        sources += [str(toml_file)] if toml_file else []
        where = ", ".join(sources[:-1]) + " or " if len(sources) > 1 else ""
        where = f" ({where}{sources[-1]})" if sources else ""
        raise SettingsError(f"bad setting {name}{where}: {err['msg']}") from None
    except ValueError as exc:  # e.g. TOML syntax
        raise SettingsError(f"cannot read config file {toml_file}: {exc}") from None
    except OSError as exc:  # e.g. not readable by the daemon's user
        raise SettingsError(f"cannot read config file {toml_file}: {exc.strerror or exc}") from None
    return Settings.model_construct(**settings.model_dump())
