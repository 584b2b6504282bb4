"""The database boundary under faults: statement timeout, bounded pool, outage and recovery.

The outage test stops and starts a PostgreSQL of its own (embedded, in a temp dir), never the
server the rest of the suite uses.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime

import asyncpg
import httpx
import pytest

from gramlogs.core.config import Config
from gramlogs.core.errors import Unavailable
from gramlogs.core.keys import KeyScope
from gramlogs.local.seed import SeedPlan, seed_logs
from gramlogs.storage import schema, tenants
from gramlogs.storage.database import Database
from testkit.postgres import OwnPostgres
from testkit.postgres import own_postgres as own_postgres_server
from tests._support import app_client, until, wait_for_lock_waiters

URL = "/rpc/logs.listToolExecutionLogs"


def unavailable(rid: str, message: str, *, timeout: bool = False) -> dict:
    return {
        "name": "unavailable",
        "id": rid,
        "message": message,
        "temporary": True,
        "timeout": timeout,
        "fault": False,
    }


async def test_every_statement_runs_under_the_statement_timeout(database_url):
    db = await Database.open(database_url, Config(pool_min=1, pool_max=1, statement_timeout_ms=200))
    try:
        with pytest.raises(Unavailable) as caught:
            async with db.connection() as conn:
                await conn.fetchval("SELECT pg_sleep(30)")
        assert caught.value.timeout is True
        assert caught.value.headers == {"Retry-After": "1"}
        async with db.connection() as conn:  # the connection is still good
            assert await conn.fetchval("SHOW statement_timeout") == "200ms"
    finally:
        await db.close()


async def test_a_slow_query_is_a_503_timeout(database_url, make_tenant, pool):
    tenant = await make_tenant()
    async with (
        app_client(database_url, statement_timeout_ms=300) as client,
        pool.acquire() as conn,
        conn.transaction(),
    ):
        # A held lock makes the page query wait: statement_timeout counts lock waits too.
        await conn.execute("LOCK TABLE logs IN ACCESS EXCLUSIVE MODE")
        r = await client.get(URL, headers=tenant.headers())
    assert r.status_code == 503
    assert r.headers["retry-after"] == "1"
    message = "the query took too long; try a narrower request"
    assert r.json() == unavailable(r.headers["x-request-id"], message, timeout=True)


async def test_no_connection_in_time_is_a_503_busy(database_url, make_tenant, pool):
    tenant = await make_tenant()
    settings = {"pool_min": 1, "pool_max": 1, "acquire_timeout_ms": 200}
    async with (
        app_client(database_url, statement_timeout_ms=30_000, **settings) as client,
        pool.acquire() as conn,
    ):
        tx = conn.transaction()
        await tx.start()
        await conn.execute("LOCK TABLE logs IN ACCESS EXCLUSIVE MODE")
        held = asyncio.create_task(client.get(URL, headers=tenant.headers()))
        try:
            await wait_for_lock_waiters(pool)
            r = await client.get(URL, headers=tenant.headers())
        finally:
            await tx.rollback()
        first = await held
    assert first.status_code == 200
    assert r.status_code == 503
    assert r.headers["retry-after"] == "1"
    message = "the server is busy or the database is slow; retry shortly"
    assert r.json() == unavailable(r.headers["x-request-id"], message)


# -- outage ----------------------------------------------------------------------------------


@pytest.fixture
def own_postgres() -> Iterator[OwnPostgres]:
    with own_postgres_server("gramlogs-test-own-pg-") as pg:
        yield pg


async def test_outage_is_fast_503s_and_service_resumes_by_itself(own_postgres):
    conn = await asyncpg.connect(own_postgres.url)
    try:
        await schema.migrate(conn)
        org = await tenants.create_organization(conn, "outage")
        project = await tenants.create_project(conn, org, "outage")
        key = (await tenants.create_key(conn, org, KeyScope.CONSUMER)).key
        plan = SeedPlan(project, rows=200, end=datetime(2025, 6, 1, tzinfo=UTC))
        await seed_logs(conn, plan)
    finally:
        await conn.close()
    headers = {"Gram-Key": key, "Gram-Project": "outage"}
    settings = {"pool_min": 2, "pool_max": 4, "acquire_timeout_ms": 1000}
    phase = "before"
    seen: list[tuple[str, int, float, dict, dict]] = []
    stop = asyncio.Event()

    async def load(client: httpx.AsyncClient) -> None:
        while not stop.is_set():
            started = time.monotonic()
            r = await client.get(URL, params={"per_page": "5"}, headers=headers)
            elapsed = time.monotonic() - started
            seen.append((phase, r.status_code, elapsed, dict(r.headers), r.json()))
            await asyncio.sleep(0.005)

    def count(in_phase: str, status: int) -> int:
        return sum(1 for p, s, *_ in seen if p == in_phase and s == status)

    def by_phase() -> Counter[tuple[str, int]]:
        return Counter((p, s) for p, s, *_ in seen)

    async with app_client(own_postgres.url, statement_timeout_ms=2000, **settings) as client:
        workers = [asyncio.create_task(load(client)) for _ in range(8)]
        try:
            await until(lambda: count("before", 200) >= 40, state=by_phase)
            phase = "stopping"
            await asyncio.to_thread(own_postgres.stop)
            phase = "down"
            down_since = time.monotonic()
            await until(
                lambda: count("down", 503) >= 40 and time.monotonic() - down_since > 1,
                state=by_phase,
            )
            ready_down = await client.get("/readyz")
            phase = "starting"
            await asyncio.to_thread(own_postgres.start)
            phase = "after"
            await until(lambda: count("after", 200) >= 40, state=by_phase)
            ready_after = await client.get("/readyz")
        finally:
            stop.set()
            await asyncio.gather(*workers)

    assert ready_down.status_code == 503
    assert ready_down.json()["name"] == "unavailable"
    assert ready_after.status_code == 200
    statuses = by_phase()
    slowest = {s: max(e for _, st, e, *_ in seen if st == s) for s in {s for _, s in statuses}}
    print(f"\noutage: {dict(statuses)}; slowest answer by status (s): {slowest}")
    assert {s for _, s in statuses} <= {200, 503}, statuses
    assert statuses[("down", 200)] == 0
    for p, status, elapsed, headers_, body in seen:
        if status == 503:
            assert headers_["retry-after"] == "1"
            assert body["name"] == "unavailable" and body["temporary"] is True
            assert body["id"] == headers_["x-request-id"]
        # Never a hang: a request is bounded by the acquire limit plus the statement limit.
        assert elapsed < 10, (p, status, elapsed)
    # Once the database is back every request succeeds, without restarting the application.
    after = [s for p, s, *_ in seen if p == "after"]
    assert after[-20:] == [200] * 20
