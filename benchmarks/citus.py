"""gramlogs on a Citus cluster beside one PostgreSQL, with the same rows, in one run.

How it measures, and how to run it: docs/benchmarks.md, "citus".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx

from benchmarks import producer, runner
from benchmarks.results import json_line, machine, percentiles, print_machine
from gramlogs.core.keys import KeyScope
from gramlogs.storage import citus, maintenance, pages, routing, schema, tenants
from gramlogs.web.gram import parse_list_query
from testkit import datasets
from testkit.citus import local_cluster, prepare_database
from testkit.ports import HOST
from testkit.postgres import own_postgres, with_database
from testkit.serve import gramlogs_server

URL = "/rpc/logs.listToolExecutionLogs"
INGEST = producer.INGEST
DATABASE = "bench"
NEWCOMER = "newcomer"
# The seeded lines are rows of logs; the servers leave them so until the benchmark seals them
# itself (_seal_all), so that both targets are measured with the same layout at each stage.
NO_SEALING = {"GRAMLOGS_SEAL_INTERVAL_S": "0"}


async def _scenarios(url: str, end_iso: str) -> dict[str, dict[str, str]]:
    """The scale suite's page scenarios of the hot project, their values read from the data."""
    conn = await asyncpg.connect(url)
    try:
        newest = await conn.fetchrow(
            "SELECT l.function_id, l.deployment_id, l.instance FROM logs l"
            " JOIN projects p ON p.id = l.project_id WHERE p.slug = 'p000'"
            " ORDER BY l.id DESC LIMIT 1"
        )
        deep = {}
        for share in (50, 95):
            deep[share] = await conn.fetchval(
                "SELECT l.id FROM logs l JOIN projects p ON p.id = l.project_id"
                " WHERE p.slug = 'p000' ORDER BY l.id DESC"
                " OFFSET (SELECT count(*) * $1 / 100 FROM logs l JOIN projects p"
                " ON p.id = l.project_id WHERE p.slug = 'p000') LIMIT 1",
                share,
            )
    finally:
        await conn.close()
    assert newest is not None
    return {
        "first page": {},
        "first page, 100 rows": {"per_page": "100"},
        "function": {"function_id": str(newest["function_id"])},
        "deployment": {"deployment_id": str(newest["deployment_id"])},
        "instance": {"instance": newest["instance"]},
        "level=error": {"level": "error"},
        "page 50% deep": {"cursor": str(deep[50])},
        "page 95% deep": {"cursor": str(deep[95])},
        "keyword timeout": {"keyword": "timeout"},
        "keyword absent": {"keyword": "wombat"},
        "last hour": {"ts_start": end_iso},
    }


async def _page_p50s(
    targets: dict[str, str],
    keys: dict[str, str],
    scenarios: dict[str, dict[str, str]],
    n: int,
    slug: str = "p000",
) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    async with httpx.AsyncClient(timeout=30) as client:
        for name, params in scenarios.items():
            samples: dict[str, list[float]] = {t: [] for t in targets}
            for i in range(n + 5):
                # Alternate which goes first, so that neither always runs on a warmer machine.
                order = list(targets.items()) if i % 2 else list(reversed(targets.items()))
                for target, base in order:
                    started = time.perf_counter()
                    headers = {"Gram-Key": keys[target], "Gram-Project": slug}
                    r = await client.get(
                        base + URL, params={"per_page": "20", **params}, headers=headers
                    )
                    elapsed = time.perf_counter() - started
                    assert r.status_code == 200, r.text
                    if i >= 5:
                        samples[target].append(elapsed)
            stats = {t: percentiles(s) for t, s in samples.items()}
            ratio = stats["cluster"]["p50"] / stats["single"]["p50"]
            results[name] = {
                "single": stats["single"],
                "cluster": stats["cluster"],
                "ratio_p50": round(ratio, 2),
            }
            print(
                f"  {name:<22} single {stats['single']['p50']:7.2f} ms"
                f"  cluster {stats['cluster']['p50']:7.2f} ms  x{ratio:.2f}",
                flush=True,
            )
    return results


