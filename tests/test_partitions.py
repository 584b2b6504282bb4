"""The partition layout: a contiguous tiling of every id, kept around "now" by ``ensure``."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

import asyncpg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gramlogs.core import ids
from gramlogs.storage import partitions, tenants
from gramlogs.storage.partitions import Partition, plan
from tests.conftest import ON_CITUS

NOW = datetime(2030, 3, 15, 12, 0, tzinfo=UTC)


@pytest.fixture
async def conn(fresh_database: str) -> AsyncIterator[asyncpg.Connection]:
    c = await asyncpg.connect(fresh_database)
    try:
        yield c
    finally:
        await c.close()


async def _ensure(conn: asyncpg.Connection, now: datetime = NOW, **kw: int) -> list[str]:
    options = {"default_retention_days": 30, "ahead_days": 7, "width_days": 1} | kw
    return await partitions.ensure(conn, now=now, **options)


def _assert_tiles_every_id(parts: list[Partition]) -> None:
    assert parts[0].lo is None and parts[-1].hi is None
    for below, above in itertools.pairwise(parts):
        assert below.hi == above.lo


async def _insert(conn: asyncpg.Connection, project: uuid.UUID, ts: datetime) -> uuid.UUID:
    log_id = ids.new_id(ts)
    await conn.execute(
        "INSERT INTO logs (project_id, id, timestamp, level, source, raw_log, deployment_id,"
        " function_id) VALUES ($1, $2, $3, 'info', 'function', 'x', $4, $4)",
        project,
        log_id,
        ts,
        uuid.UUID(int=0),
    )
    return log_id


async def _partition_of(conn: asyncpg.Connection, log_id: uuid.UUID) -> str:
    """The partition that holds ``log_id``. On Citus the row's table is a shard of the
    partition, named for it with the shard's number appended (logs_p20300325_102255)."""
    found = await conn.fetchval("SELECT tableoid::regclass::text FROM logs WHERE id = $1", log_id)
    return re.sub(r"_\d{6,}$", "", found) if ON_CITUS else found


async def _project(conn: asyncpg.Connection) -> uuid.UUID:
    org = await tenants.create_organization(conn, "parts")
    return await tenants.create_project(conn, org, "parts")


async def test_fresh_schema_has_two_catch_alls_that_take_any_id(conn):
    parts = await partitions.layout(conn)
    assert [p.name for p in parts] == ["logs_past", "logs_future"]
    _assert_tiles_every_id(parts)


async def test_ensure_makes_daily_partitions_from_retention_to_a_week_ahead(conn):
    created = await _ensure(conn)
    parts = await partitions.layout(conn)
    _assert_tiles_every_id(parts)
    days = [p.first_day for p in parts[1:-1]]
    first, last = date(2030, 2, 13), date(2030, 3, 22)
    assert days == [first + timedelta(days=i) for i in range((last - first).days + 1)]
    assert created == [f"logs_p{d:%Y%m%d}" for d in days]
    assert [p.name for p in parts[1:-1]] == created
    assert all(p.end_day == p.first_day + timedelta(days=1) for p in parts[1:-1])  # type: ignore[operator]


async def test_ensure_again_the_same_day_creates_nothing(conn):
    await _ensure(conn)
    assert await _ensure(conn, NOW + timedelta(hours=11)) == []


async def test_time_passing_splits_the_future_catch_all_and_moves_its_rows(conn):
    project = await _project(conn)
    await _ensure(conn)
    far = await _insert(conn, project, NOW + timedelta(days=10, hours=2))
    assert await _partition_of(conn, far) == "logs_future"
    created = await _ensure(conn, NOW + timedelta(days=4))
    assert created == ["logs_p20300323", "logs_p20300324", "logs_p20300325", "logs_p20300326"]
    assert await _partition_of(conn, far) == "logs_p20300325"
    _assert_tiles_every_id(await partitions.layout(conn))


async def test_longer_project_retention_splits_the_past_catch_all(conn):
    project = await _project(conn)
    await _ensure(conn)
    old = await _insert(conn, project, NOW - timedelta(days=45))
    assert await _partition_of(conn, old) == "logs_past"
    await tenants.set_retention(conn, project, 60)
    created = await _ensure(conn)
    assert len(created) == 30
    assert created[0] == f"logs_p{(NOW - timedelta(days=60)).date():%Y%m%d}"
    assert await _partition_of(conn, old) == f"logs_p{(NOW - timedelta(days=45)).date():%Y%m%d}"
    _assert_tiles_every_id(await partitions.layout(conn))


async def test_first_ensure_moves_rows_already_in_the_catch_alls(conn):
    project = await _project(conn)
    stamps = [NOW - timedelta(days=3), NOW + timedelta(days=2), datetime(1999, 5, 1, tzinfo=UTC)]
    inserted = [await _insert(conn, project, ts) for ts in stamps]
    await _ensure(conn)
    assert [await _partition_of(conn, i) for i in inserted] == [
        "logs_p20300312",
        "logs_p20300317",
        "logs_past",
    ]


