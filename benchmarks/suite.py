"""The scale suite: latency of every kind of page at 1M and 10M rows, against the storage
read it makes, ``/healthz`` and OFFSET pagination, throughput under wrk, the server's peak
memory.

Datasets: 100 projects, one hot project with 20% of the rows, 30 days ending at seeding time
(cached between runs in benchmarks/.cache, sealed into blocks by the first server that runs on
them). Every scenario pages the hot project.

    make bench                                    # 1M and 10M rows; writes RESULTS.md + PNG
    .venv/bin/python -m benchmarks.suite --sizes 1m
    .venv/bin/python -m benchmarks.suite --smoke  # seconds; writes nothing unless --out
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from benchmarks import pyspy, runner, settling
from benchmarks import scenarios as sc
from benchmarks.results import check, fmt_ms, json_line, machine, print_machine, targets_table
from testkit import datasets
from testkit.http import HttpClient
from testkit.serve import LiveServer, gramlogs_server
from testkit.wrk import run_wrk

SIZES = {"smoke": 20_000, "1m": 1_000_000, "10m": 10_000_000}
DEPTHS = (0.0, 0.1, 0.25, 0.5, 0.75, 0.95)
TARGET_P50_MS = 3.0


def scenarios(sample: asyncpg.Record, ds: datasets.Dataset) -> list[sc.Scenario]:
    start, end = _window_ids(ds.end, 15 * 24, 1)
    pp = {"per_page": "100"}
    return [
        sc.Scenario("first page", pp),
        sc.Scenario("first page, per_page 20", {"per_page": "20"}),
        sc.Scenario("50% deep", pp, 0.5),
        sc.Scenario("95% deep", pp, 0.95),
        sc.Scenario("95% deep, per_page 20", {"per_page": "20"}, 0.95),
        sc.Scenario("level=error", pp | {"level": "error"}),
        sc.Scenario("source=server", pp | {"source": "server"}),
        sc.Scenario("instance", pp | {"instance": sample["instance"]}),
        sc.Scenario("function_id", pp | {"function_id": str(sample["function_id"])}),
        sc.Scenario("deployment_id", pp | {"deployment_id": str(sample["deployment_id"])}),
        sc.Scenario("1-hour window of 30 days", pp | {"ts_start": start, "ts_end": end}),
        sc.Scenario("direction=prev, 50% deep", pp | {"direction": "prev"}, 0.5),
        sc.Scenario("sort=asc", pp | {"sort": "asc"}),
        sc.Scenario("sort=asc, 95% deep", pp | {"sort": "asc"}, 0.95),
    ] + [sc.Scenario(f"depth {d:.0%}", pp, d) for d in DEPTHS if d not in (0.0, 0.5, 0.95)]


def _window_ids(end: datetime, hours_before: float, hours: float) -> tuple[str, str]:
    start = end - timedelta(hours=hours_before)
    stop = start + timedelta(hours=hours)
    return start.strftime("%Y-%m-%dT%H:%M:%SZ"), stop.strftime("%Y-%m-%dT%H:%M:%SZ")


async def run_size(label: str, args: argparse.Namespace, wrk: str | None) -> dict[str, Any]:
    rows = SIZES[label]
    spec = datasets.DatasetSpec(rows=rows, projects=100 if rows >= 100_000 else 10, hot_share=0.2)
    ds = await datasets.dataset(spec)
    iterations, warmup = (20, 3) if args.smoke else (args.iterations, 30)
    admin = await asyncpg.connect(ds.url)
    conn = await sc.storage_connection(ds.url)
    project = await sc.project_id(conn, ds.hot_slug)
    plain = await sc.plain_copy(ds.url, project)
    sample = await conn.fetchrow(
        f"SELECT instance, function_id, deployment_id FROM {plain} WHERE project_id = $1 LIMIT 1",
        project,
    )
    assert sample is not None, "the hot project has lines"
    prepared = [await sc.prepare(conn, plain, project, s) for s in scenarios(sample, ds)]
    print(f"\n== {label}: {spec.name}, hot project {spec.rows_of(0):,} lines", flush=True)
    out: dict[str, Any] = {"rows": rows, "dataset": spec.name, "hot_rows": spec.rows_of(0)}
    results: dict[str, Any] = {}
    bodies: dict[int, bytes] = {}  # per_page: a first page's body, for the bare app
    with gramlogs_server(ds.url, workers=1) as server:
        out["sealing"] = await settling.wait_sealed(admin, args.seal_wait)
        await settling.vacuum(admin)
        client = HttpClient(server.port, {"Gram-Key": ds.key, "Gram-Project": ds.hot_slug})
        for p in prepared:
            status, body = client.get(p.path)
            assert status == 200, body
            bodies.setdefault(p.request.per_page, body)
            same = await sc.same_lines(p, body, conn)
            r = await sc.measure(p, client, conn, iterations=iterations, warmup=warmup)
            r["offset_rows"] = p.offset
            r["same_lines"] = same
            results[p.scenario.name] = r
            print(
                f"  {p.scenario.name:<28} HTTP {fmt_ms(r['http']['p50']):>6}"
                f"  storage {fmt_ms(r['storage']['p50']):>6}"
                f"  healthz {fmt_ms(r['healthz']['p50']):>5}"
                f"  OFFSET {fmt_ms(r['offset']['p50']):>7} ms"
                f"  (n={r['http']['n']}/{r['offset']['n']}){'' if same else '  LINES DIFFER'}",
                flush=True,
            )
        client.close()
        out["throughput"] = {}
        paths = [p.path for p in prepared]
        if wrk:
            out["throughput"]["1"] = _wrk_series(wrk, server, paths, ds, args)
            if args.profile:
                out["profile"] = _profile(wrk, server, paths, ds, args)
            out["rss_mib_1_worker"] = server.peak_rss_mib()
    if wrk:
        with gramlogs_server(ds.url, workers=2) as server:
            out["throughput"]["2"] = _wrk_series(wrk, server, paths, ds, args)
            out["rss_mib_2_workers"] = server.peak_rss_mib()
    out["bare"] = {str(pp): sc.bare_p50(body, iterations, warmup) for pp, body in bodies.items()}
    out["bare_body_bytes"] = {str(pp): len(body) for pp, body in bodies.items()}
    out["per_page"] = {p.scenario.name: p.request.per_page for p in prepared}
    out["scenarios"] = results
    await conn.close()
    await admin.close()
    return out


def _wrk_series(
    wrk: str, server: LiveServer, paths: list[str], ds: datasets.Dataset, args: argparse.Namespace
) -> dict[str, Any]:
    series = {}
    for connections in (1, 16, 64):
        r = run_wrk(
            wrk, server.port, paths, ds.key, ds.hot_slug,
            connections=connections, seconds=1 if args.smoke else args.wrk_seconds,
        )  # fmt: skip
        series[str(connections)] = r
        print(
            f"  wrk {connections:>2} connections: {r['rps']:>7,.0f} req/s  p50 {r['p50_ms']:.2f} ms"
            f"  p99 {r['p99_ms']:.2f} ms  errors {r['errors']} non-2xx {r['non2xx']}",
            flush=True,
        )
    return series


def _profile(
    wrk: str, server: LiveServer, paths: list[str], ds: datasets.Dataset, args: argparse.Namespace
) -> dict[str, Any]:
    """py-spy samples the worker under 16 connections: the share of samples in the frames
    that matter (inclusive) and the top functions by own time."""
    if why := pyspy.missing():
        return {"skipped": why}
    raw = datasets.CACHE / "profile.txt"
    with pyspy.recording(server.worker_pids()[0], raw):
        run_wrk(wrk, server.port, paths, ds.key, ds.hot_slug, connections=16,
                seconds=3 if args.smoke else 10)  # fmt: skip
    return pyspy.summarise(raw, _MARKERS)


# Frames whose inclusive share says where a worker's time goes.
_MARKERS = {
    "page query (asyncpg: send, wait, decode 101 rows)": "fetch_page",
    "authenticate (asyncpg fetchrow)": "authenticate",
    "render (rows to structs)": "render (gramlogs/web/gram.py",
    "parse query string": "parse_list_query",
    "pool acquire/release": "_acquire",
    "uvicorn: write response": "RequestResponseCycle.send",
    "uvicorn: read and parse request": "data_received",
    "event loop itself (idle or in C)": "leaf:Runner.run",
}


# -- report -------------------------------------------------------------------------------------


def _over_storage(size: dict[str, Any], name: str) -> float:
    """A scenario's endpoint p50 over its storage read's plus the bare app's (same page size)."""
    r = size["scenarios"][name]
    bare = size["bare"][str(size["per_page"][name])]["p50"]
    return float(r["http"]["p50"] / (r["storage"]["p50"] + bare))


