"""Loki's HTTP API beside the Gram API it sits on, in one run: log queries against the list page,
Grafana's log volume against the histogram, pushes against NDJSON ingest.

How it measures, and how to run it: docs/benchmarks.md, "loki".
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import asyncpg
import msgspec

from benchmarks import loki_bodies, producer, pyspy, runner
from benchmarks.cpu import CpuMeter
from benchmarks.results import (
    check,
    fmt_ms,
    machine,
    percentiles,
    print_machine,
    publish,
    table,
    targets_table,
)
from benchmarks.settling import stored, wait_sealed
from benchmarks.timing import timed_loop
from gramlogs.storage import schema
from testkit import datasets
from testkit.http import AsyncHttpClient, HttpClient
from testkit.serve import LiveServer, gramlogs_server

QUERY_RANGE = "/loki/api/v1/query_range"
PUSH = "/loki/api/v1/push"
LIST = "/rpc/logs.listToolExecutionLogs"
HISTOGRAM = "/rpc/logs.histogram"
TARGET_READ_RATIO = 1.5  # query_range p50 / list page p50
TARGET_VOLUME_MS = 100.0  # Grafana's log volume over 24 h at 1M lines, p50
TARGET_PUSH_RATIO = 0.8  # push lines/s / logs.ingest lines/s
# Grafana's interval for a 24 h range: 86,400 s over a panel's ~1,000-1,900 points is 45-86 s,
# which its interval rounding makes 1m; the volume query's range is that interval too.
STEP = "60"
WORD = "timeout"  # in "timeout calling …", a third of the seeded error lines' messages
LEVEL = "error"

# Buckets of the server's time, by the first marker found in a sample's stack.
# Most specific first: a handler's module is in every stack of its request.
_BUCKETS = {
    "sealed blocks: encode, decode keys (codec)": "storage/codec.py",
    "trigram codes of the text": "storage/trigrams.py",
    "check entries, derive ids (BatchBuilder)": "storage/batch.py",
    "Loki push: streams to rows": "loki/streams.py",
    "Loki push: decode protobuf (logproto)": "loki/logproto.py",
    "store rows and blocks (writer, COPY)": "storage/writer.py",
    "other SQL (asyncpg)": "asyncpg/",
    "Loki push: the rest (JSON decode)": "loki/push.py",
    "NDJSON ingest: the rest (decode)": "web/ingest.py",
    "Loki read: lines, pipeline, checks": "loki/lines.py",
    "Loki read: metric series, steps": "loki/series.py",
    "Loki read: render the answer": "loki/query.py",
    "Starlette": "starlette/",
    "uvicorn HTTP": "uvicorn/protocols",
}
_REST = "event loop: sockets, C callbacks (uvloop, httptools, asyncpg protocol)"


# -- reads ----------------------------------------------------------------------------------------


def _ns(ts: datetime) -> int:
    return round(ts.timestamp()) * 10**9


def _iso(ts: datetime) -> str:
    return f"{ts:%Y-%m-%dT%H:%M:%SZ}"


def read_scenarios(function_id: uuid.UUID, start: datetime, end: datetime) -> dict[str, str]:
    """Each scenario's path: a Loki query beside the Gram request that answers the same."""
    window = {"start": str(_ns(start)), "end": str(_ns(end))}
    gram_window = {"ts_start": _iso(start), "ts_end": _iso(end)}
    logs = {"limit": "100", "direction": "backward", **window}
    page = {"per_page": "100", **gram_window}
    f = f'function_id="{function_id}"'
    selectors = {
        "function": (f"{{{f}}}", {"function_id": str(function_id)}),
        "level": (f'{{level="{LEVEL}"}}', {"level": LEVEL}),
        "level + word": (f'{{level="{LEVEL}"}} |= "{WORD}"', {"level": LEVEL, "keyword": WORD}),
    }
    out = {}
    for name, (logql, gram) in selectors.items():
        out[f"query_range {name}"] = QUERY_RANGE + "?" + urlencode({"query": logql, **logs})
        out[f"list {name}"] = LIST + "?" + urlencode({**gram, **page})
    volume = {"step": STEP, **window}
    grafana = f"sum by (level, detected_level) (count_over_time({{{f}}} | drop __error__[1m]))"
    out["volume grafana"] = QUERY_RANGE + "?" + urlencode({"query": grafana, **volume})
    plain = f"sum(count_over_time({{{f}}}[1m]))"
    out["volume sum"] = QUERY_RANGE + "?" + urlencode({"query": plain, **volume})
    # The histogram's widest resolution over 24 h: 1,000 buckets at most, so 2 minutes.
    out["histogram"] = (
        HISTOGRAM
        + "?"
        + urlencode({"function_id": str(function_id), "buckets": "1000", **gram_window})
    )
    return out


