"""Retention: whole partitions dropped, precise deletes only for shorter-lived projects, and
paging that carries on across the cut."""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from gramlogs.core import ids
from gramlogs.core.config import Config
from gramlogs.core.keys import KeyScope
from gramlogs.local.seed import SeedPlan, seed_logs
from gramlogs.storage import maintenance, partitions, tenants
from gramlogs.storage.retention import apply_retention
from gramlogs.web.app import create_app

NOW = datetime(2030, 3, 15, 12, 0, tzinfo=UTC)
# For the runs on the wall clock (the CLI, the server's own upkeep): long expired whatever the
# date, and always in logs_past, below the partitions the fixture makes around NOW. A time
# relative to the wall clock would cross into those partitions and then into logs_future (late
# 2030), which the CLI's retention never touches.
LONG_AGO = datetime(2025, 1, 1, tzinfo=UTC)
URL = "/rpc/logs.listToolExecutionLogs"


@pytest.fixture
async def conn(fresh_database: str) -> AsyncIterator[asyncpg.Connection]:
    c = await asyncpg.connect(fresh_database)
    await partitions.ensure(c, default_retention_days=30, ahead_days=7, width_days=1, now=NOW)
    try:
        yield c
    finally:
        await c.close()


async def _project(conn: asyncpg.Connection, slug: str, days: int | None = None) -> uuid.UUID:
    org = await tenants.create_organization(conn, f"org-{slug}")
    project = await tenants.create_project(conn, org, slug)
    await tenants.set_retention(conn, project, days)
    return project


async def _seed(conn: asyncpg.Connection, project: uuid.UUID, days: float, rows: int) -> None:
    await seed_logs(conn, SeedPlan(project, rows=rows, end=NOW, days=days, seed=7))


async def _oldest(conn: asyncpg.Connection, project: uuid.UUID) -> datetime:
    return await conn.fetchval("SELECT min(timestamp) FROM logs WHERE project_id = $1", project)


async def _count(conn: asyncpg.Connection, project: uuid.UUID) -> int:
    """The project's lines, rows and sealed (a server's upkeep may have sealed them)."""
    return await conn.fetchval(
        "SELECT (SELECT count(*) FROM logs WHERE project_id = $1)"
        " + (SELECT coalesce(sum(lines), 0) FROM log_sealed WHERE project_id = $1)",
        project,
    )


async def test_expired_partitions_are_dropped_whole(conn):
    project = await _project(conn, "keep30")
    await _seed(conn, project, days=29, rows=2900)
    later = NOW + timedelta(days=5, hours=3)  # 30 days back is 2030-02-18 15:00
    await partitions.ensure(conn, default_retention_days=30, ahead_days=7, width_days=1, now=later)
    report = await apply_retention(conn, default_days=30, now=later)
    assert report.dropped == [f"logs_p203002{d}" for d in range(13, 18)]
    parts = await partitions.layout(conn)
    assert parts[0].name == "logs_past"
    assert parts[0].end_day == parts[1].first_day == datetime(2030, 2, 18).date()
    # The partition of 2030-02-18 stays; its lines before 15:00 are deleted one by one.
    assert 0 < report.deleted_rows <= 100
    assert await _oldest(conn, project) >= later - timedelta(days=30)


async def test_shorter_project_retention_deletes_exactly_its_expired_lines(conn):
    short = await _project(conn, "short", days=7)
    default = await _project(conn, "default")
    await _seed(conn, short, days=20, rows=4000)
    await _seed(conn, default, days=20, rows=4000)
    before = await _count(conn, default)
    report = await apply_retention(conn, default_days=30, now=NOW, batch_rows=250)
    assert report.dropped == []
    cutoff = NOW - timedelta(days=7)
    assert await _oldest(conn, short) >= cutoff
    expected = 4000 - report.deleted_rows
    assert await _count(conn, short) == expected
    assert (
        await conn.fetchval(
            "SELECT count(*) FROM logs WHERE project_id = $1 AND timestamp >= $2", short, cutoff
        )
        == expected
    )
    assert report.deleted_rows > 2000
    assert await _count(conn, default) == before


