"""Abusive write bodies against a real server: ``/healthz`` latency and the server's memory.

Each scenario runs on a ``gramlogs serve`` of its own (so that its peak RSS is its own), on a
new database, while a probe asks ``/healthz`` every 20 ms (p50, p99, the slowest) and samples the
server's RSS from /proc (peak: VmHWM):

- **otlp-empty**: ``POST /v1/logs``, protobuf gzip of 400,000 empty records (a few hundred
  bytes), with a good producer key;
- **ingest-zeros**: ``POST /rpc/logs.ingest``, ``[0,0,…]`` of 4.19M entries (8 MiB, about 8 KB
  of gzip), with a good producer key;
- **invalid-keys**: 30 connections at once, each with an invalid key and an 8 KB gzip body
  that inflates to just under 8 MiB, three rounds;
- **batch-with-tail**: a live tail open on the project, then one OTLP batch of 200,000 lines
  (the server started with ``GRAMLOGS_MAX_BATCH_ENTRIES=200000`` and a statement time limit of
  two minutes); how many lines the tail got and how its stream ended.

``--compare PATH`` runs every scenario on the checkout at PATH too (e.g. ``git worktree add
/tmp/main-base main``), side by side: before and after.

    .venv/bin/python -m benchmarks.abusive_bodies --compare /tmp/main-base   # a few minutes
    .venv/bin/python -m benchmarks.abusive_bodies --compare /tmp/main-base --write
    .venv/bin/python -m benchmarks.abusive_bodies --smoke                     # seconds
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import json
import os
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from benchmarks import runner
from benchmarks.results import (
    fmt_ms,
    machine,
    percentiles,
    print_machine,
    publish,
)
from gramlogs.client.sse import EventParser
from testkit import tailing
from testkit.postgres import own_postgres, temporary_database
from testkit.serve import LiveServer, live_server

SLUG = "abuse"
PROBE_EVERY_S = 0.02


@dataclass
class Sizes:
    otlp_records: int = 400_000
    zeros: int = 4_190_000
    connections: int = 30
    rounds: int = 3
    inflated: int = 8 * 1024 * 1024 - 4096
    batch_lines: int = 200_000


SMOKE = Sizes(
    otlp_records=20_000, zeros=40_000, connections=3, rounds=1, inflated=1 << 20, batch_lines=5_000
)


@dataclass
class Target:
    url: str
    consumer: str
    producer: str

    def headers(self, *, producer: bool) -> dict[str, str]:
        return {"Gram-Key": self.producer if producer else self.consumer, "Gram-Project": SLUG}


def _status(r: httpx.Response) -> str:
    return str(r.status_code)


async def otlp_empty(client: httpx.AsyncClient, target: Target, sizes: Sizes) -> dict[str, Any]:
    message = ExportLogsServiceRequest(
        resource_logs=[
            ResourceLogs(scope_logs=[ScopeLogs(log_records=[LogRecord()] * sizes.otlp_records)])
        ]
    )
    body = gzip.compress(message.SerializeToString(), mtime=0)
    headers = target.headers(producer=True) | {
        "content-type": "application/x-protobuf",
        "content-encoding": "gzip",
    }
    r = await client.post("/v1/logs", content=body, headers=headers)
    return {"gzip_bytes": len(body), "statuses": [_status(r)]}


async def ingest_zeros(client: httpx.AsyncClient, target: Target, sizes: Sizes) -> dict[str, Any]:
    body = gzip.compress(b"[" + b"0," * (sizes.zeros - 1) + b"0]", mtime=0)
    headers = target.headers(producer=True) | {
        "content-type": "application/json",
        "content-encoding": "gzip",
    }
    r = await client.post("/rpc/logs.ingest", content=body, headers=headers)
    return {"gzip_bytes": len(body), "statuses": [_status(r)]}


async def invalid_keys(client: httpx.AsyncClient, target: Target, sizes: Sizes) -> dict[str, Any]:
    body = gzip.compress(b" " * sizes.inflated, mtime=0)
    headers = {
        "Gram-Key": "glk_" + "0" * 43,
        "Gram-Project": SLUG,
        "content-type": "application/json",
        "content-encoding": "gzip",
    }
    statuses: list[str] = []
    for _ in range(sizes.rounds):
        replies = await asyncio.gather(
            *(
                client.post("/rpc/logs.ingest", content=body, headers=headers)
                for _ in range(sizes.connections)
            )
        )
        statuses += [_status(r) for r in replies]
    return {"gzip_bytes": len(body), "statuses": statuses}


async def batch_with_tail(
    client: httpx.AsyncClient, target: Target, sizes: Sizes
) -> dict[str, Any]:
    resource = Resource(
        attributes=[
            KeyValue(key="gram.function_id", value=AnyValue(string_value=str(uuid.UUID(int=1)))),
            KeyValue(key="gram.deployment_id", value=AnyValue(string_value=str(uuid.UUID(int=2)))),
        ]
    )
    start_ns = time.time_ns()
    records = [
        LogRecord(time_unix_nano=start_ns + n * 1000, body=AnyValue(string_value=f"line {n}"))
        for n in range(sizes.batch_lines)
    ]
    message = ExportLogsServiceRequest(
        resource_logs=[ResourceLogs(resource=resource, scope_logs=[ScopeLogs(log_records=records)])]
    )
    body = gzip.compress(message.SerializeToString(), mtime=0)
    got = 0
    ended: str | None = None
    opened = asyncio.Event()
    done = asyncio.Event()

    async def tail() -> None:
        nonlocal got, ended
        parser = EventParser()
        headers = target.headers(producer=False)
        async with client.stream("GET", "/rpc/logs.tail", headers=headers) as r:
            opened.set()
            async for chunk in r.aiter_raw():
                for event in parser.feed(chunk):
                    if event.type == "message":
                        got += 1
                    elif event.type == "end":
                        ended = json.loads(event.data).get("reason")
                        done.set()
                        return
                if got >= sizes.batch_lines:
                    done.set()
                    return

    task = asyncio.create_task(tail())
    await opened.wait()
    await asyncio.sleep(0.5)  # the tail subscribed before the batch
    headers = target.headers(producer=True) | {
        "content-type": "application/x-protobuf",
        "content-encoding": "gzip",
    }
    r = await client.post("/v1/logs", content=body, headers=headers)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), timeout=120)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return {"gzip_bytes": len(body), "statuses": [_status(r)], "tail_got": got, "tail_end": ended}


SCENARIOS: dict[str, Callable[[httpx.AsyncClient, Target, Sizes], Awaitable[dict[str, Any]]]] = {
    "otlp-empty": otlp_empty,
    "ingest-zeros": ingest_zeros,
    "invalid-keys": invalid_keys,
    "batch-with-tail": batch_with_tail,
}


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


async def _probe(
    server: LiveServer, stop: asyncio.Event, into: list[float], rss: list[int]
) -> None:
    pid = server.process.pid
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
        while not stop.is_set():
            started = time.perf_counter()
            r = await client.get("/healthz")
            into.append(time.perf_counter() - started)
            assert r.status_code == 200, r.text
            rss.append(_status_kib(pid, "VmRSS"))
            await asyncio.sleep(PROBE_EVERY_S)


async def scenario(
    name: str, database: str, root: Path | None, sizes: Sizes, logs: Path
) -> dict[str, Any]:
    async with temporary_database(database, "bench_abusive") as url:
        consumer, producer = await tailing.keys_of_a_new_tenant(url, SLUG)
        env = {"GRAMLOGS_LOG_LEVEL": "warning", "GRAMLOGS_ACCESS_LOG": "false"}
        if name == "batch-with-tail":
            env["GRAMLOGS_MAX_BATCH_ENTRIES"] = str(max(sizes.batch_lines, 10_000))
            # Storing 200,000 lines in one transaction outlasts the default 5 s on a busy
            # machine (a 503): the scenario is about the tail, so let it commit.
            env["GRAMLOGS_STATEMENT_TIMEOUT_MS"] = "120000"
        # Another checkout's code (before), in this environment, or this one's.
        with live_server(url, logs, root=root, settings=env) as server:
            target = Target(server.url, consumer, producer)
            pid = server.process.pid
            await asyncio.sleep(0.5)
            baseline = _status_kib(pid, "VmRSS")
            latencies: list[float] = []
            rss: list[int] = []
            stop = asyncio.Event()
            probe = asyncio.create_task(_probe(server, stop, latencies, rss))
            await asyncio.sleep(0.5)
            limits = httpx.Limits(max_connections=sizes.connections + 4)
            started = time.perf_counter()
            async with httpx.AsyncClient(base_url=server.url, timeout=180, limits=limits) as c:
                outcome = await SCENARIOS[name](c, target, sizes)
            seconds = time.perf_counter() - started
            await asyncio.sleep(0.5)
            stop.set()
            await probe
            peak = _status_kib(pid, "VmHWM")
    statuses: dict[str, int] = {}
    for s in outcome.pop("statuses"):
        statuses[s] = statuses.get(s, 0) + 1
    p = percentiles(latencies)
    return {
        "seconds": round(seconds, 2),
        "statuses": statuses,
        "healthz_ms": {"p50": p["p50"], "p99": p["p99"], "max": max(latencies) * 1000},
        "probes": len(latencies),
        "rss_mib": {
            "before": round(baseline / 1024),
            "peak": round(peak / 1024),
            "added": round((peak - baseline) / 1024),
        },
        **outcome,
    }


def render(r: dict[str, Any]) -> str:
    lines = [f"## Abusive bodies, {r['machine']['date']}", "", f"Machine: {r['machine']}", ""]
    lines += [f"Command: `{r['command']}`", ""]
    lines += [
        "| scenario | code | answers | seconds | /healthz p50 ms | p99 ms | max ms "
        "| RSS before MiB | peak MiB | added MiB | tail |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in SCENARIOS:
        for label, runs in r["runs"].items():
            s = runs.get(name)
            if s is None:
                continue
            answers = ", ".join(f"{n} x {code}" for code, n in sorted(s["statuses"].items()))
            tail = ""
            if "tail_got" in s:
                tail = f"{s['tail_got']:,} lines, end: {s['tail_end'] or '-'}"
            ms = s["healthz_ms"]
            rss = s["rss_mib"]
            lines.append(
                f"| {name} | {label} | {answers} | {s['seconds']} | {fmt_ms(ms['p50'])} "
                f"| {fmt_ms(ms['p99'])} | {fmt_ms(ms['max'])} | {rss['before']} "
                f"| {rss['peak']} | {rss['added']} | {tail} |"
            )
    return "\n".join(lines) + "\n"


async def main(args: argparse.Namespace) -> dict[str, Any]:
    sizes = SMOKE if args.smoke else Sizes()
    roots: dict[str, Path | None] = {}
    if args.compare:
        roots["before"] = args.compare
    roots["after" if args.compare else "this checkout"] = None
    with contextlib.ExitStack() as stack:
        database = os.environ.get("GRAMLOGS_BENCH_DATABASE_URL")
        if not database:
            database = stack.enter_context(own_postgres("bench-abusive-")).url
        conn = await asyncpg.connect(database)
        version = await conn.fetchval("SHOW server_version")
        await conn.close()
        result: dict[str, Any] = {"machine": machine(version), "command": args.command}
        print_machine(result["machine"])
        logs = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        result["runs"] = {label: {} for label in roots}
        for name in args.only or list(SCENARIOS):
            for label, root in roots.items():
                outcome = await scenario(name, database, root, sizes, logs)
                result["runs"][label][name] = outcome
                print(f"  {name:<16} {label:<14} {outcome}", flush=True)
    publish("abusive_bodies", result, render(result), write_to=args.write_to)
    return result


def _resolved(path: str) -> Path:
    return Path(path).resolve()


def _options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--compare", metavar="PATH", type=_resolved, help="also run the checkout at PATH"
    )
    p.add_argument("--only", nargs="*", choices=list(SCENARIOS), help="these scenarios only")


if __name__ == "__main__":
    runner.run(
        "abusive_bodies",
        __doc__,
        main,
        options=_options,
        smoke_help="small bodies",
        results=runner.results_file("abusive_bodies"),
    )