def answer_size(name: str, body: bytes) -> tuple[int, int]:
    """Lines (log queries, list pages) or points (metric queries, histograms) in an answer, and
    the lines they count: the sides of a comparison must answer alike."""
    doc = msgspec.json.decode(body)
    if name.startswith("query_range"):
        n = sum(len(s["values"]) for s in doc["data"]["result"])
        return n, n
    if name.startswith("list"):
        return len(doc["logs"]), len(doc["logs"])
    if name.startswith("volume"):
        values = [v for s in doc["data"]["result"] for v in s["values"]]
        return len(values), sum(int(v[1]) for v in values)
    return len(doc["buckets"]), doc["total"]


async def measure_reads(
    server: LiveServer,
    headers: dict[str, str],
    paths: dict[str, str],
    meter: Callable[[], CpuMeter],
    *,
    iterations: int,
    warmup: int,
    cpu_seconds: float,
) -> dict[str, Any]:
    """Every scenario in turn, interleaved; then each alone again for its CPU split."""
    client = HttpClient(server.port, headers)
    sizes: dict[str, tuple[int, int]] = {}

    def step(name: str, path: str) -> Callable[[], Awaitable[None]]:
        async def go() -> None:
            status, body = client.get(path)
            if status != 200:
                raise RuntimeError(f"{name}: {status} {body[:300]!r}")
            sizes.setdefault(name, answer_size(name, body))

        return go

    steps = {name: step(name, path) for name, path in paths.items()}
    samples = await timed_loop(steps, iterations=iterations, warmup=warmup)
    out: dict[str, Any] = {}
    for name, go in steps.items():
        # /proc counts CPU in 10 ms ticks: a second of requests makes the split worth reading.
        cpu = meter()
        await cpu.start()
        runs, t0 = 0, time.perf_counter()
        while runs < 3 or time.perf_counter() - t0 < cpu_seconds:
            await go()
            runs += 1
        spent = await cpu.stop()
        out[name] = {
            **percentiles(samples[name]),
            "answered": sizes[name][0],
            "counted": sizes[name][1],
            "cpu_ms_per_request": {k: round(v / runs * 1000, 2) for k, v in spent.items()},
            "cpu_runs": runs,
        }
    client.close()
    return out


# -- pushes ---------------------------------------------------------------------------------------


async def post_all(
    url: str, path: str, headers: dict[str, str], bodies: list[bytes], clients: int, ok: int
) -> tuple[float, list[float]]:
    """POST every body, ``clients`` at a time: the wall seconds and each request's time."""
    queue = iter(bodies)
    latencies: list[float] = []

    async def client() -> None:
        async with AsyncHttpClient(url) as http:
            for body in queue:
                t = time.perf_counter()
                status, reply = await http.send(http.request(path, headers, body))
                if status != ok:
                    raise RuntimeError(f"{path} answered {status}: {reply[:300]!r}")
                latencies.append(time.perf_counter() - t)

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return time.perf_counter() - t0, latencies


PUSH_KINDS = {
    # kind: (path, content type, the answer's status, body builder)
    "logs.ingest NDJSON": (producer.INGEST, "application/x-ndjson", 200, loki_bodies.ndjson),
    "Loki push JSON": (PUSH, "application/json", 204, loki_bodies.loki_json),
    "Loki push protobuf": (PUSH, "application/x-protobuf", 204, loki_bodies.loki_protobuf),
}


