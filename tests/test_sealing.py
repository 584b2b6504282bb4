"""Sealed blocks: what a reader sees does not change when lines move from rows into blocks.

Sealing runs here at a fixed time (``NOW``) and with small blocks, so that a few hundred lines
make many blocks, and between the pages of one walk, so that a cursor taken before a seal or a
merge continues after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import asyncpg
from hypothesis import given, settings
from hypothesis import strategies as st

from gramlogs.core import ids
from gramlogs.storage import (
    functions,
    histogram,
    journal,
    pages,
    retention,
    sealing,
    tenants,
    writer,
)
from gramlogs.storage.pages import LogFilter, PageRequest, fetch_page
from tests._support import connection, small_blocks

T0 = datetime(2025, 3, 3, tzinfo=UTC)
NOW = T0 + timedelta(days=2)
FUNCTIONS = (uuid.UUID(int=0x51), uuid.UUID(int=0x52), uuid.UUID(int=0x53))
DEPLOYMENTS = (uuid.UUID(int=0xD1), uuid.UUID(int=0xD2))
INSTANCES = ("i-a", "i-b", "i-c")
LEVELS = ("debug", "info", "warn", "error")
SOURCES = ("function", "server", "stdout", "stderr")
WORDS = ("alpha", "Bravo", "timeout", "50%", "naïve", "KELVIN \u212a", "x_y")


@dataclass(frozen=True)
class Line:
    id: uuid.UUID
    timestamp: datetime
    instance: str
    level: str
    source: str
    raw_log: str
    message: str | None
    function_id: uuid.UUID
    deployment_id: uuid.UUID
    execution_id: str | None

    def new_row(self, project_id: uuid.UUID) -> writer.NewRow:
        """As a client's batch holds it (writer.NewRow): ids as hex digits, uuids as text."""
        head = (self.id.hex, self.timestamp, self.instance, self.level, self.source)
        tail = (str(project_id), str(self.deployment_id), str(self.function_id))
        return (*head, self.raw_log, self.message, "{}", *tail, self.execution_id)

    def row(self, project_id: uuid.UUID) -> tuple[object, ...]:
        return (
            self.id,
            self.timestamp,
            self.instance,
            self.level,
            self.source,
            self.raw_log,
            self.message,
            "{}",
            project_id,
            self.deployment_id,
            self.function_id,
            self.execution_id,
        )


def make_lines(seed: int, n: int) -> list[Line]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        ts = T0 + timedelta(milliseconds=37 * i + rng.randrange(30))
        fn = rng.choice(FUNCTIONS)
        words = " ".join(rng.sample(WORDS, 2))
        out.append(
            Line(
                id=ids.new_id(ts),
                timestamp=ts,
                instance=rng.choice(INSTANCES),
                level=rng.choice(LEVELS),
                source=rng.choice(SOURCES),
                raw_log=f"line {i} {words}",
                message=rng.choice((None, words.upper())),
                function_id=fn,
                deployment_id=rng.choice(DEPLOYMENTS),
                execution_id=rng.choice((None, f"ex-{fn.int}-{i // 40}")),
            )
        )
    return out


@contextlib.contextmanager
def sealed_batches(rows: int) -> Iterator[None]:
    """Batches of ``rows`` lines or more go straight into blocks."""
    saved = writer.SEALED_BATCH_ROWS
    writer.SEALED_BATCH_ROWS = rows
    try:
        yield
    finally:
        writer.SEALED_BATCH_ROWS = saved


async def seed(pool, project_id: uuid.UUID, lines: list[Line], *, batches: int = 0) -> None:
    """As rows (COPY), or with ``batches``, as client batches of that many lines, each of
    them written straight into blocks."""
    async with connection(pool) as conn:
        if not batches:
            await writer.copy_lines(conn, [line.row(project_id) for line in lines])
            return
        with sealed_batches(1):
            for start in range(0, len(lines), batches):
                part = [line.new_row(project_id) for line in lines[start : start + batches]]
                assert await writer.store_batch(conn, project_id, part) == (len(part), 0)


