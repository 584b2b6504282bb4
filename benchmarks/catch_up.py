"""A resumed live tail reading its backlog: lines per second, on a new database and an analyzed one.

**Catch-up.** A database of the run's own (autovacuum off), its partitions made around now. One
connection with the server's settings reads the journal once while the tables are empty (the
generic plan of a new install is made then), then ``--lines`` lines arrive in batches of 1 to 40
(15% dated up to 90 minutes back), and the connection reads the backlog from the start, about
5,000 lines a statement, as a resumed tail does (live/watchers.py ``catch_up``). Side by side,
each regime with the journal's statement and with the plain join it replaced (reading stops
after ``--budget-s`` seconds): "new" is the database as it is, "analyzed" the same after ANALYZE
(which also drops the cached plans).

**A first burst** (``--burst-s``, 0 to skip): a real ``gramlogs serve`` on another new database;
four writers send ~1,600 lines/s for that long, while one tail hangs up every 150 lines and
resumes with Last-Event-ID and another (level=error) stays connected (testkit/tailing.py).
Reported: lines each got, connections, their duration p50/p99, and the lag: how long after the
writers' last answer the resuming tail had every line.

    .venv/bin/python -m benchmarks.catch_up              # about a minute
    .venv/bin/python -m benchmarks.catch_up --write      # and append the report to tail.md
    .venv/bin/python -m benchmarks.catch_up --smoke      # seconds
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from benchmarks import runner
from benchmarks.results import (
    fmt_ms,
    machine,
    percentiles,
    print_machine,
    publish,
)
from gramlogs.core import ids
from gramlogs.core.config import Config
from gramlogs.storage import journal, maintenance, tenants, writer
from gramlogs.storage.pages import COLUMNS, PLAN_SETTINGS
from testkit import tailing
from testkit.postgres import own_postgres, temporary_database
from testkit.serve import live_server

# The statement the journal read replaced: a join that leaves the planner free to hash the ids
# and read the project's partition whole for each batch.
_COLUMNS = ", ".join(f'l."{c}"' if c == "timestamp" else f"l.{c}" for c in COLUMNS)
_BEFORE = f"""
SELECT {_COLUMNS}, b.seq, cardinality($4::text[]) AS matched
FROM tail_journal AS b
CROSS JOIN LATERAL unnest(b.ids) AS u(id)
JOIN logs AS l ON l.project_id = b.project_id AND l.id = u.id
WHERE b.project_id = $1 AND b.seq BETWEEN $2 AND $3
ORDER BY b.seq, l.id
"""
READ_LINES = 5000


def _row(project: uuid.UUID, at: datetime, n: int) -> writer.NewRow:
    return (
        ids.new_id(at, rand_b=n).hex, at, "i-1", "info", "function", f"line {n}", None, "{}",
        str(project), str(uuid.UUID(int=2)), str(uuid.UUID(int=1)), None,
    )  # fmt: skip


async def _backlog(conn: asyncpg.Connection, project: uuid.UUID, lines: int) -> None:
    rng = random.Random(1)
    now = datetime.now(UTC)
    n = 0
    while n < lines:
        size = min(rng.randint(1, 40), lines - n)
        batch = []
        for _ in range(size):
            at = now - timedelta(minutes=rng.uniform(1, 90) if rng.random() < 0.15 else 0)
            batch.append(_row(project, at + timedelta(microseconds=n), n))
            n += 1
        await writer.store_batch(conn, project, batch)


async def _read_all(
    conn: asyncpg.Connection, project: uuid.UUID, sql: str, budget: float
) -> dict[str, Any]:
    """Read the backlog from the start as a resumed tail does; lines, seconds, lines/s."""
    start = time.perf_counter()
    read, seq = 0, 1
    while time.perf_counter() - start < budget:
        batches = await journal.next_batches(conn, project, seq)
        if not batches:
            break
        total, last = 0, batches[0].seq
        for batch in batches:
            if total + batch.lines > READ_LINES and total:
                break
            total, last = total + batch.lines, batch.seq
        read += len(await conn.fetch(sql, project, seq, last, []))
        seq = last + 1
    seconds = time.perf_counter() - start
    return {"lines": read, "seconds": round(seconds, 3), "lines_per_s": round(read / seconds)}


@contextlib.asynccontextmanager
async def _new_database(server: str) -> AsyncIterator[str]:
    async with temporary_database(server, "bench_catch_up") as url:
        conn = await asyncpg.connect(url)
        try:
            await maintenance.ensure_partitions(conn, Config())
            for (table,) in await conn.fetch(
                "SELECT oid::regclass::text FROM pg_class WHERE relkind = 'r'"
                " AND relnamespace = 'public'::regnamespace"
            ):
                await conn.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
        finally:
            await conn.close()
        yield url


async def catch_up(server: str, lines: int, budget: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    async with _new_database(server) as url:
        conn = await asyncpg.connect(url, server_settings=PLAN_SETTINGS)
        try:
            org = await tenants.create_organization(conn, "bench")
            project = await tenants.create_project(conn, org, "bench")
            await writer.store_batch(conn, project, [_row(project, datetime.now(UTC), -1)])
            after, _ = journal.read_lines_query(project, 1, 1)
            for sql in (after, _BEFORE):  # their generic plans, made on empty tables
                await conn.fetch(sql, project, 1, 1, [])
            await _backlog(conn, project, lines)
            for regime in ("new", "analyzed"):
                if regime == "analyzed":
                    await conn.execute("ANALYZE")
                for name, sql in (("journal read", after), ("plain join (before)", _BEFORE)):
                    result = await _read_all(conn, project, sql, budget)
                    out[f"{regime}, {name}"] = result
                    print(f"  {regime:>8}, {name:<20} {result}", flush=True)
        finally:
            await conn.close()
    return out


async def burst(server: str, seconds: float) -> dict[str, Any]:
    async with temporary_database(server, "bench_burst") as url:
        consumer, producer = await tailing.keys_of_a_new_tenant(url, "burst")
        with (
            tempfile.TemporaryDirectory() as logs,
            live_server(url, Path(logs), GRAMLOGS_LOG_LEVEL="warning") as server_process,
        ):
            plan = tailing.Burst(server_process.url, "burst", consumer, producer, seconds=seconds)
            outcome = await tailing.run(plan)
    received = Counter(outcome.reconnecting)
    errors = [raw for raw, level in outcome.sent.items() if level == "error"]
    lag = None
    if outcome.caught_up_at is not None:
        lag = round(max(0.0, outcome.caught_up_at - outcome.writers_done_at), 3)
    return {
        "lines_sent": len(outcome.sent),
        "lines_per_s": round(len(outcome.sent) / seconds),
        "resuming_tail": {
            "distinct": len(received),
            "duplicates": sum(received.values()) - len(received),
            "missing": len(set(outcome.sent) - set(received)),
            "connections": len(outcome.connections),
            "connection_ms": percentiles(outcome.connections),
            "lag_s": lag,
        },
        "connected_tail": {"error_lines": len(errors), "received": len(outcome.connected)},
        "errors": outcome.errors[:5],
    }


def render(r: dict[str, Any]) -> str:
    lines = [f"## Catching up, {r['machine']['date']}", "", f"Machine: {r['machine']}", ""]
    lines += ["| database | statement | lines read | seconds | lines/s |", "|---|---|---|---|---|"]
    for name, c in r["catch_up"].items():
        regime, statement = name.split(", ", 1)
        lines.append(f"| {regime} | {statement} | {c['lines']:,} | {c['seconds']} | "
                     f"{c['lines_per_s']:,} |")  # fmt: skip
    if (b := r.get("burst")) is not None:
        t = b["resuming_tail"]
        ms = t["connection_ms"]
        lines += [
            "",
            f"A first burst on a new database: {b['lines_sent']:,} lines ({b['lines_per_s']:,}/s)"
            f" from 4 writers; the tail resuming every 150 lines got {t['distinct']:,} distinct,"
            f" {t['duplicates']} twice, {t['missing']} missing, over {t['connections']}"
            f" connections (p50 {fmt_ms(ms['p50'])} ms, p99 {fmt_ms(ms['p99'])} ms);"
            f" lag after the writers' last answer: {t['lag_s']} s. The level=error tail got"
            f" {b['connected_tail']['received']:,} of {b['connected_tail']['error_lines']:,}.",
        ]
    return "\n".join(lines) + "\n"


async def main(args: argparse.Namespace) -> dict[str, Any]:
    with contextlib.ExitStack() as stack:
        # A server of the run's own by default: a new install's settings, nothing else running.
        server = os.environ.get("GRAMLOGS_BENCH_DATABASE_URL")
        if not server:
            server = stack.enter_context(own_postgres("bench-catch-up-")).url
        conn = await asyncpg.connect(server)
        version = await conn.fetchval("SHOW server_version")
        await conn.close()
        result: dict[str, Any] = {"machine": machine(version)}
        print_machine(result["machine"])
        result["catch_up"] = await catch_up(server, args.lines, args.budget_s)
        if args.burst_s:
            result["burst"] = await burst(server, args.burst_s)
    publish("catch_up", result, render(result), write_to=args.write_to)
    return result


def _options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lines", type=int, default=40_000, help="backlog lines (40,000)")
    p.add_argument("--budget-s", type=float, default=20.0, help="seconds a read may take (20)")
    p.add_argument("--burst-s", type=float, default=20.0, help="the burst's seconds (20; 0: none)")


def _smoke(args: argparse.Namespace) -> None:
    args.lines, args.budget_s, args.burst_s = 2_000, 5.0, 2.0


if __name__ == "__main__":
    runner.run(
        "catch_up",
        __doc__,
        main,
        options=_options,
        smoke=_smoke,
        smoke_help="a small backlog, a short burst",
        results=runner.results_file("tail"),
    )
