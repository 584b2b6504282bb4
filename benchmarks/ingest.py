"""Ingestion throughput: NDJSON batches through POST /rpc/logs.ingest next to a raw COPY.

Both sides write the same rows into the same ``logs`` table (all its indexes) of a fresh
database, with the same number of concurrent clients and the same 1,000-row batches, one
transaction each; runs alternate (raw, ingest, raw, ingest, ...) so that a busy neighbour on a
shared machine hurts both alike. Each run writes into a project of its own.

- ``ingest``: a real ``gramlogs serve`` process; each client POSTs pre-built NDJSON bodies.
- ``raw COPY``: each client runs ``copy_records_to_table`` with rows decoded beforehand, so it
  measures PostgreSQL plus asyncpg's binary encoding and nothing of ours.

CPU seconds are read from /proc for the server process, this process (the clients), and the
PostgreSQL backends connected to the benchmark's database (not the WAL writer or checkpointer).
``--profile`` samples the server with py-spy during one extra ingest run and prints where its
time goes.

    .venv/bin/python -m benchmarks.ingest --smoke
    .venv/bin/python -m benchmarks.ingest --lines 200000 --clients 4 --repeats 3 --profile
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from benchmarks import harness, runner
from benchmarks.cpu import CpuMeter
from benchmarks.results import json_line, machine, print_machine
from gramlogs.core.keys import KeyScope
from gramlogs.storage import schema, tenants
from gramlogs.storage.pages import COLUMNS
from gramlogs.web.ingest import decode_batch
from testkit.http import AsyncHttpClient as _Http
from testkit.postgres import with_database

CACHE = Path(__file__).parent / ".cache"

_WORDS = (
    "tool call started",
    "tool call finished",
    "fetched records from upstream",
    "cache lookup",
    "retrying request",
    "rate limited, backing off",
    "upstream returned 502",
    "parsed arguments",
)
_LEVELS = ("debug",) * 20 + ("info",) * 55 + ("warn",) * 15 + ("error",) * 10


# -- data ---------------------------------------------------------------------------------------


def make_batches(lines: int, batch: int, seed: int) -> list[bytes]:
    """NDJSON bodies of ``batch`` lines of about 200 bytes each, timestamps increasing."""
    rng = random.Random(seed)
    functions = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(8)]
    deployments = {f: [uuid.UUID(int=rng.getrandbits(128), version=4)] for f in functions}
    start = datetime(2025, 6, 1, tzinfo=UTC)
    bodies = []
    encoder = json.JSONEncoder(separators=(",", ":"))
    for b in range(0, lines, batch):
        out = []
        for i in range(b, min(b + batch, lines)):
            f = rng.choice(functions)
            word = rng.choice(_WORDS)
            entry = {
                "raw_log": f"{word} id={rng.getrandbits(32):08x} ms={rng.randrange(1, 5000)}",
                "function_id": str(f),
                "deployment_id": str(deployments[f][0]),
                "timestamp": (start + timedelta(microseconds=i * 997)).strftime(
                    "%Y-%m-%dT%H:%M:%S.%fZ"
                ),
                "level": rng.choice(_LEVELS),
            }
            out.append(encoder.encode(entry))
        bodies.append(("\n".join(out) + "\n").encode())
    return bodies


@dataclass
class Run:
    kind: str
    lines: int
    seconds: float
    latencies: list[float]
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.lines / self.seconds


async def run_ingest(url: str, headers: dict[str, str], bodies: list[bytes], clients: int) -> Run:
    lines = sum(body.count(b"\n") for body in bodies)
    requests = [_Http(url).request("/rpc/logs.ingest", headers, body) for body in bodies]
    queue = list(reversed(requests))
    latencies: list[float] = []

    async def client() -> None:
        async with _Http(url) as http:
            while queue:
                request = queue.pop()
                t = time.perf_counter()
                status, reply = await http.send(request)
                latencies.append(time.perf_counter() - t)
                if status != 200:
                    raise RuntimeError(f"ingest answered {status}: {reply[:300]!r}")

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return Run("ingest", lines, time.perf_counter() - t0, latencies)


async def run_copy(
    conns: list[asyncpg.Connection], batches: Sequence[Sequence[tuple[object, ...]]]
) -> Run:
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
    return Run("raw COPY", sum(map(len, batches)), time.perf_counter() - t0, latencies)


# -- setting up ---------------------------------------------------------------------------------


def _server_url(args: argparse.Namespace) -> str:
    return args.database_url or os.environ.get("GRAMLOGS_DATABASE_URL") or harness.server_url()


async def _tenant(conn: asyncpg.Connection, label: str) -> tuple[uuid.UUID, dict[str, str]]:
    org = await tenants.create_organization(conn, f"bench-{label}-{secrets.token_hex(3)}")
    project = await tenants.create_project(conn, org, "bench")
    key = await tenants.create_key(conn, org, KeyScope.PRODUCER)
    headers = {"Gram-Key": key.key, "Gram-Project": "bench", "Content-Type": "application/x-ndjson"}
    return project, headers


# -- profile ------------------------------------------------------------------------------------

# Buckets of server time, by the first needle found in a sample's stack (most specific first).
# Cython and C code (uvloop, httptools, asyncpg's protocol, msgspec) has no Python frame of its
# own: its time counts toward the Python frame that called it, or toward the event loop.
_BUCKETS = (
    ("COPY: asyncpg encodes and sends rows", "copy_records_to_table"),
    ("store_batch: sort, transaction", "store_batch"),
    ("other SQL: auth, disabled_among", "asyncpg/"),
    ("decode NDJSON (msgspec)", "decode_entries"),
    ("check entries, derive ids", "build_rows"),
    ("read body", "read_body"),
    ("encode reply", "_json_response"),
    ("Starlette routing, request, response", "starlette/"),
    ("uvicorn HTTP protocol", "uvicorn/protocols"),
)


def summarise_profile(
    path: Path, top: int = 12
) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """Shares of samples per bucket (first match from the leaf up) and the top leaf frames."""
    buckets: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        n = int(count_text)
        total += n
        frames = stack.split(";")
        leaves[frames[-1]] += n
        bucket = "event loop: sockets, C callbacks (uvloop, httptools, asyncpg protocol)"
        for name, needle in _BUCKETS:
            if any(needle in frame for frame in frames):
                bucket = name
                break
        buckets[bucket] += n
    shares = [(name, count / total) for name, count in buckets.most_common()]
    return shares, [(frame, count / total) for frame, count in leaves.most_common(top)]


async def profile_run(
    server: subprocess.Popen[bytes],
    url: str,
    headers: dict[str, str],
    bodies: list[bytes],
    clients: int,
    out: Path,
) -> tuple[Run, Path]:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    command = [py_spy, "record", "--pid", str(server.pid), "--format", "raw", "--rate", "400"]
    spy = subprocess.Popen(  # noqa: ASYNC220 - started once, before the timed part
        [*command, "--output", str(out), "--nonblocking"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    await asyncio.sleep(1.0)  # py-spy attaches
    run = await run_ingest(url, headers, bodies, clients)
    spy.send_signal(signal.SIGINT)
    await asyncio.to_thread(spy.wait, 30)
    return run, out


# -- main ---------------------------------------------------------------------------------------


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


async def main(args: argparse.Namespace) -> dict[str, Any]:
    server_url = _server_url(args)
    name = f"gramlogs_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(server_url)
    await admin.execute(f"CREATE DATABASE {name}")
    db_url = with_database(server_url, name)
    log_dir = Path(tempfile.mkdtemp(prefix="gramlogs-bench-"))
    servers = contextlib.ExitStack()
    try:
        conn = await asyncpg.connect(db_url)
        await schema.migrate(conn)
        pg_version = await conn.fetchval("SHOW server_version")
        bodies = make_batches(args.lines, args.batch, args.seed)
        line_bytes = sum(map(len, bodies)) / args.lines
        running = servers.enter_context(harness.gramlogs_server(db_url, workers=args.workers))
        server, url = running.process, running.url

        # Warm-up: a few batches each way, into a project of their own.
        _, warm_headers = await _tenant(conn, "warm")
        await run_ingest(url, warm_headers, bodies[:3], 1)

        runs: list[Run] = []
        for _ in range(args.repeats):
            project, _ = await _tenant(conn, "raw")
            rows = [decode_batch(b, "application/x-ndjson", project) for b in bodies]
            conns = [await asyncpg.connect(db_url) for _ in range(args.clients)]
            meter = CpuMeter(admin, name, None)
            await meter.start()
            run = await run_copy(conns, rows)
            run.cpu = await meter.stop()
            runs.append(run)
            for c in conns:
                await c.close()

            _, headers = await _tenant(conn, "ingest")
            meter = CpuMeter(admin, name, server.pid)
            await meter.start()
            run = await run_ingest(url, headers, bodies, args.clients)
            run.cpu = await meter.stop()
            runs.append(run)
            print(f"  repeat: raw COPY {runs[-2].rate:,.0f} lines/s, ingest {run.rate:,.0f}")

        profile = None
        if args.profile and args.workers == 1:
            _, headers = await _tenant(conn, "profile")
            _, path = await profile_run(
                server, url, headers, bodies, args.clients, log_dir / "profile.txt"
            )
            if path.exists():
                profile = summarise_profile(path)
        total_rows = await conn.fetchval("SELECT count(*) FROM logs")
        await conn.close()
    finally:
        servers.close()
        if not args.keep:
            await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()

    def summary(kind: str) -> dict[str, Any]:
        mine = [r for r in runs if r.kind == kind]
        rates = [r.rate for r in mine]
        lat = [x for r in mine for x in r.latencies]
        cpu = {
            part: statistics.median(r.cpu.get(part, 0.0) for r in mine) / args.lines * 1e6
            for part in ("server", "postgres", "clients")
        }
        return {
            "lines_per_s_median": statistics.median(rates),
            "lines_per_s_runs": [round(x) for x in rates],
            "batch_ms_p50": _pct(lat, 0.5) * 1000,
            "batch_ms_p95": _pct(lat, 0.95) * 1000,
            "batch_ms_p99": _pct(lat, 0.99) * 1000,
            "cpu_us_per_line": cpu,
        }

    raw, ing = summary("raw COPY"), summary("ingest")
    load = os.getloadavg()
    result = {
        "benchmark": "ingest",
        "lines": args.lines,
        "batch": args.batch,
        "clients": args.clients,
        "repeats": args.repeats,
        "workers": args.workers,
        "bytes_per_line": round(line_bytes, 1),
        "raw_copy": raw,
        "ingest": ing,
        "ratio": ing["lines_per_s_median"] / raw["lines_per_s_median"],
        "rows_in_table_at_end": total_rows,
        "machine": machine(pg_version) | {"load_avg_at_end": [round(x, 2) for x in load]},
    }
    _print_table(result, profile)
    json_line("ingest", result)
    return result


def _print_table(
    r: dict[str, Any],
    profile: tuple[list[tuple[str, float]], list[tuple[str, float]]] | None,
) -> None:
    print()
    print(
        f"gramlogs ingest benchmark: {r['lines']:,} lines of ~{r['bytes_per_line']:.0f} B in"
        f" NDJSON batches of {r['batch']}, {r['clients']} concurrent clients,"
        f" {r['repeats']} alternating repeats, server workers={r['workers']}"
    )
    print_machine(r["machine"])
    print()
    print(
        f"{'':10} {'lines/s (median)':>17} {'runs':>26} {'batch ms p50/p95/p99':>22}"
        f" {'CPU µs/line srv/pg/cli':>24}"
    )
    for label, s in (("raw COPY", r["raw_copy"]), ("ingest", r["ingest"])):
        runs = ", ".join(f"{x:,}" for x in s["lines_per_s_runs"])
        lat = f"{s['batch_ms_p50']:.0f}/{s['batch_ms_p95']:.0f}/{s['batch_ms_p99']:.0f}"
        c = s["cpu_us_per_line"]
        cpu = f"{c['server']:.1f}/{c['postgres']:.1f}/{c['clients']:.1f}"
        print(f"{label:10} {s['lines_per_s_median']:>17,.0f} {runs:>26} {lat:>22} {cpu:>24}")
    print(f"\ningest / raw COPY = {r['ratio']:.2f}")
    if profile:
        shares, leaves = profile
        print("\nwhere the server's time goes (py-spy, samples while running, one extra run):")
        for name, share in shares:
            print(f"  {share:6.1%}  {name}")
        print("top frames by self time:")
        for frame, share in leaves:
            print(f"  {share:6.1%}  {frame}")
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
