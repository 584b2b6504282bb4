"""What each way of indexing lines costs a COPY: the alternatives for keyword search, measured.

The same lines are COPYed, in batches of one project each, by concurrent clients into a fresh
unpartitioned table of ``logs``' columns carrying one set of indexes at a time:

- ``pk``: the primary key alone (the floor);
- ``btrees``: the primary key and the equality filters' indexes (what every design keeps);
- ``trigram tenant``: btrees + the per-line trigram GIN with project and function (schema
  version 2 to 3); ``trigram text``: the same without project and function;
  ``trigram pending 64MB``: the tenant index with a 64 MB pending list (``fastupdate``);
- ``tsvector``: btrees + a GIN over the words (``to_tsvector('simple', ...)``), which a
  substring search would still have to recheck and cannot use for a part of a word;
- ``blocks N``: btrees + ``log_blocks``, a row per N lines with its trigram buckets under GIN
  (what gramlogs ships; the codes are made in the client, as the server makes them); and the
  same without some or all of the equality filters' btrees.

Rates are lines per second over the whole load and over its last fifth; sizes are the table's
and its indexes' bytes per million lines.

    .venv/bin/python -m benchmarks.index_costs --lines 1000000
    .venv/bin/python -m benchmarks.index_costs --smoke
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg

from benchmarks import harness, runner
from benchmarks.ingest import make_batches
from benchmarks.results import json_line, machine, print_machine
from gramlogs.storage import blocks, trigrams
from gramlogs.storage.pages import COLUMNS
from gramlogs.web.ingest import decode_batch
from testkit.postgres import temporary_database

_TABLE = """
CREATE TABLE t (
    project_id uuid NOT NULL, id uuid NOT NULL, "timestamp" timestamptz NOT NULL,
    instance text NOT NULL DEFAULT '', level text NOT NULL, source text NOT NULL,
    raw_log text NOT NULL, message text, attributes jsonb NOT NULL DEFAULT '{}',
    deployment_id uuid NOT NULL, function_id uuid NOT NULL, execution_id text,
    PRIMARY KEY (project_id, id));
CREATE TABLE b (
    project_id uuid NOT NULL, function_id uuid NOT NULL, lo uuid NOT NULL, hi uuid NOT NULL,
    grams int4[]);