# What a page's statements are, by a piece of their text: the rows (the page statement or the
# function standing for it), the blocks listed, their keys and their texts (sealed.py).
_STATEMENTS = {
    "rows": ("gramlogs_page_rows(", "AS has_back FROM logs"),
    "blocks": ("SELECT function_id, lo, hi, lines FROM log_sealed",),
    "keys": ("b.keys FROM",),
    "texts": ("b.texts[",),
}


class _Timed:
    """A connection whose statements are timed, by kind (:data:`_STATEMENTS`)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.spent: dict[str, float] = {}

    def __getattr__(self, name: str) -> Any:
        found = getattr(self.conn, name)
        if name not in ("fetch", "fetchval", "fetchrow", "execute"):
            return found

        async def timed(sql: str, *args: object) -> Any:
            started = time.perf_counter()
            try:
                return await found(sql, *args)
            finally:
                kind = next(
                    (k for k, ps in _STATEMENTS.items() if any(p in sql for p in ps)), "other"
                )
                self.spent[kind] = self.spent.get(kind, 0.0) + time.perf_counter() - started

        return timed


async def _where_time_goes(
    urls: dict[str, str], scenarios: dict[str, dict[str, str]], n: int
) -> dict[str, dict[str, Any]]:
    """The page (pages.fetch_page) run directly, as the servers' pools run it, on each target
    (on its own hot project: until 2026-12-07 the cluster read the single node's project id,
    an empty page), its statements timed by kind; on the cluster also as it ran before the page
    function (the statement planned by the worker for its values: ``cluster, statement``), with
    the worker's own planning and running times of that statement (EXPLAIN ANALYZE on the
    coordinator shows the worker's)."""
    settings = pages.PLAN_SETTINGS
    conns = {
        "single": await asyncpg.connect(urls["single"], server_settings=settings),
        # One PostgreSQL planning each statement for its values, as the cluster's workers did.
        "single, custom plans": await asyncpg.connect(
            urls["single"], server_settings=settings | {"plan_cache_mode": "force_custom_plan"}
        ),
        "cluster, statement": await asyncpg.connect(urls["cluster"], server_settings=settings),
        "cluster": await asyncpg.connect(
            urls["cluster"], server_settings=settings, connection_class=routing.RoutedConnection
        ),
    }
    for conn in conns.values():
        await citus.prepare_connection(conn)
    assert routing.delegates(conns["cluster"]), "the page function is not distributed"
    results: dict[str, dict[str, Any]] = {}
    try:
        # Each target made its projects: the same slugs, other ids.
        projects = {
            t: await c.fetchval("SELECT id FROM projects WHERE slug = 'p000'")
            for t, c in conns.items()
        }
        for name, params in scenarios.items():
            query = parse_list_query({"per_page": "20", **params})
            requests = {t: query.page_request(p) for t, p in projects.items()}
            samples: dict[str, list[float]] = {t: [] for t in conns}
            parts: dict[str, dict[str, list[float]]] = {t: {} for t in conns}
            for i in range(n + 5):
                for target, conn in conns.items():
                    timed = _Timed(conn)
                    started = time.perf_counter()
                    await pages.fetch_page(timed, requests[target])  # type: ignore[arg-type]
                    if i >= 5:
                        samples[target].append(time.perf_counter() - started)
                        for kind, spent in timed.spent.items():
                            parts[target].setdefault(kind, []).append(spent)
            worker = await _worker_times(conns["cluster, statement"], requests["cluster"])
            r: dict[str, Any] = {t: percentiles(s)["p50"] for t, s in samples.items()} | worker
            r["statements"] = {
                t: {k: round(percentiles(v)["p50"], 3) for k, v in kinds.items()}
                for t, kinds in parts.items()
            }
            results[name] = r
            each = "  ".join(f"{k} {v:.2f}" for k, v in r["statements"]["cluster"].items())
            print(
                f"  {name:<22} single {r['single']:6.2f} ms"
                f" (custom plans {r['single, custom plans']:6.2f})"
                f"  cluster {r['cluster']:6.2f} ({each})"
                f"  cluster, statement {r['cluster, statement']:6.2f}"
                f" (worker: planning {r['worker_planning']:5.2f},"
                f" execution {r['worker_execution']:5.2f} ms)",
                flush=True,
            )
    finally:
        for conn in conns.values():
            await conn.close()
    return results


