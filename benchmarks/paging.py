"""Keyset paging end to end, on lines sealed as a server keeps them: how much does the
endpoint add to its storage read and to the bare Starlette app, how far is a page from
``/healthz``, and is a deep page as fast as the first?

How it measures, and how to run it: docs/benchmarks.md, "paging".
"""

from __future__ import annotations

import argparse
import shutil
from typing import Any

import asyncpg

from benchmarks import runner, settling
from benchmarks import scenarios as sc
from benchmarks.results import check, fmt_ms, json_line, machine, print_machine
from testkit import datasets
from testkit.http import HttpClient
from testkit.serve import LiveServer, gramlogs_server
from testkit.wrk import run_wrk


def scenarios(function_id: str) -> list[sc.Scenario]:
    """The pages a dashboard asks for: newest first at two depths and two sizes, by function
    and by level, and oldest first."""
    pp100 = {"per_page": "100"}
    return [
        *(
            sc.Scenario(f"pp{pp} {where}", {"per_page": str(pp)}, depth)
            for pp in (20, 100)
            for where, depth in (("first", 0.0), ("95% deep", 0.95))
        ),
        sc.Scenario("pp100 function_id", pp100 | {"function_id": function_id}),
        sc.Scenario("pp100 level=error", pp100 | {"level": "error"}),
        sc.Scenario("pp100 sort=asc", pp100 | {"sort": "asc"}),
    ]


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
    print_machine(info)
    slug = ds.slugs[0]
    print(f"dataset {spec.name}: {spec.rows:,} lines, project {slug} has {spec.rows_of(0):,}")

    conn = await sc.storage_connection(ds.url)
    project = await sc.project_id(conn, slug)
    plain = await sc.plain_copy(ds.url, project)
    busiest = await conn.fetchval(
        f"SELECT function_id FROM {plain} GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1"
    )
    prepared = [await sc.prepare(conn, plain, project, s) for s in scenarios(str(busiest))]
    results: dict[str, Any] = {}
    bodies: dict[int, bytes] = {}  # per_page: a first page's body, for the bare app
    with gramlogs_server(ds.url) as server:
        sealing = await settling.wait_sealed(admin, args.seal_wait)
        await settling.vacuum(admin)
        client = HttpClient(server.port, {"Gram-Key": ds.key, "Gram-Project": slug})
        for p in prepared:
            status, body = client.get(p.path)
            assert status == 200, body
            bodies.setdefault(p.request.per_page, body)
            results[p.scenario.name] = {"same_lines": await sc.same_lines(p, body, conn)}
        for p in prepared:
            results[p.scenario.name] |= await sc.measure(
                p, client, conn, iterations=iterations, warmup=warmup, offset=False
            )
        client.close()
        throughput = _throughput(wrk, server, prepared, ds, seconds=1 if args.smoke else 10)
    await admin.close()
    await conn.close()
    bare = {pp: sc.bare_p50(body, iterations, warmup) for pp, body in bodies.items()}
    per_page = {p.scenario.name: p.request.per_page for p in prepared}
    checks = _report(results, bare, per_page, throughput)
    json_line(
        "paging",
        {
            "machine": info,
            "dataset": spec.name,
            "sealing": sealing,
            "bare": {str(pp): r for pp, r in bare.items()},
            "scenarios": results,
            "throughput_16": throughput,
            "targets": checks,
            "target_met": all(c["met"] for c in checks),
        },
    )


def _throughput(
    wrk: str | None,
    server: LiveServer,
    prepared: list[sc.Prepared],
    ds: datasets.Dataset,
    *,
    seconds: float,
) -> dict[str, Any] | None:
    """16 connections on one worker: the 100-row pages (wrk cycling through them), then
    ``/healthz`` for as long."""
    if not wrk:
        return None
    paths = [p.path for p in prepared if p.request.per_page == 100]
    slug = ds.slugs[0]
    pages = run_wrk(wrk, server.port, paths, ds.key, slug, connections=16, seconds=seconds)
    healthz = run_wrk(
        wrk, server.port, [sc.HEALTHZ_PATH], ds.key, slug, connections=16, seconds=seconds
    )
    return {"pages_100": pages, "healthz": healthz}


