"""Sealing: a function's older rows moved into compressed blocks (sealed.py), small blocks
merged, and sealed lines deleted (Poly's DELETE, retention) by rewriting their blocks.

When a line is sealed. A function's rows are sealed :data:`BLOCK_ROWS` at a time, oldest
first, once that many are older than :data:`SEAL_DELAY_S`; fewer are sealed once the oldest
of them is older than :data:`SEAL_AGE_S` (a quiet function), and such small blocks are merged
later, neighbours of one function, up to :data:`BLOCK_ROWS` lines. So the rows a project keeps
are its newest few seconds and less than a block per function, and a line is read back as a
row (the tail, a resend's duplicate check) while it is young. The figures behind the sizes:
benchmarks/sealing.md.

Every change is one transaction under the project's exclusive lock (sealed.lock_project): the
rows deleted and their block written, or the old blocks deleted and the new one written, so
a crash at any moment leaves each line in exactly one place. The blocks are encoded before
the lock is taken, from a snapshot; the transaction checks that what it replaces is still what
was read (a DELETE meanwhile makes it give up and try again next time).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from gramlogs.core import ids
from gramlogs.storage import codec, sealed
from gramlogs.storage.rows import COLUMN_LIST

__all__ = [
    "BLOCK_ROWS",
    "Report",
    "delete_sealed",
    "merge_some",
    "seal_some",
]

BLOCK_ROWS = 4096
SEAL_DELAY_S = 10.0
SEAL_AGE_S = 300.0
# Blocks a run seals at most: a run that seals this many starts the next one at once.
MAX_BLOCKS = 100
# Merges a run makes at most.
MAX_MERGES = 20
# Blocks smaller than this are merged with their neighbours.
MERGE_BELOW = BLOCK_ROWS // 2


@dataclass
class Report:
    sealed_lines: int = 0
    blocks: int = 0  # blocks written
    merged_blocks: int = 0  # blocks merged into others
    merges: int = 0


class _Changed(Exception):
    """What a transaction was to replace changed since it was read: roll back, try later."""


# Canonical uuid text sorts as the uuid does; PostgreSQL before 18 has no min(uuid).
_PENDING = """
SELECT project_id, function_id, count(*) AS n, min(id::text COLLATE "C")::uuid AS oldest
FROM logs WHERE id < $1 AND ($2::uuid IS NULL OR project_id = $2)
GROUP BY project_id, function_id
"""

_OLDEST_ROWS = f"""
SELECT {COLUMN_LIST} FROM logs WHERE project_id = $1 AND function_id = $2 AND id < $3
ORDER BY id LIMIT $4
"""

_DELETE_ROWS = """
DELETE FROM logs WHERE project_id = $1 AND id BETWEEN $2 AND $3 AND id = ANY($4::uuid[])
"""


async def seal_some(
    conn: asyncpg.Connection,
    *,
    now: datetime,
    max_blocks: int = MAX_BLOCKS,
    project_id: uuid.UUID | None = None,
) -> Report:
    """Seal what is due as of ``now`` (of ``project_id`` only, when given), at most
    ``max_blocks`` blocks; what was done."""
    report = Report()
    horizon = ids.lowest_id(now - timedelta(seconds=SEAL_DELAY_S))
    aged = ids.lowest_id(now - timedelta(seconds=SEAL_AGE_S)).int
    pending = await conn.fetch(_PENDING, horizon, project_id)
    for row in sorted(pending, key=lambda r: -r["n"]):
        if row["n"] < BLOCK_ROWS and row["oldest"].int >= aged:
            continue
        left = row["n"]
        while left > 0 and report.blocks < max_blocks:
            done = await _seal_block(conn, row["project_id"], row["function_id"], horizon, aged)
            if not done:
                break
            report.sealed_lines += done
            report.blocks += 1
            left -= done
    return report


async def _seal_block(
    conn: asyncpg.Connection,
    project_id: uuid.UUID,
    function_id: uuid.UUID,
    horizon: uuid.UUID,
    aged: int,
) -> int:
    rows = await conn.fetch(_OLDEST_ROWS, project_id, function_id, horizon, BLOCK_ROWS)
    if not rows or (len(rows) < BLOCK_ROWS and rows[0][0].int >= aged):
        return 0
    block = await asyncio.to_thread(codec.encode, rows)
    try:
        async with conn.transaction():
            await sealed.lock_project(conn, project_id)
            status = await conn.execute(
                _DELETE_ROWS, project_id, block.lo, block.hi, [r[0] for r in rows]
            )
            if int(status.split()[-1]) != len(rows):
                raise _Changed
            await sealed.write(conn, [block])
            await _drop_summaries(conn, project_id, function_id, block.lo, block.hi)
    except _Changed:
        return 0
    return len(rows)


async def _drop_summaries(
    conn: asyncpg.Connection, project_id: uuid.UUID, function_id: uuid.UUID, lo: Any, hi: Any
) -> None:
    """The rows' keyword summaries (blocks.py) that lie within the block, unless a row of the
    function still lies there (a late line stored after the block's rows were read)."""
    left = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM logs WHERE project_id = $1 AND function_id = $2"
        " AND id BETWEEN $3 AND $4)",
        project_id,
        function_id,
        lo,
        hi,
    )
    if not left:
        await conn.execute(
            "DELETE FROM log_blocks WHERE project_id = $1 AND function_id = $2"
            " AND lo >= $3 AND hi <= $4",
            project_id,
            function_id,
            lo,
            hi,
        )


