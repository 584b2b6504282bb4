"""Every single filter is an index range scan in id order that stops after per_page + 1 rows.

Read from EXPLAIN ANALYZE of the exact statement ``pages.fetch_page`` runs, both as a custom
plan (parameters known) and as the generic plan the server's pools use, under the pools'
settings (``pages.PLAN_SETTINGS``). ``logs`` is partitioned by time: the page scan is an ordered
Append of per-partition index scans whose rows, all partitions together, stop at per_page + 1
(pruning itself: test_pages_pruning.py). Every case runs in each scenario of ``NOWS``: the same
seeded rows and ids, ending at a fixed simulated "now".
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
import pytest

from gramlogs.core import ids
from gramlogs.core.config import Config
from gramlogs.local.seed import SeedPlan, generate, seed_logs
from gramlogs.storage import maintenance, tenants
from gramlogs.storage.pages import PLAN_SETTINGS, LogFilter, PageRequest, back_query, page_query
from tests._support import connection

pytestmark = pytest.mark.single_node(
    "the plans of one PostgreSQL; on Citus the coordinator plans a router query to one shard"
    " (test_citus) and the worker plans the shard's statement with its values"
)

PER_PAGE = 20
PROJECT_ROWS = 30_000
DAYS = 30  # inside the partition window (30 days back), so that rows spread over daily partitions

# The simulated "now" of each scenario: the data ends there and the partitions are made around
# it, as the server would make them. Fixed, so that every run sees the same rows and plans, and
# chosen where the newest daily partition is nearly empty or the calendar turns: a test whose
# data followed the wall clock passed or failed with the hour of the day it ran.
NOWS = {
    "midday": datetime(2026, 6, 15, 12, 0, tzinfo=UTC),
    "midnight": datetime(2026, 12, 2, 0, 0, tzinfo=UTC),
    "2h-past-midnight": datetime(2026, 12, 2, 2, 0, tzinfo=UTC),
    "5min-into-a-new-year": datetime(2027, 1, 1, 0, 5, tzinfo=UTC),
    "month-end": datetime(2026, 11, 30, 23, 59, tzinfo=UTC),
}


# A partition this small is read whole in a few microseconds whichever index reads it (see
# _check_scan).
SMALL_PARTITION_ROWS = 500


@dataclass(frozen=True)
class Scene:
    pool: asyncpg.Pool
    project: uuid.UUID
    now: datetime
    small_partitions: frozenset[str]  # partitions holding 1 to SMALL_PARTITION_ROWS - 1 rows


def _fixed_id(n: int) -> uuid.UUID:
    return uuid.UUID(f"0190f000-0000-7000-8000-{n:012x}")


@pytest.fixture(scope="module", params=list(NOWS), ids=list(NOWS))
async def scene(request: pytest.FixtureRequest, new_database) -> AsyncIterator[Scene]:
    now = NOWS[request.param]
    # A database of the scenario's own: other tests' rows (in the catch-all partitions, say),
    # or another scenario's, would change the statistics the plans below follow.
    async with (
        new_database("gramlogs_explain") as url,
        # The settings the server's pools plan under.
        asyncpg.create_pool(url, min_size=1, max_size=2, server_settings=PLAN_SETTINGS) as pool,
    ):
        async with connection(pool) as conn:
            project = await _seed(conn, now)
            sizes = await conn.fetch(
                "SELECT tableoid::regclass::text, count(*) FROM logs GROUP BY 1"
            )
        small = frozenset(name for name, rows in sizes if rows < SMALL_PARTITION_ROWS)
        yield Scene(pool, project, now, small)


async def _seed(conn: asyncpg.Connection, now: datetime) -> uuid.UUID:
    config = Config()
    await maintenance.ensure_partitions(conn, config, now=now)
    org = await tenants.create_organization(conn, "explain", org_id=_fixed_id(0))
    project = await tenants.create_project(conn, org, "explain", project_id=_fixed_id(1))
    await seed_logs(conn, SeedPlan(project, PROJECT_ROWS, now, days=DAYS, seed=7))
    for n in range(2):
        neighbour = await tenants.create_project(
            conn, org, f"neighbour-{n}", project_id=_fixed_id(2 + n)
        )
        await seed_logs(conn, SeedPlan(neighbour, 10_000, now, days=DAYS, seed=n))
    await conn.execute("ANALYZE logs")
    return project


def _sample_row() -> tuple:
    # The seeded functions, deployments and instances do not depend on the end date.
    return next(generate(SeedPlan(uuid.UUID(int=0), 1, NOWS["midday"], days=DAYS, seed=7)))


def _cases() -> list[tuple[str, dict[str, object], str]]:
    row = _sample_row()
    return [
        ("no filter", {}, "logs_pkey"),
        ("function_id", {"function_id": row[10]}, "logs_function"),
        # Schema 7 dropped these columns' btrees: the rows are the newest, unsealed lines (few,
        # storage/sealing.py), read along the primary key; older lines are read by their blocks.
        ("deployment_id", {"deployment_id": row[9]}, "logs_pkey"),
        ("instance", {"instance": row[2]}, "logs_pkey"),
        ("level", {"level": "error"}, "logs_pkey"),
        ("source", {"source": "server"}, "logs_pkey"),
    ]


def _request(scene: Scene, equals: dict, window, ascending: bool, deep: bool) -> PageRequest:
    lo, hi = 0, (1 << 128) - 1
    if window:
        start = scene.now - timedelta(days=10)
        lo, hi = ids.lowest_id(start).int, ids.highest_id(start + window).int
    cursor = None
    if deep:
        # 95% of the way through the project's 30 days, from the walking end.
        at = scene.now - timedelta(days=DAYS * (0.95 if not ascending else 0.05))
        cursor = ids.new_id(at, 0)
    return PageRequest(
        filter=LogFilter(project_id=scene.project, lo=lo, hi=hi, equals=equals),
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
}


def _is_index(name: str, index: str) -> bool:
    return name == index or _INDEX_TOKEN[index] in name


def _check_scan(scan: dict, index: str, scene: Scene) -> None:
    assert scan["Node Type"] in ("Index Scan", "Index Only Scan"), scan["Node Type"]
    if _is_index(scan["Index Name"], index):
        return
    # Where the statistics say the project has no rows in a partition (a catch-all, or a day
    # only the neighbours' rows reach), either index is as cheap to the planner, which may take
    # the primary key. Fine when that scan met no row at all.
    if scan["Actual Rows"] == scan.get("Rows Removed by Filter", 0) == 0:
        return
    # An ordered Append starts up at the sum of its partitions' start-up costs, and an index
    # scan's start-up is its descent: 0.125 a level. Where the primary key is a level shallower
    # than the filter's wider index (a partition of a couple of hundred rows: one leaf page of
    # the one, two of the other) and the page's share of the partition's cost is smaller than
    # that, the planner takes the primary key and filters. It reads the project's few rows of
    # that partition, a few microseconds. On a partition of millions of rows the filter's index
    # wins by far more than a descent (benchmarks/plans.py at af8a818: 2M rows a day), so a big
    # partition read through another index fails here.
    assert scan["Relation Name"] in scene.small_partitions, scan


def _check(plan: dict, index: str, scene: Scene) -> None:
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
        _check_scan(scan, index, scene)
    read = sum(scan["Actual Rows"] * scan["Actual Loops"] for scan in scans)
    assert read <= PER_PAGE + 1
    assert plan["Actual Rows"] == PER_PAGE + 1  # the data has more rows than a page


def _matrix() -> list[Any]:
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
    """The plan of ``sql`` as a custom plan and as the generic plan of a prepared statement
    (the server's: pages.PLAN_SETTINGS), both without sorts as the server plans them."""
    await conn.execute("SET plan_cache_mode = force_custom_plan")
    try:
        custom = await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", *args)
    finally:
        await conn.execute("RESET plan_cache_mode")
    await conn.execute(f"PREPARE explain_page AS {sql}")
    try:
        literals = ", ".join(_literal(a) for a in args)
        generic = await conn.fetchval(
            f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE explain_page({literals})"
        )
    finally:
        await conn.execute("DEALLOCATE explain_page")
    return [msgspec.json.decode(p)[0]["Plan"] for p in (custom, generic)]


@pytest.mark.parametrize(("equals", "index", "window", "ascending", "deep"), _matrix())
async def test_page_is_an_ordered_index_range_scan(
    scene: Scene, equals, index, window, ascending, deep
) -> None:
    req = _request(scene, equals, window, ascending, deep)
    async with connection(scene.pool) as conn:
        for plan in await _explain(conn, *page_query(req)):
            _check(plan, index, scene)


@pytest.mark.parametrize(("name", "equals", "index"), _cases(), ids=[c[0] for c in _cases()])
async def test_probe_behind_an_empty_page_is_an_index_probe(
    scene: Scene, name, equals, index
) -> None:
    # A cursor past the newest row, walking on in ascending order: the page is empty and the
    # probe looks back over the whole project.
    req = PageRequest(
        filter=LogFilter(project_id=scene.project, equals=equals),
        per_page=PER_PAGE,
        ascending=True,
        cursor=ids.highest_id(scene.now + timedelta(days=1)),
    )
    async with connection(scene.pool) as conn:
        for plan in await _explain(conn, *back_query(req)):
            nodes = _nodes(plan)
            kinds = {node["Node Type"] for node in nodes}
            assert not kinds & {"Seq Scan", "Sort", "Bitmap Heap Scan"}, kinds
            scans = [n for n in nodes if "Relation Name" in n]
            for scan in scans:
                _check_scan(scan, index, scene)
            assert sum(n["Actual Rows"] * n["Actual Loops"] for n in scans) == 1
