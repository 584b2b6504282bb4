"""``log_blocks``: a row per block of a project's lines, with the trigram codes its text holds.

Written in the same transaction as the lines (:func:`write_blocks`), so a line readable is a
line summarised; read by keyword pages (store.py) to skip the id ranges that cannot hold a word.
Lines stored before schema version 3 sit in a block whose codes are unknown (NULL), which every
keyword may match; :func:`summarise_pending` replaces such a block by real ones, newest first.
See grams.py for what a code is and why a block never hides a match.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from itertools import groupby
from operator import itemgetter

import asyncpg

from gramlogs.storage import grams

__all__ = [
    "COLUMNS",
    "Block",
    "candidates",
    "merged",
    "summaries",
    "summarise_pending",
    "write_blocks",
]

COLUMNS = ("project_id", "lo", "hi", "grams")
# A line as a block needs it: project, id, message, raw line.
Line = tuple[object, object, object, object]
# Where a row in store.COLUMNS order holds them.
_LINE_OF_ROW = itemgetter(8, 0, 6, 5)

Block = tuple[object, object, object, list[int] | None]


def summaries(lines: Iterable[Line]) -> list[Block]:
    """The blocks of ``lines`` (any project, any order)."""
    out: list[Block] = []
    ordered = sorted(lines, key=lambda line: (str(line[0]), _key(line[1])))
    for project, group in groupby(ordered, key=lambda line: str(line[0])):
        of_project = list(group)
        for start in range(0, len(of_project), grams.BLOCK_ROWS):
            part = of_project[start : start + grams.BLOCK_ROWS]
            texts = [grams.text_of(_text(m), str(raw)) for _, _, m, raw in part]
            out.append((project, part[0][1], part[-1][1], grams.block_codes(texts)))
    return out


def _key(value: object) -> int:
    # Ids arrive as 32 hex digits (the ingest path), uuid text or UUIDs (seeding, tests).
    return value.int if isinstance(value, uuid.UUID) else int(str(value).replace("-", ""), 16)


def _text(value: object) -> str | None:
    return None if value is None else str(value)


async def write_blocks(conn: asyncpg.Connection, rows: Sequence[Sequence[object]]) -> None:
    """Summarise ``rows`` (in store.COLUMNS order) into ``log_blocks``; call it in the
    transaction that stores them."""
    if rows:
        blocks = summaries(_LINE_OF_ROW(r) for r in rows)
        await conn.copy_records_to_table("log_blocks", records=blocks, columns=COLUMNS)


async def candidates(
    conn: asyncpg.Connection, project_id: uuid.UUID, lo: uuid.UUID, hi: uuid.UUID, codes: list[int]
) -> list[tuple[int, int]]:
    """Id ranges (inclusive, as ints) of the project's blocks in ``[lo, hi]`` that may hold
    every code of ``codes``: those whose codes contain them, and those not summarised yet."""
    rows = await conn.fetch(
        "SELECT lo, hi FROM log_blocks"
        " WHERE project_id = $1 AND hi >= $2 AND lo <= $3 AND grams @> $4::int4[]"
        " UNION ALL SELECT lo, hi FROM log_blocks"
        " WHERE project_id = $1 AND hi >= $2 AND lo <= $3 AND grams IS NULL",
        project_id,
        lo,
        hi,
        codes,
    )
    return [(max(r["lo"].int, lo.int), min(r["hi"].int, hi.int)) for r in rows]


# Lines summarised per transaction by summarise_pending.
SUMMARISE_ROWS = 50_000


async def summarise_pending(conn: asyncpg.Connection, *, max_rows: int = 1_000_000) -> int:
    """Summarise up to ``max_rows`` lines of blocks not summarised yet; the lines done.

    Works from the top of each pending block down, a transaction per :data:`SUMMARISE_ROWS`
    lines: the real blocks are written and the pending block shrinks below them, so a search
    at any moment finds every line in a block of one kind or the other.
    """
    done = 0
    projects = await conn.fetch("SELECT DISTINCT project_id FROM log_blocks WHERE grams IS NULL")
    for (project_id,) in projects:
        while done < max_rows:
            lines = await _summarise_some(conn, project_id)
            if lines == 0:
                break
            done += lines
    return done


async def _summarise_some(conn: asyncpg.Connection, project_id: uuid.UUID) -> int:
    async with conn.transaction():
        pending = await conn.fetchrow(
            "SELECT lo, hi FROM log_blocks WHERE project_id = $1 AND grams IS NULL"
            " ORDER BY hi DESC LIMIT 1 FOR UPDATE",
            project_id,
        )
        if pending is None:
            return 0
        rows = await conn.fetch(
            "SELECT id, message, raw_log FROM logs"
            " WHERE project_id = $1 AND id BETWEEN $2 AND $3 ORDER BY id DESC LIMIT $4",
            project_id,
            pending["lo"],
            pending["hi"],
            SUMMARISE_ROWS,
        )
        blocks = summaries((project_id, r["id"], r["message"], r["raw_log"]) for r in rows)
        await conn.copy_records_to_table("log_blocks", records=blocks, columns=COLUMNS)
        where = "WHERE project_id = $1 AND grams IS NULL AND lo = $2 AND hi = $3"
        if len(rows) < SUMMARISE_ROWS:
            await conn.execute(f"DELETE FROM log_blocks {where}", project_id, *pending)
        else:
            below = uuid.UUID(int=rows[-1]["id"].int - 1)
            await conn.execute(
                f"UPDATE log_blocks SET hi = $4 {where}", project_id, *pending, below
            )
        return max(len(rows), 1)


def merged(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """``ranges`` (inclusive) sorted, with overlapping or adjacent ones joined."""
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges, key=itemgetter(0)):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out
