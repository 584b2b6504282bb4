"""The endpoint answers end to end: auth, a page of rows, the error shape."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx

from gramlogs.local.seed import SeedPlan, seed_logs

URL = "/rpc/logs.listToolExecutionLogs"


async def test_seeded_project_lists_newest_first(client: httpx.AsyncClient, make_tenant, pool):
    tenant = await make_tenant()
    async with pool.acquire() as conn:
        await seed_logs(
            conn, SeedPlan(tenant.project_id, rows=50, end=datetime(2025, 6, 1, tzinfo=UTC))
        )
    r = await client.get(URL, params={"per_page": "10"}, headers=tenant.headers())
    assert r.status_code == 200
    body = r.json()
    assert len(body["logs"]) == 10
    stamps = [log["timestamp"] for log in body["logs"]]
    assert stamps == sorted(stamps, reverse=True)
    assert body["pagination"]["has_next_page"] is True
    assert body["pagination"]["next_page_cursor"] == body["logs"][-1]["id"]
