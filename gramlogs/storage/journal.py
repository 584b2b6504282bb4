"""The tail journal: which lines each committed batch stored, numbered in commit order.

A line's id is its timestamp's position, not when it was stored: a late line (a timestamp older
than lines already read) lands behind them, and of two concurrent batches the one whose ids are
lower may commit later. So "the lines with ids above the last one read" loses lines. The
journal numbers batches instead (migrations/0005): each transaction that stores lines for a
project takes the project's next number as its last statement, under the lock of the project's
``tail_heads`` row, which it holds until COMMIT. Numbers are therefore taken in commit order,
without gaps, and a snapshot that holds number n holds every number below it: reading "the
batches after n" never misses one.

A :class:`Position` is a place in that order: a batch number and the last id delivered of it
(``DONE``: all of it). Within a batch, lines go in id order. Every statement names
``project_id``: on Citus the tables sit beside ``logs`` (``citus.COLOCATED_TABLES``).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import asyncpg

from gramlogs.core.errors import Gone
from gramlogs.storage import sealed
from gramlogs.storage.pages import COLUMN_LIST, COLUMNS, PageRequest, fetch_page

__all__ = [
    "DONE",
    "NEXT_LIMIT",
    "PIECE_ID_COLUMN",
    "Batch",
    "Position",
    "check_kept",
    "delete_expired",
    "gone",
    "head",
    "newest_before",
    "newest_matching_before",
    "next_batches",
    "oldest",
    "read_lines",
    "read_lines_query",
    "read_piece",
    "record",
]

# The position's id past every id: the whole batch was delivered.
DONE: Final = (1 << 128) - 1


@dataclass(frozen=True, slots=True, order=True)
class Position:
    """After batch ``seq``'s line ``after`` (an id as an int; ``DONE``: after all of it)."""

    seq: int
    after: int = DONE

    @property
    def done(self) -> bool:
        return self.after == DONE


@dataclass(frozen=True, slots=True)
class Batch:
    seq: int
    lines: int


# One statement, so that the lock it takes lasts one round trip and the COMMIT: a project's
# batches wait for each other only there.
_RECORD = """
WITH head AS (
    INSERT INTO tail_heads (project_id, seq) VALUES ($1, 1)
    ON CONFLICT (project_id) DO UPDATE SET seq = tail_heads.seq + 1
    RETURNING project_id, seq
)
INSERT INTO tail_journal (project_id, seq, lines, ids)
SELECT project_id, seq, $2, $3 FROM head
RETURNING seq
"""


async def record(conn: asyncpg.Connection, project_id: uuid.UUID, ids: Sequence[object]) -> int:
    """Journal the ``ids`` a batch stored for ``project_id``; its number.

    Call it last in the batch's transaction: from here to COMMIT the project's other batches
    wait for their number, which is what puts the numbers in commit order.
    """
    seq: int = await conn.fetchval(_RECORD, project_id, len(ids), ids)
    return seq


async def head(conn: asyncpg.Connection, project_id: uuid.UUID) -> int:
    """The number of the project's last committed batch (0: none yet)."""
    seq: int | None = await conn.fetchval(
        "SELECT seq FROM tail_heads WHERE project_id = $1", project_id
    )
    return seq or 0


async def oldest(conn: asyncpg.Connection, project_id: uuid.UUID) -> int | None:
    """The number of the oldest batch the journal still holds (None: it holds none)."""
    seq: int | None = await conn.fetchval(
        "SELECT seq FROM tail_journal WHERE project_id = $1 ORDER BY seq LIMIT 1", project_id
    )
    return seq


def gone(seq: int) -> Gone:
    return Gone(
        f"the tail journal no longer holds batch {seq} (it keeps GRAMLOGS_TAIL_RESUME_HOURS):"
        " lines after this resume point cannot all be sent; start a new tail"
    )


# Batches next_batches returns at most (their numbers and sizes: a few bytes each).
NEXT_LIMIT: Final = 1000


async def check_kept(
    conn: asyncpg.Connection, project_id: uuid.UUID, position: Position, last: int
) -> None:
    """410 when batches after ``position`` up to ``last`` (the head) are no longer kept."""
    first = position.seq if not position.done else position.seq + 1
    if first > last:
        return
    kept = await oldest(conn, project_id)
    if kept is None or kept > first:
        raise gone(first)


_NEXT = """
SELECT seq, lines FROM tail_journal WHERE project_id = $1 AND seq >= $2
ORDER BY seq LIMIT $3
"""


async def next_batches(
    conn: asyncpg.Connection, project_id: uuid.UUID, start: int, *, limit: int = NEXT_LIMIT
) -> list[Batch]:
    """The journal's batches from number ``start`` on, at most ``limit``, in order."""
    rows = await conn.fetch(_NEXT, project_id, start, limit)
    return [Batch(row[0], row[1]) for row in rows]


