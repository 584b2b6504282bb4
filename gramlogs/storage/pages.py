"""Reading log pages: keyset queries over the id, which is a position in time.

A page's lines are rows of ``logs`` (the newest) and lines of sealed blocks (sealed.py): it
reads the first ``per_page + 1`` of each and merges them (:func:`fetch_page` says how they are
kept consistent without a transaction). Over the rows it is
one statement: an ordered index range scan that stops after ``per_page + 1`` rows, plus a
one-row index probe (an InitPlan, run once) that tells whether rows lie on the other side of the
cursor. A keyword page first reads a bounded stretch of the rows in order; when that does not
fill the page, it reads only the id ranges of the blocks whose summaries hold every trigram of
the word (blocks.py), nearest first (:func:`_keyword_rows`). Nothing here knows about HTTP.
"""

from __future__ import annotations

import contextlib
import operator
import uuid
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import asyncpg

from gramlogs.storage import blocks, routing, sealed, trigrams
from gramlogs.storage.filters import (
    EQUALITY_FILTERS,
    KEYWORD_SEPARATOR,
    LogFilter,
    like_pattern,
)
from gramlogs.storage.rows import COLUMN_LIST, COLUMNS, StoredRow

__all__ = [
    "COLUMNS",
    "COLUMN_LIST",
    "EQUALITY_FILTERS",
    "KEYWORD_SETTINGS",
    "PLAN_SETTINGS",
    "LogFilter",
    "Page",
    "PageRequest",
    "StoredRow",
    "fetch_page",
    "filter_conditions",
    "like_pattern",
    "page_query",
    "read_page",
]

_MAX_ID = (1 << 128) - 1

# Session settings the page statements are planned under (the server's pools set them).
#
# Generic plans: logs is partitioned (~7 weekly partitions for 30 days, ~40 daily ones), and a
# custom plan considers every index of every partition, ~3-5 ms to make (daily); a generic plan
# is made once per connection and prunes at executor start-up ("Subplans Removed"), ~0.1 ms.
#
# No sorts: a generic plan estimates ``function_id = $n`` from the column's number of distinct
# values across all projects, times the default selectivity of an id range with unknown
# bounds, so at scale it expects about one row per partition where a busy function has tens of
# thousands. Reading them all and sorting then looks cheaper than the ordered index scan that
# stops after a page, above all while most of the window's partitions are empty (a new
# installation's first weeks): on 1M lines over three days, a function's first page read and
# sorted 25k rows, 22 ms instead of 1 (benchmarks/plans.py at af8a818); at 6M lines, 390 ms.
# With sorts disabled the planner keeps the ordered index range scan, which every page
# statement has (the primary key at least), so none of them needs a sort; keyword pages, whose
# trigram branch does sort its (few) matches, turn sorts back on for their own transaction.
# A statement that cannot do without a sort (an insert in id order) still sorts.
#
# No JIT: up to PostgreSQL 17 a disabled sort adds 1e10 to a plan's cost, far above
# jit_above_cost, and compiling the expressions took 2.5 s for a 1 ms statement. Nothing the
# server runs is long enough for JIT to pay off.
PLAN_SETTINGS = {"plan_cache_mode": "force_generic_plan", "enable_sort": "off", "jit": "off"}

# A keyword without the \x01 separator (filters.KEYWORD_SEPARATOR) is a substring of this
# exactly when it is a substring of message or of raw_log (trigrams.text_of makes the same
# text); a keyword with one is matched column by column.
_KEYWORD_TEXT = "(coalesce(message, '') || E'\\x01' || raw_log)"


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
    # "indexed": message and raw line as one text; "columns": each column; None: no keyword.
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


@lru_cache(maxsize=256)
def _page_sql(shape: _Shape, ascending: bool) -> str:
    where = "".join(_conditions(shape, first_param=6))
    order = "ASC" if ascending else "DESC"
    return (
        f"SELECT {COLUMN_LIST},"
        f" ({_back_probe(where, '$4', '$5', ascending)}) AS has_back"
        f" FROM logs WHERE project_id = $1 AND id BETWEEN $2 AND $3{where}"
        f" ORDER BY id {order} LIMIT $6"
    )


