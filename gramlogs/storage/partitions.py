"""Time partitions of the logs table: id ranges of ``partition_days`` days each
(weekly by default, starting on Mondays), between two catch-alls.

Ids are positions in time (``ids.py``), so the logs table is partitioned by id range::

    logs_past        [MINVALUE,          lowest_id(D0))     lines older than the window
    logs_pD0         [lowest_id(D0),     lowest_id(D0 + w))
    ...                                                     one partition per w days
    logs_pDn         [lowest_id(Dn),     lowest_id(Dn + w))
    logs_future      [lowest_id(Dn + w), MAXVALUE)          lines dated beyond the window

Every id has a partition, so an insert never fails for want of one, whatever its timestamp.
:func:`ensure` keeps the partitions covering [now - longest retention, now + ahead days];
when time (or a longer retention) reaches into a catch-all, the catch-all is split: detached,
new partitions created, the rows that now belong elsewhere moved, and the catch-all attached
again with its narrower range. The catch-alls hold only out-of-window lines, so splits are
cheap. There is no DEFAULT partition: once it holds a row, no partition overlapping that row
can be created any more.

The count of partitions stays small (30 days of retention, weekly: about 7; daily: about 40),
which matters for every query that cannot be pruned to a few: planning, locking and executor
start-up grow with it.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import asyncpg

from gramlogs.core import ids

__all__ = [
    "Partition",
    "ensure",
    "keep_days",
    "layout",
    "maintenance_lock",
]

_LOCK_KEY = 0x6772616D70617274  # "grampart": one maintainer at a time, across processes
# DDL on logs waits for running queries and makes new ones wait behind it; give up quickly
# and try again on the next run rather than stall reads.
LOCK_TIMEOUT_MS = 2000
_BATCH = 40  # partitions made per transaction
_MONDAY = date(1970, 1, 5)  # weekly partitions start on Mondays
_FIRST_DAY = ids.MIN_TIMESTAMP.date()
_LAST_DAY = ids.MAX_TIMESTAMP.date()

_BOUND_RE = re.compile(
    r"FOR VALUES FROM \((?:MINVALUE|'([0-9a-f-]{36})')\) TO \((?:MAXVALUE|'([0-9a-f-]{36})')\)"
)


@dataclass(frozen=True, slots=True)
class Partition:
    """One partition; ``lo`` inclusive, ``hi`` exclusive, ``None`` for MINVALUE/MAXVALUE.

    ``estimated_rows`` is the planner's estimate (``reltuples``), as of the last ANALYZE.
    """

    name: str
    lo: int | None
    hi: int | None
    estimated_rows: int = 0

    @property
    def first_day(self) -> date | None:
        return None if self.lo is None else ids.timestamp_of(uuid.UUID(int=self.lo)).date()

    @property
    def end_day(self) -> date | None:
        return None if self.hi is None else ids.timestamp_of(uuid.UUID(int=self.hi)).date()


def bound(day: date) -> int:
    """The lowest id of ``day``'s first microsecond: no id of an earlier line reaches it."""
    return ids.lowest_id(datetime(day.year, day.month, day.day, tzinfo=UTC)).int


def _literal(value: int | None, infinity: str) -> str:
    return infinity if value is None else f"'{uuid.UUID(int=value)}'"


def _range_sql(lo: int | None, hi: int | None) -> str:
    return f"FROM ({_literal(lo, 'MINVALUE')}) TO ({_literal(hi, 'MAXVALUE')})"


async def layout(conn: asyncpg.Connection) -> list[Partition]:
    """The partitions of ``logs`` in id order."""
    rows = await conn.fetch(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bound,"
        " greatest(c.reltuples, 0)::bigint AS estimated_rows"
        " FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'logs'::regclass"
    )
    found = []
    for row in rows:
        m = _BOUND_RE.fullmatch(row["bound"])
        if m is None:
            raise RuntimeError(f"logs partition {row['relname']} has an unexpected bound")
        lo, hi = (None if g is None else uuid.UUID(g).int for g in m.groups())
        found.append(Partition(row["relname"], lo, hi, row["estimated_rows"]))
    return sorted(found, key=lambda p: -1 if p.lo is None else p.lo)


async def keep_days(conn: asyncpg.Connection, default_days: int) -> int:
    """The longest retention of any project: how far back whole partitions are kept."""
    longest = await conn.fetchval("SELECT max(retention_days) FROM projects")
    return max(default_days, longest or 0)


def _floor(day: date, width: int) -> date:
    return day - timedelta(days=(day - _MONDAY).days % width)


def _tiles(start: date, end: date, width: int) -> list[tuple[date, date]]:
    """[start, end) cut at every ``width``-aligned day."""
    out = []
    day = start
    while day < end:
        following = min(_floor(day, width) + timedelta(days=width), end)
        out.append((day, following))
        day = following
    return out


