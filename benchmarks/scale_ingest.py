"""Ingestion at scale: millions of lines through gramlogs over HTTP, beside a COPY of the same
lines into a bare table and beside ClickHouse (chdb), then keyword pages on the full table.

How it measures, and how to run it: docs/benchmarks.md, "scale_ingest".
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlencode

import asyncpg

from benchmarks import producer, runner, timing
from benchmarks import scale_data as sd
from benchmarks import scale_sealing as seal
from benchmarks.cpu import CpuMeter
from benchmarks.results import (
    machine,
    percentiles,
    print_machine,
    publish,
)
from benchmarks.scale_clickhouse import clickhouse_missing, load_clickhouse
from benchmarks.scale_ingest_report import render, targets
from gramlogs.core.keys import KeyScope
from gramlogs.storage import citus, schema, tenants
from testkit import datasets
from testkit.http import HttpClient
from testkit.postgres import with_database
from testkit.serve import gramlogs_server

PAGE = "/rpc/logs.listToolExecutionLogs"
FLOOR = "copy_floor"
# The floor: the columns of gramlogs' logs with only its primary key, unpartitioned.
FLOOR_TABLE = """
CREATE TABLE {name} (
    project_id     uuid NOT NULL,
    id             uuid NOT NULL,
    "timestamp"    timestamptz NOT NULL,
    instance       text NOT NULL,
    level          text NOT NULL,
    source         text NOT NULL,
    raw_log        text NOT NULL,
    message        text,
    attributes     jsonb NOT NULL,
    deployment_id  uuid NOT NULL,
    function_id    uuid NOT NULL,
    execution_id   text,
    PRIMARY KEY (project_id, id)
)
"""


# -- 1. COPY floor ------------------------------------------------------------------------------


async def _one(payload: bytes) -> AsyncIterator[bytes]:
    yield payload


async def load_copy(
    conns: list[asyncpg.Connection], data: sd.Data, slices: timing.Slices
) -> dict[str, Any]:
    """COPY every batch's binary rows into the floor table, one client per connection."""
    rows = data.rows()
    copied = 0

    async def client(conn: asyncpg.Connection) -> None:
        nonlocal copied
        for batch, payload in rows:
            status = await conn.copy_to_table(
                FLOOR, source=_one(payload), columns=sd.FLOOR_COLUMNS, format="binary"
            )
            copied += int(status.split()[-1])
            slices.add(batch.lines)

    slices.start()
    await asyncio.gather(*(client(conn) for conn in conns))
    if copied != data.spec.lines:
        raise RuntimeError(f"COPY stored {copied:,} rows of {data.spec.lines:,}")
    return slices.summary()


# -- 2. gramlogs over HTTP ----------------------------------------------------------------------


async def make_tenants(url: str, data: sd.Data) -> tuple[dict[str, str], str]:
    """The data's projects (with their ids), a producer key bound to each, one consumer key."""
    conn = await asyncpg.connect(url)
    try:
        org = await tenants.create_organization(conn, "scale-bench")
        producers = {}
        for p in data.projects:
            project = await tenants.create_project(conn, org, p.slug, project_id=uuid.UUID(p.id))
            key = await tenants.create_key(
                conn, org, KeyScope.PRODUCER, project_id=project, name=f"{p.slug} producer"
            )
            producers[p.slug] = key.key
        consumer = await tenants.create_key(conn, org, KeyScope.CONSUMER, name="reader")
    finally:
        await conn.close()
    return producers, consumer.key


async def load_gramlogs(
    base: str, data: sd.Data, producers: dict[str, str], clients: int, slices: timing.Slices
) -> dict[str, Any]:
    """POST every body with its project's producer key (resending what is refused for now)."""
    batches = (
        (producer.headers(producers[slug], slug), body, batch.lines)
        for batch, body in data.bodies()
        for slug in [data.projects[batch.project].slug]
    )
    slices.start()
    sent = await producer.send(base, batches, clients, on_batch=slices.add)
    counts = {"stored": sent.stored, "duplicates": sent.duplicates, "resent": sent.resent}
    if sent.stored + sent.duplicates != data.spec.lines:
        raise RuntimeError(f"gramlogs acknowledged {counts} for {data.spec.lines:,} lines")
    return slices.summary() | counts | {"batch_ms": percentiles(sent.latencies)}


