"""Reading log pages: keyset queries over the id, which is a position in time.

Every page is one statement: an ordered index range scan that stops after ``per_page + 1``
rows, plus a one-row index probe (an InitPlan, run once) that tells whether rows lie on the
other side of the cursor. A keyword page adds a second branch that, when the ordered scan does
not fill the page quickly, gathers the matches through the trigram index and sorts them (see
:func:`_keyword_page_sql`). Nothing here knows about HTTP.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from functools import lru_cache

import asyncpg

__all__ = [
    "COLUMNS",
    "EQUALITY_FILTERS",
    "KEYWORD_SETTINGS",
    "PLAN_SETTINGS",
    "LogFilter",
    "Page",
    "PageRequest",
    "fetch_page",
    "like_pattern",
    "page_query",
    "read_page",
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

# Session settings the page statements are planned under (the server's pools set them).
#
# Generic plans: logs is partitioned (~40 partitions), and a custom plan considers every index
# of every partition, ~3-5 ms to make; a generic plan is made once per connection and prunes
# at executor start-up ("Subplans Removed"), ~0.1 ms.
#
# No sorts: a generic plan estimates ``function_id = $n`` from the column's number of distinct
# values across all projects, times the default selectivity of an id range with unknown
# bounds, so at scale it expects about one row per partition where a busy function has tens of
# thousands. Reading them all and sorting then looks cheaper than the ordered index scan that
# stops after a page, above all while most of the window's partitions are empty (a new
# installation's first weeks): on 1M lines over three days, a function's first page read and
# sorted 25k rows, 22 ms instead of 1 (benchmarks/plans.py); at 6M lines, 390 ms.
# With sorts disabled the planner keeps the ordered index range scan, which every page
# statement has (the primary key at least), so none of them needs a sort; keyword pages, whose
# trigram branch does sort its (few) matches, turn sorts back on for their own transaction.
# A statement that cannot do without a sort (an insert in id order) still sorts.
#
# No JIT: up to PostgreSQL 17 a disabled sort adds 1e10 to a plan's cost, far above
# jit_above_cost, and compiling the expressions took 2.5 s for a 1 ms statement. Nothing the
# server runs is long enough for JIT to pay off.
PLAN_SETTINGS = {"plan_cache_mode": "force_generic_plan", "enable_sort": "off", "jit": "off"}

# The expression the trigram index logs_keyword_tenant covers (migrations/0002; keep the two
# identical).
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
    # "indexed": through logs_keyword_tenant; "columns": each column; None: no keyword.
    keyword: str | None


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
    where = "".join(_conditions(shape, first_param=6))
    order = "ASC" if ascending else "DESC"
    return (
        f"SELECT {_COLUMN_LIST},"
        f" ({_back_probe(where, '$4', '$5', ascending)}) AS has_back"
        f" FROM logs WHERE project_id = $1 AND id BETWEEN $2 AND $3{where}"
        f" ORDER BY id {order} LIMIT $6"
    )


@lru_cache(maxsize=256)
def _keyword_page_sql(shape: _Shape, ascending: bool) -> str:
    """A keyword page: the newest (in scan order) $7 filtered rows first, then the trigram index.

    The first branch walks the scan range in order, as a page without a keyword does, but
    reads at most $7 rows: a common word fills the page within them. Only when it has not
    (the word is rarer than per_page in $7) does the second branch run: it gathers the range's
    matches as a set planned on its own, so through the trigram index when the word is rare
    (OFFSET 0 keeps out both the page's LIMIT and the bound below, which would otherwise tempt
    the planner to AND the trigram bitmap with a bitmap of the whole id range), keeps those
    beyond the rows the first branch read, and sorts them. PostgreSQL runs UNION ALL branches
    in order and stops at the LIMIT, so the page is the first branch's matches followed by the
    second's; parallel plans, which would interleave them, are off for keyword pages (see
    fetch_page). $8 is $7 - 1: the offset of the last row the first branch reads; no such row
    means the first branch read the whole range, and the second branch keeps nothing.
    """
    filters, keyword = _conditions(shape, first_param=8)
    order = "ASC" if ascending else "DESC"
    beyond = ">" if ascending else "<"
    scan = f"FROM logs WHERE project_id = $1 AND id BETWEEN $2 AND $3{filters}"
    return (
        f"SELECT {_COLUMN_LIST},"
        f" ({_back_probe(filters + keyword, '$4', '$5', ascending)}) AS has_back"
        f" FROM ((SELECT {_COLUMN_LIST} FROM"
        f" (SELECT {_COLUMN_LIST} {scan} ORDER BY id {order} LIMIT $7) AS recent"
        f" WHERE true{keyword} ORDER BY id {order})"
        f" UNION ALL"
        f" (SELECT {_COLUMN_LIST} FROM"
        f" (SELECT {_COLUMN_LIST} {scan}{keyword} OFFSET 0) AS older"
        f" WHERE id {beyond} (SELECT id {scan} ORDER BY id {order} OFFSET $8 LIMIT 1)"
        f" ORDER BY id {order})) AS page"
        f" LIMIT $6"
    )


@lru_cache(maxsize=256)
def _back_sql(shape: _Shape, ascending: bool) -> str:
    where = "".join(_conditions(shape, first_param=3))
    return f"SELECT ({_back_probe(where, '$2', '$3', ascending)})"


def _back_probe(where: str, lo: str, hi: str, scan_ascending: bool) -> str:
    # Not EXISTS: for EXISTS the planner may pick a sequential scan, expecting an early match
    # that may lie at the far end of the table. ORDER BY id LIMIT 1 keeps it an index probe,
    # starting from the cursor's end of the range.
    order = "DESC" if scan_ascending else "ASC"
    return (
        f"SELECT true FROM logs WHERE project_id = $1 AND id BETWEEN {lo} AND {hi}{where}"
        f" ORDER BY id {order} LIMIT 1"
    )


def _conditions(shape: _Shape, first_param: int) -> tuple[str, str]:
    """The filter's conditions without the keyword, and the keyword's; values are parameters
    numbered from ``first_param + 1`` in :func:`_shape_and_values` order."""
    # Column names come from EQUALITY_FILTERS only; values are always parameters.
    n = first_param
    parts = []
    for col in shape.equals:
        n += 1
        parts.append(f" AND {col} = ${n}")
    if shape.sources:
        n += 1
        parts.append(f" AND source = ANY(${n}::text[])")
    keyword = ""
    if shape.keyword == "indexed":
        keyword = f" AND {_KEYWORD_TEXT} ILIKE ${n + 1}"
    elif shape.keyword == "columns":
        keyword = f" AND (message ILIKE ${n + 1} OR raw_log ILIKE ${n + 1})"
    return "".join(parts), keyword


def _quoted(column: str) -> str:
    return '"timestamp"' if column == "timestamp" else column


KEYWORD_PROBE_ROWS = 2000
KEYWORD_PROBE_PER_ROW = 10

_COLUMN_LIST = ", ".join(_quoted(c) for c in COLUMNS)


def _uuid(value: int) -> uuid.UUID:
    return uuid.UUID(int=value)


async def fetch_page(conn: asyncpg.Connection, req: PageRequest) -> Page:
    """One page of ``req.filter``'s rows in sort order, with what lies either side of it.

    A keyword page (see :func:`_keyword_page_sql`) runs in a transaction of its own, with
    settings for it alone. ``force_custom_plan``: a generic plan is made without knowing the
    word or the range; on 1M rows that plan took 40 ms instead of 1 for a common word and 35-50
    ms instead of 5 for a rare one (benchmarks/keyword.py). Sorts allowed: the trigram branch
    sorts its matches (:data:`PLAN_SETTINGS` turns sorts off for every other page). No parallel
    plans: they would interleave the page's two branches.
    """
    if req.filter.keyword is None:
        return await read_page(conn, req)
    async with conn.transaction():
        await conn.execute(KEYWORD_SETTINGS)
        return await read_page(conn, req)


KEYWORD_SETTINGS = (
    "SET LOCAL plan_cache_mode = force_custom_plan; SET LOCAL enable_sort = on;"
    " SET LOCAL max_parallel_workers_per_gather = 0"
)


def keyword_probe_rows(per_page: int) -> int:
    """How many rows a keyword page reads in order before it turns to the trigram index.

    Reading a row costs about a microsecond (an ILIKE on its text), so the probe costs a
    couple of milliseconds; a word that fills a page within it is common enough that the
    ordered walk is the fastest plan, one that does not is rare enough for the index.
    """
    return max(KEYWORD_PROBE_ROWS, KEYWORD_PROBE_PER_ROW * (per_page + 1))


def page_query(req: PageRequest, *, probe: bool = True) -> tuple[str, list[object]]:
    """The page statement and its arguments (for EXPLAIN tests and benchmarks too).

    ``probe=False`` leaves a keyword page to the planner (one ordered or index plan for the
    whole range); benchmarks/keyword.py measures it beside the shipped plan.
    """
    shape, values = _shape_and_values(req.filter)
    (lo, hi), (back_lo, back_hi) = _ranges(req)
    args: list[object] = [req.filter.project_id, _uuid(lo), _uuid(hi)]
    args += [_uuid(back_lo), _uuid(back_hi), req.per_page + 1]
    if shape.keyword is not None and probe:
        reads = keyword_probe_rows(req.per_page)
        return _keyword_page_sql(shape, req.scan_ascending), [*args, reads, reads - 1, *values]
    return _page_sql(shape, req.scan_ascending), [*args, *values]


def back_query(req: PageRequest) -> tuple[str, list[object]]:
    """The probe alone, for a page that came back empty (and so carries no probe result)."""
    shape, values = _shape_and_values(req.filter)
    _, (back_lo, back_hi) = _ranges(req)
    args = [req.filter.project_id, _uuid(back_lo), _uuid(back_hi), *values]
    return _back_sql(shape, req.scan_ascending), args


async def read_page(conn: asyncpg.Connection, req: PageRequest, *, probe: bool = True) -> Page:
    """The page under the connection's settings as they are: :func:`fetch_page` without its
    keyword transaction, for benchmarks that compare plans (``probe`` as in :func:`page_query`).
    """
    (lo, hi), (back_lo, back_hi) = _ranges(req)
    rows: list[asyncpg.Record] = []
    has_back: bool | None = None
    if lo <= hi:
        sql, args = page_query(req, probe=probe)
        rows = await conn.fetch(sql, *args)
        if rows:
            has_back = rows[0]["has_back"] is True
    if has_back is None:
        # An empty page carries no probe result: ask separately (rare: past either end).
        has_back = back_lo <= back_hi and bool(await conn.fetchval(*_unpack(back_query(req))))
    has_more = len(rows) > req.per_page
    if has_more:
        del rows[req.per_page :]
    if not req.forward:
        rows.reverse()
    return Page(rows=rows, has_more=has_more, has_back=has_back)


def _unpack(query: tuple[str, list[object]]) -> tuple[str, *tuple[object, ...]]:
    return (query[0], *query[1])
