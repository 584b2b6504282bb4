"""The tail journal: batches numbered in commit order, and reading from any resume point."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gramlogs.core import ids
from gramlogs.live.watchers import TailFilter, catch_up
from gramlogs.storage import journal, writer
from gramlogs.storage.journal import Position

PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
BASE = datetime(2026, 11, 20, tzinfo=UTC)
FUNCTIONS = (uuid.UUID(int=1), uuid.UUID(int=2))
DEPLOYMENT = uuid.UUID(int=3)


def row(
    project: uuid.UUID,
    seconds: int,
    n: int,
    *,
    function: int = 0,
    level: str = "info",
    raw: str = "plain",
) -> writer.NewRow:
    ts = BASE + timedelta(seconds=seconds)
    line_id = ids.new_id(ts, rand_b=n)
    return (
        line_id.hex, ts, "", level, "function", f"{n} {raw}", None, "{}",
        str(project), str(DEPLOYMENT), str(FUNCTIONS[function]), None,
    )  # fmt: skip


class HeldBeforeNumbering:
    """A companion that holds its batch after the lines are stored, before its number."""

    def __init__(self) -> None:
        self.stored = asyncio.Event()
        self.release = asyncio.Event()

    async def begin(self, conn: asyncpg.Connection) -> None:
        pass

    async def end(self, conn: asyncpg.Connection, stored: int, duplicates: int) -> None:
        self.stored.set()
        await self.release.wait()


async def test_a_batch_with_lower_ids_that_commits_later_is_read_after_the_others(
    pool, tenant, app
):
    """The trap of "everything after the last id read": batch A (early timestamps) is stored
    first but commits last. The journal numbers by commit, so a reader that has read B still
    gets A next."""
    db = app.state.gramlogs.db
    project = tenant.project_id
    a = [row(project, 0, n) for n in range(3)]
    b = [row(project, 100, n, function=1) for n in range(3, 5)]  # another function: no lock shared
    held = HeldBeforeNumbering()
    async with pool.acquire() as conn_a, pool.acquire() as conn_b:
        start = Position(await journal.head(conn_b, project))
        first = asyncio.create_task(writer.store_batch(conn_a, project, a, companion=held))
        await held.stored.wait()
        await writer.store_batch(conn_b, project, b)
        frames, after, ended = await catch_up(db, project, TailFilter(), start)
        assert [f.position.after for f in frames] == [uuid.UUID(r[0]).int for r in b]
        assert ended
        held.release.set()
        await first
    later, _, _ = await catch_up(db, project, TailFilter(), after)
    assert [f.position.after for f in later] == [uuid.UUID(r[0]).int for r in a]
    assert later[0].position.seq == frames[0].position.seq + 1


def test_positions_order_by_batch_then_id():
    assert Position(1) > Position(1, 5) > Position(1, 4) > Position(0)
    assert Position(2, 0) > Position(1)
    assert Position(3).done and not Position(3, 9).done


lines = st.tuples(
    st.integers(-86_400, 86_400),  # seconds from BASE: late lines are common
    st.integers(0, 1),  # function
    st.sampled_from(["info", "error"]),
    st.sampled_from(["plain", "a Needle here", "needle"]),
)
tail_filters = st.sampled_from(
    [
        TailFilter(),
        TailFilter(equals={"function_id": FUNCTIONS[1]}),
        TailFilter(equals={"level": "error"}),
        TailFilter(keyword="NEEDLE"),
        TailFilter(equals={"level": "info"}, keyword="needle"),
    ]
)


@PROPERTY
@given(
    batches=st.lists(st.lists(lines, min_size=1, max_size=6), min_size=1, max_size=6),
    tail_filter=tail_filters,
    cuts=st.lists(st.integers(0, 4), min_size=1, max_size=12),
)
async def test_resuming_anywhere_reads_each_matching_line_once_in_commit_order(
    app, make_tenant, pool, batches, tail_filter, cuts
):
    """Stored batches, then a reader that keeps only the first few lines of each read (a
    client that hangs up), resuming from the last line it kept: it reads every matching line
    once, batch by batch in commit order, by id within a batch."""
    db = app.state.gramlogs.db
    tenant = await make_tenant()
    project = tenant.project_id
    n = 0
    want: list[str] = []
    async with pool.acquire() as conn:
        start = Position(await journal.head(conn, project))
        for batch in batches:
            rows = []
            for seconds, function, level, raw in batch:
                rows.append(row(project, seconds, n, function=function, level=level, raw=raw))
                n += 1
            await writer.store_batch(conn, project, rows)
            for r in sorted(rows, key=lambda r: r[0]):
                if _matches(tail_filter, r):
                    want.append(str(uuid.UUID(r[0])))
    got: list[str] = []
    position = start
    for i in range(100):
        frames, after, ended = await catch_up(db, project, tail_filter, position)
        keep = frames[: cuts[i % len(cuts)]] if i < 3 * len(cuts) else frames
        got += [str(uuid.UUID(int=f.position.after)) for f in keep]
        if len(keep) == len(frames):
            position = after
        elif keep:
            position = keep[-1].position
        if ended and len(keep) == len(frames):
            break
    assert got == want


def _matches(tail_filter: TailFilter, r: writer.NewRow) -> bool:
    if tail_filter.keyword is not None and tail_filter.keyword.lower() not in r[5].lower():
        return False
    for column, value in tail_filter.equals.items():
        have = {"function_id": uuid.UUID(r[10]), "level": r[3]}[column]
        if have != value:
            return False
    return True
