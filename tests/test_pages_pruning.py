"""The page query prunes partitions and scans few of them, as EXPLAIN ANALYZE shows.

The server runs generic plans (``plan_cache_mode = force_generic_plan``, database.py), which
prune at executor start-up ("Subplans Removed") and leave partitions the ordered Append never
reaches "never executed". Custom plans prune while planning. Both are checked.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from gramlogs.core import ids
from gramlogs.core.keys import KeyScope
from gramlogs.local.seed import SeedPlan, seed_logs
from gramlogs.storage import partitions, tenants
from gramlogs.storage.pages import LogFilter, PageRequest, page_query

pytestmark = pytest.mark.single_node(
    "partition pruning as one PostgreSQL plans it; on Citus each worker prunes its shard's"
    " partitions the same way, and the coordinator plans a router query (test_citus)"
)

NOW = datetime(2030, 3, 15, 12, 0, tzinfo=UTC)
ROWS = 6000


@pytest.fixture
async def seeded(fresh_database: str) -> AsyncIterator[tuple[asyncpg.Connection, uuid.UUID]]:
    conn = await asyncpg.connect(fresh_database)
    await partitions.ensure(conn, default_retention_days=30, ahead_days=7, width_days=1, now=NOW)
    org = await tenants.create_organization(conn, "explain")
    project = await tenants.create_project(conn, org, "explain")
    other = await tenants.create_project(conn, org, "other")
    await tenants.create_key(conn, org, KeyScope.CONSUMER)
    for p, seed in ((project, 1), (other, 2)):
        await seed_logs(conn, SeedPlan(p, rows=ROWS, end=NOW, days=30, seed=seed))
    await conn.execute("VACUUM ANALYZE logs")
    try:
        yield conn, project
    finally:
        await conn.close()


async def _explain(conn: asyncpg.Connection, req: PageRequest, *, generic: bool) -> dict[str, Any]:
    sql, args = page_query(req)
    types = ["uuid"] * 5 + ["integer"]
    types += ["uuid" if isinstance(a, uuid.UUID) else "text" for a in args[6:]]
    mode = "force_generic_plan" if generic else "force_custom_plan"
    await conn.execute(f"SET plan_cache_mode = {mode}")
    await conn.execute(f"PREPARE page({', '.join(types)}) AS {sql}")
    try:
        # EXECUTE takes no bind parameters: literals (uuids, an int, enum words) it is.
        literals = ", ".join(str(a) if isinstance(a, int) else f"'{a}'" for a in args)
        text = await conn.fetchval(
            f"EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, FORMAT JSON) EXECUTE page({literals})"
        )
    finally:
        await conn.execute("DEALLOCATE page")
        await conn.execute("RESET plan_cache_mode")
    return json.loads(text)[0]["Plan"]


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def _main_scan(plan: dict[str, Any]) -> dict[str, Any]:
    """The page scan: the Limit's outer child (the InitPlan is the has_back probe)."""
    assert plan["Node Type"] == "Limit"
    (outer,) = [c for c in plan["Plans"] if c.get("Parent Relationship") == "Outer"]
    return outer


def _scans(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [n for n in _nodes(node) if "Relation Name" in n]


def _executed(node: dict[str, Any]) -> list[str]:
    return [n["Relation Name"] for n in _scans(node) if n["Actual Loops"] > 0]


def _removed(node: dict[str, Any]) -> int:
    return sum(n.get("Subplans Removed", 0) for n in _nodes(node))


def _window(hours_before_now: float, hours: float) -> tuple[int, int]:
    start = NOW - timedelta(hours=hours_before_now)
    return ids.lowest_id(start).int, ids.highest_id(start + timedelta(hours=hours)).int


async def _partition_count(conn: asyncpg.Connection) -> int:
    return len(await partitions.layout(conn))


async def test_window_prunes_to_its_partition_at_executor_start(seeded):
    conn, project = seeded
    lo, hi = _window(24 * 10 + 3, 1)  # inside one day, ten days back
    plan = await _explain(conn, PageRequest(LogFilter(project, lo, hi), 100), generic=True)
    scan = _main_scan(plan)
    assert _removed(scan) == await _partition_count(conn) - 1
    (only,) = _scans(scan)
    assert only["Node Type"] == "Index Scan"
    assert only["Index Name"] == f"{only['Relation Name']}_pkey"
    day = (NOW - timedelta(hours=24 * 10 + 3)).date()
    assert only["Relation Name"] == f"logs_p{day:%Y%m%d}"


async def test_window_prunes_at_plan_time_with_custom_plans(seeded):
    conn, project = seeded
    lo, hi = _window(24 * 10 + 3, 1)
    plan = await _explain(conn, PageRequest(LogFilter(project, lo, hi), 100), generic=False)
    assert [n["Relation Name"] for n in _scans(_main_scan(plan))] == [
        f"logs_p{(NOW - timedelta(hours=24 * 10 + 3)).date():%Y%m%d}"
    ]


async def test_filtered_window_uses_the_filter_index_of_its_partition(seeded):
    conn, project = seeded
    lo, hi = _window(24 * 3 + 6, 12)  # 06:00-18:00, one day
    function = await conn.fetchval("SELECT function_id FROM logs WHERE project_id = $1", project)
    req = PageRequest(LogFilter(project, lo, hi, equals={"function_id": function}), 20)
    (only,) = _scans(_main_scan(await _explain(conn, req, generic=True)))
    assert only["Node Type"] == "Index Scan"
    assert "function_id" in only["Index Name"]
    assert only["Relation Name"].startswith("logs_p")


async def test_deep_page_executes_few_partitions(seeded):
    conn, project = seeded
    newest_first = await conn.fetch(
        "SELECT id FROM logs WHERE project_id = $1 ORDER BY id DESC", project
    )
    cursor = newest_first[int(len(newest_first) * 0.95)]["id"]
    plan = await _explain(conn, PageRequest(LogFilter(project), 100, cursor=cursor), generic=True)
    scan = _main_scan(plan)
    # Partitions newer than the cursor are pruned at start-up; of the rest, the ordered Append
    # opens the cursor's partition and at most the one before it for 100 rows (200 a day here).
    assert _removed(scan) > 20
    assert len(_executed(scan)) <= 2
    # The has_back probe (rows newer than the cursor) prunes the older partitions and stops at
    # its first row.
    probe = [c for c in plan["Plans"] if c.get("Parent Relationship") == "InitPlan"]
    older = [p for p in await partitions.layout(conn) if p.hi is not None and p.hi <= cursor.int]
    assert _removed(probe[0]) == len(older) >= 2
    assert len(_executed(probe[0])) == 1


async def test_first_page_without_window_stops_at_the_newest_rows(seeded):
    conn, project = seeded
    plan = await _explain(conn, PageRequest(LogFilter(project), 100), generic=True)
    scan = _main_scan(plan)
    total = await _partition_count(conn)
    # Not hundreds: 30 days back, 7 ahead, today, two catch-alls.
    assert total == 40
    assert len(_scans(scan)) == total
    # Descending: logs_future and the seven empty days ahead, then today (half a day, 100 rows)
    # and yesterday for the 101st row; the 30 older partitions are never executed.
    assert len(_executed(scan)) == 10
    assert all(n["Node Type"] == "Index Scan" for n in _scans(scan))


async def test_ascending_first_page_starts_at_the_oldest_partition(seeded):
    conn, project = seeded
    plan = await _explain(conn, PageRequest(LogFilter(project), 100, ascending=True), generic=True)
    executed = _executed(_main_scan(plan))
    assert executed[0] == "logs_past"
    assert len(executed) <= 3
