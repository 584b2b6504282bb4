"""Settings: one table of (name, type, default, help), read from ``GRAMLOGS_*`` variables.

CLI flags override the environment; a bad value fails at start-up naming the variable.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A setting that does not parse; the message names the variable and the value."""


@dataclasses.dataclass(frozen=True)
class Setting:
    name: str
    type: type
    default: Any
    help: str

    @property
    def env(self) -> str:
        return "GRAMLOGS_" + self.name.upper()


SETTINGS: tuple[Setting, ...] = (
    Setting("database_url", str, None, "PostgreSQL URL; unset: an embedded server in data_dir"),
    Setting("data_dir", Path, Path(".gramlogs"), "where the embedded PostgreSQL keeps its data"),
    Setting("host", str, "127.0.0.1", "address to listen on"),
    Setting("port", int, 8080, "port to listen on"),
    Setting("workers", int, 1, "server processes"),
    Setting("pool_min", int, 2, "connections each worker opens at start-up"),
    Setting("pool_max", int, 10, "most connections each worker holds"),
    Setting("statement_timeout_ms", int, 5000, "time limit of every query, in milliseconds"),
    Setting("acquire_timeout_ms", int, 2000, "longest wait for a pooled connection before a 503"),
    Setting("log_level", str, "info", "debug, info, warning or error"),
    # -- operation (README, "Running it in production") --
    Setting("access_log", bool, True, "one JSON line per request on stdout"),
    Setting("rate_limit", float, 0.0, "requests per second per API key and worker; 0 is off"),
    Setting("rate_limit_burst", int, 0, "requests a key may make at once; 0: twice the rate"),
    Setting("max_url_bytes", int, 8192, "longest request target (path and query); else 414"),
    Setting("max_header_bytes", int, 16384, "most bytes of request headers; else 431"),
    Setting("header_timeout_s", float, 10.0, "time a client has to send a request's headers"),
    Setting("body_timeout_s", float, 60.0, "time a client has to send a request's body"),
    Setting("keep_alive_s", int, 5, "how long an idle keep-alive connection stays open"),
    Setting("shutdown_timeout_s", int, 15, "on SIGTERM, how long in-flight requests may finish"),
    Setting(
        "max_body_bytes",
        int,
        8 * 1024 * 1024,
        "largest write request body, in bytes, before and after decompression (413 above)",
    ),
    Setting(
        "read_database_url",
        str,
        None,
        "a streaming replica for the read (GET) paths; unset: the primary",
    ),
    Setting(
        "retention_days", int, 30, "days a log line is kept, unless its project says otherwise"
    ),
    Setting(
        "retention_interval_s", int, 0, "seconds between retention runs in the server; 0: never"
    ),
    Setting("partition_days", int, 1, "days per logs partition (1: daily, 7: weekly)"),
    Setting("partitions_ahead_days", int, 7, "how far ahead of now partitions are created"),
)


@dataclasses.dataclass(frozen=True)
class Config:
    database_url: str | None = None
    data_dir: Path = Path(".gramlogs")
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    pool_min: int = 2
    pool_max: int = 10
    statement_timeout_ms: int = 5000
    acquire_timeout_ms: int = 2000
    log_level: str = "info"
    access_log: bool = True
    rate_limit: float = 0.0
    rate_limit_burst: int = 0
    max_url_bytes: int = 8192
    max_header_bytes: int = 16384
    header_timeout_s: float = 10.0
    body_timeout_s: float = 60.0
    keep_alive_s: int = 5
    shutdown_timeout_s: int = 15
    max_body_bytes: int = 8 * 1024 * 1024
    read_database_url: str | None = None
    retention_days: int = 30
    retention_interval_s: int = 0
    partition_days: int = 1
    partitions_ahead_days: int = 7

    @classmethod
    def load(
        cls, environ: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
    ) -> Config:
        """Defaults, then ``GRAMLOGS_*`` variables, then non-None ``overrides`` (CLI flags)."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for setting in SETTINGS:
            raw = environ.get(setting.env)
            if raw is not None and raw != "":
                values[setting.name] = _convert(setting, raw)
        for name, value in (overrides or {}).items():
            if value is not None:
                values[name] = value
        config = cls(**values)
        config._check()
        return config

    def _check(self) -> None:
        positive = (
            "workers",
            "pool_max",
            "statement_timeout_ms",
            "acquire_timeout_ms",
            "max_url_bytes",
            "max_header_bytes",
            "keep_alive_s",
            "max_body_bytes",
            "retention_days",
            "partition_days",
        )
        at_least_zero = (
            "port",
            "pool_min",
            "rate_limit",
            "rate_limit_burst",
            "shutdown_timeout_s",
            "retention_interval_s",
            "partitions_ahead_days",
        )
        for name in positive + at_least_zero:
            value, minimum = getattr(self, name), 0 if name in at_least_zero else 1
            if value < minimum:
                raise ConfigError(
                    f"GRAMLOGS_{name.upper()} must be at least {minimum}, got {value}"
                )
        for name in ("header_timeout_s", "body_timeout_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(
                    f"GRAMLOGS_{name.upper()} must be more than 0, got {getattr(self, name)}"
                )
        if self.pool_min > self.pool_max:
            raise ConfigError("GRAMLOGS_POOL_MIN must not exceed GRAMLOGS_POOL_MAX")
        if self.log_level not in ("debug", "info", "warning", "error"):
            raise ConfigError(
                f"GRAMLOGS_LOG_LEVEL must be debug, info, warning or error, got {self.log_level!r}"
            )


_BOOLEANS = {"1": True, "true": True, "yes": True, "on": True}
_BOOLEANS |= {"0": False, "false": False, "no": False, "off": False}


def _convert(setting: Setting, raw: str) -> Any:
    if setting.type is bool:
        try:
            return _BOOLEANS[raw.strip().lower()]
        except KeyError:
            raise ConfigError(f"{setting.env}={raw!r} is not a boolean (1/0, true/false)") from None
    try:
        return setting.type(raw)
    except ValueError:
        raise ConfigError(f"{setting.env}={raw!r} is not a valid {setting.type.__name__}") from None