async def database_bytes(urls: list[str], *, citus: bool = False) -> int:
    """Bytes of every table in the public schema (indexes, TOAST) of each database; on Citus
    nodes, the shards included (Citus hides them from catalog queries unless told not to)."""
    total = 0
    for url in urls:
        conn = await asyncpg.connect(url)
        try:
            if citus:
                await conn.execute("SET citus.override_table_visibility = off")
            total += await conn.fetchval(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'm')"
            )
        finally:
            await conn.close()
    return total


async def read_pages(
    port: int, key: str, data: sd.Data, iterations: int, warmup: int
) -> dict[str, dict[str, Any]]:
    """First pages of 20 of the hot project, pages deep into its sealed lines, its histograms:
    p50/p95 over interleaved requests."""
    hot = data.hot
    pages = {f"keyword, {label}": {"keyword": word} for label, word in sd.KEYWORDS.items()}
    pages |= {
        "no filter": {},
        "function_id (its busiest)": {"function_id": hot.functions[0]},
        "level=error": {"level": "error"},
    }
    client = HttpClient(port, {"Gram-Key": key, "Gram-Project": hot.slug})
    paths = {
        name: f"{PAGE}?{urlencode({'per_page': 20, **params})}" for name, params in pages.items()
    }
    paths |= seal.deep_pages(data) | seal.histograms(data)
    rows = {}
    for name, path in paths.items():
        status, body = client.get(path)
        if status != 200:
            raise RuntimeError(f"{name}: {status} {body[:300]!r}")
        answer = json.loads(body)
        # A page's rows; a histogram's lines (all of the hot project's, without a filter).
        rows[name] = len(answer["logs"]) if "logs" in answer else answer["total"]
    if rows["histogram, whole window"] != hot.lines:
        raise RuntimeError(f"the histogram counts {rows['histogram, whole window']:,} lines")

    def step(path: str) -> Any:
        async def get() -> None:
            client.get(path)

        return get

    samples = await timing.timed_loop(
        {name: step(path) for name, path in paths.items()}, iterations=iterations, warmup=warmup
    )
    client.close()
    return {name: {"rows": rows[name], **percentiles(s)} for name, s in samples.items()}


async def _sealing(
    url: str,
    node_urls: list[str],
    data: sd.Data,
    workers: list[tuple[str, int]],
    unsealed: seal.UnsealedSampler,
    caught: dict[str, Any],
    counters: list[dict[str, float]],
    load: dict[str, Any],
    cpu: dict[str, float],
) -> dict[str, Any]:
    """What sealing kept unsealed, cost and saved, once it has caught up with the load."""
    lines = data.spec.lines
    during, after = seal.counted(*counters[:2]), seal.counted(*counters[1:])
    seal_s = during["seal_s"] + after["seal_s"]
    out: dict[str, Any] = {
        "unsealed": unsealed.summary(),
        "catch_up": caught,
        "during_load": during,
        "during_catch_up": after,
        "seal_share_of_load_s": round(during["seal_s"] / load["seconds"], 3),
        "seal_share_with_catch_up_s": round(seal_s / (load["seconds"] + caught["seconds"]), 3),
        "server_cpu_s": round(cpu["server"], 1),
        "seal_share_of_server_cpu": round(seal_s / cpu["server"], 3) if cpu["server"] else None,
    }
    out["bytes"] = await database_bytes(node_urls, citus=bool(workers))
    out["groups"] = None if workers else await seal.bytes_by_group(url)
    out["live"] = None if workers else await seal.live_bytes(url)
    print("VACUUM ...", file=sys.stderr, flush=True)
    out["vacuum_s"] = sum([await seal.vacuum(u) for u in node_urls])
    out["bytes_vacuumed"] = await database_bytes(node_urls, citus=bool(workers))
    out["groups_vacuumed"] = None if workers else await seal.bytes_by_group(url)
    out["bytes_per_line"] = round(out["bytes"] / lines, 1)
    out["bytes_per_line_vacuumed"] = round(out["bytes_vacuumed"] / lines, 1)
    return out


