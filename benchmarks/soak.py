"""Soak: mixed reads and ingestion at a steady rate for minutes, with one database restart.

A real ``gramlogs serve`` process runs on an embedded PostgreSQL of its own (a temp dir; never a
shared server, since this one is stopped and started). Reads (the Gram list, PolyAPI's
execution logs and its keyword search) and NDJSON ingest batches are sent **open-loop**: every
request has a scheduled send time (``--reads`` per second, ``--batches`` per second, spread over a
fixed number of asyncio clients), and its latency counts from that time, so a slow server shows
as latency rather than as a lower rate. Halfway through, PostgreSQL is stopped
(``pg_ctl stop -m fast``), kept down ``--down`` seconds, and started again.

A batch that gets a 503 (or no answer) is sent again, unchanged, after its ``Retry-After``: every
line has a timestamp, so its id is derived from its content and a resend stores nothing twice.
Every line carries a unique marker; at the end every line of every acknowledged (2xx) batch must
be in the database exactly once.

The restart window runs from the ``pg_ctl stop`` call to ``--grace`` seconds after ``pg_ctl
start`` returns. Targets: nothing but 2xx, except 503 for requests in flight during the window;
no acknowledged line lost or doubled; RSS flat (its growth after the first tenth of the run,
extrapolated over the run by least squares, within 5 MiB or 5%).

Prints the machine, a table per ``--bucket`` seconds (requests by status, p50/p99 of reads and
ingests, the server's RSS, all its processes), a summary, and one ``RESULT soak {...}`` line.
It reports lost or doubled lines and errors outside the window; failing on them is a test's
(tests/test_ingest_across_restart.py), not this benchmark's.

    .venv/bin/python -m benchmarks.soak                 # 10 minutes
    .venv/bin/python -m benchmarks.soak --smoke         # seconds, with a restart (make test)
    .venv/bin/python -m benchmarks.soak --minutes 30 --reads 100 --batches 10 --lines 500
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx

from benchmarks import runner
from benchmarks.harness import gramlogs_server
from benchmarks.results import fmt_ms, json_line, machine, percentiles, print_machine
from gramlogs.core.config import Config
from gramlogs.core.keys import KeyScope
from gramlogs.storage import maintenance, schema, tenants
from testkit.postgres import OwnPostgres, own_postgres
from testkit.serve import LiveServer

PROJECT = "soak"
FUNCTIONS = [uuid.UUID(int=i + 1, version=4) for i in range(8)]
DEPLOYMENT = uuid.UUID(int=99, version=4)
WORDS = ("tool call started", "tool call finished", "upstream timeout", "cache lookup")
LEVELS = ("debug", "info", "info", "info", "warn", "error")


@dataclass
class Options:
    seconds: float
    reads: float  # per second
    batches: float  # per second
    lines: int  # per batch
    read_clients: int
    ingest_clients: int
    restart_at: float  # seconds into the run
    down: float
    grace: float
    bucket: float
    workers: int

    @classmethod
    def of(cls, a: argparse.Namespace) -> Options:
        seconds = a.minutes * 60
        down, bucket, lines = a.down, a.bucket, a.lines
        if a.smoke:
            seconds, down, bucket, lines = 12.0, 2.0, 2.0, min(lines, 50)
        return cls(
            seconds=seconds,
            reads=a.reads,
            batches=a.batches,
            lines=lines,
            read_clients=a.read_clients,
            ingest_clients=a.ingest_clients,
            restart_at=seconds / 2,
            down=down,
            grace=a.grace if not a.smoke else 2.0,
            bucket=bucket,
            workers=a.workers,
        )


# -- what happened ------------------------------------------------------------------------------


@dataclass
class Sample:
    kind: str  # read, ingest, readyz
    due: float  # scheduled send, seconds since the start
    sent: float  # actual send (later than due when the client was still busy)
    done: float
    status: str  # "200", "503", or "exc:ReadTimeout"
    retry: bool = False
    endpoint: str = ""  # the route, "?keyword" for a keyword search

    @property
    def service(self) -> float:
        """From the actual send: the server's time, without the wait for a busy client."""
        return self.done - self.sent

    @property
    def latency(self) -> float:
        return self.done - self.due