async def seal(
    pool, project: uuid.UUID, blocks: int, *, merge: bool = False, now: datetime = NOW
) -> None:
    """Seal up to ``blocks`` blocks of the project's rows (other tests' projects are left as
    they are), then merge its small blocks."""
    async with connection(pool) as conn:
        await sealing.seal_some(conn, now=now, max_blocks=blocks, project_id=project)
        if merge:
            await sealing.merge_some(conn, project_id=project)


async def counts(pool, project_id: uuid.UUID) -> tuple[int, int]:
    """(rows, sealed lines) of the project."""
    async with connection(pool) as conn:
        rows = await conn.fetchval("SELECT count(*) FROM logs WHERE project_id = $1", project_id)
        sealed = await conn.fetchval(
            "SELECT coalesce(sum(lines), 0) FROM log_sealed WHERE project_id = $1", project_id
        )
    return rows, sealed


def matches(line: Line, equals: dict[str, object], keyword: str | None) -> bool:
    for column, value in equals.items():
        if getattr(line, column) != value:
            return False
    if keyword is None:
        return True
    k = keyword.lower()
    return k in line.raw_log.lower() or (line.message is not None and k in line.message.lower())


FILTERS = st.fixed_dictionaries(
    {},
    optional={
        "function_id": st.sampled_from(FUNCTIONS),
        "deployment_id": st.sampled_from(DEPLOYMENTS),
        "instance": st.sampled_from(INSTANCES),
        "level": st.sampled_from(LEVELS),
        "source": st.sampled_from(SOURCES),
        "execution_id": st.sampled_from(("ex-81-0", "ex-82-3", "ex-83-7", "absent")),
    },
)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    seed_value=st.integers(0, 3),
    equals=FILTERS,
    keyword=st.none() | st.sampled_from((*WORDS, "LINE 1", "absent", "al")),
    per_page=st.integers(1, 60),
    ascending=st.booleans(),
    forward=st.booleans(),
    seals=st.lists(st.integers(0, 6), min_size=1, max_size=12),
    merge=st.booleans(),
    batches=st.sampled_from((0, 0, 7, 40)),
)
async def test_a_walk_sees_every_line_once_in_order_while_lines_are_sealed_between_pages(
    pool,
    make_tenant,
    seed_value,
    equals,
    keyword,
    per_page,
    ascending,
    forward,
    seals,
    merge,
    batches,
):
    tenant = await make_tenant()
    lines = make_lines(seed_value, 300)
    # Half as rows, sealed between pages; with batches, half written straight into blocks.
    await seed(pool, tenant.project_id, lines[::2], batches=batches)
    await seed(pool, tenant.project_id, lines[1::2])
    f = LogFilter(tenant.project_id, equals=dict(equals), keyword=keyword)
    expected = [line.id for line in lines if matches(line, equals, keyword)]
    expected.sort(key=lambda i: i.int, reverse=not ascending)
    walked: list[list[uuid.UUID]] = []
    cursor = None
    with small_blocks(16):
        await seal(pool, tenant.project_id, seals[0], merge=merge)
        for step in range(len(lines) + 2):
            req = PageRequest(f, per_page, ascending=ascending, forward=forward, cursor=cursor)
            async with connection(pool) as conn:
                page = await fetch_page(conn, req)
            got = [row[0] for row in page.rows]
            walked.append(got)
            assert len(got) <= per_page
            if step > 0:
                assert page.has_back == bool(walked[-2])
            if not page.has_more or not got:
                break
            cursor = got[-1] if forward else got[0]
            await seal(pool, tenant.project_id, seals[(step + 1) % len(seals)], merge=merge)
    if not forward:
        walked.reverse()
    assert [i for page in walked for i in page] == expected


