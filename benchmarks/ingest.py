"""Ingestion throughput: NDJSON batches through POST /rpc/logs.ingest next to a raw COPY.

How it measures, and how to run it: docs/benchmarks.md, "ingest".
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from benchmarks import producer, pyspy, runner
from benchmarks.cpu import CpuMeter
from benchmarks.results import json_line, machine, percentiles, print_machine
from gramlogs.storage import schema
from gramlogs.storage.pages import COLUMNS
from gramlogs.web.ingest import decode_batch
from testkit import datasets
from testkit.serve import gramlogs_server

# Buckets of server time, by the first marker found in a sample's stack (most specific first).
_BUCKETS = {
    "COPY: asyncpg encodes and sends rows": "copy_records_to_table",
    "store_batch: sort, transaction": "store_batch",
    "other SQL: auth, disabled_among": "asyncpg/",
    "decode NDJSON (msgspec)": "decode_entries",
    "check entries, derive ids": "build_rows",
    "read body": "read_body",
    "encode reply": "_json_response",
    "Starlette routing, request, response": "starlette/",
    "uvicorn HTTP protocol": "uvicorn/protocols",
}
_REST = "event loop: sockets, C callbacks (uvloop, httptools, asyncpg protocol)"


@dataclass
class Run:
    kind: str
    rate: float  # lines/s
    latencies: list[float]  # seconds per batch
    cpu: dict[str, float]


async def _copy(
    conns: list[asyncpg.Connection], batches: Sequence[Sequence[Any]]
) -> tuple[float, list[float]]:
    """COPY every batch's rows, one client per connection: lines/s and each batch's time."""
    queue = list(reversed(batches))
    latencies: list[float] = []

    async def client(conn: asyncpg.Connection) -> None:
        while queue:
            rows = queue.pop()
            t = time.perf_counter()
            await conn.copy_records_to_table("logs", records=rows, columns=COLUMNS)
            latencies.append(time.perf_counter() - t)

    t0 = time.perf_counter()
    await asyncio.gather(*(client(c) for c in conns))
    return sum(map(len, batches)) / (time.perf_counter() - t0), latencies


async def _post(url: str, head: dict[str, str], bodies: list[bytes], clients: int) -> Any:
    return await producer.send(url, ((head, b, b.count(b"\n")) for b in bodies), clients)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    server = args.database_url or os.environ.get("GRAMLOGS_DATABASE_URL") or datasets.server_url()
    bodies = producer.make_batches(args.lines, args.batch, args.seed)
    runs: list[Run] = []
    profile = None
    admin = await asyncpg.connect(server)
    async with datasets.fresh_database(server, "gramlogs_bench", keep=args.keep) as (db_url, name):
        conn = await asyncpg.connect(db_url)
        await schema.migrate(conn)
        pg_version = await conn.fetchval("SHOW server_version")
        with gramlogs_server(db_url, workers=args.workers) as running:
            # Warm-up: a few batches, into a project of their own.
            await _post(running.url, (await producer.new_project(conn, "warm"))[1], bodies[:3], 1)
            for _ in range(args.repeats):
                project, _ = await producer.new_project(conn, "raw")
                rows = [decode_batch(b, "application/x-ndjson", project) for b in bodies]
                conns = [await asyncpg.connect(db_url) for _ in range(args.clients)]
                meter = CpuMeter(admin, name, None)
                await meter.start()
                rate, latencies = await _copy(conns, rows)
                runs.append(Run("raw COPY", rate, latencies, await meter.stop()))
                for c in conns:
                    await c.close()
                _, head = await producer.new_project(conn, "ingest")
                meter = CpuMeter(admin, name, running.process.pid)
                await meter.start()
                sent = await _post(running.url, head, bodies, args.clients)
                runs.append(Run("ingest", sent.rate, sent.latencies, await meter.stop()))
                print(f"  repeat: raw COPY {rate:,.0f} lines/s, ingest {sent.rate:,.0f}")
            if args.profile and args.workers == 1 and not pyspy.missing():
                _, head = await producer.new_project(conn, "profile")
                raw = Path(tempfile.mkdtemp(prefix="gramlogs-bench-")) / "profile.txt"
                with pyspy.recording(running.process.pid, raw, rate=400):
                    await _post(running.url, head, bodies, args.clients)
                profile = pyspy.summarise(raw, _BUCKETS, rest=_REST)
        total_rows = await conn.fetchval("SELECT count(*) FROM logs")
        await conn.close()
    await admin.close()

    def summary(kind: str) -> dict[str, Any]:
        mine = [r for r in runs if r.kind == kind]
        lat = percentiles([x for r in mine for x in r.latencies])
        cpu = {
            part: statistics.median(r.cpu.get(part, 0.0) for r in mine) / args.lines * 1e6
            for part in ("server", "postgres", "clients")
        }
        return {
            "lines_per_s_median": statistics.median(r.rate for r in mine),
            "lines_per_s_runs": [round(r.rate) for r in mine],
            **{f"batch_ms_{q}": lat[q] for q in ("p50", "p95", "p99")},
            "cpu_us_per_line": cpu,
        }

    raw_copy, ingest = summary("raw COPY"), summary("ingest")
    result = {
        "benchmark": "ingest",
        **{k: getattr(args, k) for k in ("lines", "batch", "clients", "repeats", "workers")},
        "bytes_per_line": round(sum(map(len, bodies)) / args.lines, 1),
        "raw_copy": raw_copy,
        "ingest": ingest,
        "ratio": ingest["lines_per_s_median"] / raw_copy["lines_per_s_median"],
        "rows_in_table_at_end": total_rows,
        "machine": machine(pg_version)
        | {"load_avg_at_end": [round(x, 2) for x in os.getloadavg()]},
    }
    _print_table(result, profile)
    json_line("ingest", result)
    return result


def _print_table(r: dict[str, Any], profile: dict[str, Any] | None) -> None:
    print(
        f"\ngramlogs ingest benchmark: {r['lines']:,} lines of ~{r['bytes_per_line']:.0f} B in"
        f" NDJSON batches of {r['batch']}, {r['clients']} concurrent clients,"
        f" {r['repeats']} alternating repeats, server workers={r['workers']}"
    )
    print_machine(r["machine"])
    print(
        f"\n{'':10} {'lines/s (median)':>17} {'runs':>26} {'batch ms p50/p95/p99':>22}"
        f" {'CPU µs/line srv/pg/cli':>24}"
    )
    for label, s in (("raw COPY", r["raw_copy"]), ("ingest", r["ingest"])):
        runs = ", ".join(f"{x:,}" for x in s["lines_per_s_runs"])
        lat = f"{s['batch_ms_p50']:.0f}/{s['batch_ms_p95']:.0f}/{s['batch_ms_p99']:.0f}"
        c = s["cpu_us_per_line"]
        cpu = f"{c['server']:.1f}/{c['postgres']:.1f}/{c['clients']:.1f}"
        print(f"{label:10} {s['lines_per_s_median']:>17,.0f} {runs:>26} {lat:>22} {cpu:>24}")
    print(f"\ningest / raw COPY = {r['ratio']:.2f}")
    if profile and "samples" in profile:
        print("\nwhere the server's time goes (py-spy, samples while running, one extra run):")
        for name, share in profile["exclusive_pct"].items():
            print(f"  {share:5.1f}%  {name}")
        print("top frames by self time:")
        for frame, share in profile["top_own_pct"].items():
            print(f"  {share:5.1f}%  {frame}")
    print()


def _options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lines", type=int, default=200_000, help="lines per run (200,000)")
    p.add_argument("--batch", type=int, default=1000, help="lines per request (1,000)")
    p.add_argument("--clients", type=int, default=4, help="concurrent clients (4)")
    p.add_argument("--repeats", type=int, default=3, help="runs of each kind (3)")
    p.add_argument("--workers", type=int, default=1, help="server processes (1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--database-url", help="a PostgreSQL server (default: embedded)")
    p.add_argument("--profile", action="store_true", help="py-spy the server in one extra run")
    p.add_argument("--keep", action="store_true", help="keep the benchmark database")


def _smoke(args: argparse.Namespace) -> None:
    args.lines, args.repeats = 20_000, 1


if __name__ == "__main__":
    runner.run(
        "ingest",
        __doc__,
        main,
        options=_options,
        smoke=_smoke,
        smoke_help="20,000 lines, 1 repeat",
        loop="asyncio",
    )