def _over_healthz(size: dict[str, Any], name: str) -> float:
    r = size["scenarios"][name]
    return float(r["http"]["p50"] / r["healthz"]["p50"])


def targets(sizes: dict[str, Any]) -> list[dict[str, Any]]:
    big = sizes.get("10m") or sizes[max(sizes, key=lambda k: sizes[k]["rows"])]
    name, worst = max(big["scenarios"].items(), key=lambda kv: kv[1]["http"]["p50"])
    p50 = worst["http"]["p50"]
    checks = [
        check(f"every scenario's p50 <= {TARGET_P50_MS} ms end to end at {big['rows']:,} rows",
              p50 <= TARGET_P50_MS, f"worst: {name} {p50:.2f} ms")
    ]  # fmt: skip
    for size in sizes.values():
        s, rows = size["scenarios"], f"({size['rows']:,} rows)"
        ratio = s["95% deep"]["http"]["p50"] / s["first page"]["http"]["p50"]
        checks.append(
            check(f"p50 95% deep <= 1.2 x first page {rows}", ratio <= 1.2, f"{ratio:.2f}")
        )
        name = max(s, key=lambda n: _over_storage(size, n))
        most = _over_storage(size, name)
        checks.append(
            check(f"endpoint p50 <= {sc.TARGET_OVER_STORAGE} x (storage read p50 + bare"
                  f" Starlette p50) {rows}", most <= sc.TARGET_OVER_STORAGE,
                  f"worst: {name} {most:.2f}")
        )  # fmt: skip
        hundreds = [n for n in s if size["per_page"][n] == 100]
        name = max(hundreds, key=lambda n: _over_healthz(size, n))
        most = _over_healthz(size, name)
        checks.append(
            check(f"100-row page p50 <= {sc.TARGET_OVER_HEALTHZ:.0f} x /healthz p50, one client"
                  f" {rows}", most <= sc.TARGET_OVER_HEALTHZ, f"worst: {name} {most:.2f}")
        )  # fmt: skip
        for workers in ("1_worker", "2_workers"):
            if rss := size.get(f"rss_mib_{workers}"):
                mb = max(rss.values()) * 1.048576
                where = f"{workers.replace('_', ' ')} {rows}"
                checks.append(check(f"server RSS <= 150 MB under load, {where}", mb <= 150,
                                    f"peak {mb:.0f} MB"))  # fmt: skip
    if "1m" in sizes and "10m" in sizes:
        small, large = sizes["1m"]["scenarios"], sizes["10m"]["scenarios"]
        ratios = {n: large[n]["http"]["p50"] / small[n]["http"]["p50"] for n in large}
        name, most = max(ratios.items(), key=lambda kv: kv[1])
        checks.append(check("p50 at 10M <= 1.2 x p50 at 1M, every scenario", most <= 1.2,
                            f"worst: {name} {most:.2f}"))  # fmt: skip
    return checks