# -- the run ------------------------------------------------------------------------------------


async def _execute(url: str, sql: str) -> Any:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


@contextlib.contextmanager
def _postgres(args: argparse.Namespace) -> Iterator[tuple[str, list[tuple[str, int]]]]:
    """The PostgreSQL to run on (its admin URL) and, on Citus, the workers."""
    if not args.citus:
        yield args.database_url or datasets.server_url(), []
        return
    from gramlogs.local.cluster import citus_installed
    from testkit.citus import local_cluster

    if not citus_installed():
        raise SystemExit(
            "--citus: Citus is not built into the embedded PostgreSQL; build it with"
            " `make citus CITUS_SOURCE=/path/to/citus-14.x.tar.gz` (about 2 minutes)"
        )
    with local_cluster(2) as cluster:
        yield cluster.url, cluster.workers


async def run_gramlogs(
    args: argparse.Namespace, data: sd.Data, admin_url: str, workers: list[tuple[str, int]]
) -> dict[str, Any]:
    """Load the lines through a real server on a fresh database, then read pages from it."""
    name = f"scale_{secrets.token_hex(4)}"
    url = with_database(admin_url, name)
    if workers:
        from testkit.citus import prepare_database

        await prepare_database(admin_url, workers, name, create=True)
        conn = await asyncpg.connect(url)
        try:
            await schema.migrate(conn)
            await citus.distribute(conn)
        finally:
            await conn.close()
    else:
        await _execute(admin_url, f"CREATE DATABASE {name}")
    try:
        # The server migrates an empty database and makes its partitions as it starts.
        with gramlogs_server(url, workers=args.workers) as server:
            producers, consumer = await make_tenants(url, data)
            admin = await asyncpg.connect(admin_url)
            meter = CpuMeter(admin, name, server.process.pid)
            counters = [seal.scrape(server.port)]
            await meter.start()
            slices = timing.Slices("gramlogs", data.spec.lines, args.slice)
            async with seal.UnsealedSampler(url) as unsealed:
                out = await load_gramlogs(server.url, data, producers, args.clients, slices)
            out["cpu_s"] = await meter.stop()
            counters.append(seal.scrape(server.port))
            node_urls = [url] + [f"postgresql://postgres@{a}:{p}/{name}" for a, p in workers]
            out["bytes"] = await database_bytes(node_urls, citus=bool(workers))
            print("waiting for sealing to catch up ...", file=sys.stderr, flush=True)
            caught = await seal.catch_up(url)
            cpu = await meter.stop()  # the load and the catch-up
            counters.append(seal.scrape(server.port))
            await admin.close()
            out["sealing"] = await _sealing(
                url, node_urls, data, workers, unsealed, caught, counters, out, cpu
            )
            print("reading pages ...", file=sys.stderr, flush=True)
            out["pages"] = await read_pages(server.port, consumer, data, args.reads, args.warmup)
        return out
    finally:
        if not args.keep:
            if workers:
                from testkit.citus import prepare_database

                await prepare_database(admin_url, workers, name, create=False)
            else:
                await _execute(admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


async def run_copy(args: argparse.Namespace, data: sd.Data, admin_url: str) -> dict[str, Any]:
    """Load the lines into the floor table of a fresh database; its size."""
    async with datasets.fresh_database(admin_url, "scale_copy", keep=args.keep) as (url, name):
        await _execute(url, FLOOR_TABLE.format(name=FLOOR))
        admin = await asyncpg.connect(admin_url)
        conns = [await asyncpg.connect(url) for _ in range(args.clients)]
        meter = CpuMeter(admin, name, None)  # the clients' backends are connected by now
        await meter.start()
        out = await load_copy(conns, data, timing.Slices("COPY", data.spec.lines, args.slice))
        out["cpu_s"] = await meter.stop()
        for conn in conns:
            await conn.close()
        await admin.close()
        out["bytes"] = await _execute(url, f"SELECT pg_total_relation_size('{FLOOR}')")
        return out


async def main(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    spec = sd.Spec(args.lines, args.projects, args.batch, args.seed)
    data = await asyncio.to_thread(sd.load, spec)
    args.slice = timing.slice_size(args.lines, args.slice, args.batch, args.clients)
    with _postgres(args) as (admin_url, workers):
        pg = await _execute(admin_url, "SHOW server_version")
        missing = clickhouse_missing()
        info = machine(pg, "chdb") | {"citus": bool(args.citus)}
        print_machine(info)
        print(f"COPY floor: {args.lines:,} lines ...", file=sys.stderr, flush=True)
        floor = await run_copy(args, data, admin_url)
        print(f"gramlogs: {args.lines:,} lines over HTTP ...", file=sys.stderr, flush=True)
        gram = await run_gramlogs(args, data, admin_url, workers)
    if missing:
        print(f"ClickHouse part skipped: {missing}", flush=True)
        house: dict[str, Any] = {"skipped": missing}
    else:
        print(f"ClickHouse: {args.lines:,} lines ...", file=sys.stderr, flush=True)
        slices = timing.Slices("ClickHouse", args.lines, args.slice)
        house = await asyncio.to_thread(load_clickhouse, data, slices, args.reads, args.warmup)
    info["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    result = {
        "benchmark": "scale_ingest",
        "command": args.command,
        "machine": info,
        "data": _describe(data),
        "clients": args.clients,
        "workers": args.workers,
        "slice": args.slice,
        "gramlogs": gram,
        "copy": floor,
        "clickhouse": house,
        "seconds": round(time.perf_counter() - started, 1),
    }
    result["targets"] = targets(result)
    publish("scale_ingest", result, render(result), write_to=args.write_to)
    return result


def _describe(data: sd.Data) -> dict[str, Any]:
    hot = data.hot
    return {
        "lines": data.spec.lines,
        "projects": data.spec.projects,
        "batch": data.spec.batch,
        "seed": data.spec.seed,
        "base": data.base.isoformat(),
        "span_hours": data.spec.span_hours,
        "body_bytes": data.body_bytes,
        "line_bytes": data.line_bytes,
        "hot": {"slug": hot.slug, "lines": hot.lines, "rare": hot.rare, "frequent": hot.frequent},
        "words": {"rare": sd.RARE, "frequent": sd.FREQUENT, "absent": sd.ABSENT},
        "generated_s": data.generated_s,
        "cache": str(data.folder),
    }


def _options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lines", type=int, default=10_000_000, help="lines to load (10,000,000)")
    p.add_argument("--projects", type=int, default=100, help="projects (100)")
    p.add_argument("--clients", type=int, default=4, help="concurrent clients of each load (4)")
    p.add_argument("--batch", type=int, default=5000, help="lines per request (5,000)")
    p.add_argument("--workers", type=int, default=1, help="gramlogs server processes (1)")
    p.add_argument("--slice", type=int, default=1_000_000, help="lines per timed slice (1M)")
    p.add_argument("--reads", type=int, default=50, help="requests per page (50)")
    p.add_argument("--warmup", type=int, default=5, help="warm-up requests per page (5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--database-url", help="a PostgreSQL server (default: embedded)")
    p.add_argument("--citus", action="store_true", help="gramlogs on a local Citus cluster")
    p.add_argument("--keep", action="store_true", help="keep the databases")


def _smoke(args: argparse.Namespace) -> None:
    args.lines, args.projects, args.batch, args.reads, args.warmup = 20_000, 5, 1000, 10, 2


if __name__ == "__main__":
    runner.run(
        "scale_ingest",
        __doc__,
        main,
        options=_options,
        smoke=_smoke,
        smoke_help="20,000 lines, 5 projects",
        results=runner.results_file("scale_ingest"),
    )
