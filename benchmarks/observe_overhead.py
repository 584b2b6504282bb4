"""What the per-request observation (request id, JSON access log, metrics) costs.

Three copies of the application on one database, called side by side in the same run:

- ``bare``: no Observe middleware (the baseline),
- ``metrics``: Observe with the access log off (request id + metrics),
- ``full``: Observe with the JSON access log written through a real logging handler (to
  /dev/null, as a log shipper reading stdout would cost about the same to us).

Requests are ASGI calls in process (no sockets), interleaved across the variants (in a shuffled
order each round) so that machine noise falls on all of them alike; two routes: the Gram
endpoint (a 20-row page of a seeded project, one database round trip) and ``/healthz`` (no
database: the middleware's cost alone). Prints machine, versions, medians and percentiles,
ratios to ``bare``, and one JSON line.

    .venv/bin/python -m benchmarks.observe_overhead            # about a minute
    .venv/bin/python -m benchmarks.observe_overhead --smoke    # seconds
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import platform
import random
import statistics
import sys
import time
from datetime import UTC, datetime
from typing import Any

import asyncpg

from benchmarks import runner
from benchmarks.harness import server_url
from benchmarks.results import json_line
from gramlogs.core.config import Config
from gramlogs.core.keys import KeyScope
from gramlogs.local.seed import SeedPlan, seed_logs
from gramlogs.storage import schema, tenants
from gramlogs.web.app import create_app

URL = "/rpc/logs.listToolExecutionLogs"


async def prepare(url: str, rows: int) -> tuple[str, str]:
    """A project of ``rows`` seeded lines (made once, reused) and a fresh key to read it."""
    name = f"bench-observe-{rows}"
    conn = await asyncpg.connect(url)
    try:
        await schema.migrate(conn)
        try:
            org = await tenants.resolve_organization(conn, name)
        except tenants.TenantError:
            org = await tenants.create_organization(conn, name)
            project = await tenants.create_project(conn, org, "bench")
            end = datetime(2025, 6, 1, tzinfo=UTC)
            await seed_logs(conn, SeedPlan(project, rows=rows, end=end, seed=1))
        key = await tenants.create_key(conn, org, KeyScope.CONSUMER)
    finally:
        await conn.close()
    return key.key, "bench"


def scope_for(path: str, query: bytes, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
    }


async def call(app: Any, template: dict[str, Any]) -> int:
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    scope = dict(template)
    scope["headers"] = list(template["headers"])
    started = time.perf_counter_ns()
    await app(scope, receive, send)
    elapsed = time.perf_counter_ns() - started
    if status != 200:
        raise RuntimeError(f"{template['path']} answered {status}")
    return elapsed


def percentile(values: list[int], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    url = args.database_url or server_url()
    key, slug = await prepare(url, args.rows)

    base = Config(database_url=url, pool_min=2, pool_max=2)
    apps = {
        "bare": create_app(base),
        "metrics": create_app(dataclasses.replace(base, access_log=False)),
        "full": create_app(base),
    }
    apps["bare"].user_middleware.clear()  # built on first call: no Observe in this one
    headers = [(b"gram-key", key.encode()), (b"gram-project", slug.encode())]
    routes = {
        "gram": scope_for(URL, b"per_page=20", headers),
        "healthz": scope_for("/healthz", b"", []),
    }
    samples: dict[tuple[str, str], list[int]] = {(r, v): [] for r in routes for v in apps}
    contexts = [app.router.lifespan_context(app) for app in apps.values()]
    for ctx in contexts:
        await ctx.__aenter__()
    try:
        order = list(apps.items())
        rng = random.Random(0)
        for route, template in routes.items():
            for i in range(args.warmup + args.requests):
                rng.shuffle(order)  # no variant always runs first (or last) in a round
                for variant, app in order:
                    elapsed = await call(app, template)
                    if i >= args.warmup:
                        samples[(route, variant)].append(elapsed)
    finally:
        for ctx in reversed(contexts):
            await ctx.__aexit__(None, None, None)

    result: dict[str, Any] = {"benchmark": "observe_overhead", "requests": args.requests}
    print(f"machine: {platform.machine()} {os.cpu_count()} cpus, {platform.platform()}")
    print(f"python {sys.version.split()[0]}, loop: asyncio (in-process ASGI calls, no sockets)")
    print(f"{args.requests} requests per variant and route after {args.warmup} warm-up; µs\n")
    print(
        f"{'route':<8} {'variant':<8} {'p50':>8} {'p90':>8} {'p99':>8} {'p50/bare':>9}"
        f" {'paired Δ p50':>13}"
    )
    for route in routes:
        bare_values = samples[(route, "bare")]
        bare = statistics.median(bare_values)
        for variant in apps:
            values = samples[(route, variant)]
            p50 = statistics.median(values)
            # Each round ran every variant once, back to back: the median of the per-round
            # differences cancels most of the drift of a shared machine.
            paired = statistics.median(v - b for v, b in zip(values, bare_values, strict=True))
            row = {
                "p50_us": round(p50 / 1000, 1),
                "p90_us": round(percentile(values, 0.90) / 1000, 1),
                "p99_us": round(percentile(values, 0.99) / 1000, 1),
                "p50_ratio": round(p50 / bare, 3),
                "paired_delta_p50_us": round(paired / 1000, 1),
            }
            result[f"{route}.{variant}"] = row
            print(
                f"{route:<8} {variant:<8} {row['p50_us']:>8} {row['p90_us']:>8} {row['p99_us']:>8}"
                f" {row['p50_ratio']:>8}x {row['paired_delta_p50_us']:>+12}"
            )
    return result


async def main(args: argparse.Namespace) -> None:
    # As `gramlogs serve` sets it up, but into /dev/null.
    access = logging.getLogger("gramlogs.access")
    handler = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115, ASYNC230
    handler.setFormatter(logging.Formatter("%(message)s"))
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    access.propagate = False
    json_line("observe_overhead", await run(args))


def _options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--database-url", help="PostgreSQL URL (default: embedded, in .cache)")
    p.add_argument("--requests", type=int, default=3000)
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--rows", type=int, default=20_000)


def _smoke(args: argparse.Namespace) -> None:
    args.requests, args.warmup, args.rows = 100, 20, 500


if __name__ == "__main__":
    runner.run(
        "observe_overhead",
        __doc__,
        main,
        options=_options,
        smoke=_smoke,
        smoke_help="a few seconds, to check it runs",
        loop="asyncio",
    )
