"""Reading log pages: keyset queries over the id, which is a position in time.

Every page is one statement: an ordered index range scan that stops after ``per_page + 1``
rows, plus a one-row index probe (an InitPlan, run once) that tells whether rows lie on the
other side of the cursor. Nothing here knows about HTTP.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from functools import lru_cache

import asyncpg

__all__ = [
    "COLUMNS",
    "EQUALITY_FILTERS",
    "LogFilter",
    "Page",
    "PageRequest",
    "fetch_page",
    "page_query",
]

COLUMNS = (
    "id",
    "timestamp",
    "instance",
    "level",
    "source",
    "raw_log",
    "message",
    "attributes",
    "project_id",
    "deployment_id",
    "function_id",
    "execution_id",
)

# Filters matched exactly; each has an index (project_id, <column>, id) in schema.sql.
EQUALITY_FILTERS = ("function_id", "deployment_id", "instance", "level", "source")

_MAX_ID = (1 << 128) - 1


@dataclass(frozen=True, slots=True)
class LogFilter:
    """Which rows of one project a query sees. ``lo``/``hi`` are inclusive id bounds."""

    project_id: uuid.UUID
    lo: int = 0
    hi: int = _MAX_ID
    equals: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PageRequest:
    filter: LogFilter
    per_page: int
    ascending: bool = False
    forward: bool = True
    cursor: uuid.UUID | None = None

    @property
    def scan_ascending(self) -> bool:
        """Walking back through an ascending list is a descending scan, and so on."""
        return self.ascending == self.forward


@dataclass(frozen=True, slots=True)
class Page:
    rows: list[asyncpg.Record]  # in sort order
    has_more: bool  # rows lie beyond this page in the walking direction
    has_back: bool  # rows lie behind the cursor, i.e. on the other side of this page


def _ranges(req: PageRequest) -> tuple[tuple[int, int], tuple[int, int]]:
    """Id ranges (inclusive) of the page scan and of the rows behind the cursor."""
    lo, hi = req.filter.lo, req.filter.hi
    if req.cursor is None:
        return (lo, hi), (1, 0)
    c = req.cursor.int
    if req.scan_ascending:
        return (max(lo, c + 1), hi), (lo, min(hi, c))
    return (lo, min(hi, c - 1)), (max(lo, c), hi)


@lru_cache(maxsize=256)
def _page_sql(filters: tuple[str, ...], ascending: bool) -> str:
    where = _where(filters, first_param=6)
    order = "ASC" if ascending else "DESC"
    return (
        f"SELECT {', '.join(_quoted(c) for c in COLUMNS)},"
        f" ({_back_probe(where, '$4', '$5', ascending)}) AS has_back"
        f" FROM logs WHERE project_id = $1 AND id BETWEEN $2 AND $3{where}"
        f" ORDER BY id {order} LIMIT $6"
    )


@lru_cache(maxsize=256)
def _back_sql(filters: tuple[str, ...], ascending: bool) -> str:
    return f"SELECT ({_back_probe(_where(filters, first_param=3), '$2', '$3', ascending)})"


def _back_probe(where: str, lo: str, hi: str, scan_ascending: bool) -> str:
    # Not EXISTS: for EXISTS the planner may pick a sequential scan, expecting an early match
    # that may lie at the far end of the table. ORDER BY id LIMIT 1 keeps it an index probe,
    # starting from the cursor's end of the range.
    order = "DESC" if scan_ascending else "ASC"
    return (
        f"SELECT true FROM logs WHERE project_id = $1 AND id BETWEEN {lo} AND {hi}{where}"
        f" ORDER BY id {order} LIMIT 1"
    )


def _where(filters: tuple[str, ...], first_param: int) -> str:
    # Column names come from EQUALITY_FILTERS only; values are always parameters.
    return "".join(f" AND {col} = ${first_param + i + 1}" for i, col in enumerate(filters))


def _quoted(column: str) -> str:
    return '"timestamp"' if column == "timestamp" else column


def _uuid(value: int) -> uuid.UUID:
    return uuid.UUID(int=value)


def page_query(req: PageRequest) -> tuple[str, list[object]]:
    """The page statement and its arguments (for EXPLAIN tests and benchmarks too)."""
    filters = tuple(sorted(req.filter.equals))
    (lo, hi), (back_lo, back_hi) = _ranges(req)
    args = [req.filter.project_id, _uuid(lo), _uuid(hi), _uuid(back_lo), _uuid(back_hi)]
    args += [req.per_page + 1, *(req.filter.equals[f] for f in filters)]
    return _page_sql(filters, req.scan_ascending), args


async def fetch_page(conn: asyncpg.Connection, req: PageRequest) -> Page:
    """One page of ``req.filter``'s rows in sort order, with what lies either side of it."""
    filters = tuple(sorted(req.filter.equals))
    values = [req.filter.equals[f] for f in filters]
    (lo, hi), (back_lo, back_hi) = _ranges(req)
    rows: list[asyncpg.Record] = []
    has_back: bool | None = None
    if lo <= hi:
        sql, args = page_query(req)
        rows = await conn.fetch(sql, *args)
        if rows:
            has_back = rows[0]["has_back"] is True
    if has_back is None:
        # An empty page carries no probe result: ask separately (rare: past either end).
        has_back = back_lo <= back_hi and bool(
            await conn.fetchval(
                _back_sql(filters, req.scan_ascending),
                req.filter.project_id,
                _uuid(back_lo),
                _uuid(back_hi),
                *values,
            )
        )
    has_more = len(rows) > req.per_page
    if has_more:
        del rows[req.per_page :]
    if not req.forward:
        rows.reverse()
    return Page(rows=rows, has_more=has_more, has_back=has_back)
