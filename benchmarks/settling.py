"""A seeded dataset as a running server keeps it: its rows sealed into blocks, then vacuumed.

A dataset is COPYed as rows of ``logs`` (testkit/datasets.py); ``gramlogs serve`` seals them
into blocks (storage/sealing.py: every second, a function's rows 4,096 at a time once they are
10 s old, fewer once the oldest is 5 min old). Measured before that ends, a read would be
measured while sealing runs beside it, on a table a live server never has. So the read
benchmarks start the server, wait here, then measure. The blocks stay in the cached dataset,
so later runs wait little.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from gramlogs.core import ids
from gramlogs.storage import sealing

__all__ = ["stored", "vacuum", "wait_sealed"]

# What sealing.seal_some seals now, per function: every row older than SEAL_DELAY_S once there
# are a block's worth, or once the oldest is older than SEAL_AGE_S. Canonical uuid text sorts
# as the uuid does; PostgreSQL before 18 has no min(uuid).
_DUE = """
SELECT count(*) AS groups, coalesce(sum(n), 0) AS rows FROM (
  SELECT count(*) AS n, min(id::text COLLATE "C")::uuid AS oldest FROM logs
  WHERE id < $1 AND ($4::uuid IS NULL OR project_id = $4) GROUP BY project_id, function_id
) AS pending WHERE n >= $3 OR oldest < $2
"""

_ROWS = "SELECT count(*) FROM logs WHERE $1::uuid IS NULL OR project_id = $1"
_SEALED_LINES = (
    "SELECT coalesce(sum(lines), 0) FROM log_sealed WHERE $1::uuid IS NULL OR project_id = $1"
)


async def stored(conn: asyncpg.Connection, project: uuid.UUID | None = None) -> int:
    """The lines stored (of ``project``, or all): rows and the lines of sealed blocks."""
    rows = await conn.fetchval(_ROWS, project)
    lines = await conn.fetchval(_SEALED_LINES, project)
    return int(rows) + int(lines)


async def _due(conn: asyncpg.Connection, project: uuid.UUID | None) -> tuple[int, int]:
    """Functions with rows that sealing would seal now, and their rows."""
    now = datetime.now(UTC)  # the server's clock: same machine
    horizon = ids.lowest_id(now - timedelta(seconds=sealing.SEAL_DELAY_S))
    aged = ids.lowest_id(now - timedelta(seconds=sealing.SEAL_AGE_S))
    record = await conn.fetchrow(_DUE, horizon, aged, sealing.BLOCK_ROWS, project)
    assert record is not None
    return int(record["groups"]), int(record["rows"])


async def wait_sealed(
    conn: asyncpg.Connection,
    limit_s: float,
    *,
    project: uuid.UUID | None = None,
    still_s: float = 10.0,
) -> dict[str, Any]:
    """Until the running server has sealed what it will seal (of ``project``, or of every
    project): no function has rows due (those left are younger than the sealing age, fewer
    than a block), or the rows left stopped shrinking for ``still_s`` (a server that does not
    seal), or ``limit_s`` passed. Prints and returns what it found."""
    t0 = time.monotonic()
    last, still = -1, t0
    while True:
        rows = int(await conn.fetchval(_ROWS, project))
        groups, due = await _due(conn, project)
        now = time.monotonic()
        if rows != last:
            last, still = rows, now
        if groups == 0:
            why = "nothing left to seal"
            break
        if now - still > still_s:
            why = f"rows left unchanged for {still_s:.0f} s"
            break
        if now - t0 > limit_s:
            why = f"gave up after {limit_s:.0f} s"
            break
        await asyncio.sleep(1.0)
    lines = await stored(conn, project)
    blocks = await conn.fetchval(
        "SELECT count(*) FROM log_sealed WHERE $1::uuid IS NULL OR project_id = $1", project
    )
    waited = round(now - t0, 1)
    print(
        f"sealing: {lines - rows:,} of {lines:,} lines in {blocks:,} blocks, {rows:,} rows left"
        f" ({due:,} of them due) after {waited:.0f} s: {why}",
        flush=True,
    )
    return {
        "rows": rows,
        "lines": lines,
        "blocks": blocks,
        "due": due,
        "waited_s": waited,
        "settled": groups == 0,
    }


async def vacuum(conn: asyncpg.Connection) -> float:
    """VACUUM (ANALYZE) the rows and the blocks, as autovacuum soon would after sealing: the
    deleted rows' index entries would otherwise be walked by every page's rows statement until
    it does, mid-measurement. Quick when nothing changed. Its seconds."""
    t0 = time.monotonic()
    await conn.execute("VACUUM (ANALYZE) logs, log_sealed")
    seconds = time.monotonic() - t0
    print(f"VACUUM (ANALYZE) logs, log_sealed: {seconds:.1f} s", flush=True)
    return seconds