@dataclass
class Window:
    stop_called: float | None = None
    stopped: float | None = None
    start_called: float | None = None
    started: float | None = None
    grace: float = 0.0

    @property
    def end(self) -> float | None:
        return None if self.started is None else self.started + self.grace

    def overlaps(self, begin: float, end: float) -> bool:
        """Was a request in flight (``begin``..``end``) at any time within the window?"""
        if self.stop_called is None:
            return False
        window_end = self.end if self.end is not None else float("inf")
        return begin < window_end and end > self.stop_called


@dataclass
class Run:
    t0: float
    samples: list[Sample] = field(default_factory=list)
    rss: list[tuple[float, float]] = field(default_factory=list)  # (seconds, MiB)
    acked: set[str] = field(default_factory=set)  # markers of acknowledged lines
    acked_batches: int = 0
    stored_reported: int = 0  # sum of the replies' "stored"
    duplicates_reported: int = 0
    unacknowledged_batches: int = 0  # given up on (still failing at the deadline)
    window: Window = field(default_factory=Window)

    def now(self) -> float:
        return time.monotonic() - self.t0


# -- load ---------------------------------------------------------------------------------------


def batch_body(number: int, lines: int) -> tuple[bytes, list[str]]:
    """NDJSON lines, each with a unique marker (its first word) and a timestamp of its own."""
    base = datetime.now(UTC)
    out, markers = [], []
    for i in range(lines):
        marker = f"soak-{number}-{i}"
        entry = {
            "raw_log": f"{marker} {WORDS[(number + i) % len(WORDS)]} n={i}",
            "function_id": str(FUNCTIONS[(number + i) % len(FUNCTIONS)]),
            "deployment_id": str(DEPLOYMENT),
            "timestamp": (base + timedelta(microseconds=i)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "level": LEVELS[i % len(LEVELS)],
            "execution_id": f"exec-{number}",
        }
        out.append(json.dumps(entry, separators=(",", ":")))
        markers.append(marker)
    return ("\n".join(out) + "\n").encode(), markers


def read_paths(k: int) -> str:
    """The k-th read: the Gram list, PolyAPI's logs, PolyAPI's keyword search, in turn.

    In ``batch_body`` a line's function and word both follow ``number + i``, so "timeout" lines
    belong to two functions of the eight only: three keyword reads in four ask a function that
    has none of a word frequent in its project (the costly case: docs/keyword-search.md, "Limits";
    figures in benchmarks/soak.md).
    """
    function = FUNCTIONS[k % len(FUNCTIONS)]
    return (
        "/rpc/logs.listToolExecutionLogs?per_page=20",
        f"/functions/server/{function}/logs?limit=20",
        f"/functions/server/{function}/system-logs?keyword=timeout&lastHours=1&limit=20",
    )[k % 3]


def endpoint(path: str) -> str:
    route, _, query = path.partition("?")
    if route.startswith("/functions/server/"):
        route = "/functions/server/{id}/" + route.rsplit("/", 1)[1]
    return route + ("?keyword" if "keyword=" in query else "")


def by_endpoint(run: Run) -> dict[str, dict[str, Any]]:
    """Per endpoint, over the whole run: answers by status; p50/p99 from the scheduled send
    (what a client waits) and of the server's own time; and the server's p99 per minute."""
    grouped: dict[str, list[Sample]] = defaultdict(list)
    for s in run.samples:
        grouped[s.endpoint].append(s)
    out = {}
    for name, samples in sorted(grouped.items()):
        late = percentiles([s.latency for s in samples])
        own = percentiles([s.service for s in samples])
        minutes: dict[int, list[float]] = defaultdict(list)
        for s in samples:
            minutes[int(s.due // 60)].append(s.service)
        out[name] = {
            "statuses": dict(sorted(Counter(s.status for s in samples).items())),
            "p50_ms": late["p50"],
            "p99_ms": late["p99"],
            "service_p50_ms": own["p50"],
            "service_p99_ms": own["p99"],
            "service_p99_ms_per_minute": [
                round(percentiles(minutes[m])["p99"], 2) for m in sorted(minutes)
            ],
        }
    return out


async def schedule(
    run: Run,
    index: int,
    clients: int,
    rate: float,
    seconds: float,
    step: Callable[[int, float, Any], Awaitable[None]],
    prepare: Callable[[int], Any] = lambda k: None,
) -> None:
    """Call ``step(k, due, prepare(k))`` at due = (index + n*clients)/rate, never earlier;
    ``prepare`` (building a batch's body) runs before the wait, so it is not counted as latency.
    """
    if rate <= 0:
        return
    k = index
    while (due := k / rate) < seconds:
        item = prepare(k)
        await asyncio.sleep(max(0.0, due - run.now()))
        await step(k, due, item)
        k += clients


async def send(
    run: Run,
    http: httpx.AsyncClient,
    kind: str,
    due: float,
    method: str,
    path: str,
    *,
    retry: bool = False,
    **kw: Any,
) -> httpx.Response | None:
    sent = run.now()
    try:
        r = await http.request(method, path, **kw)
    except httpx.HTTPError as exc:
        status = f"exc:{type(exc).__name__}"
        run.samples.append(Sample(kind, due, sent, run.now(), status, retry, endpoint(path)))
        return None
    run.samples.append(
        Sample(kind, due, sent, run.now(), str(r.status_code), retry, endpoint(path))
    )
    return r


async def load(
    run: Run,
    opts: Options,
    http: httpx.AsyncClient,
    read_h: dict[str, dict[str, str]],
    ingest_h: dict[str, str],
) -> None:
    retries: set[asyncio.Task[None]] = set()
    deadline = opts.seconds + 30  # a batch still failing then is reported unacknowledged

    async def read(k: int, due: float, _: None) -> None:
        path = read_paths(k)
        headers = read_h["poly"] if path.startswith("/functions") else read_h["gram"]
        await send(run, http, "read", due, "GET", path, headers=headers)

    async def attempt(body: bytes, markers: list[str], due: float, retry: bool) -> float | None:
        """Send a batch once: None when done with it, else the seconds to wait before a retry."""
        r = await send(
            run,
            http,
            "ingest",
            due,
            "POST",
            "/rpc/logs.ingest",
            content=body,
            headers=ingest_h,
            retry=retry,
        )
        if r is not None and r.is_success:
            reply = r.json()
            run.acked.update(markers)
            run.acked_batches += 1
            run.stored_reported += reply["stored"]
            run.duplicates_reported += reply["duplicates"]
            return None
        if r is None:
            return 1.0  # no answer: it may or may not be stored; resending is safe
        if r.status_code == 503:
            return float(r.headers.get("retry-after", "1"))
        return None  # refused: not retried, counted as an error

    async def retry_until_acknowledged(body: bytes, markers: list[str], wait: float) -> None:
        while True:
            await asyncio.sleep(wait)
            if run.now() > deadline:
                run.unacknowledged_batches += 1
                return
            # A retry's latency counts from its own send.
            again = await attempt(body, markers, run.now(), retry=True)
            if again is None:
                return
            wait = again

    async def ingest(k: int, due: float, batch: tuple[bytes, list[str]]) -> None:
        body, markers = batch
        wait = await attempt(body, markers, due, retry=False)
        if wait is not None:
            # Retried beside the schedule, so that the steady rate goes on.
            task = asyncio.create_task(retry_until_acknowledged(body, markers, wait))
            retries.add(task)
            task.add_done_callback(retries.discard)

    def build(k: int) -> tuple[bytes, list[str]]:
        return batch_body(k, opts.lines)

    clients = [
        schedule(run, i, opts.read_clients, opts.reads, opts.seconds, read)
        for i in range(opts.read_clients)
    ] + [
        schedule(run, i, opts.ingest_clients, opts.batches, opts.seconds, ingest, build)
        for i in range(opts.ingest_clients)
    ]
    await asyncio.gather(*clients)
    while retries:
        await asyncio.gather(*list(retries))


async def readiness(run: Run, opts: Options, http: httpx.AsyncClient) -> None:
    """/readyz twice a second: when the server saw the database go and come back."""
    k = 0
    while (due := k * 0.5) < opts.seconds:
        await asyncio.sleep(max(0.0, due - run.now()))
        await send(run, http, "readyz", due, "GET", "/readyz")
        k += 1


async def restart(run: Run, opts: Options, pg: OwnPostgres) -> None:
    await asyncio.sleep(max(0.0, opts.restart_at - run.now()))
    w = run.window
    w.grace = opts.grace
    w.stop_called = run.now()
    await asyncio.to_thread(pg.stop)
    w.stopped = run.now()
    await asyncio.sleep(opts.down)
    w.start_called = run.now()
    await asyncio.to_thread(pg.start)
    w.started = run.now()


async def sample_rss(run: Run, opts: Options, server: LiveServer) -> None:
    while run.now() < opts.seconds:
        run.rss.append((run.now(), server.rss_mib()))
        await asyncio.sleep(1.0)
    run.rss.append((run.now(), server.rss_mib()))


# -- set-up and checks --------------------------------------------------------------------------


async def prepare(url: str) -> tuple[uuid.UUID, str, str]:
    """Schema, partitions, an organization with project ``soak``: (project id, read key,
    ingest key). The read key is bound to the project, so PolyAPI's reads need no project."""
    conn = await asyncpg.connect(url)
    try:
        await schema.migrate(conn)
        await maintenance.ensure_partitions(conn, Config())
        org = await tenants.create_organization(conn, "soak")
        project = await tenants.create_project(conn, org, PROJECT)
        consumer = await tenants.create_key(conn, org, KeyScope.CONSUMER, project_id=project)
        producer = await tenants.create_key(conn, org, KeyScope.PRODUCER, project_id=project)
    finally:
        await conn.close()
    return project, consumer.key, producer.key


async def stored_markers(url: str, project: uuid.UUID) -> Counter[str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT split_part(raw_log, ' ', 1) AS marker FROM logs WHERE project_id = $1",
            project,
        )
    finally:
        await conn.close()
    return Counter(r["marker"] for r in rows)


def rss_slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope, MiB per minute."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mx = sum(t for t, _ in points) / n
    my = sum(m for _, m in points) / n
    var = sum((t - mx) ** 2 for t, _ in points)
    if var == 0:
        return 0.0
    return sum((t - mx) * (m - my) for t, m in points) / var * 60


# -- report -------------------------------------------------------------------------------------


def classify(run: Run) -> tuple[Counter[tuple[str, str]], Counter[tuple[str, ...]]]:
    """(all answers by kind and status, the ones that miss the target by kind/status/where)."""
    statuses: Counter[tuple[str, str]] = Counter()
    failures: Counter[tuple[str, ...]] = Counter()
    w = run.window
    for s in run.samples:
        statuses[(s.kind, s.status)] += 1
        if s.status.startswith("2"):
            continue
        inside = w.overlaps(s.sent, s.done)
        if s.status == "503" and inside:
            continue
        failures[(s.kind, s.status, "in window" if inside else "outside window")] += 1
    return statuses, failures


def buckets(run: Run, opts: Options) -> list[dict[str, Any]]:
    rows = []
    n = max(1, round(opts.seconds / opts.bucket + 0.4999))
    by: dict[int, list[Sample]] = defaultdict(list)
    for s in run.samples:
        by[min(n - 1, int(s.due // opts.bucket))].append(s)
    rss: dict[int, list[float]] = defaultdict(list)
    for t, m in run.rss:
        rss[min(n - 1, int(t // opts.bucket))].append(m)
    for i in range(n):
        begin, end = i * opts.bucket, (i + 1) * opts.bucket
        got = [s for s in by[i] if s.kind != "readyz"]
        read = percentiles([s.latency for s in got if s.kind == "read"])
        ing = percentiles([s.latency for s in got if s.kind == "ingest"])
        rows.append(
            {
                "t": begin,
                "restart": run.window.overlaps(begin, end),
                "statuses": dict(sorted(Counter(s.status for s in got).items())),
                "reads": read["n"],
                "read_p50_ms": read["p50"],
                "read_p99_ms": read["p99"],
                "ingests": ing["n"],
                "ingest_p50_ms": ing["p50"],
                "ingest_p99_ms": ing["p99"],
                "rss_mib": max(rss[i]) if rss[i] else float("nan"),
            }
        )
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    head = (
        f"{'t (s)':>6} {'':1} {'reads':>5} {'p50':>7} {'p99':>7}  {'ingests':>7} {'p50':>7} "
        f"{'p99':>7}  {'RSS MiB':>7}  statuses (reads+ingests)"
    )
    print(head)
    for r in rows:
        statuses = " ".join(f"{k}:{v}" for k, v in r["statuses"].items())
        print(
            f"{r['t']:>6.0f} {'R' if r['restart'] else '':1} {r['reads']:>5} "
            f"{fmt_ms(r['read_p50_ms']):>7} {fmt_ms(r['read_p99_ms']):>7}  {r['ingests']:>7} "
            f"{fmt_ms(r['ingest_p50_ms']):>7} {fmt_ms(r['ingest_p99_ms']):>7}  "
            f"{r['rss_mib']:>7.1f}  {statuses}"
        )
    print("(latencies in ms, from each request's scheduled send; R: the restart window)")


# -- main ---------------------------------------------------------------------------------------


async def main(opts: Options) -> None:
    with own_postgres("gramlogs-soak-") as pg:
        await soak(opts, pg)


async def soak(opts: Options, pg: OwnPostgres) -> None:
    project, consumer, producer = await prepare(pg.url)
    conn = await asyncpg.connect(pg.url)
    try:
        pg_version = await conn.fetchval("SHOW server_version")
    finally:
        await conn.close()
    info = machine(pg_version)
    print_machine(info)
    print(
        f"soak: {opts.seconds:.0f} s, {opts.reads:g} reads/s ({opts.read_clients} clients), "
        f"{opts.batches:g} batches/s of {opts.lines} lines ({opts.ingest_clients} clients), "
        f"{opts.workers} worker(s); database down {opts.down:g} s from "
        f"{opts.restart_at:.0f} s; a shared machine: read the load average",
        flush=True,
    )
    read_h = {
        "gram": {"Gram-Key": consumer, "Gram-Project": PROJECT},
        "poly": {"Authorization": f"Bearer {consumer}"},
    }
    ingest_h = {
        "Gram-Key": producer,
        "Gram-Project": PROJECT,
        "Content-Type": "application/x-ndjson",
    }
    clients = opts.read_clients + opts.ingest_clients
    limits = httpx.Limits(max_connections=clients * 4, max_keepalive_connections=clients * 4)
    with gramlogs_server(pg.url, workers=opts.workers) as server:
        async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=30.0) as http:
            # One batch first, so that PolyAPI's reads find the functions.
            body, markers = batch_body(-1, len(FUNCTIONS))
            r = await http.post("/rpc/logs.ingest", content=body, headers=ingest_h)
            r.raise_for_status()
            run = Run(t0=time.monotonic())
            run.acked.update(markers)
            run.acked_batches += 1
            run.stored_reported += r.json()["stored"]
            await asyncio.gather(
                load(run, opts, http, read_h, ingest_h),
                readiness(run, opts, http),
                restart(run, opts, pg),
                sample_rss(run, opts, server),
            )
            elapsed = run.now()
            metrics = (await http.get("/metrics")).text
    stored = await stored_markers(pg.url, project)
    return report(run, opts, info, elapsed, stored, metrics)


def report(
    run: Run,
    opts: Options,
    info: dict[str, Any],
    elapsed: float,
    stored: Counter[str],
    metrics: str,
) -> None:
    rows = buckets(run, opts)
    print_table(rows)
    endpoints = by_endpoint(run)
    statuses, failures = classify(run)
    lost = sorted(run.acked - stored.keys())
    doubled = sorted(m for m, c in stored.items() if c > 1)
    unacked_stored = len(stored.keys() - run.acked)
    warm = [(t, m) for t, m in run.rss if t >= opts.seconds / 10]
    slope = rss_slope(warm)
    rss_values = [m for _, m in run.rss]
    warm_rss = warm[0][1] if warm else float("nan")
    growth = slope * (opts.seconds - opts.seconds / 10) / 60
    rss_flat = growth <= max(5.0, 0.05 * warm_rss)
    w = run.window
    db_failures = {
        line.split(" ")[0]: float(line.split(" ")[-1])
        for line in metrics.splitlines()
        if line.startswith("gramlogs_db_failures_total")
    }
    ready = [s for s in run.samples if s.kind == "readyz"]
    not_ready = [s for s in ready if s.status != "200"]
    summary: dict[str, Any] = {
        "seconds": round(elapsed, 1),
        "options": vars(opts),
        "window": {
            "stop_called": w.stop_called,
            "stopped": w.stopped,
            "start_called": w.start_called,
            "started": w.started,
            "end": w.end,
        },
        "readyz_not_ready": [not_ready[0].due, not_ready[-1].done] if not_ready else None,
        "statuses": {f"{k} {s}": n for (k, s), n in sorted(statuses.items())},
        "failures": {" ".join(k): n for k, n in sorted(failures.items())},
        "batches_acknowledged": run.acked_batches,
        "batches_unacknowledged": run.unacknowledged_batches,
        "ingest_retries": sum(1 for s in run.samples if s.retry),
        "lines_acknowledged": len(run.acked),
        "lines_verified": len(run.acked & stored.keys()),
        "lines_lost": len(lost),
        "lines_doubled": len(doubled),
        "lines_stored_unacknowledged": unacked_stored,
        "stored_reported": run.stored_reported,
        "duplicates_reported": run.duplicates_reported,
        "rss_mib": {
            "start": rss_values[0] if rss_values else None,
            "after_warmup": warm_rss,
            "end": rss_values[-1] if rss_values else None,
            "max": max(rss_values, default=None),
            "slope_mib_per_min": round(slope, 3),
        },
        "db_failures_metric": db_failures,
        "pass": {
            "no_error_outside_window": not failures,
            "no_line_lost": not lost,
            "no_line_doubled": not doubled,
            "rss_flat": rss_flat,
        },
        "endpoints": endpoints,
        "buckets": rows,
        "machine": info,
    }
    print()
    assert w.stop_called is not None and w.stopped is not None and w.end is not None
    assert w.start_called is not None and w.started is not None
    took = f"stop took {w.stopped - w.stop_called:.2f} s, start {w.started - w.start_called:.2f} s"
    print(f"ran {elapsed:.1f} s; restart window {w.stop_called:.1f}-{w.end:.1f} s ({took})")
    if not_ready:
        print(f"/readyz not ready from {not_ready[0].due:.1f} to {not_ready[-1].done:.1f} s")
    print("answers: " + ", ".join(f"{k} {s}: {n}" for (k, s), n in sorted(statuses.items())))
    print(
        "by endpoint (ms): p50/p99 from the scheduled send; from the actual send; "
        "p99 from the actual send per minute"
    )
    for name, e in endpoints.items():
        print(
            f"  {name}: {fmt_ms(e['p50_ms'])}/{fmt_ms(e['p99_ms'])}; "
            f"{fmt_ms(e['service_p50_ms'])}/{fmt_ms(e['service_p99_ms'])}; "
            + " ".join(fmt_ms(x) for x in e["service_p99_ms_per_minute"])
        )
    print(
        "errors missing the target: "
        + (", ".join(f"{' '.join(k)}: {n}" for k, n in sorted(failures.items())) or "none")
    )
    print(
        f"lines: {len(run.acked)} acknowledged ({run.acked_batches} batches), "
        f"{summary['lines_verified']} verified, {len(lost)} lost, {len(doubled)} doubled, "
        f"{unacked_stored} stored without an acknowledgement; "
        f"{summary['ingest_retries']} resends, {run.unacknowledged_batches} batches given up"
    )
    r = summary["rss_mib"]
    print(
        f"server RSS (MiB): start {r['start']:.1f}, after warm-up {warm_rss:.1f}, end "
        f"{r['end']:.1f}, max {r['max']:.1f}; slope {slope:+.3f} MiB/min "
        f"({'flat' if rss_flat else 'GROWING'})"
    )
    print(
        "targets: "
        + ", ".join(f"{k}={'pass' if v else 'FAIL'}" for k, v in summary["pass"].items())
    )
    json_line("soak", summary)


def _options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--reads", type=float, default=50.0, help="reads per second")
    p.add_argument("--batches", type=float, default=5.0, help="ingest batches per second")
    p.add_argument("--lines", type=int, default=300, help="lines per batch")
    p.add_argument("--read-clients", type=int, default=8)
    p.add_argument("--ingest-clients", type=int, default=4)
    p.add_argument("--down", type=float, default=8.0, help="seconds the database stays down")
    p.add_argument(
        "--grace", type=float, default=5.0, help="seconds after the restart still in the window"
    )
    p.add_argument("--bucket", type=float, default=10.0, help="seconds per report row")
    p.add_argument("--workers", type=int, default=1)


if __name__ == "__main__":
    runner.run(
        "soak",
        __doc__,
        lambda args: main(Options.of(args)),
        options=_options,
        smoke_help="12 seconds, 2 s down, 2 s buckets",
        loop="asyncio",
    )