@lru_cache(maxsize=256)
def _probe_sql(shape: _Shape, ascending: bool) -> str:
    """Among the first $4 rows of the range in order: the first $5 - 1 that match, and the
    last one read.

    ``read`` numbers the rows read; a row numbered $4 (returned whether it matches or not) says
    the probe read that far, and no such row that it read the whole range. The outer LIMIT
    stops the walk once the page is full (fewer matches leave room for that last row).
    """
    filters, keyword = _conditions(shape, first_param=5)
    order = "ASC" if ascending else "DESC"
    return (
        f"SELECT * FROM (SELECT {COLUMN_LIST}, true{keyword} AS matched,"
        f" row_number() OVER (ORDER BY id {order}) AS read FROM"
        f" (SELECT {COLUMN_LIST} FROM logs WHERE project_id = $1 AND id BETWEEN $2 AND $3"
        f"{filters} ORDER BY id {order} LIMIT $4) AS head) AS probed"
        f" WHERE matched OR read = $4 ORDER BY id {order} LIMIT $5"
    )


@lru_cache(maxsize=256)
def _ranges_sql(shape: _Shape, ascending: bool, whole: bool) -> str:
    """The first $5 matches in order among the lines of function $2[i] with ids in
    [$3[i], $4[i]] (disjoint per function); ``whole``: among every line in [$3[0], $4[0]]."""
    filters, keyword = _conditions(shape, first_param=5)
    order = "ASC" if ascending else "DESC"
    function = "" if whole else " AND function_id = r.fn"
    return (
        f"SELECT found.* FROM unnest($2::uuid[], $3::uuid[], $4::uuid[]) AS r(fn, lo, hi)"
        f" CROSS JOIN LATERAL (SELECT {COLUMN_LIST} FROM logs"
        f" WHERE project_id = $1{function} AND id BETWEEN r.lo AND r.hi{filters}{keyword}"
        f" ORDER BY id {order} LIMIT $5) AS found ORDER BY id {order} LIMIT $5"
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


def filter_conditions(f: LogFilter, first_param: int) -> tuple[str, list[object]]:
    """``f``'s conditions besides the project and the id range, keyword included, as ``AND``
    terms with parameters numbered from ``first_param + 1``, and their values: for statements
    elsewhere in storage that must select exactly the rows a page would (histogram.py)."""
    shape, values = _shape_and_values(f)
    filters, keyword = _conditions(shape, first_param)
    return filters + keyword, values


KEYWORD_PROBE_ROWS = 1000
KEYWORD_PROBE_PER_ROW = 10
# Blocks read in a keyword page's first round; later rounds read what the first ones' matches
# say the page still needs (_next_round).
KEYWORD_FIRST_BLOCKS = 4


def _uuid(value: int) -> uuid.UUID:
    return uuid.UUID(int=value)


async def fetch_page(conn: asyncpg.Connection, req: PageRequest) -> Page:
    """One page of ``req.filter``'s lines in sort order, with what lies either side of it.

    A page reads the rows and the sealed blocks (sealed.py), each for its first matches, and
    merges them. A line moves only one way, from the rows into a block (sealing) or from blocks
    into a block (merging), so statements that each see their own snapshot still find every
    line committed before the first of them, once the lines a move showed twice are merged by
    id, provided the blocks are listed in one statement and fetched as listed
    (``snapshot=False`` in sealed.py). A page first reads so, without a transaction (two round
    trips less); when a block it listed has moved since, it reads again in one read-only
    REPEATABLE READ transaction, as a keyword page always does (under
    :data:`KEYWORD_SETTINGS` too).
    """
    if req.filter.keyword is None:
        with contextlib.suppress(sealed.Moved):
            return await _page(conn, req, snapshot=False)
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        if req.filter.keyword is None:
            return await _page(conn, req, snapshot=True)
        await conn.execute(KEYWORD_SETTINGS)
        return await _keyword_page(conn, req)


async def _page(conn: asyncpg.Connection, req: PageRequest, *, snapshot: bool) -> Page:
    (lo, hi), (back_lo, back_hi) = _ranges(req)
    limit = req.per_page + 1
    ascending = req.scan_ascending
    rows: list[Any] = []
    has_back: bool | None = None
    if lo <= hi:
        rows = list(await routing.page_rows(conn, req, page_query(req)))
        if rows:
            has_back = rows[0]["has_back"] is True
    if len(rows) == limit:
        # The rows filled the page: a sealed line can only take a place before the last of them.
        lo, hi = (lo, rows[-1][0].int) if ascending else (rows[-1][0].int, hi)
    more, behind = await sealed.page_matches(
        conn, req.filter, lo, hi, ascending, limit, back=(back_lo, back_hi), snapshot=snapshot
    )
    found = _merged(rows, more, ascending)
    if not has_back and not behind:
        # Behind a cursor lie mostly sealed lines (rows are the newest seconds): the blocks
        # are asked first, the rows (when the page read none, so has no probe) only then.
        unprobed = has_back is None
        has_back = await sealed.any_match(
            conn, req.filter, back_lo, back_hi, not ascending, snapshot=snapshot
        )
        if not has_back and unprobed and back_lo <= back_hi:
            has_back = bool(await conn.fetchval(*_unpack(back_query(req))))
    return _ended(req, found, bool(has_back or behind))


def _merged(rows: list[Any], more: list[Any], ascending: bool) -> list[Any]:
    """Two lists of lines, each in scan order, as one in scan order; a line in both (sealed
    between two statements of a page read without one snapshot) once."""
    if not more or not rows:
        return more or rows
    # Ids by iteration: a sealed line indexed by position goes through SealedRow's own
    # __getitem__ (it answers names too), ten times what a tuple's costs.
    keyed = [(r[0].int, r) for r in rows]
    seen = {key for key, _ in keyed}
    for line in more:
        key = next(iter(line)).int
        if key not in seen:
            keyed.append((key, line))
    keyed.sort(key=_first, reverse=not ascending)
    return [line for _, line in keyed]


_first = operator.itemgetter(0)


def _ended(req: PageRequest, found: list[Any], has_back: bool) -> Page:
    has_more = len(found) > req.per_page
    del found[req.per_page :]
    if not req.forward:
        found.reverse()
    return Page(rows=found, has_more=has_more, has_back=has_back)


# Custom plans: the statements over block ranges join an array of ranges, whose size a generic
# plan cannot know. Sorts allowed: they merge a few ranges' matches (PLAN_SETTINGS turns sorts
# off for every other page). No sequential scans: log_blocks' rows are small until their codes
# are unpacked, so the planner would read them all (16 ms for 1,200 blocks) rather than ask
# the GIN index (0.1 ms); every other statement of the page is an index scan anyway. No
# parallel plans: a page reads too little to pay for them.
KEYWORD_SETTINGS = (
    "SET LOCAL plan_cache_mode = force_custom_plan; SET LOCAL enable_sort = on;"
    " SET LOCAL enable_seqscan = off; SET LOCAL max_parallel_workers_per_gather = 0"
)


def keyword_probe_rows(per_page: int) -> int:
    """How many rows a keyword page reads in order before it turns to the block summaries.

    Reading a row costs about a microsecond (an ILIKE on its text), so the probe costs a
    couple of milliseconds; a word that fills a page within it is common enough that the
    ordered walk is the fastest plan, one that does not is rare enough for the blocks.
    """
    return max(KEYWORD_PROBE_ROWS, KEYWORD_PROBE_PER_ROW * (per_page + 1))


async def _keyword_page(conn: asyncpg.Connection, req: PageRequest) -> Page:
    (lo, hi), (back_lo, back_hi) = _ranges(req)
    limit = req.per_page + 1
    ascending = req.scan_ascending
    rows = await _keyword_rows(conn, req, lo, hi, ascending, limit)
    if len(rows) == limit:
        lo, hi = (lo, rows[-1][0].int) if ascending else (rows[-1][0].int, hi)
    more = await sealed.keyword_matches(conn, req.filter, lo, hi, ascending, limit)
    found = _merged(rows, more, ascending)
    # Behind the cursor, nearest first: the rows of the page just left are usually there.
    has_back = bool(await _keyword_rows(conn, req, back_lo, back_hi, not ascending, 1))
    if not has_back:
        has_back = await sealed.any_match(conn, req.filter, back_lo, back_hi, not ascending)
    return _ended(req, found, has_back)


async def _keyword_rows(
    conn: asyncpg.Connection, req: PageRequest, lo: int, hi: int, ascending: bool, limit: int
) -> list[asyncpg.Record]:
    """The first ``limit`` matches of ``req.filter`` in ``[lo, hi]``, in scan order.

    First the probe: the first rows of the range in order (a frequent word fills the page
    there). Then the blocks that may hold the word beyond the probe, nearest first, a growing
    number at a time: after each round, every match between the range's start and the nearest
    block not read yet is known, since any such match lies in a block already read. It stops
    when ``limit`` of them are known.
    """
    if lo > hi:
        return []
    f = req.filter
    shape, values = _shape_and_values(f)
    probe = keyword_probe_rows(req.per_page)
    head = await conn.fetch(
        _probe_sql(shape, ascending), f.project_id, _uuid(lo), _uuid(hi), probe, limit + 1, *values
    )
    found = [r for r in head if r["matched"]]
    if len(found) >= limit or not head or head[-1]["read"] < probe:
        return found[:limit]
    # The probe read up to its last row: the rest of the range lies beyond it.
    edge = head[-1]["id"].int
    lo, hi = (edge + 1, hi) if ascending else (lo, edge - 1)
    codes = trigrams.keyword_codes(f.keyword or "")
    if lo > hi:
        return found
    if not codes:
        # No trigram to look up (a word shorter than three ASCII characters): the whole range.
        ranges = [(_ANY_FUNCTION, lo, hi)]
    else:
        function = f.equals.get("function_id")
        ranges = await blocks.candidates(
            conn, f.project_id, _uuid(lo), _uuid(hi), codes, function_id=function
        )
    return found + await _walk(conn, req, shape, values, ranges, ascending, limit - len(found))


# The function of a range that stands for every line in it (not one function's block).
_ANY_FUNCTION = uuid.UUID(int=0)


async def _walk(
    conn: asyncpg.Connection,
    req: PageRequest,
    shape: _Shape,
    values: list[object],
    ranges: list[blocks.Range],
    ascending: bool,
    limit: int,
) -> list[asyncpg.Record]:
    # Nearest first: by the end a scan meets first.
    if ascending:
        ranges.sort(key=lambda r: r[1])
    else:
        ranges.sort(key=lambda r: r[2], reverse=True)
    whole = len(ranges) == 1 and ranges[0][0] == _ANY_FUNCTION
    sql = _ranges_sql(shape, ascending, whole)
    found: dict[uuid.UUID, asyncpg.Record] = {}
    done, take = 0, KEYWORD_FIRST_BLOCKS
    while done < len(ranges):
        batch = blocks.merged(ranges[done : done + take])
        done += take
        functions = [function for function, _, _ in batch]
        los = [_uuid(lo) for _, lo, _ in batch]
        his = [_uuid(hi) for _, _, hi in batch]
        args = (req.filter.project_id, functions, los, his, limit, *values)
        for row in await conn.fetch(sql, *args):
            found[row["id"]] = row
        frontier = _frontier(ranges, done, ascending)
        known = sum(1 for i in found if _known(i, frontier, ascending))
        if known >= limit:
            break
        take = _next_round(take, limit - known, len(found) / done)
    frontier = _frontier(ranges, done, ascending)
    ordered = sorted(found.values(), key=lambda r: r["id"], reverse=not ascending)
    return [r for r in ordered if _known(r["id"], frontier, ascending)][:limit]


def _next_round(take: int, missing: int, per_block: float) -> int:
    """Blocks to read next: what the matches per block so far say the page still needs, with
    half again as margin (each round is a statement; reading a block is ~256 rows), between the
    first round's number and four times the last round's."""
    wanted = 1.5 * missing / per_block + 1 if per_block else 4 * take
    return int(min(4 * take, max(KEYWORD_FIRST_BLOCKS, wanted)))


def _frontier(ranges: list[blocks.Range], done: int, ascending: bool) -> int | None:
    """The near end of the first range not read yet (None: all were read)."""
    if done >= len(ranges):
        return None
    return ranges[done][1] if ascending else ranges[done][2]


def _known(row_id: uuid.UUID, frontier: int | None, ascending: bool) -> bool:
    """Whether ``row_id`` lies before the frontier, where every match has been read."""
    if frontier is None:
        return True
    return row_id.int < frontier if ascending else row_id.int > frontier


def page_query(req: PageRequest) -> tuple[str, list[object]]:
    """The page statement and its arguments (for EXPLAIN tests and benchmarks too).

    For a keyword page, the one statement that reads the range in order with the keyword as a
    filter: what a keyword page would cost without its block summaries.
    """
    shape, values = _shape_and_values(req.filter)
    (lo, hi), (back_lo, back_hi) = _ranges(req)
    args: list[object] = [req.filter.project_id, _uuid(lo), _uuid(hi)]
    args += [_uuid(back_lo), _uuid(back_hi), req.per_page + 1]
    return _page_sql(shape, req.scan_ascending), [*args, *values]


def back_query(req: PageRequest) -> tuple[str, list[object]]:
    """The probe alone, for a page that came back empty (and so carries no probe result)."""
    shape, values = _shape_and_values(req.filter)
    _, (back_lo, back_hi) = _ranges(req)
    args = [req.filter.project_id, _uuid(back_lo), _uuid(back_hi), *values]
    return _back_sql(shape, req.scan_ascending), args


async def read_page(conn: asyncpg.Connection, req: PageRequest) -> Page:
    """The page of :func:`page_query` under the connection's settings as they are (for a
    keyword page, without its block summaries: benchmarks compare the two)."""
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
        has_back = back_lo <= back_hi and bool(await conn.fetchval(*_unpack(back_query(req))))
    has_more = len(rows) > req.per_page
    if has_more:
        del rows[req.per_page :]
    if not req.forward:
        rows.reverse()
    return Page(rows=rows, has_more=has_more, has_back=has_back)


def _unpack(query: tuple[str, list[object]]) -> tuple[str, *tuple[object, ...]]:
    return (query[0], *query[1])