async def _worker_times(
    conn: asyncpg.Connection, request: pages.PageRequest, n: int = 15
) -> dict[str, float]:
    """Medians of the worker's planning and execution times over ``n`` runs."""
    runs = [await _worker_time(conn, request) for _ in range(n)]
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


async def _worker_time(conn: asyncpg.Connection, request: pages.PageRequest) -> dict[str, float]:
    # A keyword page's statement here is the ordered walk (pages.page_query); the page as
    # shipped (probe, then block summaries) is several statements, timed end to end above.
    sql, args = pages.page_query(request)
    async with conn.transaction():
        if request.filter.keyword is not None:
            await conn.execute(pages.KEYWORD_SETTINGS)
        plan = await conn.fetchval("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, *args)
    found: dict[str, float] = {}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            # The first remote plan met is the worker's (one task: a router query).
            if "Remote Plan" in node and not found:
                remote = node["Remote Plan"][0][0]
                found["worker_planning"] = remote.get("Planning Time", 0.0)
                found["worker_execution"] = remote.get("Execution Time", 0.0)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(plan) if isinstance(plan, str) else plan)
    return found or {"worker_planning": float("nan"), "worker_execution": float("nan")}


async def _seal_all(url: str) -> float:
    """Seal every line and merge the small blocks, as the server's sealing does, until nothing
    is left to do; then VACUUM ANALYZE. Seconds taken."""
    conn = await asyncpg.connect(url)
    try:
        started = time.perf_counter()
        while True:
            report = await maintenance.seal(conn)
            if not report.sealed_lines and not report.merged_blocks:
                break
        await conn.execute("VACUUM (ANALYZE) logs, log_sealed")
        return time.perf_counter() - started
    finally:
        await conn.close()


async def _newcomer(
    urls: dict[str, str], workers: list[tuple[str, int]], lines: int, n: int
) -> dict[str, Any]:
    """What a newcomer sees: a new database on each target (the cluster's distributed), a
    server with the default settings, ``lines`` sent through the API over the last 30 days in
    batches of 1,000 (stored straight into sealed blocks, merged by the server's sealing), and
    the first pages (no cursor) read at once: no ANALYZE run, no statistics but what autovacuum
    gathered meanwhile."""
    keys: dict[str, str] = {}
    producers: dict[str, str] = {}
    for target, server in urls.items():
        if target == "cluster":
            await prepare_database(server, workers, NEWCOMER, create=True)
        else:
            admin = await asyncpg.connect(server)
            await admin.execute(f"CREATE DATABASE {NEWCOMER}")
            await admin.close()
        conn = await asyncpg.connect(with_database(server, NEWCOMER))
        try:
            await schema.migrate(conn)
            if target == "cluster":
                await citus.distribute(conn)
            org = await tenants.create_organization(conn, "newcomer")
            await tenants.create_project(conn, org, NEWCOMER)
            keys[target] = (await tenants.create_key(conn, org, KeyScope.CONSUMER)).key
            producers[target] = (await tenants.create_key(conn, org, KeyScope.PRODUCER)).key
        finally:
            await conn.close()
    start = datetime.now(UTC) - timedelta(days=30)
    bodies = producer.make_batches(lines, 1000, 5, start, timedelta(days=30) / lines)
    out: dict[str, Any] = {"lines": lines}
    databases = {t: with_database(u, NEWCOMER) for t, u in urls.items()}
    with gramlogs_server(databases["single"]) as s1, gramlogs_server(databases["cluster"]) as s2:
        targets = {"single": s1.url, "cluster": s2.url}
        for target, base in targets.items():
            head = producer.headers(producers[target], NEWCOMER)
            sent = await producer.send(base, ((head, b, b.count(b"\n")) for b in bodies), 1)
            out.setdefault("ingest_lines_per_s", {})[target] = round(sent.rate)
        print(f"newcomer: {lines:,} lines over 30 days sent to each; first pages at once:")
        scenarios = {"first page": {}, "first page, 100 rows": {"per_page": "100"}}
        out["pages"] = await _page_p50s(targets, keys, scenarios, n, slug=NEWCOMER)
    return out


