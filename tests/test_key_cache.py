"""The key cache: a worker reuses a key's successful lookup for ``key_cache_s``, never longer,
never a failed one, and holds a bounded number of answers (storage/access.py says why this is
safe). The clock is a test's own; the one test that runs real server processes waits the bound
out rather than timing anything."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any, cast

import asyncpg
import httpx
import pytest

from gramlogs.core.errors import Unauthorized
from gramlogs.core.keys import Permission, hash_key
from gramlogs.storage import access, tenants
from gramlogs.storage.access import KeyCache
from tests._support import ManualClock, connection

BOUND = 1.0


class CountingConnection:
    """A connection that counts its key lookups and may move a clock while one runs."""

    def __init__(self, conn: asyncpg.Connection, clock: ManualClock, takes: float = 0.0) -> None:
        self.conn, self.clock, self.takes = conn, clock, takes
        self.lookups = 0

    async def fetchrow(self, sql: str, *args: object) -> Any:
        self.lookups += 1
        self.clock.advance(self.takes)  # the answer arrives ``takes`` after it was asked
        return await self.conn.fetchrow(sql, *args)


@contextlib.asynccontextmanager
async def counted(
    pool: asyncpg.Pool, seconds: float = BOUND, takes: float = 0.0
) -> AsyncIterator[tuple[KeyCache, CountingConnection, ManualClock]]:
    """A cache of ``seconds`` on a clock of the test's, and a connection counting lookups."""
    clock = ManualClock()
    async with connection(pool) as raw:
        yield KeyCache(seconds, clock=clock), CountingConnection(raw, clock, takes), clock


async def read(cache: KeyCache, conn: Any, tenant: Any, key: str | None = None) -> uuid.UUID:
    principal = await access.authenticate(
        conn, key or tenant.consumer_key, Permission.READ, project_slug=tenant.slug, cache=cache
    )
    return principal.project_id


async def revoke(pool: asyncpg.Pool, key: str) -> None:
    async with connection(pool) as conn:
        key_id = await conn.fetchval("SELECT id FROM api_keys WHERE key_hash = $1", hash_key(key))
        assert await tenants.revoke_key(conn, key_id)


async def test_an_answer_is_reused_within_the_bound_and_a_revoked_key_refused_past_it(pool, tenant):
    async with counted(pool) as (cache, conn, clock):
        assert await read(cache, conn, tenant) == tenant.project_id
        clock.advance(BOUND * 0.9)
        assert await read(cache, conn, tenant) == tenant.project_id
        assert conn.lookups == 1  # the second request made no round trip for its key
        await revoke(pool, tenant.consumer_key)
        # The answer is younger than the bound: still reused ...
        assert await read(cache, conn, tenant) == tenant.project_id
        clock.advance(BOUND * 0.1)
        # ... and at the bound, looked up again: refused, and never kept.
        with pytest.raises(Unauthorized):
            await read(cache, conn, tenant)
        assert len(cache) == 0
        with pytest.raises(Unauthorized):
            await read(cache, conn, tenant)
        assert conn.lookups == 3


async def test_an_answer_ages_from_when_its_lookup_was_sent(pool, tenant):
    # A lookup that takes half the bound: its answer reflects the database as it was when it
    # was asked, so it expires half a bound after it arrived, not a whole one.
    async with counted(pool, takes=BOUND / 2) as (cache, conn, clock):
        await read(cache, conn, tenant)
        conn.takes = 0
        clock.advance(BOUND / 2 - 0.01)
        await read(cache, conn, tenant)
        assert conn.lookups == 1
        clock.advance(0.01)
        await read(cache, conn, tenant)
        assert conn.lookups == 2


async def test_an_unknown_key_is_asked_every_time_and_a_flood_of_them_keeps_nothing(pool, tenant):
    async with counted(pool) as (cache, conn, _):
        for _ in range(200):
            with pytest.raises(Unauthorized):
                await read(cache, conn, tenant, key="glk_" + secrets.token_urlsafe(32))
        assert conn.lookups == 200
        assert len(cache) == 0


async def test_the_cache_holds_at_most_its_entries_the_least_recently_used_going_first(
    pool, make_tenant, monkeypatch
):
    monkeypatch.setattr(KeyCache, "ENTRIES", 3)
    made = [await make_tenant() for _ in range(5)]
    async with counted(pool) as (cache, conn, _):
        for t in made:
            await read(cache, conn, t)
        assert len(cache) == 3
        # The three most recent are kept; the first two were dropped.
        for t in made[2:]:
            await read(cache, conn, t)
        assert conn.lookups == 5
        await read(cache, conn, made[0])
        assert (conn.lookups, len(cache)) == (6, 3)


async def test_a_zero_bound_looks_every_key_up(pool, tenant):
    async with counted(pool, seconds=0) as (cache, conn, _):
        for _ in range(3):
            await read(cache, conn, tenant)
        assert (conn.lookups, len(cache)) == (3, 0)


async def test_the_holder_of_a_key_is_cached_alike(pool, tenant):
    async with counted(pool) as (cache, conn, clock):
        for _ in range(2):
            holder = await access.identify(cast(Any, conn), tenant.consumer_key, cache=cache)
            assert holder.organization_id == tenant.organization_id
        assert conn.lookups == 1
        await revoke(pool, tenant.consumer_key)
        clock.advance(BOUND)
        with pytest.raises(Unauthorized):
            await access.identify(cast(Any, conn), tenant.consumer_key, cache=cache)


async def test_a_key_revoked_by_another_process_is_refused_by_every_worker_within_the_bound(
    serve, database_url, pool, tenant
):
    # Two server processes, each with its own cache; the key is revoked by the CLI, a third
    # process. Once the bound has passed after the revocation committed, no worker accepts it.
    bound = 0.5
    url = "/rpc/logs.listToolExecutionLogs"
    # A new connection per request spreads the requests over both workers.
    headers = {**tenant.headers(), "Connection": "close"}
    async with connection(pool) as conn:
        key_id = await conn.fetchval(
            "SELECT id FROM api_keys WHERE key_hash = $1", hash_key(tenant.consumer_key)
        )
    with serve(GRAMLOGS_WORKERS="2", GRAMLOGS_KEY_CACHE_S=str(bound)) as server:
        async with httpx.AsyncClient(base_url=server.url) as client:
            for _ in range(20):
                r = await client.get(url, headers=headers)
                assert r.status_code == 200, r.text
            await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-m", "gramlogs", "keys", "revoke", str(key_id)],
                env={**os.environ, "GRAMLOGS_DATABASE_URL": database_url},
                check=True,
                capture_output=True,
                timeout=120,
            )
            # The bound, counted after the revocation committed: waited out, not timed.
            await asyncio.sleep(bound)
            statuses = [(await client.get(url, headers=headers)).status_code for _ in range(20)]
    assert set(statuses) == {401}
