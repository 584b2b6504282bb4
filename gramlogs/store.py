"""Reading log pages: keyset queries over the id, which is a position in time.

Every page is one statement: an ordered index range scan that stops after ``per_page + 1``
rows, plus an ``EXISTS`` probe (an InitPlan, run once) that tells whether rows lie on the
other side of the cursor. A keyword page may instead gather its matches through the trigram
index and sort them (see :func:`fetch_page`). Nothing here knows about HTTP.
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
    "like_pattern",
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
EQUALITY_FILTERS = (
    "function_id",
    "deployment_id",
    "instance",
    "level",
    "source",
    "execution_id",
)

_MAX_ID = (1 << 128) - 1

# The expression the trigram index logs_keyword covers (schema.sql; keep the two identical).
# A keyword without the \x01 separator is a substring of it exactly when it is a substring of
# message or of raw_log; a keyword with one is matched column by column, without the index.
KEYWORD_SEPARATOR = "\x01"
_KEYWORD_TEXT = "(coalesce(message, '') || E'\\x01' || raw_log)"


@dataclass(frozen=True, slots=True)
class LogFilter:
    """Which rows of one project a query sees. ``lo``/``hi`` are inclusive id bounds."""

    project_id: uuid.UUID
    lo: int = 0
    hi: int = _MAX_ID
    equals: dict[str, object] = field(default_factory=dict)
    # Any of these sources (empty: every source). Poly's execution logs leave out `server`.
    sources: tuple[str, ...] = ()
    # Case-insensitive substring of message or raw_log; every character is literal.
    keyword: str | None = None


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


@dataclass(frozen=True, slots=True)
class _Shape:
    """What a filter's SQL depends on (its values are parameters): the key of the SQL caches."""

    equals: tuple[str, ...]
    sources: bool
    keyword: str | None  # "indexed": through logs_keyword; "columns": each column; None: no keyword


def _shape_and_values(f: LogFilter) -> tuple[_Shape, list[object]]:
    equals = tuple(sorted(f.equals))
    values: list[object] = [f.equals[c] for c in equals]
    if f.sources:
        values.append(list(f.sources))
    if f.keyword is not None:
        values.append(like_pattern(f.keyword))
    keyword = None
    if f.keyword is not None:
        keyword = "columns" if KEYWORD_SEPARATOR in f.keyword else "indexed"
    return _Shape(equals, bool(f.sources), keyword), values


def like_pattern(keyword: str) -> str:
    """An ILIKE pattern matching ``keyword`` anywhere, its ``%``, ``_`` and ``\\`` taken literally.

    Backslash is PostgreSQL's default LIKE escape, and pg_trgm's LIKE support honours it.
    """
    escaped = keyword.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


@lru_cache(maxsize=256)
def _page_sql(shape: _Shape, ascending: bool) -> str:
    where = _where(shape, first_param=6)
    order = "ASC" if ascending else "DESC"
    return (
        f"SELECT {', '.join(_quoted(c) for c in COLUMNS)},"
        f" (SELECT EXISTS (SELECT 1 FROM logs WHERE project_id = $1"
        f" AND id BETWEEN $4 AND $5{where})) AS has_back"
        f" FROM logs WHERE project_id = $1 AND id BETWEEN $2 AND $3{where}"
        f" ORDER BY id {order} LIMIT $6"
    )


@lru_cache(maxsize=256)
def _exists_sql(shape: _Shape) -> str:
    where = _where(shape, first_param=3)
    return (
        f"SELECT EXISTS (SELECT 1 FROM logs WHERE project_id = $1 AND id BETWEEN $2 AND $3{where})"
    )


def _where(shape: _Shape, first_param: int) -> str:
    # Column names come from EQUALITY_FILTERS only; values are always parameters.
    n = first_param
    parts = []
    for col in shape.equals:
        n += 1
        parts.append(f" AND {col} = ${n}")
    if shape.sources:
        n += 1
        parts.append(f" AND source = ANY(${n}::text[])")
    if shape.keyword == "indexed":
        n += 1
        parts.append(f" AND {_KEYWORD_TEXT} ILIKE ${n}")
    elif shape.keyword == "columns":
        n += 1
        parts.append(f" AND (message ILIKE ${n} OR raw_log ILIKE ${n})")
    return "".join(parts)


def _quoted(column: str) -> str:
    return '"timestamp"' if column == "timestamp" else column


def _uuid(value: int) -> uuid.UUID:
    return uuid.UUID(int=value)


async def fetch_page(conn: asyncpg.Connection, req: PageRequest) -> Page:
    """One page of ``req.filter``'s rows in sort order, with what lies either side of it.

    A keyword page is planned for its own keyword every time. The best plan depends on how
    common the word is: for a common one, the ordered (project_id, id) scan meets ``per_page``
    matches within a few dozen rows; for a rare one, the trigram index finds its few rows and a
    top-N sort orders them. asyncpg reuses prepared statements, and after five executions
    PostgreSQL may switch a statement to a generic plan that cannot know the word: measured on
    1M rows (benchmarks/keyword.py), it read 300k rows for a common word (611 ms instead of
    0.1 ms). ``force_custom_plan``, set for the page's own transaction only, prevents that.
    """
    if req.filter.keyword is None:
        return await _fetch_page(conn, req)
    async with conn.transaction():
        await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
        return await _fetch_page(conn, req)


async def _fetch_page(conn: asyncpg.Connection, req: PageRequest) -> Page:
    shape, values = _shape_and_values(req.filter)
    (lo, hi), (back_lo, back_hi) = _ranges(req)
    rows: list[asyncpg.Record] = []
    has_back = None
    if lo <= hi:
        rows = await conn.fetch(
            _page_sql(shape, req.scan_ascending),
            req.filter.project_id,
            _uuid(lo),
            _uuid(hi),
            _uuid(back_lo),
            _uuid(back_hi),
            req.per_page + 1,
            *values,
        )
        if rows:
            has_back = rows[0]["has_back"]
    if has_back is None:
        has_back = back_lo <= back_hi and await conn.fetchval(
            _exists_sql(shape), req.filter.project_id, _uuid(back_lo), _uuid(back_hi), *values
        )
    has_more = len(rows) > req.per_page
    if has_more:
        del rows[req.per_page :]
    if not req.forward:
        rows.reverse()
    return Page(rows=rows, has_more=has_more, has_back=bool(has_back))