def _bodies(lines: int, batch: int, seed: int) -> list[bytes]:
    return producer.make_batches(lines, batch, seed, datetime.now(UTC) - timedelta(hours=1))


async def _ingest_rate(base: str, key: str, lines: int, clients: int = 4) -> float:
    head = producer.headers(key, "p001")
    batches = ((head, b, b.count(b"\n")) for b in _bodies(lines, 1000, 3))
    return (await producer.send(base, batches, clients)).rate


async def _under_load(
    base: str, consumer: str, producer_key: str, during: Callable[[], Awaitable[Any]]
) -> tuple[Any, dict[str, Any]]:
    """Run ``during`` while one client ingests batches of 100 and one reads first pages."""
    reads: list[float] = []
    writes: list[float] = []
    statuses: dict[int, int] = {}
    stop = asyncio.Event()
    async with httpx.AsyncClient(timeout=60) as client:

        async def timed(samples: list[float], call: Awaitable[httpx.Response]) -> None:
            started = time.perf_counter()
            r = await call
            samples.append(time.perf_counter() - started)
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1

        async def reader() -> None:
            headers = {"Gram-Key": consumer, "Gram-Project": "p000"}
            while not stop.is_set():
                await timed(reads, client.get(base + URL, params={"per_page": 20}, headers=headers))

        async def writer() -> None:
            headers = producer.headers(producer_key, "p002")
            bodies = _bodies(100 * 200, 100, 9)
            batch = 0
            while not stop.is_set():
                body = bodies[batch % len(bodies)]
                await timed(writes, client.post(base + INGEST, content=body, headers=headers))
                batch += 1

        load = [asyncio.create_task(reader()), asyncio.create_task(writer())]
        started = time.perf_counter()
        result = await during()
        seconds = time.perf_counter() - started
        stop.set()
        await asyncio.gather(*load)
    return result, {
        "seconds": round(seconds, 1),
        "reads": percentiles(reads),
        "writes_100_lines": percentiles(writes),
        "statuses": statuses,
    }


async def _producer_key(url: str) -> str:
    from gramlogs.core.keys import KeyScope
    from gramlogs.storage import tenants

    conn = await asyncpg.connect(url)
    try:
        org = await conn.fetchval("SELECT id FROM organizations LIMIT 1")
        made = await tenants.create_key(conn, org, KeyScope.PRODUCER, name="bench producer")
    finally:
        await conn.close()
    key: str = made.key
    return key


