"""Every single filter is an index range scan in id order that stops after per_page + 1 rows.

Read from EXPLAIN ANALYZE of the exact statement ``store.fetch_page`` runs, both as a custom
plan (parameters known) and as the generic plan the server's pools use. ``logs`` is partitioned
by time: the page scan is an ordered Append of per-partition index scans whose rows, all
partitions together, stop at per_page + 1 (pruning itself: test_store_pruning.py).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import msgspec
import pytest

from gramlogs import ids, maintenance, tenants
from gramlogs.config import Config
from gramlogs.seed import SeedPlan, generate, seed_logs
from gramlogs.store import LogFilter, PageRequest, back_query, page_query

# Inside the server's partition window (30 days back), so that rows spread over daily partitions.
END = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
PER_PAGE = 20
PROJECT_ROWS = 30_000


@pytest.fixture(scope="module")
async def pool(module_database: str) -> AsyncIterator[asyncpg.Pool]:
    # A database of the module's own: other tests' rows (in the catch-all partitions, say)
    # would change the statistics the plans below follow.
    async with asyncpg.create_pool(module_database, min_size=1, max_size=2) as p:
        yield p


@pytest.fixture(scope="module")
async def big_project(pool: asyncpg.Pool) -> uuid.UUID:
    async with pool.acquire() as conn:
        org = await tenants.create_organization(conn, "explain")
        project = await tenants.create_project(conn, org, "explain")
        await maintenance.ensure_partitions(conn, Config())
        await seed_logs(conn, SeedPlan(project, PROJECT_ROWS, END, days=30, seed=7))
        for n in range(2):
            neighbour = await tenants.create_project(conn, org, f"neighbour-{n}")
            await seed_logs(conn, SeedPlan(neighbour, 10_000, END, days=30, seed=n))
        await conn.execute("ANALYZE logs")
    return project


def _sample_row() -> tuple:
    return next(generate(SeedPlan(uuid.UUID(int=0), 1, END, days=30, seed=7)))


def _cases() -> list[tuple[str, dict[str, object], str]]:
    row = _sample_row()
    return [
        ("no filter", {}, "logs_pkey"),
        ("function_id", {"function_id": row[10]}, "logs_function"),
        ("deployment_id", {"deployment_id": row[9]}, "logs_deployment"),
        ("instance", {"instance": row[2]}, "logs_instance"),
        ("level", {"level": "error"}, "logs_level"),
        ("source", {"source": "server"}, "logs_source"),
    ]


def _request(project_id: uuid.UUID, equals: dict, window, ascending: bool, deep: bool):
    lo, hi = 0, (1 << 128) - 1
    if window:
        start = END - timedelta(days=10)
        lo, hi = ids.lowest_id(start).int, ids.highest_id(start + window).int
    cursor = None
    if deep:
        # 95% of the way through the project's 30 days, from the walking end.
        at = END - timedelta(days=30 * (0.95 if not ascending else 0.05))
        cursor = ids.new_id(at, 0)
    return PageRequest(
        filter=LogFilter(project_id=project_id, lo=lo, hi=hi, equals=equals),
        per_page=PER_PAGE,
        ascending=ascending,
        forward=True,
        cursor=cursor,
    )


def _literal(value: object) -> str:
    return str(value) if isinstance(value, int) else "'" + str(value).replace("'", "''") + "'"


def _nodes(plan: dict) -> list[dict]:
    found = [plan]
    for child in plan.get("Plans", []):
        found += _nodes(child)
    return found


# Partitions' indexes are named by PostgreSQL after the partition and the columns.
_INDEX_TOKEN = {
    "logs_pkey": "_pkey",
    "logs_function": "function_id",
    "logs_deployment": "deployment_id",
    "logs_instance": "instance",
    "logs_level": "level",
    "logs_source": "source",
}


def _is_index(name: str, index: str) -> bool:
    return name == index or _INDEX_TOKEN[index] in name


def _check_scan(scan: dict, index: str) -> None:
    assert scan["Node Type"] in ("Index Scan", "Index Only Scan"), scan["Node Type"]
    if not _is_index(scan["Index Name"], index):
        # Where the statistics say the project has no rows in a partition (a catch-all, or a
        # day only the neighbours' rows reach), either index is as cheap to the planner, which
        # may take the primary key. Fine exactly when that scan met no row at all.
        assert scan["Actual Rows"] == scan.get("Rows Removed by Filter", 0) == 0, scan


def _check(plan: dict, index: str) -> None:
    kinds = {node["Node Type"] for node in _nodes(plan)}
    assert not kinds & {"Seq Scan", "Bitmap Heap Scan", "Incremental Sort", "Merge Append"}, kinds
    # The only sort allowed is of nothing: a probe whose range is empty (no cursor) is pruned
    # to an empty Result while planning.
    for node in _nodes(plan):
        if node["Node Type"] == "Sort":
            assert not any("Relation Name" in n for n in _nodes(node)), node
    assert plan["Node Type"] == "Limit"
    page = next(p for p in plan["Plans"] if p.get("Parent Relationship") == "Outer")
    scans = [n for n in _nodes(page) if "Relation Name" in n]
    assert scans
    for scan in scans:
        _check_scan(scan, index)
    read = sum(scan["Actual Rows"] * scan["Actual Loops"] for scan in scans)
    assert read <= PER_PAGE + 1
    assert plan["Actual Rows"] == PER_PAGE + 1  # the data has more rows than a page


def _matrix() -> list[tuple]:
    cases = []
    for name, equals, index in _cases():
        for ascending in (False, True):
            order = "asc" if ascending else "desc"
            cases.append(pytest.param(equals, index, None, ascending, False, id=f"{name}-{order}"))
            cases.append(
                pytest.param(equals, index, None, ascending, True, id=f"{name}-{order}-95% deep")
            )
            # A filtered page needs more than a page of matches: a day holds ~1000 rows.
            window = timedelta(hours=1) if not equals else timedelta(days=1)
            cases.append(
                pytest.param(equals, index, window, ascending, False, id=f"{name}-{order}-window")
            )
    return cases


async def _explain(conn: asyncpg.Connection, sql: str, args: list[object]) -> list[dict]:
    """The plan of ``sql`` as a custom plan and as the generic plan of a prepared statement."""
    custom = await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", *args)
    await conn.execute(f"PREPARE explain_page AS {sql}")
    try:
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        literals = ", ".join(_literal(a) for a in args)
        generic = await conn.fetchval(
            f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE explain_page({literals})"
        )
    finally:
        await conn.execute("DEALLOCATE explain_page")
        await conn.execute("RESET plan_cache_mode")
    return [msgspec.json.decode(p)[0]["Plan"] for p in (custom, generic)]


@pytest.mark.parametrize(("equals", "index", "window", "ascending", "deep"), _matrix())
async def test_page_is_an_ordered_index_range_scan(
    pool: asyncpg.Pool, big_project, equals, index, window, ascending, deep
) -> None:
    req = _request(big_project, equals, window, ascending, deep)
    async with pool.acquire() as conn:
        for plan in await _explain(conn, *page_query(req)):
            _check(plan, index)


@pytest.mark.parametrize(("name", "equals", "index"), _cases(), ids=[c[0] for c in _cases()])
async def test_probe_behind_an_empty_page_is_an_index_probe(
    pool: asyncpg.Pool, big_project, name, equals, index
) -> None:
    # A cursor past the newest row, walking on in ascending order: the page is empty and the
    # probe looks back over the whole project.
    req = PageRequest(
        filter=LogFilter(project_id=big_project, equals=equals),
        per_page=PER_PAGE,
        ascending=True,
        cursor=ids.highest_id(END + timedelta(days=1)),
    )
    async with pool.acquire() as conn:
        for plan in await _explain(conn, *back_query(req)):
            nodes = _nodes(plan)
            kinds = {node["Node Type"] for node in nodes}
            assert not kinds & {"Seq Scan", "Sort", "Bitmap Heap Scan"}, kinds
            scans = [n for n in nodes if "Relation Name" in n]
            for scan in scans:
                _check_scan(scan, index)
            assert sum(n["Actual Rows"] * n["Actual Loops"] for n in scans) == 1
