"""Seeded, cached datasets of log lines for the benchmarks, and databases made for one run (one
of them on a PostgreSQL of its own that counts its statements).

A dataset lives in a database of its own (``bench_<rows>_<projects>_...``) on the embedded
PostgreSQL under ``benchmarks/.cache`` (or the server in ``GRAMLOGS_BENCH_DATABASE_URL``) and is
reused by later runs: a ``bench_meta`` row records that seeding finished, with the keys and the
time span.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from gramlogs.core.keys import KeyScope
from gramlogs.local.seed import ProgressBar, SeedPlan, seed_logs
from gramlogs.storage import citus, partitions, schema, tenants
from testkit.postgres import OwnPostgres, execute_on, own_postgres, with_database

__all__ = [
    "CACHE",
    "Dataset",
    "DatasetSpec",
    "counting_database",
    "dataset",
    "fresh_database",
    "seed_dataset",
    "server_url",
]

CACHE = Path(__file__).resolve().parent.parent / "benchmarks" / ".cache"


@dataclass(frozen=True)
class DatasetSpec:
    rows: int
    projects: int
    hot_share: float = 0.0  # share of all rows in project 0; the rest spread evenly
    days: float = 30.0
    seed: int = 0
    version: int = 1  # bump when seeding changes, so old caches are not reused
    partition_days: int = 7  # width of the logs partitions (GRAMLOGS_PARTITION_DAYS)

    @property
    def name(self) -> str:
        hot = f"_hot{round(self.hot_share * 100)}" if self.hot_share else ""
        days = f"{round(self.days)}d"
        width = f"_w{self.partition_days}" if self.partition_days != 1 else ""
        name = f"bench_{self.rows}_{self.projects}{hot}_{days}_s{self.seed}_v{self.version}"
        return name + width

    def rows_of(self, index: int) -> int:
        if self.projects == 1:
            return self.rows
        hot = round(self.rows * self.hot_share)
        rest, extra = divmod(self.rows - hot, self.projects - (1 if self.hot_share else 0))
        if self.hot_share and index == 0:
            return hot
        position = index - (1 if self.hot_share else 0)
        return rest + (1 if position < extra else 0)


@dataclass(frozen=True)
class Dataset:
    spec: DatasetSpec
    url: str
    end: datetime  # newest row's time
    slugs: list[str]
    key: str  # a consumer key of the organization (reads every project)

    @property
    def hot_slug(self) -> str:
        return self.slugs[0]


def server_url() -> str:
    """A PostgreSQL server to keep benchmark databases in: the configured one or the embedded
    one under benchmarks/.cache (started now, stopped when this process exits)."""
    configured = os.environ.get("GRAMLOGS_BENCH_DATABASE_URL")
    if configured:
        return configured
    from gramlogs.local.embedded import embedded_url

    return with_database(embedded_url(CACHE), "postgres")


@contextlib.asynccontextmanager
async def fresh_database(
    server: str, prefix: str, *, keep: bool = False
) -> AsyncIterator[tuple[str, str]]:
    """The URL and name of a new database on ``server``, dropped on the way out unless ``keep``."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(server)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
        yield with_database(server, name), name
    finally:
        if not keep:
            await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


async def dataset(spec: DatasetSpec, *, fresh: bool = False) -> Dataset:
    """The seeded database of ``spec``, seeding it first unless a finished one is cached."""
    admin = await asyncpg.connect(server_url())
    try:
        url = with_database(server_url(), spec.name)
        exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", spec.name)
        if exists and not fresh:
            found = await _finished(url)
            if found is not None:
                return found
        await admin.execute(f"DROP DATABASE IF EXISTS {spec.name} WITH (FORCE)")
        await admin.execute(f"CREATE DATABASE {spec.name}")
    finally:
        await admin.close()
    return await seed_dataset(spec, url)