def plan(
    parts: list[Partition], now: datetime, *, keep: int, ahead: int, width: int
) -> tuple[list[tuple[date, date]], list[tuple[date, date]]]:
    """The partitions (first day, end day) to add below and above the existing ones, each list
    in day order, so that [now - keep, now + ahead] is covered by ``width``-day partitions.

    Between the window and partitions far from it (the server was off for months, the clock
    moved back) goes one coarse filler partition, not hundreds of empty days.
    """
    first = _floor(max((now - timedelta(days=keep)).date(), _FIRST_DAY), width)
    end = min(
        _floor((now + timedelta(days=ahead)).date(), width) + timedelta(days=width), _LAST_DAY
    )
    dailies = [p for p in parts if p.lo is not None and p.hi is not None]
    if not dailies:
        return [], _tiles(first, end, width)
    have_first, have_end = dailies[0].first_day, dailies[-1].end_day
    assert have_first is not None and have_end is not None
    below: list[tuple[date, date]] = []
    if first < have_first:
        stop = min(end, have_first)
        below = _tiles(first, stop, width) + ([(stop, have_first)] if stop < have_first else [])
    above: list[tuple[date, date]] = []
    if end > have_end:
        start = max(first, have_end)
        above = ([(have_end, start)] if have_end < start else []) + _tiles(start, end, width)
    return below, above


async def maintenance_lock(conn: asyncpg.Connection) -> bool:
    """Take the transaction-scoped maintenance lock; False when another process holds it."""
    await conn.execute(f"SET LOCAL lock_timeout = {LOCK_TIMEOUT_MS}")
    locked: bool = await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _LOCK_KEY)
    return locked


async def ensure(
    conn: asyncpg.Connection,
    *,
    default_retention_days: int,
    ahead_days: int,
    width_days: int,
    now: datetime | None = None,
) -> list[str]:
    """Create the partitions the window around ``now`` lacks; return their names.

    Safe to run from several processes at once (one does the work, the others return ``[]``).
    """
    now = now or datetime.now(UTC)
    created: list[str] = []
    while True:
        async with conn.transaction():
            if not await maintenance_lock(conn):
                return created
            keep = await keep_days(conn, default_retention_days)
            parts = await layout(conn)
            below, above = plan(parts, now, keep=keep, ahead=ahead_days, width=width_days)
            # A bounded batch per transaction keeps its locks within max_locks_per_transaction;
            # each batch extends the partitions where they end, so they stay contiguous.
            tiles = below[-_BATCH:] or above[:_BATCH]
            if not tiles:
                return created
            await _split_catch_alls(conn, parts, tiles)
        created += [_name(first) for first, _ in tiles]


def _name(first: date) -> str:
    return f"logs_p{first:%Y%m%d}"


async def _split_catch_alls(
    conn: asyncpg.Connection, parts: list[Partition], tiles: list[tuple[date, date]]
) -> None:
    past, future = parts[0], parts[-1]
    if past.lo is not None or future.hi is not None:
        raise RuntimeError("logs has lost a catch-all partition (logs_past or logs_future)")
    # Between the two catch-alls every partition has both bounds (the filter says so to mypy).
    dailies = [(p.lo, p.hi) for p in parts[1:-1] if p.lo is not None and p.hi is not None]
    new = [(bound(a), bound(b)) for a, b in tiles]
    covered = sorted(dailies + new)
    past_hi, future_lo = covered[0][0], covered[-1][1]
    moves = [(p, lo, hi) for p, lo, hi in ((past, None, past_hi), (future, future_lo, None))]
    moves = [(p, lo, hi) for p, lo, hi in moves if (p.lo, p.hi) != (lo, hi)]
    for p, _, _ in moves:
        await conn.execute(f"ALTER TABLE logs DETACH PARTITION {p.name}")
    for (first, _), (new_lo, new_hi) in zip(tiles, new, strict=True):
        await conn.execute(
            f"CREATE TABLE {_name(first)} PARTITION OF logs FOR VALUES {_range_sql(new_lo, new_hi)}"
        )
    # Rows of a catch-all that fall outside its new range go through a temporary table: their
    # new home may be the other catch-all, detached at that moment.
    await conn.execute("CREATE TEMP TABLE gramlogs_moving (LIKE logs) ON COMMIT DROP")
    for p, lo, hi in moves:
        outside = (
            f"id >= '{uuid.UUID(int=hi)}'" if hi is not None else f"id < '{uuid.UUID(int=lo)}'"
        )
        await conn.execute(
            f"WITH moved AS (DELETE FROM {p.name} WHERE {outside} RETURNING *)"
            " INSERT INTO gramlogs_moving SELECT * FROM moved"
        )
        await conn.execute(
            f"ALTER TABLE logs ATTACH PARTITION {p.name} FOR VALUES {_range_sql(lo, hi)}"
        )
    await conn.execute("INSERT INTO logs SELECT * FROM gramlogs_moving")
