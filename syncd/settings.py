"""Daemon and command settings: flags, then ``SYNCD_*``, then a TOML file, then defaults."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from syncd.settings_errors import (
    ENV_PREFIX,
    nearest,
    setting_problem,
    unknown_variables,
    value_source,
)

__all__ = [
    "LOCAL_STATE_DIR",
    "Settings",
    "SettingsError",
    "load_settings",
    "unknown_environment",
]

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
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

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

    @field_validator("*", mode="before")
    @classmethod
    def _plain_values(cls, value: Any, info: ValidationInfo) -> Any:
        """No empty path (it would be the working directory); no boolean as a number."""
        kinds = _kinds(cls.model_fields[info.field_name or ""].annotation)
        if Path in kinds and value == "":
            raise PydanticCustomError("path_empty", "must not be empty: name a path")
        if isinstance(value, bool) and kinds & {int, float}:
            raise PydanticCustomError("number_bool", "must be a number, not true or false")
        return value

    @field_validator("cluster_endpoints")
    @classmethod
    def _endpoints_shape(cls, value: str | None) -> str | None:
        """Checked here, so the error names the flag, variable or file that holds it."""
        if value is None or not value.strip():  # blank: standalone, as unset
            return value
        from syncd.cluster_endpoints import parse_endpoints

        try:
            parse_endpoints(value)
        except ValueError as exc:
            message = str(exc).removeprefix("cluster_endpoints: ")
            raise PydanticCustomError("endpoints", message) from None  # no context: as written
        return value

    @field_validator("metrics_address")
    @classmethod
    def _address_shape(cls, value: str | None) -> str | None:
        """HOST:PORT, checked here so the error names the flag, variable or file."""
        if not value:
            return value
        host, colon, port = value.rpartition(":")
        if not colon or not port.isascii() or not port.isdigit():
            raise PydanticCustomError("address", "must be HOST:PORT, for example 127.0.0.1:9477")
        if not 1 <= int(port) <= 65535:
            raise PydanticCustomError("address", "the port must be 1-65535")
        if host.startswith("[") != host.endswith("]"):
            raise PydanticCustomError("address", "an IPv6 address goes in brackets: [::1]:9477")
        return value

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


def _kinds(annotation: Any) -> set[Any]:
    """The types a setting's annotation allows (``Path | None``: Path and None)."""
    return {annotation, *getattr(annotation, "__args__", ())}


def load_settings(config: Path | str | None = None, **overrides: Any) -> Settings:
    """Build settings; ``overrides`` are command-line flags (None means not given).

    Raises :class:`SettingsError` with one sentence naming the setting and, when
    it can be known, the flag, variable or file that holds the bad value.
    """
    toml_file = _config_file(config)
    flags = {k: v for k, v in overrides.items() if v is not None}
    source_cls = type("FileSettings", (Settings,), {"_toml_file": toml_file})
    try:
        settings: Settings = source_cls(**flags)
    except ValidationError as exc:
        raise SettingsError(_bad_setting(exc.errors()[0], flags, toml_file)) from None
    except ValueError as exc:  # e.g. TOML syntax
        raise SettingsError(f"cannot read config file {toml_file}: {exc}") from None
    except OSError as exc:  # e.g. not readable by the daemon's user
        raise SettingsError(f"cannot read config file {toml_file}: {exc.strerror or exc}") from None
    return Settings.model_construct(**settings.model_dump())


def unknown_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Each ``SYNCD_*`` environment variable that names no setting, and a warning sentence."""
    return unknown_variables(os.environ if environ is None else environ, Settings.model_fields)


def _config_file(config: Path | str | None) -> Path | None:
    """The TOML file to read: ``--config``, else the default one when it is there."""
    if config is None:
        return DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None
    if str(config) == "":
        raise SettingsError("--config is empty: name a TOML settings file")
    path = Path(config)
    if path.is_dir():
        raise SettingsError(f"config file {path} is a directory, not a file")
    if not path.is_file():
        raise SettingsError(f"config file {path} does not exist")
    return path


def _bad_setting(err: Mapping[str, Any], flags: Mapping[str, Any], toml_file: Path | None) -> str:
    """One of pydantic's errors as our sentence: the setting, its source, what is wrong."""
    name = ".".join(str(p) for p in err["loc"]) or "settings"
    field = Settings.model_fields.get(name)
    if field is None:  # an unknown key: only the TOML file can hold one
        close = nearest(name, Settings.model_fields)
        hint = f"; did you mean {close}?" if close else ""
        return f"unknown setting {name} in config file {toml_file}{hint}"
    source = value_source(
        name, flags=flags, environ=os.environ, toml_file=str(toml_file) if toml_file else None
    )
    return f"bad setting {name} ({source}): {setting_problem(err, field.annotation)}"