async def measure_pushes(
    server: LiveServer,
    conn: asyncpg.Connection,
    meter: Callable[[], CpuMeter],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Each kind in turn, ``repeats`` times, each run into a project of its own (ids come from
    the lines' content: the same lines into one project twice would store nothing new)."""
    lines = loki_bodies.make_lines(args.push_lines, args.seed, args.push_start)
    batches = [lines[i : i + args.batch] for i in range(0, len(lines), args.batch)]
    bodies = {kind: [build(b) for b in batches] for kind, (*_, build) in PUSH_KINDS.items()}
    _, warm = await producer.new_project(conn, "warm")
    for kind, (path, ctype, ok, _) in PUSH_KINDS.items():
        await post_all(server.url, path, warm | {"Content-Type": ctype}, bodies[kind][:3], 1, ok)
    runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in PUSH_KINDS}
    for _ in range(args.repeats):
        for kind, (path, ctype, ok, _) in PUSH_KINDS.items():
            project, head = await producer.new_project(conn, "push")
            cpu = meter()
            await cpu.start()
            seconds, latencies = await post_all(
                server.url, path, head | {"Content-Type": ctype}, bodies[kind], args.clients, ok
            )
            spent = await cpu.stop()
            runs[kind].append(
                {
                    "rate": len(lines) / seconds,
                    "latencies": latencies,
                    "cpu": spent,
                    "stored": await stored(conn, project),
                }
            )
    out = {}
    for kind, mine in runs.items():
        lat = percentiles([x for r in mine for x in r["latencies"]])
        out[kind] = {
            "lines_per_s_median": statistics.median(r["rate"] for r in mine),
            "lines_per_s_runs": [round(r["rate"]) for r in mine],
            "batch_ms": {q: lat[q] for q in ("p50", "p95", "p99")},
            "stored": [r["stored"] for r in mine],
            "bytes_per_line": round(sum(map(len, bodies[kind])) / len(lines), 1),
            "cpu_us_per_line": {
                part: round(statistics.median(r["cpu"][part] for r in mine) / len(lines) * 1e6, 1)
                for part in ("server", "postgres", "clients")
            },
        }
    return out


# -- profile --------------------------------------------------------------------------------------


async def profile(
    server: LiveServer, what: Callable[[], Awaitable[object]], label: str
) -> dict[str, Any]:
    """py-spy samples of the server while ``what`` runs."""
    why = pyspy.missing()
    if why:
        return {"skipped": why}
    raw = Path(tempfile.mkdtemp(prefix="gramlogs-loki-")) / f"{label}.txt"
    with pyspy.recording(server.process.pid, raw, rate=400):
        await what()
    return pyspy.summarise(raw, _BUCKETS, rest=_REST)


# -- main -----------------------------------------------------------------------------------------


def dataset_spec(lines: int) -> datasets.DatasetSpec:
    """One project's ``lines`` over 24 h, 8 functions (the seeder's), cached between runs."""
    return datasets.DatasetSpec(rows=lines, projects=1, days=1.0, seed=5)


async def pick_function(conn: asyncpg.Connection, slug: str) -> tuple[uuid.UUID, uuid.UUID]:
    """The project, and its function with the most lines (~1/8), in rows or sealed blocks."""
    project = await conn.fetchval("SELECT id FROM projects WHERE slug = $1", slug)
    function_id = await conn.fetchval(
        "SELECT function_id FROM (SELECT function_id, count(*) AS n FROM logs"
        " WHERE project_id = $1 GROUP BY 1 UNION ALL SELECT function_id, sum(lines)"
        " FROM log_sealed WHERE project_id = $1 GROUP BY 1) AS f"
        " GROUP BY 1 ORDER BY sum(n) DESC, 1 LIMIT 1",
        project,
    )
    return project, function_id


async def main(args: argparse.Namespace) -> dict[str, Any]:
    began = time.monotonic()
    spec = dataset_spec(args.lines)
    ds = await datasets.dataset(spec)
    admin = await asyncpg.connect(ds.url)
    info = machine(await admin.fetchval("SHOW server_version"), "cramjam")
    print_machine(info)
    project, function_id = await pick_function(admin, ds.slugs[0])
    end = ds.end.replace(microsecond=0) + timedelta(seconds=1)
    start = end - timedelta(hours=24)
    print(f"dataset {spec.name}: {spec.rows:,} lines over 24 h, function {function_id}")
    paths = read_scenarios(function_id, start, end)
    database = ds.url.rsplit("/", 1)[1]
    # Pushed lines of the last hours, within a new database's partitions and retention.
    args.push_start = datetime.now(UTC) - timedelta(hours=2)
    headers = {"Gram-Key": ds.key, "Gram-Project": ds.slugs[0]}
    profiles: dict[str, Any] = {}
    with gramlogs_server(ds.url) as server:

        def meter() -> CpuMeter:
            return CpuMeter(admin, database, server.process.pid)

        sealed = await wait_sealed(admin, args.seal_wait, project=project)
        reads = await measure_reads(
            server,
            headers,
            paths,
            meter,
            iterations=args.iterations,
            warmup=args.warmup,
            cpu_seconds=args.cpu_seconds,
        )
        if args.profile:
            profiles = await read_profiles(server, headers, paths, args)
    await admin.close()
    # Pushes into a database of their own, as benchmarks/ingest.py does: the dataset stays as
    # seeded for the next run.
    async with datasets.fresh_database(datasets.server_url(), "loki_push") as (url, name):
        conn = await asyncpg.connect(url)
        try:
            await schema.migrate(conn)
            with gramlogs_server(url) as server:

                def push_meter() -> CpuMeter:
                    return CpuMeter(conn, name, server.process.pid)

                pushes = await measure_pushes(server, conn, push_meter, args)
                if args.profile:
                    profiles |= await push_profiles(server, conn, args)
        finally:
            await conn.close()
    info["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    result: dict[str, Any] = {
        "benchmark": "loki",
        "command": args.command,
        "machine": info,
        "dataset": spec.name,
        "options": {
            k: getattr(args, k)
            for k in ("lines", "iterations", "push_lines", "batch", "clients", "repeats")
        },
        "function_id": str(function_id),
        "window": [_iso(start), _iso(end)],
        "sealed": sealed,
        "reads": reads,
        "pushes": pushes,
        "profiles": profiles,
        "seconds": round(time.monotonic() - began, 1),
    }
    result["targets"] = targets(result)
    publish("loki", result, render(result), write_to=args.write_to)
    return result


async def read_profiles(
    server: LiveServer, headers: dict[str, str], paths: dict[str, str], args: argparse.Namespace
) -> dict[str, Any]:
    """Where the server's time goes in the Loki reads, each alone for its rounds."""
    client = HttpClient(server.port, headers)
    out = {}
    for name in ("query_range function", "volume grafana"):

        async def loop(path: str = paths[name]) -> None:
            for _ in range(args.iterations):
                client.get(path)

        out[name] = await profile(server, loop, name)
    client.close()
    return out


async def push_profiles(
    server: LiveServer, conn: asyncpg.Connection, args: argparse.Namespace
) -> dict[str, Any]:
    """Where the server's time goes in one more run of each push body."""
    lines = loki_bodies.make_lines(args.push_lines, args.seed + 1, args.push_start)
    batches = [lines[i : i + args.batch] for i in range(0, len(lines), args.batch)]
    out = {}
    for kind, (path, ctype, ok, build) in PUSH_KINDS.items():
        bodies = [build(b) for b in batches]
        _, head = await producer.new_project(conn, "profile")
        head |= {"Content-Type": ctype}
        out[kind] = await profile(
            server,
            lambda: post_all(server.url, path, head, bodies, args.clients, ok),  # noqa: B023
            kind,
        )
    return out


def targets(r: dict[str, Any]) -> list[dict[str, Any]]:
    reads, pushes = r["reads"], r["pushes"]
    checks = []
    for name in ("function", "level", "level + word"):
        loki, gram = reads[f"query_range {name}"]["p50"], reads[f"list {name}"]["p50"]
        checks.append(
            check(
                f"query_range ({name}) p50 <= {TARGET_READ_RATIO}x the list page's",
                loki <= TARGET_READ_RATIO * gram,
                f"{fmt_ms(loki)} / {fmt_ms(gram)} ms = {loki / gram:.2f}x",
            )
        )
    for name in ("volume grafana", "volume sum"):
        p50 = reads[name]["p50"]
        checks.append(
            check(
                f"{name} over 24 h p50 <= {TARGET_VOLUME_MS:.0f} ms at"
                f" {r['options']['lines']:,} lines",
                p50 <= TARGET_VOLUME_MS,
                f"{fmt_ms(p50)} ms",
            )
        )
    base = pushes["logs.ingest NDJSON"]["lines_per_s_median"]
    for kind in ("Loki push JSON", "Loki push protobuf"):
        rate = pushes[kind]["lines_per_s_median"]
        checks.append(
            check(
                f"{kind} lines/s >= {TARGET_PUSH_RATIO}x logs.ingest's",
                rate >= TARGET_PUSH_RATIO * base,
                f"{rate:,.0f} / {base:,.0f} = {rate / base:.2f}x",
            )
        )
    return checks


def _cpu(c: dict[str, float]) -> str:
    return f"{c['server']:.1f} / {c['postgres']:.1f}"


def render(r: dict[str, Any]) -> str:
    o = r["options"]
    lines = [
        f"## {r['machine']['date']}: {o['lines']:,} lines over 24 h, pushes of"
        f" {o['push_lines']:,} lines",
        "",
        f"`{r['command']}`, {r['seconds']:,.0f} s in all. One project, 8 functions; the"
        f" function queried has its ~1/8 of the lines; window {r['window'][0]} to"
        f" {r['window'][1]}; {r['sealed']['lines'] - r['sealed']['rows']:,} of"
        f" {r['sealed']['lines']:,} lines in sealed blocks when the reads began (the"
        f" benchmark waited {r['sealed']['waited_s']:.0f} s for the server to seal the seeded"
        f" rows). Reads: {o['iterations']}"
        " interleaved rounds, one keep-alive"
        " client; pushes: batches of"
        f" {o['batch']:,} lines, {o['clients']} clients, {o['repeats']} repeats in turn.",
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in r["machine"].items() if k != "date") + ".",
        "",
        "Reads (ms; CPU ms per request of the server / PostgreSQL, each scenario run alone):",
        "",
    ]
    rows = [
        [
            name,
            f"{s['answered']:,}"
            + (f" ({s['counted']:,})" if s.get("counted", s["answered"]) != s["answered"] else ""),
            fmt_ms(s["p50"]),
            fmt_ms(s["p95"]),
            fmt_ms(s["p99"]),
            _cpu(s["cpu_ms_per_request"]),
        ]
        for name, s in r["reads"].items()
    ]
    lines.append(
        table(
            ["request", "lines or points (lines counted)", "p50", "p95", "p99", "CPU srv / pg"],
            rows,
        )
    )
    lines += [
        "Pushes (the same lines in each body; CPU µs per line of the server / PostgreSQL):",
        "",
    ]
    rows = [
        [
            kind,
            f"{s['lines_per_s_median']:,.0f}",
            ", ".join(f"{x:,}" for x in s["lines_per_s_runs"]),
            " / ".join(fmt_ms(s["batch_ms"][q]) for q in ("p50", "p95", "p99")),
            s["bytes_per_line"],
            _cpu(s["cpu_us_per_line"]),
        ]
        for kind, s in r["pushes"].items()
    ]
    lines.append(
        table(
            [
                "body",
                "lines/s median",
                "runs",
                "batch ms p50 / p95 / p99",
                "B/line",
                "CPU srv / pg",
            ],
            rows,
        )
    )
    for label, p in r["profiles"].items():
        if "samples" not in p:
            lines += [f"Profile of {label}: {p.get('skipped')}", ""]
            continue
        lines += [f"Where the server's time goes, {label} (py-spy, {p['samples']} samples):", ""]
        lines += [f"- {share:.1f}% {name}" for name, share in p["exclusive_pct"].items()]
        lines += ["", "Top frames by self time:", ""]
        lines += [f"- {share:.1f}% `{frame}`" for frame, share in p["top_own_pct"].items()]
        lines.append("")
    lines += targets_table(r["targets"])
    return "\n".join(lines) + "\n"


