"""Retention: log lines older than their project's period are removed, mostly by dropping whole
partitions, never by one long DELETE.

- The longest period of any project (``keep``: the global default or a longer per-project one)
  decides which partitions go: every partition wholly older than ``now - keep`` is dropped, with
  ``logs_past`` (which lies below them).
- Then every project loses its lines older than its own period by a precise delete in the
  partitions at the edge, in short batches along the primary key; each run only deletes what has
  expired since the previous one. So a line is removed within one retention interval of its
  expiry, whatever the partitions' width (a week by default).

Cursors are positions, so a client paging across the cut keeps going: rows that are gone are
simply not there.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg

from gramlogs.core import ids
from gramlogs.storage import sealed, sealing
from gramlogs.storage.partitions import keep_days, layout, maintenance_lock

__all__ = ["Report", "apply_retention"]

BATCH_ROWS = 5000


@dataclass
class Report:
    keep_days: int
    dropped: list[str] = field(default_factory=list)
    deleted_rows: int = 0
    skipped: bool = False  # another process was maintaining the table


def _cutoff(now: datetime, days: int) -> uuid.UUID:
    return ids.lowest_id(max(now - timedelta(days=days), ids.MIN_TIMESTAMP))


async def apply_retention(
    conn: asyncpg.Connection,
    *,
    default_days: int,
    now: datetime | None = None,
    batch_rows: int = BATCH_ROWS,
) -> Report:
    """Remove the lines older than their project's retention period as of ``now``."""
    now = now or datetime.now(UTC)
    async with conn.transaction():
        if not await maintenance_lock(conn):
            return Report(keep_days=0, skipped=True)
        keep = await keep_days(conn, default_days)
        report = Report(keep_days=keep)
        report.dropped = await _drop_expired(conn, _cutoff(now, keep).int)
        # Block summaries wholly below the cutoff; one that straddles it stays (it only widens
        # what a search reads).
        await conn.execute("DELETE FROM log_blocks WHERE hi < $1", _cutoff(now, keep))
        # Sealed blocks wholly below it too (one that straddles it goes line by line below).
        await conn.execute("DELETE FROM log_sealed WHERE hi < $1", _cutoff(now, keep))
    projects = await conn.fetch(
        "SELECT id, coalesce(retention_days, $1) AS days FROM projects ORDER BY id", default_days
    )
    for project in projects:
        report.deleted_rows += await _delete_before(
            conn, project["id"], _cutoff(now, project["days"]), batch_rows
        )
    return report


async def _drop_expired(conn: asyncpg.Connection, cutoff: int) -> list[str]:
    parts = await layout(conn)
    past = parts[0]
    expired = [p for p in parts[1:-1] if p.hi is not None and p.hi <= cutoff]
    if expired:
        # logs_past lies below the expired partitions, so all of it has expired too; it is
        # made again to start where the oldest kept partition starts.
        for p in [past, *expired]:
            await conn.execute(f"DROP TABLE {p.name}")
        await conn.execute(
            f"CREATE TABLE {past.name} PARTITION OF logs"
            f" FOR VALUES FROM (MINVALUE) TO ('{uuid.UUID(int=expired[-1].hi)}')"
        )
        return [p.name for p in expired]
    # Nothing wholly expired: the old lines, if any, are in logs_past (late arrivals).
    await conn.execute(f"DELETE FROM {past.name} WHERE id < $1", uuid.UUID(int=cutoff))
    return []


async def _delete_before(
    conn: asyncpg.Connection, project_id: uuid.UUID, cutoff: uuid.UUID, batch_rows: int
) -> int:
    """Delete the project's lines below ``cutoff`` in batches of ``batch_rows`` (each its own
    short transaction, a primary-key range)."""
    async with conn.transaction():
        await sealed.lock_project(conn, project_id)
        deleted = await sealing.delete_sealed(conn, project_id, below=cutoff)
    while True:
        last = await conn.fetchval(
            "SELECT id FROM logs WHERE project_id = $1 AND id < $2 ORDER BY id OFFSET $3 LIMIT 1",
            project_id,
            cutoff,
            batch_rows - 1,
        )
        if last is None:
            status = await conn.execute(
                "DELETE FROM logs WHERE project_id = $1 AND id < $2", project_id, cutoff
            )
        else:
            status = await conn.execute(
                "DELETE FROM logs WHERE project_id = $1 AND id <= $2", project_id, last
            )
        deleted += int(status.split()[-1])
        if last is None:
            await conn.execute(
                "DELETE FROM log_blocks WHERE project_id = $1 AND hi < $2", project_id, cutoff
            )
            return deleted