async def main(args: argparse.Namespace) -> dict[str, Any]:
    spec = datasets.DatasetSpec(
        args.rows, 100, 0.2, args.days, 1, partition_days=args.partition_days
    )
    os.environ["GRAMLOGS_PARTITION_DAYS"] = str(args.partition_days)  # for the servers too
    out: dict[str, Any] = {
        "rows": args.rows,
        "days": args.days,
        "partition_days": args.partition_days,
    }
    with own_postgres("gramlogs-bench-single-") as single, local_cluster(2) as cluster:
        admin = await asyncpg.connect(single.url)
        await admin.execute(f"CREATE DATABASE {DATABASE}")
        out["machine"] = machine(await admin.fetchval("SHOW server_version"))
        await admin.close()
        print_machine(out["machine"])
        servers = {"single": single.url, "cluster": cluster.url}
        if args.newcomer_lines:
            out["newcomer"] = await _newcomer(servers, cluster.workers, args.newcomer_lines, args.n)
        single_url = with_database(single.url, DATABASE)
        cluster_url = with_database(cluster.url, DATABASE)
        urls = {"single": single_url, "cluster": cluster_url}
        await prepare_database(cluster.url, cluster.workers, DATABASE, create=True)

        seeded: dict[str, Any] = {}
        for target, url in urls.items():
            started = time.perf_counter()
            seeded[target] = await datasets.seed_dataset(spec, url, distribute=target == "cluster")
            rate = args.rows / (time.perf_counter() - started)
            out.setdefault("seed_rows_per_s", {})[target] = round(rate)
            print(f"seeded {target}: {rate:,.0f} rows/s (COPY, indexes, VACUUM ANALYZE)")
        end_iso = (seeded["single"].end - timedelta(hours=1)).isoformat()
        scenarios = await _scenarios(single_url, end_iso)
        producer_single = await _producer_key(single_url)
        producer_cluster = await _producer_key(cluster_url)

        keys = {t: d.key for t, d in seeded.items()}
        single_server = gramlogs_server(single_url, settings=NO_SEALING)
        cluster_server = gramlogs_server(cluster_url, settings=NO_SEALING)
        with single_server as s1, cluster_server as s2:
            targets = {"single": s1.url, "cluster": s2.url}
            for stage in ("rows", "sealed"):
                if stage == "sealed":
                    out["seal_s"] = {t: round(await _seal_all(u), 1) for t, u in urls.items()}
                    print(f"every line sealed: {out['seal_s']} s")
                print(f"pages, lines {stage} (hot project, p50 over alternating requests):")
                out[f"pages_{stage}"] = await _page_p50s(targets, keys, scenarios, args.n)
                print(f"where the time goes, lines {stage} (pages run directly, p50):")
                out[f"sql_{stage}"] = await _where_time_goes(urls, scenarios, args.n)
            rates = {}
            for target, key in (("single", producer_single), ("cluster", producer_cluster)):
                rates[target] = round(await _ingest_rate(targets[target], key, args.ingest))
            out["ingest_lines_per_s"] = rates
            out["ingest_ratio"] = round(rates["cluster"] / rates["single"], 2)
            print(
                f"ingestion (NDJSON, 4 clients): single {rates['single']:,} lines/s,"
                f" cluster {rates['cluster']:,} lines/s (x{out['ingest_ratio']})"
            )

            consumer = seeded["cluster"].key
            _, before = await _under_load(
                targets["cluster"],
                consumer,
                producer_cluster,
                lambda: asyncio.sleep(args.baseline_s),
            )
            node = await asyncio.to_thread(cluster.cluster.extra_worker, "worker3", DATABASE)
            conn = await asyncpg.connect(cluster_url)
            try:
                rows = await conn.fetchval(
                    "SELECT (SELECT count(*) FROM logs)"
                    " + (SELECT coalesce(sum(lines), 0) FROM log_sealed)"
                )

                async def grow() -> int:
                    await citus.add_worker(conn, HOST, node.port)
                    return await citus.rebalance(conn, poll_s=0.2)

                moves, during = await _under_load(
                    targets["cluster"], consumer, producer_cluster, grow
                )
                placements = await citus.shard_placements(conn)
            finally:
                await conn.close()
        out["rebalance"] = {
            "rows": rows,
            "moves": moves,
            "placements": placements,
            "before": before,
            "during": during,
        }
        print(
            f"rebalance onto a third worker: {moves} shard group move(s), {rows:,} rows,"
            f" {during['seconds']} s; reads p50/p99 {during['reads']['p50']:.1f}/"
            f"{during['reads']['p99']:.1f} ms (before {before['reads']['p50']:.1f}/"
            f"{before['reads']['p99']:.1f}); ingest p50/p99"
            f" {during['writes_100_lines']['p50']:.1f}/{during['writes_100_lines']['p99']:.1f}"
            f" ms (before {before['writes_100_lines']['p50']:.1f}/"
            f"{before['writes_100_lines']['p99']:.1f}); statuses {during['statuses']}"
        )
    json_line("citus", out)
    return out


def _options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--n", type=int, default=100, help="requests per scenario and target")
    p.add_argument("--ingest", type=int, default=40_000, help="lines ingested per target")
    p.add_argument("--baseline-s", type=float, default=10.0)
    p.add_argument("--partition-days", type=int, default=7, help="width of the partitions")
    p.add_argument("--days", type=float, default=30.0, help="the span of the seeded lines")
    p.add_argument(
        "--newcomer-lines",
        type=int,
        default=200_000,
        help="lines sent through the API to new databases before the first pages (0: none)",
    )


def _smoke(args: argparse.Namespace) -> None:
    args.rows, args.n, args.ingest, args.baseline_s = 20_000, 10, 2_000, 2.0
    args.newcomer_lines = 5_000


if __name__ == "__main__":
    runner.run(
        "citus",
        __doc__,
        main,
        options=_options,
        smoke=_smoke,
        smoke_help="20,000 lines, 10 requests",
        loop="asyncio",
    )
