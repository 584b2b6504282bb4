"""The per-key cap on concurrent expensive reads (exports, histograms, keyword searches): past
it a 429 with Retry-After, for that key only; the slots are held by a test hook on the counter,
so nothing depends on timing."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from gramlogs.core.errors import TooManyRequests
from gramlogs.core.keys import hash_key
from gramlogs.web.expensive import ExpensiveReads
from tests._support import error, get_scope

LIST = "/rpc/logs.listToolExecutionLogs"
POLY = "/functions/server/00000000-0000-4000-8000-000000000001/logs"
HISTOGRAM = "/rpc/logs.histogram"
WINDOW = {"ts_start": "2026-06-01T00:00:00Z", "ts_end": "2026-06-02T00:00:00Z"}


def test_the_counter_allows_n_per_key_and_forgets_idle_keys():
    reads = ExpensiveReads(2)
    a, b = uuid.uuid4(), uuid.uuid4()
    reads.acquire(a)
    reads.acquire(a)
    with pytest.raises(TooManyRequests) as refused:
        reads.acquire(a)
    assert refused.value.headers == {"Retry-After": "1"}
    reads.acquire(b)  # another key is not affected
    reads.release(a)
    reads.acquire(a)
    for key in (a, a, b):
        reads.release(key)
    assert len(reads) == 0


def test_hold_releases_on_error_and_counts_only_what_is_expensive():
    reads = ExpensiveReads(1)
    key = uuid.uuid4()
    with pytest.raises(ValueError), reads.hold(key):
        assert reads.running(key) == 1
        raise ValueError
    with reads.hold(key, expensive=False), reads.hold(key, expensive=False):
        assert reads.running(key) == 0
    assert len(reads) == 0


async def _key_id(pool, key: str) -> uuid.UUID:
    return await pool.fetchval("SELECT id FROM api_keys WHERE key_hash = $1", hash_key(key))


async def test_past_the_cap_expensive_reads_are_429_and_cheap_ones_are_not(
    app, client, make_tenant, pool
):
    tenant, other = await make_tenant(), await make_tenant()
    reads: ExpensiveReads = app.state.gramlogs.expensive
    key_id = await _key_id(pool, tenant.consumer_key)
    assert reads.per_key == 4  # the default
    for _ in range(reads.per_key):
        reads.acquire(key_id)
    try:
        poly = {"Authorization": f"Bearer {tenant.consumer_key}"}
        refused = [
            await client.get(HISTOGRAM, params=WINDOW, headers=tenant.headers()),
            await client.get("/rpc/logs.export", headers=tenant.headers()),
            await client.get(LIST, params={"keyword": "zz"}, headers=tenant.headers()),
        ]
        allowed = [
            await client.get(LIST, headers=tenant.headers()),
            await client.get(POLY, headers=poly),  # 404: no such function, no read at all
            await client.get(HISTOGRAM, params=WINDOW, headers=other.headers()),
            await client.get(LIST, params={"keyword": "zz"}, headers=other.headers()),
        ]
    finally:
        for _ in range(reads.per_key):
            reads.release(key_id)
    assert [r.status_code for r in refused] == [429, 429, 429]
    assert refused[0].headers["retry-after"] == "1"
    assert error(refused[0]) == {
        "name": "too_many_requests",
        "message": "this key is running 4 expensive reads (exports, histograms, keyword"
        " searches), the most it may run at once; retry when one has ended",
        "temporary": True,
        "timeout": False,
        "fault": False,
    }
    assert [r.status_code for r in allowed] == [200, 404, 200, 200]
    after = await client.get(HISTOGRAM, params=WINDOW, headers=tenant.headers())
    assert after.status_code == 200
    assert len(reads) == 0


async def test_an_export_holds_its_slot_until_its_stream_ends(app, tenant, pool):
    reads: ExpensiveReads = app.state.gramlogs.expensive
    key_id = await _key_id(pool, tenant.consumer_key)
    seen: list[int] = []
    done = asyncio.Event()

    async def send(message: dict) -> None:
        seen.append(reads.running(key_id))
        if message["type"] == "http.response.body" and not message.get("more_body"):
            done.set()

    async def receive() -> dict:
        await done.wait()
        return {"type": "http.disconnect"}

    scope = get_scope("/rpc/logs.export", b"", tenant)
    await app(scope, receive, send)
    assert seen and set(seen) == {1}  # held while each message was sent
    assert reads.running(key_id) == 0