"""
_BTREES = """
CREATE INDEX ON t (project_id, function_id, id); CREATE INDEX ON t (project_id, deployment_id, id);
CREATE INDEX ON t (project_id, instance, id); CREATE INDEX ON t (project_id, level, id);
CREATE INDEX ON t (project_id, source, id);
CREATE INDEX ON t (project_id, execution_id, id) WHERE execution_id IS NOT NULL;
"""
_TEXT = "(coalesce(message, '') || E'\\x01' || raw_log)"
_BLOCKS = "CREATE INDEX ON b USING gin (project_id, function_id, grams)"
VARIANTS: dict[str, tuple[str, int]] = {
    "pk": ("", 0),
    "btrees": (_BTREES, 0),
    "trigram tenant": (
        _BTREES + f"CREATE INDEX ON t USING gin (project_id, function_id, {_TEXT} gin_trgm_ops)",
        0,
    ),
    "trigram text": (_BTREES + f"CREATE INDEX ON t USING gin ({_TEXT} gin_trgm_ops)", 0),
    "trigram pending 64MB": (
        _BTREES + f"CREATE INDEX ON t USING gin (project_id, function_id, {_TEXT} gin_trgm_ops)"
        " WITH (gin_pending_list_limit = 65536)",
        0,
    ),
    "tsvector": (_BTREES + f"CREATE INDEX ON t USING gin (to_tsvector('simple', {_TEXT}))", 0),
    "blocks 256": (_BTREES + _BLOCKS, 256),
    "blocks 1024": (_BTREES + _BLOCKS, 1024),
    "blocks 256, pending list 512kB": (
        _BTREES + _BLOCKS + " WITH (gin_pending_list_limit = 512)",
        256,
    ),
    "blocks 256, no pending list": (_BTREES + _BLOCKS + " WITH (fastupdate = off)", 256),
    # What dropping equality indexes for codes in the block summaries would buy.
    "blocks 256, no level/source btrees": (
        _BTREES.split("CREATE INDEX ON t (project_id, level, id);")[0]
        + _BTREES.split("CREATE INDEX ON t (project_id, source, id);")[1]
        + _BLOCKS,
        256,
    ),
    "blocks 256, no equality btrees": (_BLOCKS, 256),
}


def _rows(lines: int, projects: int, batch: int) -> list[list[Any]]:
    bodies = make_batches(lines, batch, seed=7)
    ids = [uuid.UUID(int=i + 1) for i in range(projects)]
    return [
        list(decode_batch(body, "application/x-ndjson", ids[i % projects]))
        for i, body in enumerate(bodies)
    ]


def _blocks(rows: Sequence[Any], size: int) -> list[tuple[Any, ...]]:
    saved, trigrams.BLOCK_ROWS = trigrams.BLOCK_ROWS, size
    try:
        return blocks.summaries((r[8], r[10], r[0], r[6], r[5]) for r in rows)
    finally:
        trigrams.BLOCK_ROWS = saved


async def _load(url: str, batches: list[list[Any]], clients: int, block_rows: int) -> list[float]:
    """COPY every batch; the seconds at which each batch finished, in order of finishing."""
    queue = list(reversed(batches))
    done: list[float] = []
    start = time.perf_counter()

    async def client() -> None:
        conn = await asyncpg.connect(url)
        try:
            while queue:
                rows = sorted(queue.pop(), key=lambda r: r[0])
                async with conn.transaction():
                    await conn.copy_records_to_table("t", records=rows, columns=COLUMNS)
                    if block_rows:
                        await conn.copy_records_to_table(
                            "b",
                            records=_blocks(rows, block_rows),
                            columns=blocks.COLUMNS,
                        )
                done.append(time.perf_counter() - start)
        finally:
            await conn.close()

    await asyncio.gather(*(client() for _ in range(clients)))
    return done


async def measure(url: str, name: str, batches: list[list[Any]], clients: int) -> dict[str, Any]:
    ddl, block_rows = VARIANTS[name]
    async with temporary_database(url, "bench_index_costs", migrated=False) as db:
        conn = await asyncpg.connect(db)
        try:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
            await conn.execute("CREATE EXTENSION IF NOT EXISTS btree_gin")
            await conn.execute(_TABLE + ddl)
            done = await _load(db, batches, clients, block_rows)
            size = await conn.fetchval(
                "SELECT pg_total_relation_size('t') + pg_total_relation_size('b')"
            )
        finally:
            await conn.close()
    lines = sum(len(b) for b in batches)
    per_batch = lines / len(batches)
    tail = len(done) // 5
    return {
        "variant": name,
        "lines_per_s": lines / done[-1],
        "last_fifth_per_s": tail * per_batch / (done[-1] - done[-tail - 1]),
        "bytes_per_million": size * 1_000_000 / lines,
    }


async def main(args: argparse.Namespace) -> None:
    url = args.database_url or harness.server_url()
    conn = await asyncpg.connect(url)
    pg_version = await conn.fetchval("SHOW server_version")
    await conn.close()
    print_machine(machine(pg_version))
    batches = _rows(args.lines, args.projects, args.batch)
    print("| indexes | lines/s | last fifth, lines/s | bytes per million lines |")
    print("|---|---:|---:|---:|")
    results = []
    for name in args.variants or VARIANTS:
        result = await measure(url, name, batches, args.clients)
        print(
            f"| {name} | {result['lines_per_s']:,.0f} | {result['last_fifth_per_s']:,.0f} |"
            f" {result['bytes_per_million'] / 2**20:,.0f} MiB |",
            flush=True,
        )
        results.append(result)
    json_line("index_costs", {"lines": args.lines, "results": results})


def _options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lines", type=int, default=1_000_000)
    p.add_argument("--projects", type=int, default=10)
    p.add_argument("--batch", type=int, default=5000)
    p.add_argument("--clients", type=int, default=2)
    p.add_argument("--variants", nargs="*", choices=sorted(VARIANTS))
    p.add_argument("--database-url", help="a PostgreSQL server (default: an embedded one)")


def _smoke(args: argparse.Namespace) -> None:
    args.lines, args.batch = 20_000, 1000


if __name__ == "__main__":
    runner.run(
        "index_costs",
        __doc__,
        main,
        options=_options,
        smoke=_smoke,
        smoke_help="20k lines",
    )
