"""The page function (migrations/0008, storage/routing.py) returns exactly the rows of the page
statement it stands for, for every filter and direction, and prepares that statement once.

On one PostgreSQL the server never calls it (pages run their own prepared statement); here a
connection is made to call it, so that the suite on one node checks the function's SQL too.
On Citus the database's function is distributed, and its calls run on the shard's worker
(test_citus.py checks where).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from gramlogs.core import ids
from gramlogs.local.seed import SeedPlan, seed_logs
from gramlogs.storage import citus, pages, routing, tenants
from gramlogs.storage.pages import LogFilter, PageRequest
from tests.conftest import ON_CITUS

END = datetime(2026, 11, 30, 12, tzinfo=UTC)
ROWS = 3000


@dataclass(frozen=True)
class Scene:
    plain: asyncpg.Connection
    routed: asyncpg.Connection
    project: uuid.UUID
    row: asyncpg.Record  # a line from the middle: its values filter, its id is a cursor


async def _connect(url: str, *, routed: bool = False) -> asyncpg.Connection:
    """A connection as the server's pools make them (routed: of their class)."""
    cls = routing.RoutedConnection if routed else asyncpg.Connection
    conn = await asyncpg.connect(url, server_settings=pages.PLAN_SETTINGS, connection_class=cls)
    await citus.prepare_connection(conn)
    return conn


@pytest.fixture(scope="module")
async def scene(database_url: str) -> AsyncIterator[Scene]:
    plain = await _connect(database_url)
    routed = await _connect(database_url, routed=True)
    if not ON_CITUS:
        routing.delegate_pages(routed)
    try:
        org = await tenants.create_organization(plain, f"org-routing-{uuid.uuid4().hex[:8]}")
        project = await tenants.create_project(plain, org, "routing")
        await seed_logs(plain, SeedPlan(project, rows=ROWS, end=END, days=2, seed=11))
        row = await plain.fetchrow(
            "SELECT * FROM logs WHERE project_id = $1 AND execution_id IS NOT NULL"
            " ORDER BY id OFFSET $2 LIMIT 1",
            project,
            ROWS // 2,
        )
        assert row is not None
        yield Scene(plain, routed, project, row)
    finally:
        await plain.close()
        await routed.close()


def _filters(row: asyncpg.Record) -> dict[str, dict[str, object]]:
    return {
        "none": {},
        "function": {"function_id": row["function_id"]},
        "deployment and level": {"deployment_id": row["deployment_id"], "level": "error"},
        "instance": {"instance": row["instance"]},
        "source": {"source": "server"},
        "execution": {"execution_id": row["execution_id"]},
        "function and every column": {
            c: row[c] for c in ("function_id", "deployment_id", "instance", "level", "source")
        },
    }


def _requests(scene: Scene) -> list[PageRequest]:
    window = (ids.lowest_id(END - timedelta(days=1)).int, ids.highest_id(END).int)
    found = []
    for name, equals in _filters(scene.row).items():
        for lo, hi in ((0, (1 << 128) - 1), window):
            base = LogFilter(scene.project, lo=lo, hi=hi, equals=equals)
            sources = LogFilter(scene.project, lo=lo, hi=hi, equals=equals, sources=("function",))
            for f in (base, sources) if name == "none" else (base,):
                for ascending in (False, True):
                    for forward in (True, False):
                        for cursor in (None, scene.row["id"]):
                            found.append(PageRequest(f, 20, ascending, forward, cursor))
    return found


async def test_the_function_returns_the_rows_of_the_page_statement(scene: Scene) -> None:
    compared = 0
    for req in _requests(scene):
        query = pages.page_query(req)
        call = routing.call_query(req, query)
        expected = [tuple(r) for r in await scene.plain.fetch(*_unpacked(query))]
        found = [tuple(r) for r in await scene.routed.fetch(*_unpacked(call))]
        assert found == expected, req
        compared += bool(expected)
    assert compared > 100  # most requests have rows: the comparison is not of empty lists


async def test_pages_read_through_the_function_are_the_pages_of_the_statement(
    scene: Scene,
) -> None:
    assert routing.delegates(scene.routed) and not routing.delegates(scene.plain)
    for equals in _filters(scene.row).values():
        for ascending in (False, True):
            walks = []
            for conn in (scene.plain, scene.routed):
                walks.append(await _walk(conn, LogFilter(scene.project, equals=equals), ascending))
            assert walks[0] == walks[1]
            assert walks[0], equals


async def _walk(
    conn: asyncpg.Connection, f: LogFilter, ascending: bool
) -> list[tuple[list[uuid.UUID], bool, bool]]:
    """Every page of ``f`` forwards, 100 lines at a time, then the first one back again."""
    pages_seen = []
    cursor = None
    while True:
        page = await pages.fetch_page(conn, PageRequest(f, 100, ascending, True, cursor))
        pages_seen.append(([r["id"] for r in page.rows], page.has_more, page.has_back))
        if not page.has_more:
            break
        cursor = page.rows[-1]["id"]
    back = await pages.fetch_page(conn, PageRequest(f, 100, ascending, False, cursor))
    pages_seen.append(([r["id"] for r in back.rows], back.has_more, back.has_back))
    return pages_seen


@pytest.mark.single_node(
    "on Citus the call runs on the worker, whose statements test_citus.py reads there"
)
async def test_the_function_prepares_its_statement_once_with_a_generic_plan(
    database_url: str, scene: Scene
) -> None:
    conn = await _connect(database_url, routed=True)
    try:
        for cursor in (None, scene.row["id"], None):
            f = LogFilter(scene.project, equals={"level": "warn"})
            req = PageRequest(f, 20, cursor=cursor)
            await conn.fetch(*_unpacked(routing.call_query(req, pages.page_query(req))))
        prepared = await conn.fetch(
            "SELECT name, generic_plans, custom_plans FROM pg_prepared_statements"
            " WHERE name LIKE 'gramlogs_page_rows_%'"
        )
    finally:
        await conn.close()
    # Shard 0: no Citus. Descending, filter bit 8: the level.
    assert [tuple(r) for r in prepared] == [("gramlogs_page_rows_0_desc_8", 3, 0)]


def _unpacked(query: tuple[str, list[object]]) -> tuple[str, *tuple[object, ...]]:
    return (query[0], *query[1])
