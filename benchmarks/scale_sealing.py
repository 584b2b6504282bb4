"""Sealing under benchmarks/scale_ingest.py's load: the rows not yet sealed, sampled every second
while the lines arrive; the wait, after the load, until sealing has caught up; bytes on disk per
line then (and after a plain VACUUM), by table group; the server's sealing counters (/metrics);
the reads over sealed data (deep pages, histograms).

How it measures, and how to run it: docs/benchmarks.md, "scale_ingest".
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any
from urllib.parse import urlencode

import asyncpg

from benchmarks import scale_data as sd
from gramlogs.core import ids
from testkit.http import HttpClient

__all__ = [
    "UnsealedSampler",
    "bytes_by_group",
    "catch_up",
    "deep_pages",
    "histograms",
    "scrape",
    "vacuum",
]

PAGE = "/rpc/logs.listToolExecutionLogs"
HISTOGRAM = "/rpc/logs.histogram"
# count(*) over logs is a scan of the unsealed rows only: a few ms per 100k rows, cheap beside
# the load while sealing keeps them few (a sample that takes longer only delays the next).
# The lines in blocks, one row of log_sealed per ~4,096: exact at each sample, where the
# server's counter only moves when a sealing run ends (a run can outlast the load).
# One statement, one snapshot: a line is counted once, in logs or in a block.
_COUNTS = """
SELECT (SELECT count(*) FROM logs) AS unsealed,
       (SELECT coalesce(sum(lines), 0)::bigint FROM log_sealed) AS sealed
"""
SAMPLE_S = 1.0
# Caught up: unsealed rows unchanged over SETTLE_S, or fewer than SETTLED_BELOW. The bench's
# lines are 0-6 h old, past SEAL_AGE_S (300 s), so every row is due: none should stay.
SETTLE_S = 3.0
SETTLED_BELOW = 1_000
CATCH_UP_LIMIT_S = 1_800.0
_COUNTERS = {"sealed_lines": "gramlogs_sealed_lines_total", "seal_s": "gramlogs_seal_seconds_total"}
DEPTHS = (0.5, 0.95)  # of the hot project's lines, in the page's sort order


async def _counts(conn: asyncpg.Connection) -> tuple[int, int]:
    """Lines in rows of logs (unsealed) and in blocks."""
    unsealed, sealed = (await conn.fetch(_COUNTS))[0]
    return unsealed, sealed


class UnsealedSampler:
    """Rows of logs (lines not yet sealed) every :data:`SAMPLE_S`, on a connection of its own,
    from entering to leaving the context."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.series: list[int] = []
        self.sealed: list[int] = []
        self._stop = asyncio.Event()

    async def __aenter__(self) -> UnsealedSampler:
        self._conn = await asyncpg.connect(self.url)
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        while not self._stop.is_set():
            started = time.perf_counter()
            await self._sample()
            left = SAMPLE_S - (time.perf_counter() - started)
            if left > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), left)

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        try:
            await self._task
            await self._sample()
        finally:
            await self._conn.close()

    async def _sample(self) -> None:
        unsealed, sealed = await _counts(self._conn)
        self.series.append(unsealed)
        self.sealed.append(sealed)

    def summary(self) -> dict[str, Any]:
        """The bound (max), the last sample, and the max of each half of the load (bounded: the
        second half's no higher than the first's, give or take)."""
        s = self.series
        half = len(s) // 2
        return {
            "max": max(s),
            "last": s[-1],
            "max_first_half": max(s[:half], default=0),
            "max_second_half": max(s[half:]),
            "sealed_at_end": self.sealed[-1],
            "series": s,
            "sealed_series": self.sealed,
        }


async def catch_up(url: str) -> dict[str, Any]:
    """Wait until sealing has caught up (see :data:`SETTLE_S`) and merging has settled (the
    number of blocks unchanged over SETTLE_S: batches written straight into blocks leave
    small ones, merged in the background); how long it took."""
    conn = await asyncpg.connect(url)
    try:
        started = time.perf_counter()
        before = blocks_before = None
        while True:
            now, sealed = await _counts(conn)
            blocks = await conn.fetchval("SELECT count(*) FROM log_sealed")
            seconds = time.perf_counter() - started
            settled = (now < SETTLED_BELOW or now == before) and blocks == blocks_before
            if settled or seconds > CATCH_UP_LIMIT_S:
                break
            before, blocks_before = now, blocks
            await asyncio.sleep(SETTLE_S)
    finally:
        await conn.close()
    return {
        "seconds": round(seconds, 1),
        "unsealed": now,
        "sealed": sealed,
        "blocks": blocks,
        "caught_up": settled,
    }


def scrape(port: int) -> dict[str, float]:
    """The sealing counters of the server's /metrics (summed over label sets, if any)."""
    client = HttpClient(port)
    try:
        status, body = client.get("/metrics")
    finally:
        client.close()
    if status != 200:
        raise RuntimeError(f"/metrics: {status} {body[:300]!r}")
    text = body.decode()
    out = {}
    for key, name in _COUNTERS.items():
        values = re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE)
        if not values:
            raise RuntimeError(f"/metrics has no {name}")
        out[key] = sum(float(v) for v in values)
    return out


def counted(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: round(after[k] - before[k], 3) for k in before}


# -- Bytes on disk ------------------------------------------------------------------------------