def _report(
    results: dict[str, Any],
    bare: dict[int, dict[str, float]],
    per_page: dict[str, int],
    throughput: dict[str, Any] | None,
) -> list[dict[str, Any]]:
    """Print the table and the targets; the targets."""
    print()
    for pp, b in bare.items():
        print(f"bare Starlette, a {pp}-row page's body: p50 {fmt_ms(b['p50'])} ms")
    print(
        f"{'scenario':<18} {'HTTP p50':>9} {'p95':>7} {'storage p50':>12} {'p95':>7}"
        f" {'healthz p50':>12} {'HTTP/(storage+bare)':>20} {'HTTP/healthz':>13} same lines"
    )
    over_storage, over_healthz = {}, {}
    for name, r in results.items():
        http, storage, healthz = r["http"]["p50"], r["storage"]["p50"], r["healthz"]["p50"]
        over_storage[name] = http / (storage + bare[per_page[name]]["p50"])
        over_healthz[name] = http / healthz
        print(
            f"{name:<18} {fmt_ms(http):>9} {fmt_ms(r['http']['p95']):>7} {fmt_ms(storage):>12}"
            f" {fmt_ms(r['storage']['p95']):>7} {fmt_ms(healthz):>12}"
            f" {over_storage[name]:>20.2f} {over_healthz[name]:>13.2f}"
            f" {'yes' if r['same_lines'] else 'NO'}"
        )
    for pp in (20, 100):
        ratio = results[f"pp{pp} 95% deep"]["http"]["p50"] / results[f"pp{pp} first"]["http"]["p50"]
        print(f"per_page {pp}: 95%-deep p50 / first p50 = {ratio:.2f}")
    if throughput:
        pages, healthz = throughput["pages_100"], throughput["healthz"]
        for what, r in (("100-row pages", pages), ("/healthz", healthz)):
            print(
                f"16 clients (wrk, 1 worker), {what:<13}: {r['rps']:>7,.0f} requests/s,"
                f" p50 {r['p50_ms']:.2f} ms, errors {r['errors']}, non-2xx {r['non2xx']}"
            )
        print(
            f"16 clients, pages / /healthz: requests/s {pages['rps'] / healthz['rps']:.2f} x,"
            f" p50 {pages['p50_ms'] / healthz['p50_ms']:.2f} x"
        )
    else:
        print("16 clients: skipped (wrk not available)")
    worst = max(over_storage, key=lambda n: over_storage[n])
    hundreds = [n for n in results if per_page[n] == 100]
    worst_100 = max(hundreds, key=lambda n: over_healthz[n])
    checks = [
        check(
            f"endpoint p50 <= {sc.TARGET_OVER_STORAGE} x (storage read p50 + bare Starlette p50),"
            " every scenario",
            over_storage[worst] <= sc.TARGET_OVER_STORAGE,
            f"worst: {worst} {over_storage[worst]:.2f}",
        ),
        check(
            f"100-row page p50 <= {sc.TARGET_OVER_HEALTHZ:.0f} x /healthz p50, one client",
            over_healthz[worst_100] <= sc.TARGET_OVER_HEALTHZ,
            f"worst: {worst_100} {over_healthz[worst_100]:.2f}",
        ),
    ]
    for t in checks:
        print(f"target {'met' if t['met'] else 'NOT met'}: {t['target']} ({t['measured']})")
    return checks


def _options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--iterations", type=int, default=500)
    p.add_argument("--partition-days", type=int, default=7, help="width of the partitions")
    p.add_argument(
        "--seal-wait", type=float, default=1800, help="seconds to wait at most for sealing"
    )


if __name__ == "__main__":
    runner.run(
        "paging",
        __doc__,
        main,
        options=_options,
        smoke_help="tiny data",
    )
