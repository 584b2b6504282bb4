"""Paging properties of listToolExecutionLogs, against random data over several projects.

For random rows, random filters, every page size, both sorts and both directions: a walk that
follows next_page_cursor visits exactly the filtered rows of the caller's project, each once, in
order; turning around with prev_page_cursor gives the rows on the other side; cursors of deleted
rows and of other projects' rows are positions, never a way into another project.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gramlogs.core import ids
from gramlogs.storage import writer
from tests._support import connection

URL = "/rpc/logs.listToolExecutionLogs"
BASE = datetime(2025, 6, 1, tzinfo=UTC)
FUNCTIONS = [uuid.UUID(int=i + 1) for i in range(3)]
DEPLOYMENTS = [uuid.UUID(int=100 + i) for i in range(2)]
INSTANCES = ["snowy-water-1", "quiet-river-2"]
LEVELS = ["debug", "info", "warn", "error"]
SOURCES = ["server", "function", "stdout", "stderr"]

PROPERTY = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@dataclass(frozen=True)
class Row:
    id: uuid.UUID
    ts: datetime
    owner: int  # 0: the caller's project; 1, 2: other tenants
    function_id: uuid.UUID
    deployment_id: uuid.UUID
    instance: str
    level: str
    source: str


# Timestamps cluster on a few milliseconds and microseconds so that equal timestamps (random
# tie-break) and equal milliseconds (microsecond ordering) are common.
timestamps = st.builds(
    lambda ms, us, day: BASE + timedelta(days=day, milliseconds=ms, microseconds=us),
    st.integers(0, 6),
    st.sampled_from([0, 1, 999]),
    st.integers(0, 2),
)

rows_strategy = st.lists(
    st.builds(
        lambda ts, owner, f, d, i, lv, s, r: Row(
            ids.new_id(ts, r), ts, owner, FUNCTIONS[f], DEPLOYMENTS[d], INSTANCES[i], lv, s
        ),
        timestamps,
        st.sampled_from([0, 0, 1, 2]),
        st.integers(0, len(FUNCTIONS) - 1),
        st.integers(0, len(DEPLOYMENTS) - 1),
        st.integers(0, len(INSTANCES) - 1),
        st.sampled_from(LEVELS),
        st.sampled_from(SOURCES),
        st.integers(0, (1 << 62) - 1),
    ),
    min_size=0,
    max_size=60,
    unique_by=lambda r: r.id,
)


@st.composite
def filters(draw: st.DrawFn) -> dict[str, str]:
    chosen: dict[str, str] = {}
    if draw(st.booleans()):
        chosen["function_id"] = str(draw(st.sampled_from(FUNCTIONS)))
    if draw(st.integers(0, 3)) == 0:
        chosen["deployment_id"] = str(draw(st.sampled_from(DEPLOYMENTS)))
    if draw(st.integers(0, 3)) == 0:
        chosen["instance"] = draw(st.sampled_from(INSTANCES))
    if draw(st.integers(0, 2)) == 0:
        chosen["level"] = draw(st.sampled_from(LEVELS))
    if draw(st.integers(0, 2)) == 0:
        chosen["source"] = draw(st.sampled_from(SOURCES))
    if draw(st.integers(0, 2)) == 0:
        start, end = sorted([draw(timestamps), draw(timestamps)])
        chosen["ts_start"] = start.isoformat().replace("+00:00", "Z")
        chosen["ts_end"] = end.isoformat().replace("+00:00", "Z")
    return chosen


# Small pages make long walks; every size up to the maximum is still drawn.
per_pages = st.one_of(st.integers(1, 3), st.integers(1, 10), st.integers(1, 100))


def matches(row: Row, f: dict[str, str]) -> bool:
    if "ts_start" in f and not (
        ids.parse_rfc3339(f["ts_start"]) <= row.ts <= ids.parse_rfc3339(f["ts_end"])
    ):
        return False
    return all(
        str(getattr(row, name)) == value
        for name, value in f.items()
        if name not in ("ts_start", "ts_end")
    )


def expected(rows: list[Row], f: dict[str, str], ascending: bool) -> list[uuid.UUID]:
    mine = [r for r in rows if r.owner == 0 and matches(r, f)]
    return [r.id for r in sorted(mine, key=lambda r: r.id.int, reverse=not ascending)]


class World:
    """Three fresh tenants holding ``rows``; requests are made as tenant 0."""

    def __init__(self, tenants: list, rows: list[Row]) -> None:
        self.tenants = tenants
        self.rows = rows

    async def store(self, pool: asyncpg.Pool) -> None:
        records = [
            (
                r.id,
                r.ts,
                r.instance,
                r.level,
                r.source,
                f"line {r.id}",
                None,
                "{}",
                self.tenants[r.owner].project_id,
                r.deployment_id,
                r.function_id,
                None,
            )
            for r in self.rows
        ]
        async with connection(pool) as conn:
            await writer.copy_lines(conn, records)


async def make_world(make_tenant, pool: asyncpg.Pool, rows: list[Row]) -> World:
    world = World([await make_tenant() for _ in range(3)], rows)
    await world.store(pool)
    return world


async def get_page(client: httpx.AsyncClient, world: World, params: dict[str, str]) -> dict:
    r = await client.get(URL, params=params, headers=world.tenants[0].headers())
    assert r.status_code == 200, r.text
    body = r.json()
    project = str(world.tenants[0].project_id)
    assert all(log["project_id"] == project for log in body["logs"])
    return body


async def walk(
    client: httpx.AsyncClient, world: World, params: dict[str, str], limit: int = 500
) -> list[list[str]]:
    """Every page of a walk that only swaps in next_page_cursor."""
    pages: list[list[str]] = []
    query = dict(params)
    for _ in range(limit):
        body = await get_page(client, world, query)
        pages.append([log["id"] for log in body["logs"]])
        pagination = body["pagination"]
        if not pagination["has_next_page"]:
            assert "next_page_cursor" not in pagination
            return pages
        assert pagination["next_page_cursor"] == (
            pages[-1][-1] if params.get("direction", "next") == "next" else pages[-1][0]
        )
        query["cursor"] = pagination["next_page_cursor"]
    raise AssertionError("walk did not end")


@PROPERTY
@given(
    rows=rows_strategy,
    f=filters(),
    per_page=per_pages,
    ascending=st.booleans(),
    forward=st.booleans(),
)
async def test_a_walk_visits_every_filtered_row_once_in_order(
    client, make_tenant, pool, rows, f, per_page, ascending, forward
) -> None:
    world = await make_world(make_tenant, pool, rows)
    params = {
        **f,
        "per_page": str(per_page),
        "sort": "asc" if ascending else "desc",
        "direction": "next" if forward else "prev",
    }
    pages = await walk(client, world, params)
    want = [str(i) for i in expected(rows, f, ascending)]
    # Going prev, pages arrive from the end backwards, each still in sort order.
    in_order = pages if forward else pages[::-1]
    assert [i for page in in_order for i in page] == want
    assert all(len(page) == per_page for page in pages[:-1])
    assert len(pages[-1]) <= per_page
    if want:
        assert pages[-1]


@PROPERTY
@given(
    rows=rows_strategy,
    f=filters(),
    per_page=per_pages,
    ascending=st.booleans(),
    forward=st.booleans(),
    cut=st.integers(0, 60),
)
async def test_turning_around_returns_the_rows_on_the_other_side(
    client, make_tenant, pool, rows, f, per_page, ascending, forward, cut
) -> None:
    world = await make_world(make_tenant, pool, rows)
    want = [str(i) for i in expected(rows, f, ascending)]
    base = {**f, "per_page": str(per_page), "sort": "asc" if ascending else "desc"}
    # Start from a cursor at position `cut` of the list (or none when cut is past the end).
    cursor = want[cut] if cut < len(want) else None
    params = {**base, "direction": "next" if forward else "prev"}
    if cursor:
        params["cursor"] = cursor
    body = await get_page(client, world, params)
    got = [log["id"] for log in body["logs"]]
    pagination = body["pagination"]
    if forward:
        start = want.index(cursor) + 1 if cursor else 0
        assert got == want[start : start + per_page]
        behind = want[:start]
        assert pagination["has_next_page"] == (start + per_page < len(want))
    else:
        end = want.index(cursor) if cursor else len(want)
        assert got == want[max(0, end - per_page) : end]
        behind = want[end:]
        assert pagination["has_next_page"] == (end - per_page > 0)
    assert pagination["has_prev_page"] == bool(behind)
    if "prev_page_cursor" not in pagination:
        assert not got and cursor is None
        return
    back = await get_page(
        client,
        world,
        {
            **base,
            "direction": "prev" if forward else "next",
            "cursor": pagination["prev_page_cursor"],
        },
    )
    back_ids = [log["id"] for log in back["logs"]]
    assert back_ids == (behind[-per_page:] if forward else behind[:per_page])


@PROPERTY
@given(
    rows=rows_strategy.filter(lambda rs: any(r.owner == 0 for r in rs)),
    per_page=per_pages,
    ascending=st.booleans(),
    pick=st.integers(0, 1000),
)
async def test_a_cursor_whose_row_was_deleted_still_pages(
    client, make_tenant, pool, rows, per_page, ascending, pick
) -> None:
    world = await make_world(make_tenant, pool, rows)
    want = [str(i) for i in expected(rows, {}, ascending)]
    gone = want[pick % len(want)]
    await pool.execute(
        "DELETE FROM logs WHERE project_id = $1 AND id = $2",
        world.tenants[0].project_id,
        uuid.UUID(gone),
    )
    params = {"per_page": str(per_page), "sort": "asc" if ascending else "desc", "cursor": gone}
    body = await get_page(client, world, params)
    position = want.index(gone)
    assert [log["id"] for log in body["logs"]] == want[position + 1 : position + 1 + per_page]
    body = await get_page(client, world, {**params, "direction": "prev"})
    assert [log["id"] for log in body["logs"]] == want[max(0, position - per_page) : position]


@PROPERTY
@given(
    rows=rows_strategy.filter(lambda rs: any(r.owner != 0 for r in rs)),
    per_page=per_pages,
    ascending=st.booleans(),
    forward=st.booleans(),
    pick=st.integers(0, 1000),
)
async def test_a_cursor_from_another_project_never_reveals_its_rows(
    client, make_tenant, pool, rows, per_page, ascending, forward, pick
) -> None:
    world = await make_world(make_tenant, pool, rows)
    foreign = [r for r in rows if r.owner != 0]
    cursor = foreign[pick % len(foreign)].id
    params = {
        "per_page": str(per_page),
        "sort": "asc" if ascending else "desc",
        "direction": "next" if forward else "prev",
        "cursor": str(cursor),
    }
    body = await get_page(client, world, params)  # asserts every row is the caller's
    want = expected(rows, {}, ascending)
    after = [str(i) for i in want if (i.int > cursor.int) == (ascending == forward)]
    got = [log["id"] for log in body["logs"]]
    assert got == (after[:per_page] if forward else after[-per_page:])
