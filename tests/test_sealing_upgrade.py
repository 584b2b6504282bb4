"""Schema version 7 (sealed blocks) upgrades a version 6 database in place: the pages and the
histogram its rows gave before give the same after the upgrade, and again once some and then
all of the lines are sealed.

Version 6 is read as its server read it, from the rows alone: pages.read_page (the one page
statement; a keyword page without block summaries) and the histogram's counting statement
(histogram.histogram_query). Version 7 is read through the blocks too (pages.fetch_page,
histogram.count_ranges).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

import asyncpg
import pytest

from gramlogs.storage import histogram, schema, sealing, tenants, writer
from gramlogs.storage.pages import LogFilter, Page, PageRequest, fetch_page, read_page
from tests._support import small_blocks
from tests.test_sealing import (
    DEPLOYMENTS,
    FUNCTIONS,
    NOW,
    Line,
    make_lines,
    matches,
)

SEALED_VERSION = 7
FILTERS: list[dict[str, object]] = [
    {},
    {"level": "error"},
    {"function_id": FUNCTIONS[1], "source": "stderr"},
    {"instance": "i-b", "deployment_id": DEPLOYMENTS[0]},
    {"execution_id": "ex-81-2"},
]
KEYWORDS = (None, "timeout", "LINE 1")

Reader = Callable[[asyncpg.Connection, PageRequest], Awaitable[Page]]
Walks = dict[tuple[int, str | None, bool], list[tuple[list[tuple[object, ...]], bool, bool]]]


async def _walks(conn: asyncpg.Connection, project_id: uuid.UUID, read: Reader) -> Walks:
    """Every filter's walk, both sorts, 23 lines a page: each page's lines and flags."""
    out: Walks = {}
    for n, equals in enumerate(FILTERS):
        for keyword in KEYWORDS:
            for ascending in (False, True):
                f = LogFilter(project_id, equals=equals, keyword=keyword)
                pages = out[n, keyword, ascending] = []
                cursor = None
                while True:
                    page = await read(conn, PageRequest(f, 23, ascending=ascending, cursor=cursor))
                    pages.append(([tuple(r[:12]) for r in page.rows], page.has_more, page.has_back))
                    if not page.has_more:
                        break
                    cursor = page.rows[-1][0]
    return out


def _edges(lines: list[Line]) -> list[int]:
    span = lines[-1].id.int - lines[0].id.int
    return [lines[0].id.int + span * k // 9 for k in range(1, 9)]


async def _rows_histograms(
    conn: asyncpg.Connection, project_id: uuid.UUID, edges: list[int]
) -> list[list[int]]:
    """Each filter's counts as version 6 made them: the counting statement over the rows."""
    out = []
    for equals in FILTERS:
        for keyword in KEYWORDS:
            f = LogFilter(project_id, equals=equals, keyword=keyword)
            sql, args, counted = histogram.histogram_query(f, edges)
            counts = [0] * (len(edges) + 1)
            for n, count in await conn.fetch(sql, *args):
                counts[counted[n - 1]] = count
            out.append(counts)
    return out


async def _histograms(
    conn: asyncpg.Connection, project_id: uuid.UUID, edges: list[int]
) -> list[list[int]]:
    out = []
    for equals in FILTERS:
        for keyword in KEYWORDS:
            f = LogFilter(project_id, equals=equals, keyword=keyword)
            out.append(await histogram.count_ranges(conn, f, edges))
    return out


async def _stored(conn: asyncpg.Connection, project_id: uuid.UUID) -> tuple[int, int]:
    rows = await conn.fetchval("SELECT count(*) FROM logs WHERE project_id = $1", project_id)
    lines = await conn.fetchval(
        "SELECT coalesce(sum(lines), 0) FROM log_sealed WHERE project_id = $1", project_id
    )
    return rows, lines


async def test_a_version_6_database_reads_the_same_after_the_upgrade_and_after_sealing(
    empty_database, monkeypatch: pytest.MonkeyPatch
):
    (step,) = [s for s in schema.steps() if s.version == SEALED_VERSION]
    assert step.name.endswith("_sealed_blocks.sql")
    conn = await asyncpg.connect(empty_database)
    try:
        before = schema.steps()[: SEALED_VERSION - 1]
        with monkeypatch.context() as m:
            m.setattr(schema, "steps", lambda: before)
            await schema.migrate(conn)
        assert await schema.current_version(conn) == SEALED_VERSION - 1
        project_id = await tenants.create_project(
            conn, await tenants.create_organization(conn, "o"), "p"
        )
        lines = make_lines(11, 400)
        await writer.copy_lines(conn, [line.row(project_id) for line in lines])
        edges = _edges(lines)

        walks = await _walks(conn, project_id, read_page)
        counts = await _rows_histograms(conn, project_id, edges)
        # What version 6 read is right, so "the same" below means right too.
        for (n, keyword, ascending), pages in walks.items():
            expected = [x.id for x in lines if matches(x, FILTERS[n], keyword)]
            expected.sort(key=lambda i: i.int, reverse=not ascending)
            assert [row[0] for rows, _, _ in pages for row in rows] == expected
        assert sum(counts[0]) == 400
        assert min(len(pages) for pages in walks.values()) >= 1
        assert max(len(pages) for pages in walks.values()) > 10

        # Version 7, and the versions after it.
        assert await schema.migrate(conn) == schema.steps()[SEALED_VERSION - 1 :]

        assert await _stored(conn, project_id) == (400, 0)
        assert await _walks(conn, project_id, fetch_page) == walks
        assert await _histograms(conn, project_id, edges) == counts
        with small_blocks(16):
            await sealing.seal_some(conn, now=NOW, max_blocks=7)
            assert await _stored(conn, project_id) == (400 - 7 * 16, 7 * 16)
            assert await _walks(conn, project_id, fetch_page) == walks
            assert await _histograms(conn, project_id, edges) == counts
            await sealing.seal_some(conn, now=NOW, max_blocks=1000)
            await sealing.merge_some(conn)
        assert await _stored(conn, project_id) == (0, 400)
        assert await _walks(conn, project_id, fetch_page) == walks
        assert await _histograms(conn, project_id, edges) == counts
    finally:
        await conn.close()