def _options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lines", type=int, default=1_000_000, help="seeded lines over 24 h (1M)")
    p.add_argument("--iterations", type=int, default=40, help="rounds of the reads (40)")
    p.add_argument("--warmup", type=int, default=3, help="rounds before timing (3)")
    p.add_argument("--push-lines", type=int, default=100_000, help="lines a push run (100,000)")
    p.add_argument("--batch", type=int, default=1000, help="lines a push (1,000)")
    p.add_argument("--clients", type=int, default=4, help="concurrent pushing clients (4)")
    p.add_argument("--repeats", type=int, default=3, help="push runs of each body (3)")
    p.add_argument("--seed", type=int, default=0, help="of the pushed lines")
    p.add_argument("--profile", action="store_true", help="py-spy the server, each Loki part")
    p.add_argument("--cpu-seconds", type=float, default=1.0, help="of each read alone (1)")
    p.add_argument("--seal-wait", type=float, default=600.0, help="most seconds (600)")


def _smoke(args: argparse.Namespace) -> None:
    args.lines, args.iterations, args.warmup = 20_000, 5, 1
    args.push_lines, args.repeats, args.cpu_seconds = 5_000, 1, 0.2


if __name__ == "__main__":
    runner.run(
        "loki",
        __doc__,
        main,
        options=_options,
        smoke=_smoke,
        smoke_help="20,000 lines, 5 rounds, pushes of 5,000 lines",
        results=runner.results_file("loki"),
    )
