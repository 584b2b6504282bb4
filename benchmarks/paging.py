"""Keyset paging end to end: is a deep page as fast as the first, and how much does
the HTTP layer add to the query?

How it measures, and how to run it: docs/benchmarks.md, "paging".
"""

from __future__ import annotations

import argparse
import shutil

import asyncpg

from benchmarks import runner
from benchmarks import scenarios as sc
from benchmarks.results import fmt_ms, json_line, machine, print_machine
from testkit import datasets
from testkit.http import HttpClient
from testkit.serve import gramlogs_server
from testkit.wrk import run_wrk


async def main(args: argparse.Namespace) -> None:
    spec = datasets.DatasetSpec(
        rows=20_000 if args.smoke else 1_000_000,
        projects=20,
        seed=2,
        partition_days=args.partition_days,
    )
    iterations, warmup = (30, 5) if args.smoke else (args.iterations, 50)
    wrk = shutil.which("wrk")
    ds = await datasets.dataset(spec)
    admin = await asyncpg.connect(ds.url)
    info = machine(await admin.fetchval("SHOW server_version"))
    await admin.close()
    print_machine(info)
    slug = ds.slugs[0]
    print(f"dataset {spec.name}: {spec.rows:,} rows, project {slug} has {spec.rows_of(0):,}")

    conn = await sc.sql_connection(ds.url)
    project = await sc.project_id(conn, slug)
    await _make_floor(conn)
    partitions = await conn.fetchval(
        "SELECT count(*) FROM pg_inherits WHERE inhparent = 'logs'::regclass"
    )
    print(f"logs has {partitions} partitions of {spec.partition_days} day(s)")
    scenarios = [
        sc.Scenario(f"pp{pp} {where}", {"per_page": str(pp)}, depth)
        for pp in (20, 100)
        for where, depth in (("first", 0.0), ("95% deep", 0.95))
    ]
    prepared = [await sc.prepare(conn, project, s) for s in scenarios]
    results = {}
    with gramlogs_server(ds.url) as server:
        client = HttpClient(server.port, {"Gram-Key": ds.key, "Gram-Project": slug})
        status, body = client.get(prepared[-2].path)  # a 100-row page: the bare app's body
        assert status == 200, body
        for p in prepared:
            results[p.scenario.name] = await sc.measure(
                p, client, conn, iterations=iterations, warmup=warmup, offset=False, floor=FLOOR
            )
        client.close()
        throughput = None
        if wrk:
            throughput = run_wrk(
                wrk, server.port, [p.path for p in prepared], ds.key, slug,
                connections=16, seconds=1 if args.smoke else 10,
            )  # fmt: skip
    bare = sc.bare_p50(body, iterations, warmup)
    await conn.close()

    print(f"\nbare Starlette, same {len(body):,}-byte body: p50 {fmt_ms(bare['p50'])} ms")
    print(
        f"{'scenario':<18} {'HTTP p50':>9} {'p95':>7} {'SQL p50':>8} {'p95':>7}"
        f" {'HTTP/(SQL+bare)':>16} {'floor p50':>10} {'SQL/floor':>10}"
    )
    ok = True
    for name, r in results.items():
        ratio = r["http"]["p50"] / (r["sql"]["p50"] + bare["p50"])
        over_floor = r["sql"]["p50"] / r["floor"]["p50"]
        ok &= ratio <= 2.0 and over_floor <= 2.0
        print(
            f"{name:<18} {fmt_ms(r['http']['p50']):>9} {fmt_ms(r['http']['p95']):>7}"
            f" {fmt_ms(r['sql']['p50']):>8} {fmt_ms(r['sql']['p95']):>7} {ratio:>16.2f}"
            f" {fmt_ms(r['floor']['p50']):>10} {over_floor:>10.2f}"
        )
    depth_ratios = {
        pp: results[f"pp{pp} 95% deep"]["http"]["p50"] / results[f"pp{pp} first"]["http"]["p50"]
        for pp in (20, 100)
    }
    for pp, ratio in depth_ratios.items():
        print(f"per_page {pp}: 95%-deep p50 / first p50 = {ratio:.2f}")
    if throughput:
        print(
            f"16 clients (wrk, 1 worker): {throughput['rps']:,.0f} requests/s,"
            f" p50 {throughput['p50_ms']:.2f} ms, errors {throughput['errors']},"
            f" non-2xx {throughput['non2xx']}"
        )
    else:
        print("16 clients: skipped (wrk not available)")
    print(
        "targets endpoint p50 <= 2 x (SQL p50 + bare p50), SQL p50 <= 2 x floor p50:"
        f" {'met' if ok else 'NOT met'}"
    )
    json_line(
        "paging",
        {
            "machine": info,
            "dataset": spec.name,
            "bare": bare,
            "scenarios": results,
            "depth_ratios": depth_ratios,
            "throughput_16": throughput,
            "target_met": ok,
        },
    )


FLOOR = "logs_floor"


async def _make_floor(conn: asyncpg.Connection) -> None:
    """The dataset's rows in one unpartitioned table with only the primary key (once)."""
    if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", FLOOR):
        return
    print("making the unpartitioned floor table ...", flush=True)
    await conn.execute(f"CREATE TABLE {FLOOR} AS SELECT * FROM logs")
    await conn.execute(f"ALTER TABLE {FLOOR} ADD PRIMARY KEY (project_id, id)")
    await conn.execute(f"VACUUM ANALYZE {FLOOR}")


def _options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--iterations", type=int, default=500)
    p.add_argument("--partition-days", type=int, default=7, help="width of the partitions")


if __name__ == "__main__":
    runner.run(
        "paging",
        __doc__,
        main,
        options=_options,
        smoke_help="tiny data",
    )