_COLUMN_LIST = ", ".join(f'l."{c}"' if c == "timestamp" else f"l.{c}" for c in COLUMNS)
# COLUMNS first (the rows read as a page's rows do), then the batch's number, then which of
# the keywords $4 (ILIKE patterns) the line holds, as their indexes from 1: tails with
# different keywords share the one statement.
#
# Each id is its own probe of the primary key, whatever the statistics say: a subquery with a
# LIMIT is run once per id, and a range on id in id order is what the primary key alone gives
# without a sort (every other index puts a column between project_id and id). A plain join
# leaves the planner free to hash the ids and read the project's whole partition for every
# batch, which it picks for a generic plan made while the partition was empty (a new install,
# a new week), and which then costs more with every line written.
_READ = f"""
SELECT {_COLUMN_LIST}, b.seq,
    ARRAY(SELECT k FROM generate_subscripts($4::text[], 1) AS k
          WHERE l.message ILIKE ($4::text[])[k] OR l.raw_log ILIKE ($4::text[])[k]) AS matched,
    u.id
FROM tail_journal AS b
CROSS JOIN LATERAL unnest(b.ids) AS u(id)
LEFT JOIN LATERAL (
    SELECT {COLUMN_LIST} FROM logs
    WHERE project_id = $1 AND id >= u.id AND id <= u.id ORDER BY id LIMIT 1
) AS l ON true
WHERE b.project_id = $1 AND b.seq BETWEEN $2 AND $3
ORDER BY b.seq, u.id
"""

# Where read_lines' rows hold the batch number and the matched keywords.
SEQ_COLUMN: Final = len(COLUMNS)
MATCHED_COLUMN: Final = len(COLUMNS) + 1


async def read_lines(
    conn: asyncpg.Connection,
    project_id: uuid.UUID,
    first: int,
    last: int,
    patterns: Sequence[str] = (),
) -> list[asyncpg.Record]:
    """The lines of batches ``first`` to ``last`` still stored, by batch then id; each row is
    pages.COLUMNS, then the batch number, then the indexes (from 1) of ``patterns`` it matches.

    A line deleted since (retention, a Poly DELETE) is left out.
    """
    sql, args = read_lines_query(project_id, first, last, patterns)
    rows = await _unsealed(conn, project_id, await conn.fetch(sql, *args), patterns)
    return [row for row in rows if row[0] is not None]


def read_lines_query(
    project_id: uuid.UUID, first: int, last: int, patterns: Sequence[str] = ()
) -> tuple[str, list[object]]:
    """The statement of :func:`read_lines` and its arguments (for EXPLAIN tests)."""
    return _READ, [project_id, first, last, list(patterns)]


# One batch's lines after an id, at most $5 of them in id order: a batch too large to read whole
# (read_lines) is read in pieces, so a 200,000-line batch costs a piece's memory, not its own.
# The batch's ids after $3 are sorted and cut before any line is read (a top-N of the array, one
# pass); each then probes the primary key as in _READ. LEFT: an id whose line was deleted since
# still moves the piece along (its columns are null).
_READ_PIECE = f"""
SELECT {_COLUMN_LIST}, b.seq,
    ARRAY(SELECT k FROM generate_subscripts($4::text[], 1) AS k
          WHERE l.message ILIKE ($4::text[])[k] OR l.raw_log ILIKE ($4::text[])[k]) AS matched,
    u.id
FROM tail_journal AS b
CROSS JOIN LATERAL (
    SELECT v.id FROM unnest(b.ids) AS v(id) WHERE v.id > $3 ORDER BY v.id LIMIT $5
) AS u
LEFT JOIN LATERAL (
    SELECT {COLUMN_LIST} FROM logs
    WHERE project_id = $1 AND id >= u.id AND id <= u.id ORDER BY id LIMIT 1
) AS l ON true
WHERE b.project_id = $1 AND b.seq = $2
ORDER BY u.id
"""
# Where a piece's rows hold the id they were read for.
PIECE_ID_COLUMN: Final = len(COLUMNS) + 2


async def read_piece(
    conn: asyncpg.Connection,
    project_id: uuid.UUID,
    seq: int,
    after: uuid.UUID,
    limit: int,
    patterns: Sequence[str] = (),
) -> list[asyncpg.Record]:
    """Batch ``seq``'s next ``limit`` ids after ``after``, in id order, each with its line as
    :func:`read_lines` gives it, then the id (PIECE_ID_COLUMN); a line deleted since has null
    columns. Fewer than ``limit`` rows: the batch ends there."""
    rows = await conn.fetch(_READ_PIECE, project_id, seq, after, list(patterns), limit)
    return await _unsealed(conn, project_id, rows, patterns)


