"""The distinct values of a project's key columns within an id range: what Loki's label
browser lists for the labels that are columns (level, source, instance, function, deployment).

Two reads in one snapshot, each bounded:

- the rows (``logs``): the newest :data:`ROW_LIMIT` rows of the range that pass the filter,
  their values made distinct by PostgreSQL. Sealing keeps the rows few and recent, so this is
  usually all of the range's rows; when the limit is reached, ``complete`` is False.
- the sealed blocks (``log_sealed``): the newest :data:`BLOCK_LIMIT` blocks reaching the range
  whose postings can hold a match (sealed.postings). A block wholly inside the range read
  without a filter (but its function) answers from its summary columns (levels and sources
  counts, instances, deployments) without decoding anything; any other block has its keys
  decoded (sealed.keys_of, cached) and only its lines inside the range that match are taken.

Every statement names ``project_id`` (a router query on Citus). A keyword in the filter is
ignored: the caller checks lines itself when it needs one.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass, field

import asyncpg
import numpy as np

from gramlogs.storage import codec, sealed
from gramlogs.storage.filters import LogFilter
from gramlogs.storage.pages import filter_conditions

__all__ = ["BLOCK_LIMIT", "ROW_LIMIT", "ColumnValues", "column_values"]

# Rows read at most: ~50 bytes each read from the heap, a few ms. Sealing leaves fewer
# unsealed rows than this in a project most of the time (sealing.py seals by the thousand).
ROW_LIMIT = 20_000
# Blocks read at most, newest first: a few thousand lines each, so a million lines or more;
# their summaries are a few hundred bytes, and decoded keys are cached (sealed.py).
BLOCK_LIMIT = 256


@dataclass(slots=True)
class ColumnValues:
    """The distinct values found, by column; ``complete``: no limit was reached."""

    level: set[str] = field(default_factory=set)
    source: set[str] = field(default_factory=set)
    instance: set[str] = field(default_factory=set)
    function_id: set[uuid.UUID] = field(default_factory=set)
    deployment_id: set[uuid.UUID] = field(default_factory=set)
    complete: bool = True

    @property
    def empty(self) -> bool:
        return not self.function_id


def _rows_sql(where: str) -> str:
    return (
        "SELECT array_agg(DISTINCT level), array_agg(DISTINCT source),"
        " array_agg(DISTINCT instance), array_agg(DISTINCT function_id),"
        " array_agg(DISTINCT deployment_id), count(*)"
        " FROM (SELECT level, source, instance, function_id, deployment_id FROM logs"
        f" WHERE project_id = $1 AND id BETWEEN $2 AND $3{where} ORDER BY id DESC LIMIT $4) AS s"
    )


def _blocks_sql(where: str) -> str:
    return (
        "SELECT function_id, lo, hi, lines, levels, sources, instances, deployments"
        f" FROM log_sealed WHERE project_id = $1 AND hi >= $2 AND lo <= $3{where}"
        " ORDER BY hi DESC LIMIT $4"
    )


async def _from_rows(conn: asyncpg.Connection, f: LogFilter, found: ColumnValues) -> None:
    where, values = filter_conditions(f, first_param=4)
    record = await conn.fetchrow(
        _rows_sql(where),
        f.project_id,
        uuid.UUID(int=f.lo),
        uuid.UUID(int=f.hi),
        ROW_LIMIT,
        *values,
    )
    assert record is not None  # an aggregate without GROUP BY has one row
    if not record[5]:
        return
    found.level.update(record[0])
    found.source.update(record[1])
    found.instance.update(record[2])
    found.function_id.update(record[3])
    found.deployment_id.update(v for v in record[4] if v is not None)
    if record[5] >= ROW_LIMIT:
        found.complete = False


def _whole(record: asyncpg.Record, f: LogFilter) -> bool:
    """Whether the block's summary says exactly which values its matching lines hold."""
    inside = f.lo <= record["lo"].int and record["hi"].int <= f.hi
    return inside and not f.sources and all(c == "function_id" for c in f.equals)


def _add_summary(record: asyncpg.Record, found: ColumnValues) -> None:
    found.level.update(n for n, c in zip(codec.LEVELS, record["levels"], strict=True) if c)
    found.source.update(n for n, c in zip(codec.SOURCES, record["sources"], strict=True) if c)
    found.instance.update(record["instances"])
    found.deployment_id.update(record["deployments"])
    found.function_id.add(record["function_id"])


def _add_keys(keys: codec.Keys, f: LogFilter, found: ColumnValues) -> None:
    at = np.asarray(keys.matching(keys.span(f.lo, f.hi), f.equals, f.sources), dtype=np.intp)
    if not len(at):
        return
    found.level.update(codec.LEVELS[c] for c in np.unique(keys.level[at]).tolist())
    found.source.update(codec.SOURCES[c] for c in np.unique(keys.source[at]).tolist())
    found.instance.update(keys.instances[c] for c in np.unique(keys.instance[at]).tolist())
    found.deployment_id.update(keys.deployments[c] for c in np.unique(keys.deployment[at]).tolist())
    found.function_id.add(keys.function_id)


async def _from_blocks(conn: asyncpg.Connection, f: LogFilter, found: ColumnValues) -> None:
    where, values = sealed.postings(f, first_param=4)
    records = await conn.fetch(
        _blocks_sql(where),
        f.project_id,
        uuid.UUID(int=f.lo),
        uuid.UUID(int=f.hi),
        BLOCK_LIMIT,
        *values,
    )
    if len(records) >= BLOCK_LIMIT:
        found.complete = False
    decode = []
    for record in records:
        if _whole(record, f):
            _add_summary(record, found)
        else:
            decode.append(record)
    for keys in await sealed.keys_of(conn, f.project_id, decode):
        _add_keys(keys, f, found)


async def column_values(conn: asyncpg.Connection, f: LogFilter) -> ColumnValues:
    """The distinct column values of ``f``'s lines (its keyword aside), rows and blocks read
    in one snapshot; bounded by :data:`ROW_LIMIT` rows and :data:`BLOCK_LIMIT` blocks."""
    f = dataclasses.replace(f, keyword=None)
    found = ColumnValues()
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        await _from_rows(conn, f, found)
        await _from_blocks(conn, f, found)
    return found