def write_report(path: Path, info: dict[str, Any], sizes: dict[str, Any], command: str) -> None:
    lines = [
        "# gramlogs benchmark results",
        "",
        f"Written by `{command}` (benchmarks/suite.py). Latencies in milliseconds, measured",
        "once the server has sealed the dataset into blocks (and it was vacuumed), one request",
        "at a time by a minimal keep-alive HTTP client (HTTP, and `/healthz` on the same",
        "client), by the storage read the server makes for the page (`pages.fetch_page` with the",
        "same page request, in the benchmark process, on one asyncpg connection set up as the",
        "server's pool sets up its own), interleaved request by request so that load from",
        "elsewhere hits every column alike; and apart, by the OFFSET query a dashboard runs for",
        "the same page (`ORDER BY id OFFSET n LIMIT per_page`) over a plain copy of the hot",
        "project's lines (one unpartitioned table, logs' btrees). The machine is shared with",
        "other developers: see the load average below.",
        "",
        "## Machine",
        "",
        *[f"- {k}: {v}" for k, v in info.items()],
        "",
        "## Targets",
        *targets_table(targets(sizes), "target"),
    ]
    for size in sizes.values():
        lines += [
            "",
            f"## {size['rows']:,} rows ({size['dataset']}; hot project {size['hot_rows']:,} rows)",
            "",
        ]
        if sealing := size.get("sealing"):
            lines += [
                f"Sealed when measured: {sealing['lines'] - sealing['rows']:,} of"
                f" {sealing['lines']:,} lines in {sealing['blocks']:,} blocks, {sealing['rows']:,}"
                f" rows (the benchmark waited {sealing['waited_s']:.0f} s for the server).",
                "",
            ]
        for pp, bare in size["bare"].items():
            lines.append(
                f"Bare Starlette serving a {pp}-row page's"
                f" {size['bare_body_bytes'][pp]:,}-byte body: p50 {fmt_ms(bare['p50'])},"
                f" p95 {fmt_ms(bare['p95'])}, p99 {fmt_ms(bare['p99'])}."
            )
        lines += [
            "",
            "| scenario | HTTP p50 | p95 | p99 | storage p50 | p95 | p99 | /healthz p50"
            " | OFFSET p50 | p95 | p99 (n) | HTTP / (storage + bare) | HTTP / healthz |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for name, r in size["scenarios"].items():
            cells = [fmt_ms(r[k][q]) for k in ("http", "storage") for q in ("p50", "p95", "p99")]
            o = r["offset"]
            cells += [fmt_ms(r["healthz"]["p50"])]
            cells += [fmt_ms(o["p50"]), fmt_ms(o["p95"]), f"{fmt_ms(o['p99'])} ({o['n']})"]
            cells += [f"{_over_storage(size, name):.2f}", f"{_over_healthz(size, name):.2f}"]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        if size["throughput"]:
            lines += ["", "Throughput (wrk cycling through every scenario's request):", ""]
            lines += ["| workers | connections | requests/s | p50 | p99 | errors | non-2xx |"]
            lines += ["|---|---|---|---|---|---|---|"]
            for workers, series in size["throughput"].items():
                for conns, r in series.items():
                    lines.append(
                        f"| {workers} | {conns} | {r['rps']:,.0f} | {r['p50_ms']:.2f}"
                        f" | {r['p99_ms']:.2f}"
                        f" | {r['errors']} | {r['non2xx']} |"
                    )
            for workers in ("1_worker", "2_workers"):
                rss = size.get(f"rss_mib_{workers}") or {}
                shown = ", ".join(f"{v * 1.048576:.0f} MB" for v in rss.values())
                lines.append(f"\nPeak RSS ({workers.replace('_', ' ')}; each process): {shown}")
        if size.get("profile"):
            lines += ["", "Profile (py-spy, 1 worker under 16 connections):", "", "```"]
            lines += [json.dumps(size["profile"], indent=2), "```"]
    path.write_text("\n".join(lines) + "\n")


def plot(path: Path, sizes: dict[str, Any]) -> None:
    import matplotlib  # type: ignore[import-not-found,unused-ignore]

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # type: ignore[import-not-found,unused-ignore]

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    depth_names = {0.0: "first page", 0.5: "50% deep", 0.95: "95% deep"}
    names = [depth_names.get(d, f"depth {d:.0%}") for d in DEPTHS]
    styles = {"1m": "--", "10m": "-", "smoke": ":"}
    series = (("http", "tab:blue", "keyset, HTTP"),
              ("storage", "tab:green", "keyset, storage read"),
              ("offset", "tab:red", "OFFSET, SQL (plain table)"))  # fmt: skip
    for label, size in sizes.items():
        for key, color, what in series:
            p50s = [size["scenarios"][n][key]["p50"] for n in names]
            left.plot([d * 100 for d in DEPTHS], p50s, styles.get(label, "-"), color=color,
                      marker="o", label=f"{what} ({label})")  # fmt: skip
    left.set(xlabel="page depth (% of the hot project's rows before the page)", yscale="log",
             ylabel="p50 latency (ms)", title="p50 against page depth (per_page 100)")  # fmt: skip
    ordered = sorted(sizes.values(), key=lambda x: x["rows"])
    rows = [x["rows"] for x in ordered]
    for name in ("first page", "95% deep", "level=error", "1-hour window of 30 days",
                 "sort=asc, 95% deep"):  # fmt: skip
        p50s = [x["scenarios"][name]["http"]["p50"] for x in ordered]
        right.plot(rows, p50s, marker="o", label=f"keyset HTTP: {name}")
    p50s = [x["scenarios"]["95% deep"]["offset"]["p50"] for x in ordered]
    right.plot(rows, p50s, marker="s", color="tab:red", label="OFFSET SQL (plain): 95% deep")
    right.set(xlabel="rows in the table", ylabel="p50 latency (ms)", xscale="log", yscale="log",
              title="p50 against table size")  # fmt: skip
    for side in (left, right):
        side.grid(True, which="both", alpha=0.3)
        side.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


async def main(args: argparse.Namespace) -> None:
    wrk = None if args.no_wrk else shutil.which("wrk")
    labels = ["smoke"] if args.smoke else args.sizes.split(",")
    conn = await asyncpg.connect(datasets.server_url())
    info = machine(await conn.fetchval("SHOW server_version"))
    await conn.close()
    print_machine(info)
    sizes = {label: await run_size(label, args, wrk) for label in labels}
    info["load_avg_at_end"] = [round(x, 2) for x in __import__("os").getloadavg()]
    for t in targets(sizes):
        print(f"target {'met' if t['met'] else 'NOT met'}: {t['target']} ({t['measured']})")
    if args.out:
        command = " ".join(["python -m benchmarks.suite", *sys.argv[1:]])
        write_report(Path(args.out), info, sizes, command)
        print(f"wrote {args.out}")
    if args.plot:
        with contextlib.suppress(ImportError):
            plot(Path(args.plot), sizes)
            print(f"wrote {args.plot}")
    json_line("suite", {"machine": info, "sizes": sizes})


def _options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sizes", default="1m,10m", help="comma-separated: 1m, 10m")
    p.add_argument("--iterations", type=int, default=300)
    p.add_argument("--wrk-seconds", type=float, default=10)
    p.add_argument("--no-wrk", action="store_true", help="skip the throughput runs")
    p.add_argument(
        "--seal-wait", type=float, default=3600, help="seconds to wait at most for sealing"
    )
    p.add_argument("--profile", action="store_true", help="py-spy the server under load")
    p.add_argument("--out", help="write the Markdown report here")
    p.add_argument("--plot", help="write the PNG plot here")


if __name__ == "__main__":
    runner.run(
        "suite",
        __doc__,
        main,
        options=_options,
        smoke_help="tiny data",
    )
