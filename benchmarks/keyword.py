"""Keyword search on a large project: first-page latency through the block summaries, beside
the designs they replaced, and what each costs ingestion.

How it measures, and how to run it: docs/benchmarks.md, "keyword".
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import secrets
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

import asyncpg

from benchmarks import runner
from benchmarks.results import json_line, machine, print_machine
from gramlogs.local.seed import ProgressBar, SeedPlan, generate, seed_logs
from gramlogs.storage import blocks, schema, tenants
from gramlogs.storage.pages import (
    COLUMNS,
    KEYWORD_SETTINGS,
    LogFilter,
    PageRequest,
    fetch_page,
    read_page,
)
from testkit.datasets import server_url
from testkit.postgres import with_database

RARE, MEDIUM, COMMON, ABSENT = "quokka", "narwhal", "latency", "wombat"
WORDS = {
    "rare (0.1%)": RARE,
    "medium (1%)": MEDIUM,
    "common (30%)": COMMON,
    "absent (0%)": ABSENT,
}
# Schema version 2's index, for the side-by-side ``trigram_v2`` set-up.
V2_INDEX = (
    "CREATE INDEX logs_keyword_tenant ON logs USING gin"
    " (project_id, function_id, (coalesce(message, '') || E'\\x01' || raw_log) gin_trgm_ops)"
)
PER_PAGE = 20


async def _timed(
    run: Callable[[], Awaitable[object]], repeats: int, budget_s: float
) -> list[float]:
    """Milliseconds of ``repeats`` runs after one warm-up, fewer (at least 3) past the budget."""
    await run()
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < repeats:
        t = time.perf_counter()
        await run()
        times.append((time.perf_counter() - t) * 1000)
        if len(times) >= 3 and time.perf_counter() - started > budget_s:
            break
    return times


def _summary(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {
        "n": len(times),
        "p50_ms": round(statistics.median(ordered), 3),
        "p90_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))], 3),
        "min_ms": round(ordered[0], 3),
    }


async def _planner_page(conn: asyncpg.Connection, req: PageRequest) -> object:
    # One plan for the whole page, chosen by PostgreSQL (with an index to choose from).
    async with conn.transaction():
        await conn.execute(KEYWORD_SETTINGS)
        return await read_page(conn, req)


async def _walk_page(conn: asyncpg.Connection, req: PageRequest) -> object:
    # The ordered walk with a filter. (The planner would guess the word is rare and sort a full
    # scan, so it is told: no sequential or bitmap scans.)
    async with conn.transaction():
        await conn.execute(
            KEYWORD_SETTINGS + "; SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off"
        )
        return await read_page(conn, req)


async def _queries(
    conn: asyncpg.Connection, project: uuid.UUID, repeats: int, budget_s: float
) -> dict[str, dict[str, dict[str, float]]]:
    results: dict[str, dict[str, dict[str, float]]] = {}

    def page(word: str) -> PageRequest:
        return PageRequest(LogFilter(project_id=project, keyword=word), per_page=PER_PAGE)

    for label, word in WORDS.items():
        found = await fetch_page(conn, page(word))
        print(f"  {label:>14}: {word!r}, first page has {len(found.rows)} rows", file=sys.stderr)
        results[label] = {}

    # Side by side: each set-up measures every word before the next set-up starts.
    for setup, run in (("shipped", fetch_page), ("ordered_scan", _walk_page)):
        for label, word in WORDS.items():
            times = await _timed(functools.partial(run, conn, page(word)), repeats, budget_s)
            results[label][setup] = _summary(times)

    async with _rolled_back(conn):
        await conn.execute(V2_INDEX)
        await conn.execute("ANALYZE logs")
        for label, word in WORDS.items():
            times = await _timed(
                functools.partial(_planner_page, conn, page(word)), repeats, budget_s
            )
            results[label]["trigram_v2"] = _summary(times)
    return results


@contextlib.asynccontextmanager
async def _rolled_back(conn: asyncpg.Connection) -> AsyncIterator[None]:
    """A transaction always rolled back: what a set-up changes (an index) is undone after it."""
    transaction = conn.transaction()
    await transaction.start()
    try:
        yield
    finally:
        await transaction.rollback()


async def _ingest(
    conn: asyncpg.Connection, org: uuid.UUID, rows: int, repeats: int
) -> dict[str, dict[str, float]]:
    project = await tenants.create_project(conn, org, "ingest")
    plan = SeedPlan(project, rows=rows, end=datetime(2025, 6, 1, tzinfo=UTC), seed=2)
    batch = list(generate(plan))
    rates: dict[str, list[float]] = {"summaries": [], "floor": [], "trigram_v2": []}

    for _ in range(repeats):
        for setup in rates:
            async with _rolled_back(conn):
                if setup == "trigram_v2":
                    await conn.execute(V2_INDEX)
                t = time.perf_counter()
                await conn.copy_records_to_table("logs", records=batch, columns=list(COLUMNS))
                if setup == "summaries":
                    await blocks.write_blocks(conn, batch)
                rates[setup].append(rows / (time.perf_counter() - t))
    return {
        setup: {"n": len(r), "p50_rows_per_s": round(statistics.median(r)), "max": round(max(r))}
        for setup, r in rates.items()
    }


async def main(args: argparse.Namespace) -> None:
    server = args.database_url or server_url()
    name = f"gramlogs_bench_keyword_{secrets.token_hex(3)}"
    admin = await asyncpg.connect(server)
    await admin.execute(f"CREATE DATABASE {name}")
    try:
        conn = await asyncpg.connect(with_database(server, name))
        try:
            await schema.migrate(conn)
            version = await conn.fetchval("SHOW server_version")
            org = await tenants.create_organization(conn, "bench")
            project = await tenants.create_project(conn, org, "big")
            plan = SeedPlan(
                project,
                rows=args.rows,
                end=datetime(2025, 6, 1, tzinfo=UTC),
                plant=((RARE, 0.001), (MEDIUM, 0.01), (COMMON, 0.30)),
            )
            print(f"seeding {args.rows:,} rows (with every index) ...", file=sys.stderr)
            t = time.perf_counter()
            await seed_logs(conn, plan, progress=ProgressBar())
            neighbour = await tenants.create_project(conn, org, "neighbour")
            await seed_logs(
                conn,
                SeedPlan(
                    neighbour, rows=args.rows // 4, end=plan.end, seed=1, plant=((ABSENT, 0.3),)
                ),
                progress=ProgressBar(),
            )
            seed_s = time.perf_counter() - t
            await conn.execute("VACUUM ANALYZE logs")
            sizes = await conn.fetchrow(
                "SELECT pg_size_pretty(pg_table_size('logs')) AS heap,"
                " pg_size_pretty(pg_total_relation_size('log_blocks')) AS summaries,"
                " pg_size_pretty(pg_indexes_size('logs')) AS all_indexes"
            )
            print("searching ...", file=sys.stderr)
            queries = await _queries(conn, project, args.repeats, args.budget)
            print("ingesting ...", file=sys.stderr)
            ingest = await _ingest(conn, org, args.ingest_rows, args.ingest_repeats)
        finally:
            await conn.close()
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()

    assert sizes is not None
    info = machine(version) | {"load_avg_at_end": [round(x, 2) for x in os.getloadavg()]}
    print()
    print_machine(info)
    print(
        f"project: {args.rows:,} rows (seeded in {seed_s:.0f} s); heap {sizes['heap']},"
        f" block summaries {sizes['summaries']}, logs' indexes {sizes['all_indexes']}"
    )
    print(f"\nfirst page ({PER_PAGE} rows, newest first), p50 / p90 ms")
    columns = ("shipped", "ordered_scan", "trigram_v2")
    print(f"{'word':>14}" + "".join(f"  {c:>17}" for c in columns))
    for label, by_setup in queries.items():
        cells = [f"{by_setup[c]['p50_ms']:>8.2f} / {by_setup[c]['p90_ms']:>6.1f}" for c in columns]
        print(f"{label:>14}  {'  '.join(cells)}")
    floor = ingest["floor"]["p50_rows_per_s"]
    print(f"\ningestion (COPY of {args.ingest_rows:,} rows into the seeded table, p50 rows/s):")
    for setup, rate in ingest.items():
        print(
            f"  {setup:>10}: {rate['p50_rows_per_s']:>9,} ({rate['p50_rows_per_s'] / floor:.2f}x)"
        )
    result = {
        "benchmark": "keyword",
        "rows": args.rows,
        "per_page": PER_PAGE,
        "machine": info,
        "sizes": dict(sizes),
        "queries": queries,
        "ingest": ingest,
    }
    json_line("keyword", result)


def _options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--database-url", help="a PostgreSQL server to create the database in")
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--repeats", type=int, default=30, help="timed runs of each query")
    p.add_argument("--budget", type=float, default=15.0, help="seconds per query before stopping")
    p.add_argument("--ingest-rows", type=int, default=100_000)
    p.add_argument("--ingest-repeats", type=int, default=4)


def _smoke(args: argparse.Namespace) -> None:
    args.rows, args.repeats, args.ingest_rows, args.ingest_repeats = 20_000, 5, 5_000, 2


if __name__ == "__main__":
    runner.run(
        "keyword",
        __doc__,
        main,
        options=_options,
        smoke=_smoke,
        smoke_help="20k rows, a few repeats",
        loop="asyncio",
    )
