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
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx

from benchmarks import runner
from benchmarks.harness import gramlogs_server
from benchmarks.results import machine, print_machine
from benchmarks.soak_report import Options, Run, Sample, report
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
