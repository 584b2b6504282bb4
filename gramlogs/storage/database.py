"""The PostgreSQL boundary: the connection pool and error translation.

asyncpg errors are translated here, once, by class; nothing above this module sees them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from typing import cast

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from gramlogs.core import metrics
from gramlogs.core.config import Config
from gramlogs.core.errors import BadRequest, Unavailable
from gramlogs.storage import citus, pages, routing

__all__ = ["Connection", "Database", "translate_errors"]

# What a handler holds and passes to storage's reads: the web layer names it through here, as
# it never imports the driver itself (pyproject's import contracts).
Connection = asyncpg.Connection

logger = logging.getLogger("gramlogs.database")

_UNAVAILABLE = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    # A connection the server terminated (restart, pg_terminate_backend) can be left in an
    # inconsistent protocol state that surfaces as this on its next use (asyncpg#1069, #784).
    asyncpg.InternalClientError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    ConnectionError,
    OSError,
)


@contextlib.contextmanager
def translate_errors() -> Iterator[None]:
    """Turn asyncpg's failures into the errors the HTTP layer knows."""
    try:
        yield
    except (asyncpg.QueryCanceledError, TimeoutError) as exc:
        # QueryCanceledError: the server's statement_timeout; TimeoutError: the client-side
        # command_timeout that backs it up when the network, not the query, hangs.
        metrics.db_failure("timeout")
        raise Unavailable("the query took too long; try a narrower request", timeout=True) from exc
    except asyncpg.TransactionRollbackError as exc:
        # A deadlock or serialization failure between concurrent writes, or on a hot standby
        # "canceling statement due to conflict with recovery" (40001): nothing was done and the
        # same request may succeed when retried.
        raise Unavailable("the query conflicted with concurrent work; retry") from exc
    except (asyncpg.DataError, asyncpg.CharacterNotInRepertoireError) as exc:
        # Invalid text (a NUL byte) or a value PostgreSQL refuses: the client's input. The
        # parameter parsers refuse these first, so that the message can name the parameter.
        raise BadRequest("a value in the request cannot be stored or compared") from exc
    except _UNAVAILABLE as exc:
        metrics.db_failure("unavailable")
        raise Unavailable("the database is unavailable; retry shortly") from exc


class Database:
    """Pools opened at start-up; ``connection()`` hands out a primary connection with a time
    limit, ``read_connection()`` one for reads that may lag (the replica's, when configured).
    """

    def __init__(
        self, pool: asyncpg.Pool, acquire_timeout: float, read_pool: asyncpg.Pool | None = None
    ) -> None:
        self.pool = pool
        self.read_pool = read_pool
        self._acquire_timeout = acquire_timeout

    @classmethod
    async def open(cls, url: str, config: Config) -> Database:
        pool = await _create_pool(url, config)
        read_pool = None
        if config.read_database_url:
            try:
                read_pool = await _create_pool(config.read_database_url, config)
            except BaseException:
                await pool.close()
                raise
        metrics.pool_opened(config.pool_max)
        return cls(pool, config.acquire_timeout_ms / 1000, read_pool)

    async def ping(self) -> None:
        """One round trip to the primary (readiness); a 503 when it does not answer in time."""
        async with self.connection() as conn:
            await conn.fetchval("SELECT 1")

    async def close(self) -> None:
        for pool in (self.pool, self.read_pool):
            if pool is not None:
                await asyncio.wait_for(pool.close(), timeout=10)

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection; every failure of the database comes out as a GramlogsError.

        The pool is bounded (``pool_max``) and a request waits at most ``acquire_timeout_ms`` for
        a connection (or for a new one to connect), then gets a 503: a flood or a slow database
        queues no unbounded work. Every statement runs under ``statement_timeout_ms``.
        """
        async with self._acquire(self.pool) as conn:
            yield conn

    @contextlib.asynccontextmanager
    async def read_connection(
        self, primary: asyncpg.Connection | None = None
    ) -> AsyncIterator[asyncpg.Connection]:
        """A connection for queries that may see the data a replication delay late.

        With a replica configured, one of its connections; without, ``primary`` when the caller
        already holds one (no second acquire), else a primary connection.
        """
        if self.read_pool is None and primary is not None:
            yield primary
            return
        async with self._acquire(self.read_pool or self.pool) as conn:
            yield conn

    @contextlib.asynccontextmanager
    async def _acquire(self, pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
        with translate_errors():
            try:
                proxy = await pool.acquire(timeout=self._acquire_timeout)
            except TimeoutError as exc:
                metrics.db_failure("busy")
                raise Unavailable(
                    "the server is busy or the database is slow; retry shortly"
                ) from exc
            metrics.connection_acquired(self.pool.get_size())
            # The pool lends a proxy that forwards every public Connection method to the pooled
            # connection; asyncpg-stubs do not relate the two types, so say what it stands for.
            conn = cast(asyncpg.Connection, proxy)
            try:
                yield conn
            except asyncpg.InternalClientError:
                conn.terminate()  # never lend it again (see _UNAVAILABLE)
                raise
            finally:
                await self._release(pool, proxy)

    async def _release(self, pool: asyncpg.Pool, conn: PoolConnectionProxy) -> None:
        # The request's work is done; a connection that cannot be reset (the server went away
        # after the last query) is terminated by asyncpg and must not turn a good answer into
        # an error.
        try:
            await pool.release(conn)
        except Exception as exc:
            logger.warning("dropped a connection that could not be reset: %r", exc)
        finally:
            metrics.connection_released(self.pool.get_size())


async def _create_pool(url: str, config: Config) -> asyncpg.Pool:
    return await asyncpg.create_pool(
        url,
        min_size=config.pool_min,
        max_size=config.pool_max,
        server_settings={
            "application_name": "gramlogs",
            "statement_timeout": str(config.statement_timeout_ms),
            # How page statements are planned: generic plans without sorts (pages.py says why).
            **pages.PLAN_SETTINGS,
        },
        # The client-side limit backs up the server's statement_timeout when the network,
        # not the query, is what hangs.
        command_timeout=config.statement_timeout_ms / 1000 + 1,
        max_inactive_connection_lifetime=300,
        # Connecting is part of acquiring (after an outage every connection is new), so it
        # gets the acquire limit: a database that does not answer is a fast 503, not a hang.
        timeout=max(config.acquire_timeout_ms / 1000, 0.5),
        reset=_keep_session,
        # On a Citus coordinator, each new connection takes Citus's plan settings, and pages
        # call a function there (citus.py, routing.py).
        init=citus.prepare_connection,
        connection_class=routing.RoutedConnection,
    )


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Release without asyncpg's reset query ("SELECT pg_advisory_unlock_all(); CLOSE ALL;
    UNLISTEN *; RESET ALL"), a round trip on every request (~9% of a worker's time under load,
    benchmarks/RESULTS.md). Our statements leave no session state behind: no session SET,
    LISTEN, held cursor or session advisory lock; asyncpg still rolls back an open transaction.
    """