class Interleaved:
    """A page's connection that seals (and merges) the project's lines on another connection
    before each of its statements, as the server's sealing may commit between them."""

    def __init__(self, conn: Any, pool: Any, project: uuid.UUID, seals: list[int], merge: bool):
        self._conn, self._pool, self._project = conn, pool, project
        self._seals, self._merge = seals, merge
        self.statements = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    async def _between(self) -> None:
        blocks = self._seals[self.statements % len(self._seals)]
        self.statements += 1
        if blocks:
            await seal(self._pool, self._project, blocks, merge=self._merge)

    async def fetch(self, *args: Any) -> Any:
        await self._between()
        return await self._conn.fetch(*args)

    async def fetchval(self, *args: Any) -> Any:
        await self._between()
        return await self._conn.fetchval(*args)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    seed_value=st.integers(0, 3),
    equals=FILTERS,
    per_page=st.integers(1, 60),
    ascending=st.booleans(),
    forward=st.booleans(),
    seals=st.lists(st.integers(0, 3), min_size=1, max_size=8),
    merge=st.booleans(),
)
async def test_a_walk_sees_every_line_once_while_seals_commit_between_the_statements_of_a_page(
    pool, make_tenant, seed_value, equals, per_page, ascending, forward, seals, merge
):
    # A page reads without a transaction first (pages.fetch_page): lines it read as rows may
    # be in a block by its next statement, and blocks it listed merged before it fetches them.
    tenant = await make_tenant()
    lines = make_lines(seed_value, 300)
    await seed(pool, tenant.project_id, lines)
    f = LogFilter(tenant.project_id, equals=dict(equals))
    expected = [line.id for line in lines if matches(line, equals, None)]
    expected.sort(key=lambda i: i.int, reverse=not ascending)
    walked: list[list[uuid.UUID]] = []
    cursor = None
    with small_blocks(16):
        for step in range(len(lines) + 2):
            req = PageRequest(f, per_page, ascending=ascending, forward=forward, cursor=cursor)
            async with connection(pool) as conn:
                page = await fetch_page(
                    cast(Any, Interleaved(conn, pool, tenant.project_id, seals, merge)), req
                )
            got = [row[0] for row in page.rows]
            walked.append(got)
            if step > 0:
                assert page.has_back == bool(walked[-2])
            if not page.has_more or not got:
                break
            cursor = got[-1] if forward else got[0]
    if not forward:
        walked.reverse()
    assert [i for page in walked for i in page] == expected


async def test_a_page_whose_listed_block_is_merged_before_it_is_read_reads_again(
    pool, make_tenant, monkeypatch
):
    tenant = await make_tenant()
    lines = make_lines(11, 120)
    await seed(pool, tenant.project_id, lines)
    with small_blocks(16):
        await seal(pool, tenant.project_id, 100)
    with small_blocks(64):  # the blocks of 16 lines or fewer are now small: merged when asked
        reads: list[bool] = []
        page_of = pages._page

        async def spied(conn: Any, req: PageRequest, *, snapshot: bool) -> Any:
            reads.append(snapshot)
            return await page_of(conn, req, snapshot=snapshot)

        monkeypatch.setattr(pages, "_page", spied)
        req = PageRequest(LogFilter(tenant.project_id), 30)
        async with connection(pool) as conn:
            # Statements: the rows, the listing, then the keys or texts of what it listed,
            # before which the blocks are merged.
            page = await fetch_page(
                cast(Any, Interleaved(conn, pool, tenant.project_id, [0, 0, 1], True)), req
            )
    newest = sorted((x.id for x in lines), key=lambda i: -i.int)
    assert [row[0] for row in page.rows] == newest[:30]
    assert reads == [False, True]