async def test_longest_project_retention_keeps_partitions_for_it(conn):
    long = await _project(conn, "long", days=60)
    default = await _project(conn, "default")
    await partitions.ensure(conn, default_retention_days=30, ahead_days=7, width_days=1, now=NOW)
    await _seed(conn, long, days=50, rows=500)
    await _seed(conn, default, days=50, rows=500)
    report = await apply_retention(conn, default_days=30, now=NOW)
    assert report.keep_days == 60
    assert report.dropped == []
    assert await _oldest(conn, long) < NOW - timedelta(days=49)
    assert await _oldest(conn, default) >= NOW - timedelta(days=30)


async def test_paging_carries_on_across_a_retention_cut(conn, fresh_database):
    project = await _project(conn, "paging", days=10)
    org = await conn.fetchval("SELECT organization_id FROM projects WHERE id = $1", project)
    key = await tenants.create_key(conn, org, KeyScope.CONSUMER)
    await _seed(conn, project, days=20, rows=400)
    headers = {"Gram-Key": key.key, "Gram-Project": "paging"}
    app = create_app(Config(database_url=fresh_database, pool_min=1, pool_max=2))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            params = {"sort": "asc", "per_page": "50"}
            r = await client.get(URL, params=params, headers=headers)
            assert r.status_code == 200, r.text
            first = r.json()
            cursor = first["pagination"]["next_page_cursor"]
            assert ids.timestamp_of(uuid.UUID(cursor)) < NOW - timedelta(days=10)
            # The cursor's row goes. (The server's own maintenance may hold the lock a moment.)
            deadline = time.monotonic() + 60
            while (await apply_retention(conn, default_days=30, now=NOW)).skipped:
                assert time.monotonic() < deadline, "the maintenance lock stayed taken for 60 s"
                await asyncio.sleep(0.05)
            seen = []
            while cursor:
                r = await client.get(URL, params=params | {"cursor": cursor}, headers=headers)
                assert r.status_code == 200
                body = r.json()
                seen += [log["id"] for log in body["logs"]]
                cursor = body["pagination"].get("next_page_cursor")
    survivors = await conn.fetch("SELECT id FROM logs WHERE project_id = $1 ORDER BY id", project)
    assert seen == [str(r["id"]) for r in survivors]
    assert len(seen) > 150


async def test_cli_retention_runs_once(conn, fresh_database):
    project = await _project(conn, "cli")
    await seed_logs(conn, SeedPlan(project, rows=100, end=LONG_AGO, days=5))
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "gramlogs", "retention", "--json"),
        *("--database-url", fresh_database),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0
    report = json.loads(out)
    assert report["keep_days"] == 30 and report["skipped"] is False
    assert await _count(conn, project) == 0


async def test_server_runs_retention_when_enabled(conn, fresh_database):
    project = await _project(conn, "server")
    await seed_logs(conn, SeedPlan(project, rows=100, end=LONG_AGO, days=5))
    config = Config(database_url=fresh_database, pool_min=1, pool_max=2, retention_interval_s=3600)
    app = create_app(config)
    async with app.router.lifespan_context(app):
        # The first run starts with the server, in the background.
        deadline = time.monotonic() + 60
        while await _count(conn, project) != 0:
            assert time.monotonic() < deadline, "no retention run within 60 s"
            await asyncio.sleep(0.1)
    assert await _count(conn, project) == 0


async def test_server_leaves_lines_alone_when_retention_is_off(conn, fresh_database, monkeypatch):
    project = await _project(conn, "off")
    await seed_logs(conn, SeedPlan(project, rows=100, end=LONG_AGO, days=5))
    # Retention, when on, runs in the server's first upkeep pass: wait for the second pass to
    # begin (a second apart, not an hour) rather than for a guessed while.
    ensure_partitions = maintenance.ensure_partitions
    passes: list[None] = []
    second_pass = asyncio.Event()

    async def counted(c: asyncpg.Connection, config: Config) -> list[str]:
        passes.append(None)
        if len(passes) == 2:
            second_pass.set()
        return await ensure_partitions(c, config)

    monkeypatch.setattr(maintenance, "ensure_partitions", counted)
    monkeypatch.setattr(maintenance, "PARTITION_CHECK_S", 0.0)
    app = create_app(Config(database_url=fresh_database, pool_min=1, pool_max=2))
    async with app.router.lifespan_context(app):
        await asyncio.wait_for(second_pass.wait(), 60)
    assert await _count(conn, project) == 100