# -- Merging ------------------------------------------------------------------------------------

_SMALL = """
SELECT project_id, function_id FROM log_sealed
WHERE lines < $1 AND ($2::uuid IS NULL OR project_id = $2)
GROUP BY project_id, function_id HAVING count(*) > 1
"""
# From the oldest small block on (small blocks are mostly the newest: a batch's part, or a
# quiet function's): their neighbours, not the function's whole history.
_OF_FUNCTION = """
SELECT lo, hi, lines FROM log_sealed WHERE project_id = $1 AND function_id = $2
AND hi >= (SELECT min(lo::text COLLATE "C")::uuid FROM log_sealed
           WHERE project_id = $1 AND function_id = $2 AND lines < $3)
ORDER BY lo
"""
_WHOLE = """
SELECT b.* FROM unnest($3::uuid[]) AS r(lo)
JOIN log_sealed AS b ON b.project_id = $1 AND b.function_id = $2 AND b.lo = r.lo
ORDER BY b.lo
"""


async def merge_some(
    conn: asyncpg.Connection,
    *,
    max_merges: int = MAX_MERGES,
    project_id: uuid.UUID | None = None,
) -> Report:
    """Merge runs of neighbouring small blocks of a function (of ``project_id`` only, when
    given) into blocks of at most :data:`BLOCK_ROWS` lines; at most ``max_merges`` merges."""
    report = Report()
    for small in await conn.fetch(_SMALL, MERGE_BELOW, project_id):
        project_id, function_id = small
        blocks = await conn.fetch(_OF_FUNCTION, project_id, function_id, MERGE_BELOW)
        for run in _runs(blocks):
            if report.blocks >= max_merges:
                return report
            if await _merge(conn, project_id, function_id, run):
                report.blocks += 1
                report.merged_blocks += len(run)
    return report


def _runs(blocks: Sequence[Any]) -> list[list[Any]]:
    """Neighbouring blocks (in lo order) each under :data:`MERGE_BELOW` lines, grouped while
    their lines fit in a block; only groups of two or more."""
    runs: list[list[Any]] = []
    run: list[Any] = []
    total = 0
    for block in blocks:
        if block["lines"] < MERGE_BELOW and total + block["lines"] <= BLOCK_ROWS:
            run.append(block)
            total += block["lines"]
            continue
        if len(run) > 1:
            runs.append(run)
        run, total = ([block], block["lines"]) if block["lines"] < MERGE_BELOW else ([], 0)
    if len(run) > 1:
        runs.append(run)
    return runs