# Which of the patterns $1 each line (message $2, raw line $3) matches, as _READ says it.
_MATCHED = """
SELECT ARRAY(SELECT k FROM generate_subscripts($1::text[], 1) AS k
             WHERE t.m ILIKE ($1::text[])[k] OR t.r ILIKE ($1::text[])[k])
FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS t(m, r, n) ORDER BY t.n
"""


async def _unsealed(
    conn: asyncpg.Connection,
    project_id: uuid.UUID,
    rows: Sequence[asyncpg.Record],
    patterns: Sequence[str],
) -> list[Any]:
    """``rows`` with the lines no longer rows read from their sealed blocks; a line deleted
    since keeps its null columns.

    A later statement than the one that read the rows, but no line is lost between them: a
    line that was not a row then had been sealed before, and sealing never takes a line out of
    the blocks but to delete it.
    """
    missing = [row[PIECE_ID_COLUMN] for row in rows if row[0] is None]
    if not missing:
        return list(rows)
    found = await sealed.lines_by_id(conn, project_id, missing)
    if not found:
        return list(rows)
    lines = list(found.values())
    extra: dict[object, list[int]] = {line[0]: [] for line in lines}
    if patterns:
        matched = await conn.fetch(
            _MATCHED, list(patterns), [line[6] for line in lines], [line[5] for line in lines]
        )
        extra = {line[0]: m[0] for line, m in zip(lines, matched, strict=True)}
    out: list[Any] = []
    for row in rows:
        line = found.get(row[PIECE_ID_COLUMN]) if row[0] is None else None
        if line is None:
            out.append(row)
        else:
            out.append((*line, row[SEQ_COLUMN], extra[line[0]], row[PIECE_ID_COLUMN]))
    return out


_IDS_AFTER = """
SELECT u.id FROM tail_journal AS b CROSS JOIN LATERAL unnest(b.ids) AS u(id)
WHERE b.project_id = $1 AND b.seq > $2 AND u.id = ANY($3::uuid[])
"""


async def newest_before(
    conn: asyncpg.Connection, request: PageRequest, seq: int
) -> list[asyncpg.Record]:
    """``request``'s page (the newest lines first), less the lines that batches after number
    ``seq`` stored: a tail from ``seq`` on sends those, so none comes twice."""
    rows, _ = await _page_before(conn, request, seq)
    return rows


async def newest_matching_before(
    conn: asyncpg.Connection,
    request: PageRequest,
    seq: int,
    matches: Callable[[asyncpg.Record], bool],
    limit: int,
    scan: int,
) -> list[asyncpg.Record]:
    """The newest ``limit`` lines of ``request``'s pages that pass ``matches`` (newest first), as
    :func:`newest_before` has them: for a filter checked line by line, which may pass few of a
    page, so pages are read on until there are enough, or ``scan`` lines were read."""
    rows: list[asyncpg.Record] = []
    scanned = 0
    while len(rows) < limit and scanned < scan:
        page, cursor = await _page_before(conn, request, seq)
        scanned += request.per_page
        rows += [row for row in page if matches(row)]
        if cursor is None:
            break
        request = dataclasses.replace(request, cursor=cursor)
    return rows[:limit]


async def _page_before(
    conn: asyncpg.Connection, request: PageRequest, seq: int
) -> tuple[list[asyncpg.Record], uuid.UUID | None]:
    """:func:`newest_before`'s rows, and the cursor of ``request``'s next page (None: it was the
    last)."""
    page = await fetch_page(conn, request)
    if not page.rows:
        return [], None
    cursor = page.rows[-1][0] if page.has_more else None
    args = (request.filter.project_id, seq, [row[0] for row in page.rows])
    later = {row[0] for row in await conn.fetch(_IDS_AFTER, *args)}
    return [row for row in page.rows if row[0] not in later], cursor


_EXPIRED = """
SELECT seq FROM tail_journal WHERE project_id = $1 AND committed_at <= $2
ORDER BY seq DESC LIMIT 1
"""
_DELETE = "DELETE FROM tail_journal WHERE project_id = $1 AND seq <= $2"


async def delete_expired(conn: asyncpg.Connection, *, hours: int) -> int:
    """Delete the batches older than ``hours``, a project at a time; return how many.

    Always a project's oldest batches, up to its newest expired one (a long transaction may
    commit after a younger one), so what is left has no gaps and a resume point is either
    wholly there or known to be gone.
    """
    cutoff = await conn.fetchval("SELECT now() - make_interval(hours => $1)", hours)
    deleted = 0
    for project in await conn.fetch("SELECT project_id FROM tail_heads ORDER BY project_id"):
        project_id = project[0]
        newest = await conn.fetchval(_EXPIRED, project_id, cutoff)
        if newest is not None:
            status = await conn.execute(_DELETE, project_id, newest)
            deleted += int(status.split()[-1])
    return deleted
