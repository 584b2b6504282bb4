"""Settings: one table of (name, type, default, help), read from ``GRAMLOGS_*`` variables.

CLI flags override the environment; a bad value fails at start-up naming the variable.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gramlogs.core.ids import MAX_RANK

__all__ = [
    "SETTINGS",
    "Config",
    "ConfigError",
    "Setting",
    "settings_environment",
    "settings_table",
]


class ConfigError(ValueError):
    """A setting that does not parse; the message names the variable and the value."""


@dataclasses.dataclass(frozen=True)
class Setting:
    name: str
    type: type
    default: Any
    help: str
    minimum: float | None = None  # inclusive; header/body timeouts must be above 0 instead

    @property
    def env(self) -> str:
        return "GRAMLOGS_" + self.name.upper()


def _setting(default: Any, help: str, *, minimum: float | None = None) -> Any:
    return dataclasses.field(default=default, metadata={"help": help, "minimum": minimum})


@dataclasses.dataclass(frozen=True)
class Config:
    """Every setting, its default, its help and its lower bound: the one table (``SETTINGS``)."""

    database_url: str | None = _setting(
        None, "PostgreSQL URL; unset: an embedded server in data_dir"
    )
    # _setting returns a dataclasses.field, as ruff cannot see; the Path is immutable.
    data_dir: Path = _setting(Path(".gramlogs"), "where the embedded PostgreSQL keeps its data")  # noqa: RUF009
    host: str = _setting("127.0.0.1", "address to listen on")
    port: int = _setting(8080, "port to listen on", minimum=0)
    workers: int = _setting(1, "server processes", minimum=1)
    pool_min: int = _setting(2, "connections each worker opens at start-up", minimum=0)
    pool_max: int = _setting(10, "most connections each worker holds", minimum=1)
    statement_timeout_ms: int = _setting(
        5000, "time limit of every query, in milliseconds", minimum=1
    )
    acquire_timeout_ms: int = _setting(
        2000, "longest wait for a pooled connection before a 503", minimum=1
    )
    log_level: str = _setting("info", "debug, info, warning or error")
    # -- operation (docs/operations.md) --
    access_log: bool = _setting(True, "one JSON line per request on stdout")
    rate_limit: float = _setting(
        0.0, "requests per second per API key and worker; 0 is off", minimum=0
    )
    rate_limit_burst: int = _setting(
        0, "requests a key may make at once; 0: twice the rate", minimum=0
    )
    auth_failures_per_minute: int = _setting(
        30,
        "failed authentications (401s to a request with a key) per client address and worker;"
        " past them, requests with a key get 429 until a minute's share refills; 0 is off",
        minimum=0,
    )
    expensive_reads_per_key: int = _setting(
        4,
        "expensive reads (exports, histograms, keyword searches) one API key may run at once,"
        " per worker; more: 429",
        minimum=1,
    )
    key_cache_s: float = _setting(
        1.0,
        "seconds a worker may reuse a key's successful lookup (one round trip less a request);"
        " a revoked key is refused by every worker within this; 0: look it up every request",
        minimum=0,
    )
    stream_key_check_s: float = _setting(
        5.0,
        "seconds between checks that an open live tail's or export's key is still valid;"
        " a revoked key ends the stream",
        minimum=0.01,
    )
    max_url_bytes: int = _setting(
        8192, "longest request target (path and query); else 414", minimum=1
    )
    max_header_bytes: int = _setting(16384, "most bytes of request headers; else 431", minimum=1)
    header_timeout_s: float = _setting(10.0, "time a client has to send a request's headers")
    body_timeout_s: float = _setting(60.0, "time a client has to send a request's body")
    keep_alive_s: int = _setting(5, "how long an idle keep-alive connection stays open", minimum=1)
    shutdown_timeout_s: int = _setting(
        15, "on SIGTERM, how long in-flight requests may finish", minimum=0
    )
    # -- ingestion --
    max_body_bytes: int = _setting(
        8 * 1024 * 1024,
        "largest write request body, in bytes, before and after decompression (413 above)",
        minimum=1,
    )
    max_batch_entries: int = _setting(
        10_000,
        "most entries (logs.ingest) or log records (OTLP) in one write request, counted while"
        " the body is parsed; more: 413",
        minimum=1,
    )
    max_body_bytes_in_flight: int = _setting(
        64 * 1024 * 1024,
        "most decompressed body bytes this process's write requests may hold at once while they"
        " are read and decoded; past it a write is refused with 503 and Retry-After: 1",
        minimum=1,
    )
    idempotency_hours: int = _setting(
        24,
        "hours a write's Idempotency-Key is remembered: a resend within them is answered from"
        " the record and stores nothing",
        minimum=1,
    )
    # -- live tail (docs/tail.md) --
    tail_max_per_key: int = _setting(
        10, "live tails one API key may hold open at once, per worker; more: 429", minimum=1
    )
    tail_max_s: float = _setting(
        3600.0,
        "seconds a live tail stays open at most; then it ends with its resume token",
        minimum=0.01,
    )
    tail_resume_hours: int = _setting(
        24, "hours a live tail can be resumed after (how long the tail journal is kept)", minimum=1
    )
    tail_poll_ms: int = _setting(
        100, "how often a worker reads new lines for the projects it is tailing", minimum=1
    )
    tail_heartbeat_s: float = _setting(
        15.0, "seconds between comments on an idle tail, so proxies keep it open", minimum=0.01
    )
    tail_buffer_lines: int = _setting(
        10000,
        "lines held for a tail whose client reads slowly; more: its stream ends with its"
        " resume token and the client catches up from the store",
        minimum=1,
    )
    # -- export (docs/gram-api.md) --
    export_max_lines: int = _setting(
        100000, "most lines one GET /rpc/logs.export may ask for (its limit parameter)", minimum=1
    )
    # -- storage at scale --
    local_citus_workers: int = _setting(
        0,
        "with no database_url: a local Citus cluster of a coordinator and this many workers"
        " (Citus built into the embedded PostgreSQL); 0: one embedded PostgreSQL",
        minimum=0,
    )
    read_database_url: str | None = _setting(
        None, "a streaming replica for the read (GET) paths; unset: the primary"
    )
    retention_days: int = _setting(
        30, "days a log line is kept, unless its project says otherwise", minimum=1
    )
    retention_interval_s: int = _setting(
        0, "seconds between retention runs in the server; 0: never", minimum=0
    )
    seal_interval_s: float = _setting(
        1.0,
        "seconds between sealing runs in the server (older lines compressed into blocks,"
        " docs/storage.md); 0: never",
        minimum=0,
    )
    # Weekly: a page's plan starts up every partition its range spans, so fewer partitions make
    # every page cheaper (docs/storage.md, "Few partitions").
    partition_days: int = _setting(7, "days per logs partition (7: weekly, 1: daily)", minimum=1)
    partitions_ahead_days: int = _setting(
        7, "how far ahead of now partitions are created", minimum=0
    )

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
        for setting in SETTINGS:
            value = getattr(self, setting.name)
            if setting.minimum is not None and value < setting.minimum:
                raise ConfigError(f"{setting.env} must be at least {setting.minimum}, got {value}")
        for name in ("header_timeout_s", "body_timeout_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(
                    f"GRAMLOGS_{name.upper()} must be more than 0, got {getattr(self, name)}"
                )
        if self.max_batch_entries > MAX_RANK + 1:
            # Past it, entries stamped alike would run out of ranks (core/ids.py).
            raise ConfigError(
                f"GRAMLOGS_MAX_BATCH_ENTRIES must be at most {MAX_RANK + 1},"
                f" got {self.max_batch_entries}"
            )
        if self.pool_min > self.pool_max:
            raise ConfigError("GRAMLOGS_POOL_MIN must not exceed GRAMLOGS_POOL_MAX")
        if self.log_level not in ("debug", "info", "warning", "error"):
            raise ConfigError(
                f"GRAMLOGS_LOG_LEVEL must be debug, info, warning or error, got {self.log_level!r}"
            )


_TYPES: dict[str, type] = {"str": str, "int": int, "float": float, "bool": bool, "Path": Path}

SETTINGS: tuple[Setting, ...] = tuple(
    Setting(
        name=f.name,
        type=_TYPES[str(f.type).removesuffix(" | None")],
        default=f.default,
        help=f.metadata["help"],
        minimum=f.metadata["minimum"],
    )
    for f in dataclasses.fields(Config)
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


def settings_environment(config: Config) -> dict[str, str]:
    """``config`` as ``GRAMLOGS_*`` variables that :meth:`Config.load` reads back equal."""
    env = {}
    for setting in SETTINGS:
        value = getattr(config, setting.name)
        if value is not None:
            env[setting.env] = ("1" if value else "0") if setting.type is bool else str(value)
    return env


def settings_table() -> str:
    """Every setting as a Markdown table: docs/settings.md is this, and a test keeps it so."""
    lines = ["| variable | default | what it sets |", "|---|---|---|"]
    for setting in SETTINGS:
        default = "unset" if setting.default is None else f"`{setting.default}`"
        lines.append(f"| `{setting.env}` | {default} | {setting.help} |")
    return "\n".join(lines) + "\n"