async def _merge(
    conn: asyncpg.Connection, project_id: uuid.UUID, function_id: uuid.UUID, run: list[Any]
) -> bool:
    los = [b["lo"] for b in run]
    records = await conn.fetch(_WHOLE, project_id, function_id, los)
    if len(records) != len(run):
        return False
    parts = [(r["keys"], r["texts"], r["grams"]) for r in records]
    block = await asyncio.to_thread(codec.merge, project_id, function_id, parts)
    try:
        async with conn.transaction():
            await sealed.lock_project(conn, project_id)
            await _replace(conn, records, [block])
    except _Changed:
        return False
    return True


def _all_rows(record: Any) -> list[codec.SealedRow]:
    keys = codec.decode_keys(record["keys"], record["function_id"])
    return codec.decode_rows(
        record["project_id"], record["function_id"], keys, record["texts"], range(keys.lines)
    )


async def _replace(
    conn: asyncpg.Connection, old: Sequence[Any], new: Sequence[codec.Sealed]
) -> None:
    """Delete the blocks ``old`` (as they were read) and write ``new``; :class:`_Changed` when
    one of ``old`` is no longer there as it was."""
    status = await conn.execute(
        "DELETE FROM log_sealed AS b"
        " USING unnest($3::uuid[], $4::uuid[], $5::int[]) AS r(lo, hi, n)"
        " WHERE b.project_id = $1 AND b.function_id = $2 AND b.lo = r.lo AND b.hi = r.hi"
        " AND b.lines = r.n",
        old[0]["project_id"],
        old[0]["function_id"],
        [b["lo"] for b in old],
        [b["hi"] for b in old],
        [b["lines"] for b in old],
    )
    if int(status.split()[-1]) != len(old):
        raise _Changed
    await sealed.write(conn, new)


# -- Deleting sealed lines ----------------------------------------------------------------------


async def delete_sealed(
    conn: asyncpg.Connection,
    project_id: uuid.UUID,
    *,
    function_id: uuid.UUID | None = None,
    sources: Sequence[str] = (),
    below: uuid.UUID | None = None,
) -> int:
    """Delete the project's sealed lines of ``function_id`` (any, when None), of ``sources``
    (any, when empty), with ids below ``below`` (any, when None); how many.

    Call it in a transaction holding sealed.lock_project. A block all of whose lines go is
    deleted; one with some is decoded and written again without them (as TimescaleDB deletes
    from a compressed chunk).
    """
    where = "project_id = $1"
    args: list[object] = [project_id]
    if function_id is not None:
        args.append(function_id)
        where += f" AND function_id = ${len(args)}"
    if below is not None:
        args.append(below)
        where += f" AND lo < ${len(args)}"
    # Blocks that go whole: no line of them is kept, which their counts and range tell.
    whole = where
    if below is not None:
        whole += f" AND hi < ${len(args)}"
    if sources:
        others = [i + 1 for i, s in enumerate(codec.SOURCES) if s not in set(sources)]
        whole += "".join(f" AND sources[{at}] = 0" for at in others)
    gone = await conn.fetch(f"DELETE FROM log_sealed WHERE {whole} RETURNING lines", *args)
    deleted: int = sum(r[0] for r in gone)
    records = await conn.fetch(f"SELECT * FROM log_sealed WHERE {where}", *args)
    wanted = set(sources)
    for record in records:
        rows = _all_rows(record)
        kept = [
            r
            for r in rows
            if (wanted and r[4] not in wanted) or (below is not None and r[0].int >= below.int)
        ]
        if len(kept) == len(rows):
            continue
        deleted += len(rows) - len(kept)
        await _replace(conn, [record], [codec.encode(kept)] if kept else [])
    return deleted
