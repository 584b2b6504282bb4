"""``log_blocks``: a row per block of one function's lines, with the trigram codes its text holds.

Written in the same transaction as the lines (:func:`write_blocks`), so a line readable is a
line summarised; read by keyword pages (pages.py) to skip the id ranges that cannot hold a word.
A block holds the lines of one function (a batch is cut by function, then into runs of
``trigrams.BLOCK_ROWS`` in id order): a search within a function (PolyAPI's always is) asks only
that function's blocks, and reading a block reads its function's lines in its range, not every
line of the project that falls there.

Lines stored before schema version 3 sit in a block per function whose codes are unknown
(NULL), which every keyword may match; :func:`summarise_pending` replaces such a block by real
ones, newest first. See trigrams.py for what a code is and why a block never hides a match.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from operator import itemgetter

import asyncpg

from gramlogs.storage import trigrams

__all__ = [
    "COLUMNS",
    "Block",
    "candidates",
    "merged",
    "summaries",
    "summarise_pending",
    "write_blocks",
]

COLUMNS = ("project_id", "function_id", "lo", "hi", "grams")
# A line as a block needs it: project, function, id, message, raw line.
Line = tuple[object, object, object, object, object]
# Where a row in pages.COLUMNS order holds them.
_LINE_OF_ROW = itemgetter(8, 10, 0, 6, 5)

Block = tuple[object, object, object, object, list[int] | None]
# An id range of one function's lines: (function_id, lo, hi), bounds inclusive, as ints.
Range = tuple[uuid.UUID, int, int]


def summaries(lines: Iterable[Line], *, in_id_order: bool = False) -> list[Block]:
    """The blocks of ``lines`` (any projects and functions; ``in_id_order``: sorted by id
    already, as a stored batch is, which spares sorting them again)."""
    groups: dict[tuple[object, object], list[Line]] = {}
    for line in lines:
        groups.setdefault((line[0], line[1]), []).append(line)
    out: list[Block] = []
    for (project, function), of_function in groups.items():
        if not in_id_order:
            of_function.sort(key=lambda line: _key(line[2]))
        for start in range(0, len(of_function), trigrams.BLOCK_ROWS):
            part = of_function[start : start + trigrams.BLOCK_ROWS]
            texts = [trigrams.text_of(_text(m), str(raw)) for _, _, _, m, raw in part]
            out.append((project, function, part[0][2], part[-1][2], trigrams.block_codes(texts)))
    return out


def _key(value: object) -> int:
    # Ids arrive as 32 hex digits (the ingest path), uuid text or UUIDs (seeding, tests).
    return value.int if isinstance(value, uuid.UUID) else int(str(value).replace("-", ""), 16)


def _text(value: object) -> str | None:
    return None if value is None else str(value)


async def write_blocks(
    conn: asyncpg.Connection, rows: Sequence[Sequence[object]], *, in_id_order: bool = False
) -> None:
    """Summarise ``rows`` (in pages.COLUMNS order) into ``log_blocks``; call it in the
    transaction that stores them."""
    if rows:
        blocks = summaries(map(_LINE_OF_ROW, rows), in_id_order=in_id_order)
        await conn.copy_records_to_table("log_blocks", records=blocks, columns=COLUMNS)


async def candidates(
    conn: asyncpg.Connection,
    project_id: uuid.UUID,
    lo: uuid.UUID,
    hi: uuid.UUID,
    codes: list[int],
    function_id: object = None,
) -> list[Range]:
    """The project's blocks in ``[lo, hi]`` (of ``function_id`` only, when given) that may hold
    every code of ``codes``: those whose codes contain them, and those not summarised yet. Each
    as its function and its id range clipped to ``[lo, hi]``."""
    where = "project_id = $1 AND hi >= $2 AND lo <= $3"
    args: list[object] = [project_id, lo, hi, codes]
    if function_id is not None:
        where += " AND function_id = $5"
        args.append(function_id)
    rows = await conn.fetch(
        f"SELECT function_id, lo, hi FROM log_blocks WHERE {where} AND grams @> $4::int4[]"
        f" UNION ALL SELECT function_id, lo, hi FROM log_blocks WHERE {where} AND grams IS NULL",
        *args,
    )
    return [(r["function_id"], max(r["lo"].int, lo.int), min(r["hi"].int, hi.int)) for r in rows]


# Lines summarised per transaction by summarise_pending.
SUMMARISE_ROWS = 50_000


async def summarise_pending(conn: asyncpg.Connection, *, max_rows: int = 1_000_000) -> int:
    """Summarise up to ``max_rows`` lines of blocks not summarised yet; the lines done.

    Works from the top of each pending block down, a transaction per :data:`SUMMARISE_ROWS`
    lines: the real blocks are written and the pending block shrinks below them, so a search
    at any moment finds every line in a block of one kind or the other.
    """
    done = 0
    pending = await conn.fetch(
        "SELECT DISTINCT project_id, function_id FROM log_blocks WHERE grams IS NULL"
    )
    for project_id, function_id in pending:
        while done < max_rows:
            lines = await _summarise_some(conn, project_id, function_id)
            if lines == 0:
                break
            done += lines
    return done


async def _summarise_some(
    conn: asyncpg.Connection, project_id: uuid.UUID, function_id: uuid.UUID
) -> int:
    async with conn.transaction():
        where = "WHERE project_id = $1 AND function_id = $2 AND grams IS NULL"
        pending = await conn.fetchrow(
            f"SELECT lo, hi FROM log_blocks {where} ORDER BY hi DESC LIMIT 1 FOR UPDATE",
            project_id,
            function_id,
        )
        if pending is None:
            return 0
        rows = await conn.fetch(
            "SELECT id, message, raw_log FROM logs WHERE project_id = $1 AND function_id = $2"
            " AND id BETWEEN $3 AND $4 ORDER BY id DESC LIMIT $5",
            project_id,
            function_id,
            pending["lo"],
            pending["hi"],
            SUMMARISE_ROWS,
        )
        lines = ((project_id, function_id, r["id"], r["message"], r["raw_log"]) for r in rows)
        await conn.copy_records_to_table("log_blocks", records=summaries(lines), columns=COLUMNS)
        this = f"{where} AND lo = $3 AND hi = $4"
        if len(rows) < SUMMARISE_ROWS:
            await conn.execute(f"DELETE FROM log_blocks {this}", project_id, function_id, *pending)
        else:
            below = uuid.UUID(int=rows[-1]["id"].int - 1)
            set_hi = f"UPDATE log_blocks SET hi = $5 {this}"
            await conn.execute(set_hi, project_id, function_id, *pending, below)
        return max(len(rows), 1)


def merged(ranges: Iterable[Range]) -> list[Range]:
    """``ranges`` with the overlapping or adjacent ones of a function joined."""
    out: list[Range] = []
    for function, lo, hi in sorted(ranges, key=lambda r: (r[0], r[1])):
        if out and out[-1][0] == function and lo <= out[-1][2] + 1:
            out[-1] = (function, out[-1][1], max(out[-1][2], hi))
        else:
            out.append((function, lo, hi))
    return out