async def test_every_line_is_in_one_place_after_sealing_and_merging(pool, make_tenant):
    tenant = await make_tenant()
    lines = make_lines(7, 500)
    await seed(pool, tenant.project_id, lines)
    with small_blocks(32):
        await seal(pool, tenant.project_id, 5)
        assert await counts(pool, tenant.project_id) == (500 - 5 * 32, 5 * 32)
        # Partial blocks once the rows are older than SEAL_AGE_S; then merged.
        await seal(pool, tenant.project_id, 1000, merge=True)
    rows, sealed_lines = await counts(pool, tenant.project_id)
    assert (rows, sealed_lines) == (0, 500)
    async with connection(pool) as conn:
        page = await fetch_page(conn, PageRequest(LogFilter(tenant.project_id), 1000))
    assert [row[0] for row in page.rows] == sorted((x.id for x in lines), key=lambda i: -i.int)
    by_id = {line.id: line for line in lines}
    for row in page.rows:
        line = by_id[row[0]]
        assert tuple(row[:12]) == line.row(tenant.project_id)
        assert row["timestamp"] == line.timestamp


async def test_young_rows_stay_rows(pool, make_tenant):
    tenant = await make_tenant()
    await seed(pool, tenant.project_id, make_lines(1, 40))
    with small_blocks(8):
        # An hour before NOW's data ends, nothing is older than the delay: nothing is sealed.
        await seal(pool, tenant.project_id, 100, now=T0)
        assert await counts(pool, tenant.project_id) == (40, 0)
        # Past the delay but before the age: full blocks only.
        just_after = T0 + timedelta(seconds=sealing.SEAL_DELAY_S + 60)
        await seal(pool, tenant.project_id, 100, now=just_after)
    rows, sealed_lines = await counts(pool, tenant.project_id)
    assert sealed_lines > 0 and sealed_lines % 8 == 0 and rows + sealed_lines == 40