_GROUPS = """
WITH public AS (
    SELECT c.oid, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND c.relkind IN ('r', 'm')
), sealed AS (
    -- pg_table_size counts the TOAST table (its index too), free space and visibility maps.
    SELECT oid, coalesce(pg_total_relation_size(nullif(reltoastrelid, 0)), 0) AS toast
    FROM pg_class WHERE oid = 'log_sealed'::regclass
)
SELECT 'logs' AS name, coalesce(sum(pg_total_relation_size(t.relid)), 0)::bigint AS bytes
    FROM pg_partition_tree('logs') t WHERE t.isleaf
UNION ALL SELECT 'log_sealed heap', pg_table_size(oid) - toast FROM sealed
UNION ALL SELECT 'log_sealed TOAST', toast FROM sealed
UNION ALL SELECT 'log_sealed index ' || i.indexrelid::regclass::text, pg_relation_size(i.indexrelid)
    FROM pg_index i WHERE i.indrelid = 'log_sealed'::regclass
UNION ALL SELECT 'log_blocks', pg_total_relation_size('log_blocks')
UNION ALL SELECT 'tail_journal', pg_total_relation_size('tail_journal')
UNION ALL SELECT 'all', (SELECT coalesce(sum(pg_total_relation_size(oid)), 0)::bigint FROM public)
"""


async def bytes_by_group(url: str) -> dict[str, int]:
    """Bytes of each table group (heap, indexes, TOAST), the rest, and all of them: the tables
    of the public schema, as scale_ingest.database_bytes counts them."""
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(_GROUPS)
    finally:
        await conn.close()
    out = {r["name"]: int(r["bytes"]) for r in rows}
    total = out.pop("all")
    out["the rest"] = total - sum(out.values())
    out["all"] = total
    return out


# The sealed blocks' own bytes, as stored (compressed, in TOAST or not): what the table holds
# once its free space is reused. Merging deletes small blocks and writes big ones; the space
# the small ones held is free (after VACUUM) for the next blocks, but stays in the files.
_LIVE = """
SELECT coalesce(sum(pg_column_size(keys)), 0)::bigint AS keys,
       coalesce(sum(pg_column_size(texts)), 0)::bigint AS texts,
       coalesce(sum(pg_column_size(grams)), 0)::bigint AS grams,
       coalesce(sum(pg_column_size(s.*) - pg_column_size(keys) - pg_column_size(texts)
                    - pg_column_size(grams)), 0)::bigint AS postings,
       count(*) AS blocks, coalesce(sum(lines), 0)::bigint AS lines
FROM log_sealed AS s
"""


async def live_bytes(url: str) -> dict[str, int]:
    """The bytes of the sealed blocks' values (keys, texts, grams, the rest of the row), their
    number and lines: the blocks without the free space churn leaves in the files."""
    conn = await asyncpg.connect(url)
    try:
        (row,) = await conn.fetch(_LIVE)
    finally:
        await conn.close()
    return {k: int(v) for k, v in row.items()}


async def vacuum(url: str) -> float:
    """A plain VACUUM of the database (not FULL: what autovacuum does, and what a server can
    afford); its seconds. It gives back the emptied tail of each partition of logs."""
    conn = await asyncpg.connect(url)
    try:
        started = time.perf_counter()
        await conn.execute("VACUUM")
        return round(time.perf_counter() - started, 1)
    finally:
        await conn.close()


# -- Reads over sealed data ---------------------------------------------------------------------


def _cursor(line: dict[str, Any]) -> str:
    return str(ids.lowest_id(datetime.fromisoformat(line["timestamp"])))


def deep_pages(data: sd.Data) -> dict[str, str]:
    """Pages of 20 of the hot project at :data:`DEPTHS` of its lines in each sort order: its
    line that far in, as the cursor (a position: the row need not exist), with no filter, its
    busiest function, level=error, and the instance of its first line."""
    hot = data.hot
    instance = next(
        line["instance"]
        for line in (sd.hot_line(data, k) for k in range(100))
        if "instance" in line
    )
    filters = {
        "no filter": {},
        "function_id": {"function_id": hot.functions[0]},
        "level=error": {"level": "error"},
        "instance": {"instance": instance},
    }
    paths = {}
    for depth in DEPTHS:
        # The hot project's lines are made oldest first: newest first, 95% deep is its 5% line.
        for sort, k in (("desc", 1 - depth), ("asc", depth)):
            cursor = _cursor(sd.hot_line(data, min(int(k * hot.lines), hot.lines - 1)))
            for name, params in filters.items():
                query = {"per_page": 20, "cursor": cursor, "sort": sort, **params}
                paths[f"{depth:.0%} deep, {sort}, {name}"] = f"{PAGE}?{urlencode(query)}"
    return paths


def histograms(data: sd.Data) -> dict[str, str]:
    """The histogram of the hot project's whole window (its lines are within a second of the
    span's ends), default buckets, without a filter and for level=error."""
    start = data.base - timedelta(hours=data.spec.span_hours, seconds=2)
    end = data.base + timedelta(seconds=2)
    window = {"ts_start": start.isoformat(), "ts_end": end.isoformat()}
    filters: dict[str, dict[str, str]] = {"": {}, ", level=error": {"level": "error"}}
    return {
        f"histogram, whole window{name}": f"{HISTOGRAM}?{urlencode(window | params)}"
        for name, params in filters.items()
    }