async def _finished(url: str) -> Dataset | None:
    conn = await asyncpg.connect(url)
    try:
        if not await conn.fetchval("SELECT to_regclass('bench_meta') IS NOT NULL"):
            return None
        meta = json.loads(await conn.fetchval("SELECT meta FROM bench_meta"))
    finally:
        await conn.close()
    return Dataset(
        spec=DatasetSpec(**meta["spec"]),
        url=url,
        end=datetime.fromisoformat(meta["end"]),
        slugs=meta["slugs"],
        key=meta["key"],
    )


def _offset(progress: ProgressBar, before: int, total: int) -> Callable[[int, int], None]:
    """A project's seeding progress as a share of the whole dataset's."""
    return lambda done, _of: progress(before + done, total)


async def seed_dataset(spec: DatasetSpec, url: str, *, distribute: bool = False) -> Dataset:
    """Seed ``spec`` into the empty database ``url``; with ``distribute``, a Citus
    coordinator's, its tables distributed first (the rows then go straight to the shards)."""
    end = datetime.now(UTC).replace(microsecond=0)
    conn = await asyncpg.connect(url)
    try:
        await schema.migrate(conn)
        if distribute:
            await citus.distribute(conn)
        # Partitions over the data's whole span before the load, as a live server has them.
        await partitions.ensure(
            conn,
            default_retention_days=max(30, int(spec.days) + 1),
            ahead_days=7,
            width_days=spec.partition_days,
            now=end,
        )
        org = await tenants.create_organization(conn, "bench")
        key = await tenants.create_key(conn, org, KeyScope.CONSUMER, name="bench")
        slugs = []
        progress = ProgressBar(f"rows into {spec.name}")
        done = 0
        for i in range(spec.projects):
            slug = f"p{i:03d}"
            project = await tenants.create_project(conn, org, slug)
            rows = spec.rows_of(i)
            plan = SeedPlan(project, rows=rows, end=end, days=spec.days, seed=spec.seed * 1000 + i)
            await seed_logs(conn, plan, progress=_offset(progress, done, spec.rows))
            done += rows
            slugs.append(slug)
        print(f"{spec.name}: VACUUM ANALYZE", file=sys.stderr, flush=True)
        await conn.execute("VACUUM (ANALYZE) logs")
        meta = {"spec": asdict(spec), "end": end.isoformat(), "slugs": slugs, "key": key.key}
        await conn.execute("CREATE TABLE bench_meta (meta text NOT NULL)")
        await conn.execute("INSERT INTO bench_meta VALUES ($1)", json.dumps(meta))
    finally:
        await conn.close()
    return Dataset(spec=spec, url=url, end=end, slugs=slugs, key=key.key)


@contextlib.asynccontextmanager
async def counting_database(server_url: str | None) -> AsyncIterator[tuple[str, str, bool]]:
    """A fresh database on ``server_url``, by default on an embedded PostgreSQL of its own
    started with pg_stat_statements: (its URL, its name, whether pg_stat_statements counts in
    it)."""
    with contextlib.ExitStack() as stack:
        if server_url:
            server = server_url
        else:
            pg = stack.enter_context(own_postgres("gramlogs-tailbench-"))
            await asyncio.to_thread(_preload_statements, pg)
            server = pg.url
        name = f"tailbench_{secrets.token_hex(4)}"
        await execute_on(server, f"CREATE DATABASE {name}")
        try:
            url = with_database(server, name)
            conn = await asyncpg.connect(url)
            try:
                loaded = await conn.fetchval(
                    "SELECT setting LIKE '%pg_stat_statements%' FROM pg_settings"
                    " WHERE name = 'shared_preload_libraries'"
                )
                if loaded:
                    await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            finally:
                await conn.close()
            yield url, name, bool(loaded)
        finally:
            await execute_on(server, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _preload_statements(pg: OwnPostgres) -> None:
    """Restart the benchmark's own PostgreSQL with pg_stat_statements loaded."""
    pg.server.psql("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements';")
    pg.stop()
    pg.start()