async def seeded_with_edges(
    pool, make_tenant, seed_: int, n: int, parts: int
) -> tuple[Any, list[int]]:
    """A new tenant with ``n`` rows of :func:`make_lines`, and the edges that cut their id span
    into ``parts`` ranges (for histogram counts)."""
    tenant = await make_tenant()
    lines = make_lines(seed_, n)
    await seed(pool, tenant.project_id, lines)
    span = lines[-1].id.int - lines[0].id.int
    return tenant, [lines[0].id.int + span * k // parts for k in range(1, parts)]


async def test_histogram_counts_the_same_before_and_after_sealing(pool, make_tenant):
    tenant, edges = await seeded_with_edges(pool, make_tenant, 3, 400, 7)
    filters: list[dict[str, object]] = [
        {},
        {"level": "error"},
        {"function_id": FUNCTIONS[1], "level": "warn"},
        {"instance": "i-b"},
        {"execution_id": "ex-81-2"},
        {"source": "stderr", "deployment_id": DEPLOYMENTS[0]},
    ]

    async def all_counts() -> list[list[int]]:
        out = []
        async with connection(pool) as conn:
            for equals in filters:
                for keyword in (None, "timeout"):
                    f = LogFilter(tenant.project_id, equals=equals, keyword=keyword)
                    out.append(await histogram.count_ranges(conn, f, edges))
        return out

    before = await all_counts()
    assert sum(before[0]) == 400
    with small_blocks(24):
        await seal(pool, tenant.project_id, 9)
        assert await all_counts() == before
        await seal(pool, tenant.project_id, 1000, merge=True)
    assert await counts(pool, tenant.project_id) == (0, 400)
    assert await all_counts() == before


async def test_counts_split_by_level_or_source_are_the_counts_of_each_value(pool, make_tenant):
    # Grafana's log volume: one read counts every level (histogram.count_ranges_by), over rows,
    # whole blocks, blocks cut by an edge, with and without a keyword.
    tenant, edges = await seeded_with_edges(pool, make_tenant, 5, 300, 5)

    async def check() -> None:
        async with connection(pool) as conn:
            choices: list[dict[str, object]] = [
                {},
                {"level": "warn"},
                {"function_id": FUNCTIONS[0]},
            ]
            for equals in choices:
                for keyword in (None, "timeout"):
                    f = LogFilter(tenant.project_id, equals=equals, keyword=keyword)
                    for by, values in histogram.VALUES.items():
                        split = await histogram.count_ranges_by(conn, f, edges, by)
                        for v in values:
                            if equals.get(by, v) != v:
                                assert v not in split
                                continue
                            g = LogFilter(f.project_id, equals={**equals, by: v}, keyword=keyword)
                            assert split[v] == await histogram.count_ranges(conn, g, edges)
                    total = await histogram.count_ranges_by(conn, f, edges, "level")
                    assert [sum(c) for c in zip(*total.values(), strict=True)] == (
                        await histogram.count_ranges(conn, f, edges)
                    )

    await check()
    with small_blocks(20):
        await seal(pool, tenant.project_id, 6)
        await check()
        await seal(pool, tenant.project_id, 1000, merge=True)
    assert await counts(pool, tenant.project_id) == (0, 300)
    await check()


async def test_poly_delete_and_retention_remove_sealed_lines(fresh_database):
    # A database of its own: retention deletes from every project.
    async with asyncpg.create_pool(fresh_database, min_size=1, max_size=2) as pool:
        async with connection(pool) as conn:
            org = await tenants.create_organization(conn, "sealed-retention")
            project = await tenants.create_project(conn, org, "p")
        lines = make_lines(5, 300)
        await seed(pool, project, lines)
        with small_blocks(16):
            await seal(pool, project, 6)
        assert (await counts(pool, project))[1] == 6 * 16
        target = FUNCTIONS[0]
        doomed = [x for x in lines if x.function_id == target and x.source in ("stdout", "stderr")]
        async with connection(pool) as conn:
            deleted = await functions.delete_logs(
                conn, project, target, sources=("stdout", "stderr")
            )
        assert deleted == len(doomed)
        left = [x for x in lines if x not in doomed]
        cutoff = left[len(left) // 2]
        async with connection(pool) as conn:
            await conn.execute("UPDATE projects SET retention_days = 1 WHERE id = $1", project)
            await retention.apply_retention(
                conn, default_days=365, now=cutoff.timestamp + timedelta(days=1)
            )
            page = await fetch_page(conn, PageRequest(LogFilter(project), 1000))
        kept = [x.id for x in left if x.id.int >= ids.lowest_id(cutoff.timestamp).int]
        assert 0 < len(kept) < len(left)
        assert sorted(row[0].int for row in page.rows) == sorted(i.int for i in kept)
        assert sum(await counts(pool, project)) == len(kept)


async def test_a_resend_of_sealed_lines_stores_nothing(pool, make_tenant):
    tenant = await make_tenant()
    lines = make_lines(9, 50)
    rows: list[writer.NewRow] = [
        (
            line.id.hex,
            line.timestamp,
            line.instance,
            line.level,
            line.source,
            line.raw_log,
            line.message,
            "{}",
            str(tenant.project_id),
            str(line.deployment_id),
            str(line.function_id),
            line.execution_id,
        )
        for line in lines
    ]
    async with connection(pool) as conn:
        assert await writer.store_batch(conn, tenant.project_id, rows) == (50, 0)
    with small_blocks(8):
        await seal(pool, tenant.project_id, 1000)
    assert (await counts(pool, tenant.project_id))[1] == 50
    async with connection(pool) as conn:
        assert await writer.store_batch(conn, tenant.project_id, rows) == (0, 50)
        assert await writer.store_batch(conn, tenant.project_id, rows[:10] + rows[:0]) == (0, 10)
    assert await counts(pool, tenant.project_id) == (0, 50)


async def test_the_tail_reads_lines_that_were_sealed_since_their_batch(pool, make_tenant):
    tenant = await make_tenant()
    lines = make_lines(4, 120)
    await seed(pool, tenant.project_id, lines)
    async with connection(pool) as conn:
        plain_before = await journal.read_lines(conn, tenant.project_id, 1, 1)
        before = await journal.read_lines(conn, tenant.project_id, 1, 1, ["%TIMEOUT%"])
        piece_before = await journal.read_piece(
            conn, tenant.project_id, 1, uuid.UUID(int=0), 50, ["%alpha%"]
        )
    with small_blocks(16):
        await seal(pool, tenant.project_id, 1000)
    assert (await counts(pool, tenant.project_id))[0] == 0
    async with connection(pool) as conn:
        plain_after = await journal.read_lines(conn, tenant.project_id, 1, 1)
        after = await journal.read_lines(conn, tenant.project_id, 1, 1, ["%TIMEOUT%"])
        piece_after = await journal.read_piece(
            conn, tenant.project_id, 1, uuid.UUID(int=0), 50, ["%alpha%"]
        )
    assert len(before) == 120
    assert [tuple(r) for r in after] == [tuple(r) for r in before]
    assert [tuple(r) for r in plain_after] == [tuple(r) for r in plain_before]
    assert any(r[journal.MATCHED_COLUMN] for r in after)
    assert [tuple(r) for r in piece_after] == [tuple(r) for r in piece_before]


async def test_pages_stay_whole_while_seals_and_merges_commit(pool, make_tenant):
    tenant = await make_tenant()
    lines = make_lines(2, 600)
    await seed(pool, tenant.project_id, lines)
    newest_first = sorted((x.id for x in lines), key=lambda i: -i.int)
    stop = asyncio.Event()

    async def sealer() -> None:
        with small_blocks(8):
            while not stop.is_set():
                await seal(pool, tenant.project_id, 3, merge=True)
                await asyncio.sleep(0)

    task = asyncio.create_task(sealer())
    try:
        for _ in range(40):
            async with connection(pool) as conn:
                page = await fetch_page(conn, PageRequest(LogFilter(tenant.project_id), 600))
            assert [row[0] for row in page.rows] == newest_first
    finally:
        stop.set()
        await task
    assert sum(await counts(pool, tenant.project_id)) == 600


async def test_a_large_batch_is_stored_sealed_and_nothing_twice(pool, make_tenant):
    tenant = await make_tenant()
    lines = make_lines(12, 1500)
    rows = [line.new_row(tenant.project_id) for line in lines]
    small = rows[:100:3]
    async with connection(pool) as conn:
        # Some of its lines came before, as a small batch: rows.
        assert await writer.store_batch(conn, tenant.project_id, small) == (len(small), 0)
        assert len(rows) >= writer.SEALED_BATCH_ROWS
        stored = await writer.store_batch(conn, tenant.project_id, rows)
        assert stored == (1500 - len(small), len(small))
        assert await counts(pool, tenant.project_id) == (len(small), 1500 - len(small))
        assert await writer.store_batch(conn, tenant.project_id, rows) == (0, 1500)
        assert await writer.store_batch(conn, tenant.project_id, rows[500:520]) == (0, 20)
        page = await fetch_page(conn, PageRequest(LogFilter(tenant.project_id), 2000))
    assert [row[0] for row in page.rows] == sorted((x.id for x in lines), key=lambda i: -i.int)
    assert sum(await counts(pool, tenant.project_id)) == 1500


async def test_a_resend_racing_its_original_stores_each_line_once(pool, make_tenant):
    tenant = await make_tenant()
    rows = [line.new_row(tenant.project_id) for line in make_lines(13, 1200)]

    async def send() -> tuple[int, int]:
        async with connection(pool) as conn:
            return await writer.store_batch(conn, tenant.project_id, rows)

    results = await asyncio.gather(send(), send())
    assert sorted(results) == [(0, 1200), (1200, 0)]
    assert await counts(pool, tenant.project_id) == (0, 1200)
