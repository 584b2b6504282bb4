"""Writing log batches: one transaction per batch, binary COPY, no duplicate ids.

The batch's block summaries (blocks.py) are written in the same transaction, and, last, its
entry in the tail journal (journal.py), which numbers a project's batches in commit order.

COPY cannot skip rows that already exist, so a batch is first COPYed straight into ``logs``: the
common case (new lines) costs what a raw COPY costs. If an id is already there (a resent batch,
or a retry after a lost reply), that transaction fails whole, and the batch goes again through a
temporary table and ``INSERT ... ON CONFLICT DO NOTHING``, which counts what was new. Either way
the batch is committed whole or not at all.

Locks are taken in one order (new functions sorted by id, then rows sorted by function and id),
so two batches that share ids or functions wait for each other instead of deadlocking.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import datetime
from operator import itemgetter
from typing import Final, Protocol

import asyncpg

from gramlogs.storage import blocks, citus, codec, journal, sealed
from gramlogs.storage.functions import register_functions
from gramlogs.storage.pages import COLUMN_LIST, COLUMNS

__all__ = [
    "FUNCTION_COLUMN",
    "SEALED_BATCH_ROWS",
    "Companion",
    "NewRow",
    "copy_lines",
    "store_batch",
]

# One row in pages.COLUMNS order. The uuid columns hold canonical (lower-case) uuid text, as
# batch.BatchBuilder makes them: asyncpg encodes text for a uuid column faster than a UUID.
NewRow = tuple[
    str,  # id, as 32 hex digits (sorting them sorts the uuids)
    datetime,  # timestamp
    str,  # instance
    str,  # level
    str,  # source
    str,  # raw_log
    str | None,  # message
    str,  # attributes (JSON text)
    str,  # project_id
    str,  # deployment_id
    str,  # function_id
    str | None,  # execution_id
]

# Where a NewRow holds its function id; a literal, so that row[FUNCTION_COLUMN] is known to be str.
FUNCTION_COLUMN: Final = 10
assert COLUMNS[FUNCTION_COLUMN] == "function_id"
PROJECT_COLUMN: Final = 8
assert COLUMNS[PROJECT_COLUMN] == "project_id"
# Batches of this many lines or more go straight into sealed blocks (a block per function);
# smaller ones are rows, sealed later with others (sealing.py). Measured in
# benchmarks/scale_ingest.md: a row costs PostgreSQL its heap tuple, three index entries and a
# keyword summary, written and then deleted again; a block costs one row per few hundred lines.
SEALED_BATCH_ROWS = 1000
_BUFFER = "gramlogs_ingest_buffer"
# ON COMMIT DROP: the buffer lives for one transaction, so no stale copy survives a schema change.
_CREATE_BUFFER = f"CREATE TEMPORARY TABLE {_BUFFER} (LIKE logs INCLUDING DEFAULTS) ON COMMIT DROP"
_INSERT_NEW = (
    f"INSERT INTO logs ({COLUMN_LIST}) SELECT {COLUMN_LIST} FROM {_BUFFER}"
    " ORDER BY function_id, id ON CONFLICT (project_id, id) DO NOTHING RETURNING id"
)


class Companion(Protocol):
    """Work that commits or rolls back with a batch (an Idempotency-Key: idempotency.Recorder).
    ``begin`` runs first in the transaction that stores the batch, ``end`` last, with what
    ``store_batch`` will return; either may raise to roll the batch back."""

    async def begin(self, conn: asyncpg.Connection) -> None: ...

    async def end(self, conn: asyncpg.Connection, stored: int, duplicates: int) -> None: ...


async def store_batch(
    conn: asyncpg.Connection,
    project_id: uuid.UUID,
    rows: Sequence[NewRow],
    *,
    companion: Companion | None = None,
) -> tuple[int, int]:
    """Store ``rows`` of one project atomically; return (stored, duplicates already present).

    Registers the batch's functions in the same transaction. Every row's ``project_id`` must be
    ``project_id``. A ``companion`` commits with the batch, even an empty one.
    """
    if not rows and companion is None:
        return 0, 0
    # By function, then id: a function's lines of the batch lie together in the table, so that
    # reading one of its blocks (blocks.py) reads a few pages, not a page per line.
    ordered = sorted(rows, key=itemgetter(FUNCTION_COLUMN, 0))
    functions = {row[FUNCTION_COLUMN] for row in ordered}
    if len(ordered) >= SEALED_BATCH_ROWS:
        return await _store_sealed(conn, project_id, ordered, functions, companion)
    try:
        async with conn.transaction():
            if companion is not None:
                await companion.begin(conn)
            fresh = await _not_sealed(conn, project_id, ordered)
            await register_functions(conn, project_id, functions)
            await conn.copy_records_to_table("logs", records=fresh, columns=COLUMNS)
            await blocks.write_blocks(conn, fresh, in_id_order=True)
            if companion is not None:
                await companion.end(conn, len(fresh), len(ordered) - len(fresh))
            if fresh:
                await journal.record(conn, project_id, [row[0] for row in fresh])
        return len(fresh), len(ordered) - len(fresh)
    except asyncpg.UniqueViolationError:
        pass
    except asyncpg.InternalServerError as exc:
        if not citus.is_unique_violation(exc):
            raise
    async with conn.transaction():
        if companion is not None:
            await companion.begin(conn)
        fresh = await _not_sealed(conn, project_id, ordered)
        await register_functions(conn, project_id, functions)
        await conn.execute(_CREATE_BUFFER)
        await conn.copy_records_to_table(_BUFFER, records=fresh, columns=COLUMNS)
        # The rows returned, not the command tag: on Citus the tag of an INSERT ... SELECT
        # counts the rows sent to the shards, conflicting ones included.
        new = [row[0] for row in await conn.fetch(_INSERT_NEW)]
        stored = len(new)
        # Blocks of the whole batch: those of lines stored before only widen what a search reads.
        await blocks.write_blocks(conn, fresh, in_id_order=True)
        if companion is not None:
            await companion.end(conn, stored, len(ordered) - stored)
        if new:
            await journal.record(conn, project_id, new)
    return stored, len(ordered) - stored


async def _store_sealed(
    conn: asyncpg.Connection,
    project_id: uuid.UUID,
    ordered: Sequence[NewRow],
    functions: set[str],
    companion: Companion | None,
) -> tuple[int, int]:
    """Store a large batch straight into sealed blocks: no row, no index entry per line.

    The blocks are encoded before the transaction. In it, the project's lock is taken
    exclusively (two batches sharing ids, a resend racing its original, must not both find
    them new), and the lines stored already, as rows or in blocks, are left out.
    """
    encoded = await asyncio.to_thread(codec.encode_batch, ordered)
    async with conn.transaction():
        if companion is not None:
            await companion.begin(conn)
        await sealed.lock_project(conn, project_id)
        await register_functions(conn, project_id, functions)
        known = await _stored_already(conn, project_id, ordered)
        fresh = ordered
        if known:
            fresh = [row for row in ordered if row[0] not in known]
            encoded = codec.encode_batch(fresh) if fresh else []
        await sealed.write(conn, encoded)
        if companion is not None:
            await companion.end(conn, len(fresh), len(ordered) - len(fresh))
        if fresh:
            await journal.record(conn, project_id, [row[0] for row in fresh])
    return len(fresh), len(ordered) - len(fresh)


_ROWS_AMONG = (
    "SELECT id FROM logs WHERE project_id = $1 AND id BETWEEN $2 AND $3 AND id = ANY($4::uuid[])"
)


async def _stored_already(
    conn: asyncpg.Connection, project_id: uuid.UUID, rows: Sequence[NewRow]
) -> set[str]:
    """The ids of ``rows`` stored already, as rows or sealed (in the rows' own spelling)."""
    ids = [row[0] for row in rows]
    lo, hi = min(ids), max(ids)
    found = await conn.fetch(_ROWS_AMONG, project_id, lo, hi, ids)
    known: set[str] = {i for i in await sealed.known_ids(conn, project_id, ids)}  # type: ignore[misc]
    if found:
        as_int = {r[0].int for r in found}
        known |= {i for i in ids if uuid.UUID(i).int in as_int}
    return known


async def _not_sealed(
    conn: asyncpg.Connection, project_id: uuid.UUID, rows: Sequence[NewRow]
) -> Sequence[NewRow]:
    """``rows`` less those sealed already (a resend of older lines), under the project's write
    lock (sealed.lock_writes), which holds off sealing until the batch commits."""
    await sealed.lock_writes(conn, project_id)
    known = await sealed.known_ids(conn, project_id, [row[0] for row in rows])
    return [row for row in rows if row[0] not in known] if known else rows


async def copy_lines(conn: asyncpg.Connection, rows: Sequence[Sequence[object]]) -> None:
    """COPY ``rows`` (in pages.COLUMNS order, any projects) with their block summaries, in one
    transaction: no duplicate check, no function registered. For seeding and tests, which make
    their own ids; a client's batch goes through :func:`store_batch`."""
    by_project: dict[object, list[object]] = {}
    for row in rows:
        by_project.setdefault(row[PROJECT_COLUMN], []).append(row[0])
    async with conn.transaction():
        for project_id in sorted(by_project, key=str):
            await sealed.lock_writes(conn, uuid.UUID(str(project_id)))
        await conn.copy_records_to_table("logs", records=rows, columns=COLUMNS)
        await blocks.write_blocks(conn, rows)
        # One project's number at a time, in one order: no two seeders deadlock.
        for project_id in sorted(by_project, key=str):
            await journal.record(conn, uuid.UUID(str(project_id)), by_project[project_id])
