"""The histogram (``GET /rpc/logs.histogram``): what counting a day of a busy project costs.

Seeds 1.1M lines (cached): 1M in one project over 24 hours, 50k in each of two others, then
VACUUM (ANALYZE), as autovacuum would have left a real installation: index-only scans read no
row only where the visibility map says a page is all-visible. Then, side by side in one run,
over the project's whole day: the endpoint over HTTP (a real ``gramlogs serve``) and the same
statement sent directly with asyncpg (storage/histogram.py's, under the server's plan
settings), interleaved, p50/p95/p99 and their ratio. Scenarios: no filter with the default 60
buckets and with 1000, an equality filter (level=error), and keywords: a common one (in ~27%
of the lines), a rare one (~3%) and one in no line; a keyword reads every line of the window.

Target: p50 <= 100 ms without a keyword (24 hours, 1M lines). Each answer's total is reported
beside the direct statement's (that the counts are right is tests/test_histogram.py's).

    .venv/bin/python -m benchmarks.histogram             # ~2 minutes once seeded
    .venv/bin/python -m benchmarks.histogram --write     # and append the report to histogram.md
    .venv/bin/python -m benchmarks.histogram --smoke     # seconds: tiny data, few iterations
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from benchmarks import harness as h
from benchmarks import runner
from benchmarks import scenarios as sc
from benchmarks.results import (
    fmt_ms,
    machine,
    percentiles,
    print_machine,
    publish,
)
from gramlogs.storage import histogram as storage
from gramlogs.web import histogram as web
from testkit.http import HttpClient

TARGET_P50_MS = 100.0


@dataclass(frozen=True)
class Scenario:
    name: str
    params: dict[str, str]
    keyword: bool = False


SCENARIOS = (
    Scenario("no filter, 60 buckets", {}),
    Scenario("no filter, 1000 buckets", {"buckets": "1000"}),
    Scenario("level=error", {"level": "error"}),
    Scenario("keyword, common (tool call)", {"keyword": "tool call"}, keyword=True),
    Scenario("keyword, rare (KeyError)", {"keyword": "KeyError"}, keyword=True),
    Scenario("keyword, in no line", {"keyword": "no such word"}, keyword=True),
)


async def main(args: argparse.Namespace) -> None:
    started = time.monotonic()
    lines = 20_000 if args.smoke else 1_000_000
    spec = h.DatasetSpec(rows=lines + lines // 10, projects=3, hot_share=10 / 11, days=1.0, seed=7)
    ds = await h.dataset(spec)
    conn = await sc.sql_connection(ds.url)
    info = machine(await conn.fetchval("SHOW server_version"))
    print_machine(info)
    slug = ds.hot_slug
    project = await sc.project_id(conn, slug)
    print(f"dataset {spec.name}: {spec.rows:,} lines, project {slug} has {spec.rows_of(0):,}")
    window = {
        "ts_start": (ds.end - timedelta(hours=24)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "ts_end": ds.end.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    results: dict[str, Any] = {}
    with h.gramlogs_server(ds.url) as server:
        client = HttpClient(server.port, {"Gram-Key": ds.key, "Gram-Project": slug})
        for scenario in SCENARIOS:
            params = {**window, **scenario.params}
            query = web.parse_histogram_query(params)
            sql, sql_args, _ = storage.histogram_query(query.log_filter(project), query.edges())
            path = "/rpc/logs.histogram?" + urlencode(params)
            totals: dict[str, int] = {}

            async def http(path: str = path, totals: dict[str, int] = totals) -> None:
                status, body = client.get(path)
                assert status == 200, body[:300]
                totals["http"] = json.loads(body)["total"]

            async def direct(
                sql: str = sql, sql_args: list[object] = sql_args, totals: dict[str, int] = totals
            ) -> None:
                totals["sql"] = sum(r[1] for r in await conn.fetch(sql, *sql_args))

            heavy = scenario.keyword
            iterations = args.keyword_iterations if heavy else args.iterations
            if args.smoke:
                iterations = 5 if heavy else 20
            samples = await h.timed_loop(
                {"http": http, "sql": direct}, iterations=iterations, warmup=1 if heavy else 5
            )
            r: dict[str, Any] = {name: percentiles(s) for name, s in samples.items()}
            r["ratio_p50"] = r["http"]["p50"] / r["sql"]["p50"]
            # Both count the same lines (tests/test_histogram.py checks the endpoint's counts).
            r["lines"], r["lines_http"] = totals["sql"], totals["http"]
            r["buckets"] = query.buckets
            r["bucket_seconds"] = query.width_s
            results[scenario.name] = r
            print(
                f"  {scenario.name}: HTTP p50 {fmt_ms(r['http']['p50'])} ms,"
                f" SQL p50 {fmt_ms(r['sql']['p50'])} ms, {totals['sql']:,} lines",
                flush=True,
            )
        client.close()
    await conn.close()

    window_lines = spec.rows_of(0)
    per_100k = {
        name: r["sql"]["p50"] / window_lines * 100_000
        for name, r in results.items()
        if name.startswith("keyword")
    }
    unfiltered = [r["http"]["p50"] for n, r in results.items() if n.startswith("no filter")]
    met = max(unfiltered) <= TARGET_P50_MS
    report = _report(args, info, spec, results, per_100k, met, time.monotonic() - started)
    publish(
        "histogram",
        {
            "machine": info,
            "dataset": spec.name,
            "window_lines": window_lines,
            "scenarios": results,
            "keyword_ms_per_100k_lines": per_100k,
            "target_met": met,
        },
        report,
        write_to=args.write_to,
    )


def _report(
    args: argparse.Namespace,
    info: dict[str, Any],
    spec: h.DatasetSpec,
    results: dict[str, Any],
    per_100k: dict[str, float],
    met: bool,
    seconds: float,
) -> str:
    machine = ", ".join(f"{k} {v}" for k, v in info.items() if k != "date")
    out = [
        f"## {info['date']}: {spec.rows_of(0):,} lines in the 24-hour window"
        f" ({spec.rows:,} in {spec.projects} projects)",
        "",
        f"`python -m benchmarks.histogram{' --smoke' if args.smoke else ''}"
        f"{' --write' if args.write else ''}`,"
        f" {seconds:.0f} s in all. Dataset `{spec.name}`, VACUUM (ANALYZE) after seeding.",
        "",
        f"Machine: {machine}.",
        "",
        "| scenario | buckets | lines counted | HTTP p50 / p95 / p99 ms | SQL p50 / p95 / p99 ms"
        " | HTTP/SQL p50 | samples |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        http, sql = r["http"], r["sql"]
        out.append(
            f"| {name} | {r['buckets']} x {r['bucket_seconds']} s | {r['lines']:,}"
            f" | {fmt_ms(http['p50'])} / {fmt_ms(http['p95'])} / {fmt_ms(http['p99'])}"
            f" | {fmt_ms(sql['p50'])} / {fmt_ms(sql['p95'])} / {fmt_ms(sql['p99'])}"
            f" | {r['ratio_p50']:.2f} | {http['n']} |"
        )
    out += [
        "",
        "A keyword reads every line of the window, per 100k lines (SQL p50): "
        + ", ".join(
            f"{name.removeprefix('keyword, ')} {ms:.0f} ms" for name, ms in per_100k.items()
        )
        + ".",
        "",
        f"Target p50 <= {TARGET_P50_MS:.0f} ms without a keyword (HTTP):"
        f" {'met' if met else 'NOT met'}.",
        "",
    ]
    return "\n".join(out)


def _options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--iterations", type=int, default=100)
    p.add_argument("--keyword-iterations", type=int, default=10)


if __name__ == "__main__":
    runner.run(
        "histogram",
        __doc__,
        main,
        options=_options,
        smoke_help="tiny data, few iterations",
        results=runner.results_file("histogram"),
    )