async def test_weekly_partitions_start_on_mondays(conn):
    await _ensure(conn, width_days=7)
    dailies = (await partitions.layout(conn))[1:-1]
    assert all(p.first_day.weekday() == 0 for p in dailies)  # type: ignore[union-attr]
    assert all(p.end_day - p.first_day == timedelta(days=7) for p in dailies)  # type: ignore[operator]
    assert dailies[0].first_day <= (NOW - timedelta(days=30)).date()  # type: ignore[operator]
    assert dailies[-1].end_day > (NOW + timedelta(days=7)).date()  # type: ignore[operator]


async def test_concurrent_ensures_leave_one_valid_layout(fresh_database):
    conns = [await asyncpg.connect(fresh_database) for _ in range(3)]
    try:
        results = await asyncio.gather(*(_ensure(c) for c in conns))
        parts = await partitions.layout(conns[0])
    finally:
        for c in conns:
            await c.close()
    assert sorted(len(r) for r in results)[-1] == 38
    assert sum(len(r) for r in results) == 38  # the others found the lock taken
    _assert_tiles_every_id(parts)


_STAMPS = st.datetimes(
    min_value=datetime(1970, 1, 1),  # hypothesis takes naive bounds with timezones=
    max_value=datetime(2100, 1, 1),
    timezones=st.just(UTC),
)


async def test_a_line_anywhere_in_the_allowed_range_finds_its_partition(conn):
    project = await _project(conn)
    await _ensure(conn)
    parts = {p.name: p for p in await partitions.layout(conn)}

    # hypothesis drives sync functions: draw the examples, then insert them on this loop.
    examples: list[datetime] = []

    @settings(max_examples=60, deadline=None, database=None)
    @given(_STAMPS)
    def collect(ts: datetime) -> None:
        examples.append(ts)

    collect()
    for ts in [*examples, ids.MIN_TIMESTAMP, ids.MAX_TIMESTAMP]:
        log_id = await _insert(conn, project, ts)
        home = parts[await _partition_of(conn, log_id)]
        assert home.lo is None or home.lo <= log_id.int, ts
        assert home.hi is None or log_id.int < home.hi, ts


def _layout_of(first: date, end: date) -> list[Partition]:
    lo, hi = partitions.bound(first), partitions.bound(end)
    return [Partition("logs_past", None, lo), Partition("d", lo, hi), Partition("f", hi, None)]


def test_plan_bridges_a_long_pause_with_one_filler_partition():
    below, above = plan(
        _layout_of(date(2030, 1, 1), date(2030, 1, 2)), NOW, keep=30, ahead=0, width=1
    )
    window_start = (NOW - timedelta(days=30)).date()
    assert below == []
    assert above[0] == (date(2030, 1, 2), window_start)
    assert above[1:] == [
        (window_start + timedelta(days=i), window_start + timedelta(days=i + 1)) for i in range(31)
    ]


def test_plan_bridges_a_clock_behind_the_partitions_with_one_filler_partition():
    below, above = plan(
        _layout_of(date(2031, 1, 1), date(2031, 2, 1)), NOW, keep=30, ahead=7, width=1
    )
    assert above == []
    assert len(below) == 39
    assert below[-1] == ((NOW + timedelta(days=8)).date(), date(2031, 1, 1))


def test_plan_keeps_within_the_id_range():
    late = datetime(2099, 12, 30, tzinfo=UTC)
    assert plan([], late, keep=1, ahead=7, width=1)[1][-1][1] == date(2100, 1, 1)
    early = datetime(1970, 1, 3, tzinfo=UTC)
    assert plan([], early, keep=30, ahead=0, width=1)[1][0][0] == date(1970, 1, 1)


async def test_ensure_works_in_bounded_batches(conn):
    created = await _ensure(conn, default_retention_days=200)
    assert len(created) == 200 + 8
    parts = await partitions.layout(conn)
    assert len(parts) == 200 + 8 + 2
    _assert_tiles_every_id(parts)


def test_cli_partitions_lists_the_layout(fresh_database):
    import subprocess
    import sys

    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "gramlogs",
            "partitions",
            "--json",
            "--database-url",
            fresh_database,
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
        # Daily: as many partitions whatever the day of the week this runs on.
        env={**os.environ, "GRAMLOGS_PARTITION_DAYS": "1"},
    ).stdout
    rows = json.loads(out)
    assert rows[0]["name"] == "logs_past" and rows[0]["from"] is None
    assert rows[-1]["name"] == "logs_future" and rows[-1]["to"] is None
    assert len(rows) == 2 + 30 + 8
