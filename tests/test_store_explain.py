"""Every single filter is an index range scan in id order that stops after per_page + 1 rows.

Read from EXPLAIN ANALYZE of the exact statement ``store.fetch_page`` runs, both as a custom
plan (parameters known) and as the generic plan a long-lived prepared statement falls back to.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import msgspec
import pytest

from gramlogs import ids
from gramlogs.seed import SeedPlan, generate, seed_logs
from gramlogs.store import LogFilter, PageRequest, _back_sql, _page_sql, _ranges

END = datetime(2025, 6, 1, tzinfo=UTC)
PER_PAGE = 20
PROJECT_ROWS = 30_000


@pytest.fixture(scope="module")
async def big_project(make_tenant, pool: asyncpg.Pool) -> uuid.UUID:
    tenant = await make_tenant("explain")
    neighbours = [await make_tenant("neighbour") for _ in range(2)]
    async with pool.acquire() as conn:
        await seed_logs(conn, SeedPlan(tenant.project_id, PROJECT_ROWS, END, days=30, seed=7))
        for n, other in enumerate(neighbours):
            await seed_logs(conn, SeedPlan(other.project_id, 10_000, END, days=30, seed=n))
        await conn.execute("ANALYZE logs")
    return tenant.project_id


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


def _arguments(req: PageRequest) -> list[object]:
    (lo, hi), (back_lo, back_hi) = _ranges(req)
    filters = tuple(sorted(req.filter.equals))
    return [
        req.filter.project_id,
        uuid.UUID(int=lo),
        uuid.UUID(int=hi),
        uuid.UUID(int=back_lo),
        uuid.UUID(int=back_hi),
        req.per_page + 1,
        *(req.filter.equals[f] for f in filters),
    ]


def _literal(value: object) -> str:
    return str(value) if isinstance(value, int) else "'" + str(value).replace("'", "''") + "'"


def _nodes(plan: dict) -> list[dict]:
    found = [plan]
    for child in plan.get("Plans", []):
        found += _nodes(child)
    return found


def _check(plan: dict, index: str) -> None:
    kinds = {node["Node Type"] for node in _nodes(plan)}
    assert not kinds & {"Seq Scan", "Sort", "Bitmap Heap Scan", "Incremental Sort"}, kinds
    assert plan["Node Type"] == "Limit"
    page_scan = next(p for p in plan["Plans"] if p.get("Parent Relationship") == "Outer")
    assert page_scan["Node Type"] in ("Index Scan", "Index Only Scan"), page_scan["Node Type"]
    assert page_scan["Index Name"] == index
    assert page_scan["Actual Rows"] <= PER_PAGE + 1
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
    sql = _page_sql(tuple(sorted(equals)), req.scan_ascending)
    async with pool.acquire() as conn:
        for plan in await _explain(conn, sql, _arguments(req)):
            _check(plan, index)


@pytest.mark.parametrize(("name", "equals", "index"), _cases(), ids=[c[0] for c in _cases()])
async def test_probe_behind_an_empty_page_is_an_index_probe(
    pool: asyncpg.Pool, big_project, name, equals, index
) -> None:
    filters = tuple(sorted(equals))
    lo, hi = ids.lowest_id(END - timedelta(days=40)).int, ids.highest_id(END).int
    args = [big_project, uuid.UUID(int=lo), uuid.UUID(int=hi), *(equals[f] for f in filters)]
    async with pool.acquire() as conn:
        for plan in await _explain(conn, _back_sql(filters, True), args):
            nodes = _nodes(plan)
            kinds = {node["Node Type"] for node in nodes}
            assert not kinds & {"Seq Scan", "Sort", "Bitmap Heap Scan"}, kinds
            scans = [n for n in nodes if n["Node Type"] in ("Index Scan", "Index Only Scan")]
            assert [n["Index Name"] for n in scans] == [index]
            assert scans[0]["Actual Rows"] == 1
