"""Live tails under a steady ingest: delivery delay, database queries, memory.

A real ``gramlogs serve`` (one worker, default settings unless ``--poll-ms``) on a fresh
database (by default on an embedded PostgreSQL of the benchmark's own in a temporary folder,
started with pg_stat_statements; ``--database-url`` for another server); one writer POSTs
NDJSON batches to ``/rpc/logs.ingest`` of one project at a fixed rate (``--rate`` lines/s in
batches of ``--batch``: by default 200 lines/s as 20 lines every 100 ms), open-loop: batch k
is sent at k * batch / rate seconds, or at once when the previous answer came later. The
configurations run in turn on the same server, each with tails of its own, opened (and each
seen to start) before the writer's first batch:

- 0 tails: the writer alone, the baseline of the database's work;
- 1, 10 and 100 tails (``--tails``) of the project, unfiltered;
- 100 tails (``--mixed``) in four groups: unfiltered, ``level=error``, one ``function_id``,
  ``keyword=timeout``.

Tails get one consumer key per 10 (``GRAMLOGS_TAIL_MAX_PER_KEY`` keeps its default of 10 per
key). Each configuration writes for ``--warmup`` + ``--seconds`` seconds; the figures count
the batches sent after the warm-up, what each tail got counts every batch. The warm-up is
long (12 s) for the table statistics: a backend that goes idle flushes them up to 10 s later
(PostgreSQL's PGSTAT_IDLE_INTERVAL), and asyncpg's pool reuses its most recent connections
first, so the connections that served 100 tails' opening sit idle and would have counted their
work in the window (40 transactions/s more at 100 tails with a 3 s warm-up).

**Delivery delay**: every line's raw_log starts with a marker (run and line number). The
writer notes when each batch's 2xx answer arrived; each tail notes when the bytes holding a
line's event arrived (as the event loop handed them over, before parsing). The delay of a line at a
tail is the second minus the first, on one clock (``time.monotonic``) in one process: the
writer and every tail are tasks of this process's event loop (uvloop), each tail a bare
asyncio protocol that times bytes as they come and parses them after, in arrival order
(testkit/fanout.py), so that the client costs as little as possible beside the server and
PostgreSQL on a shared machine (about a tenth of a core at 100 tails, measured: one process
is enough). The client process's CPU share, its event loop's lag (a 10 ms timer's lateness)
and the parser's lag behind arrivals are reported, so a saturated client shows. A delay can
be negative: the watcher may read a committed batch before the writer has read its answer.
Besides the delay of every (line, tail), per line: the first tail's delay (the journal poll,
the read, one send) and the spread from the first to the last tail that got it (fan-out and
the client's own scheduling).

**What the tails got** against what they should have (missing, duplicates, lines not matching
the filter, streams that ended) is reported; that it is every line exactly once is a test's
(tests/test_tail_fan_out.py), not this benchmark's.

**Database work** in each window: with ``pg_stat_statements`` (the benchmark's own embedded
PostgreSQL preloads it), statement executions per second, all of them and the reads of the
tail journal (``SELECT``s naming ``tail_journal`` or ``tail_heads``; the writer's are
``INSERT``s); with any server, ``pg_stat_database.xact_commit`` and the index and sequential
scans of ``tail_journal`` from ``pg_stat_user_tables`` per second (a busy backend's table
statistics reach those views up to a second late: a few percent of a 30 s window; an idle
one's, see the warm-up). Target: independent of the number of tails.

**Memory**: the server's RSS (every process of it, psutil) at start, idle before the first
tail, with 100 tails connected, the most seen while they stream, and at the end, every tail
closed.

    .venv/bin/python -m benchmarks.tail --smoke         # seconds; make test runs it
    .venv/bin/python -m benchmarks.tail                  # about 4 minutes
    .venv/bin/python -m benchmarks.tail --write          # and append the report to tail.md
    .venv/bin/python -m benchmarks.tail --tails 100 --no-mixed --poll-ms 20
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

import asyncpg

from benchmarks import harness as h
from benchmarks import pgstats, runner
from benchmarks.cpu import CpuMeter
from benchmarks.results import (
    fmt_ms,
    machine,
    percentiles,
    print_machine,
    publish,
)
from testkit import fanout
from testkit.serve import LiveServer

TAILS_PER_KEY = 10  # GRAMLOGS_TAIL_MAX_PER_KEY's default
TARGET_P50_MS = 250.0
TARGET_P99_MS = 1000.0
# Tail reads per second at the most tails within this share of those at one tail (or 1/s).
TARGET_FLAT = 0.10
DRAIN_S = 10.0  # after the writer stops, how long the tails have to get the last lines


# -- configurations ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    label: str
    tails: int
    mixed: bool = False

    def filter_of(self, i: int) -> fanout.Filter:
        return fanout.MIXED[i % len(fanout.MIXED)] if self.mixed else fanout.UNFILTERED


# -- one configuration --------------------------------------------------------------------------


@dataclass
class Context:
    args: argparse.Namespace
    server: LiveServer
    admin: asyncpg.Connection
    database: str
    statements: bool
    producer: dict[str, str]
    consumers: list[str]


async def loop_lag(samples: list[float], stop: asyncio.Event, tick: float = 0.01) -> None:
    """How late a ``tick`` timer fires: the event loop's own backlog."""
    while not stop.is_set():
        t = time.monotonic()
        await asyncio.sleep(tick)
        samples.append(time.monotonic() - t - tick)


async def sample_rss(server: LiveServer, samples: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        samples.append(server.rss_mib())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)


def stats_ms(values: list[float]) -> dict[str, float]:
    """n, p50/p95/p99 (nearest rank), min and max, in ms."""
    out = percentiles(values)
    out["min"] = min(values) * 1000 if values else math.nan
    out["max"] = max(values) * 1000 if values else math.nan
    return out


async def run_setup(ctx: Context, setup: Setup, run: int) -> dict[str, Any]:
    args = ctx.args
    prefix = f"tb{run}."
    parser = fanout.Arrivals()
    tails = [
        fanout.Tail(
            parser, ctx.server.port, ctx.consumers[i // TAILS_PER_KEY], setup.filter_of(i), prefix
        )
        for i in range(setup.tails)
    ]
    opened = time.monotonic()
    await asyncio.gather(*(t.open() for t in tails))
    connect_s = time.monotonic() - opened
    rss_connected = ctx.server.rss_mib()
    await asyncio.sleep(1.0)  # the tails' opening work done before anything is measured

    stop = asyncio.Event()
    lag: list[float] = []
    rss: list[float] = []
    probes = [
        asyncio.create_task(loop_lag(lag, stop)),
        asyncio.create_task(sample_rss(ctx.server, rss, stop)),
    ]
    writer = fanout.Writer(ctx.server.url, ctx.producer, prefix, args.rate, args.batch)
    t0 = time.monotonic() + 0.05
    start, end = t0 + args.warmup, t0 + args.warmup + args.seconds

    async def window() -> tuple[
        pgstats.Counters, pgstats.Counters, dict[str, float], list[float], list[float]
    ]:
        await asyncio.sleep(max(0.0, start - time.monotonic()))
        meter = CpuMeter(ctx.admin, ctx.database, ctx.server.process.pid)
        a = await pgstats.counters(ctx.admin, ctx.statements)
        await meter.start()
        lag_from, parse_from = len(lag), len(parser.lag)
        await asyncio.sleep(max(0.0, end - time.monotonic()))
        cpu = await meter.stop()
        b = await pgstats.counters(ctx.admin, ctx.statements)
        return a, b, cpu, lag[lag_from:], parser.lag[parse_from:]

    measuring = asyncio.create_task(window())
    await writer.run(t0, args.warmup + args.seconds)
    a, b, cpu, window_lag, parse_lag = await measuring

    total = writer.lines
    await parser.drain(tails, total, DRAIN_S)
    stop.set()
    await asyncio.gather(*probes)
    rss_end = ctx.server.rss_mib()
    for t in tails:
        t.close()
    await parser.stop()

    first_counted = math.ceil(args.warmup / writer.interval)
    result: dict[str, Any] = {
        "label": setup.label,
        "tails": setup.tails,
        "mixed": setup.mixed,
        "filters": {f.label: sum(1 for t in tails if t.filter is f) for f in fanout.MIXED}
        if setup.mixed
        else ({"all": setup.tails} if setup.tails else {}),
        "connect_s": round(connect_s, 3),
        "batches": len(writer.acks),
        "lines_sent": total,
        "lines_counted": total - first_counted * args.batch,
        "ingest_ms": stats_ms(writer.posts[first_counted:]),
        "writer_late_ms_max": max(writer.late) * 1000,
        "loop_lag_ms": stats_ms(window_lag),
        "parse_lag_ms": stats_ms(parse_lag),
        "queries": pgstats.rates(a, b),
        "cpu_share": {part: round(s / (b.at - a.at), 3) for part, s in cpu.items()},
        "rss_mib": {
            "connected": round(rss_connected, 1),
            "max": round(max(rss, default=math.nan), 1),
            "end": round(rss_end, 1),
        },
    }
    if tails:
        result |= delivery(tails, writer, total, first_counted, args.batch)
    return result


def delivery(
    tails: list[fanout.Tail], writer: fanout.Writer, total: int, first_counted: int, batch: int
) -> dict[str, Any]:
    """What the tails got (tests/test_tail_fan_out.py checks that it is exactly once), and the
    delays of the counted lines: each (line, tail), the first tail's, first to last tail."""
    delays: list[float] = []
    first = [math.inf] * total
    last = [-math.inf] * total
    tallies = [fanout.tally(t, total) for t in tails]
    for t, got in zip(tails, tallies, strict=True):
        seen = bytearray(total)
        for n, at in zip(t.lines, t.times, strict=True):
            if 0 <= n < total and got.counts[n] and not seen[n] and n // batch >= first_counted:
                seen[n] = 1
                delay = at - writer.acks[n // batch]
                delays.append(delay)
                first[n] = min(first[n], delay)
                last[n] = max(last[n], delay)
    counted = [n for n in range(first_counted * batch, total) if first[n] != math.inf]
    problems = [
        f"tail {i} ({t.filter.label}): {got.problem}"
        for i, (t, got) in enumerate(zip(tails, tallies, strict=True))
        if got.problem
    ]
    return {
        "delivery": {
            "expected": sum(sum(1 for n in range(total) if t.filter.matches(n)) for t in tails),
            "events": sum(len(t.lines) for t in tails),
            "missing": sum(g.missing for g in tallies),
            "duplicates": sum(g.duplicates for g in tallies),
            "unexpected": sum(g.unexpected for g in tallies),
            "foreign": sum(g.foreign for g in tallies),
            "ended_early": sum(1 for g in tallies if g.ended),
            "problems": problems[:20],
        },
        "delay_ms": stats_ms(delays),
        "first_tail_ms": stats_ms([first[n] for n in counted]),
        "spread_ms": stats_ms([last[n] - first[n] for n in counted]),
    }


# -- main ---------------------------------------------------------------------------------------


def setups(args: argparse.Namespace) -> list[Setup]:
    out = [Setup("0 tails (writer only)", 0)]
    out += [Setup(f"{n} tail{'s' if n != 1 else ''}", n) for n in args.tails]
    if args.mixed:
        out.append(Setup(f"{args.mixed} tails, mixed filters", args.mixed, mixed=True))
    return out


async def main(args: argparse.Namespace) -> dict[str, Any]:
    began = time.monotonic()
    plan = setups(args)
    most = max(s.tails for s in plan)
    settings = {"GRAMLOGS_TAIL_POLL_MS": str(args.poll_ms)} if args.poll_ms else {}
    async with pgstats.database(args.database_url) as (url, name, statements):
        admin = await asyncpg.connect(url)
        pg_version = await admin.fetchval("SHOW server_version")
        info = machine(pg_version)
        print_machine(info)
        print(
            f"tail: {args.rate:g} lines/s in batches of {args.batch}, {args.warmup:g} s warm-up"
            f" + {args.seconds:g} s per configuration; "
            + ", ".join(s.label for s in plan)
            + f"; statements from {'pg_stat_statements' if statements else 'table statistics'}",
            flush=True,
        )
        try:
            with h.gramlogs_server(url, settings=settings) as server:
                producer, consumers = await fanout.tenants_of(url, math.ceil(most / TAILS_PER_KEY))
                ctx = Context(args, server, admin, name, statements, producer, consumers)
                rss: dict[str, float] = {"start": round(server.rss_mib(), 1)}
                results = []
                for run, setup in enumerate(plan):
                    if setup.tails and "idle_before_tails" not in rss:
                        rss["idle_before_tails"] = round(server.rss_mib(), 1)
                    print(f"  {setup.label} ...", file=sys.stderr, flush=True)
                    results.append(await run_setup(ctx, setup, run))
                await asyncio.sleep(1.0)
                rss["end"] = round(server.rss_mib(), 1)
        finally:
            await admin.close()
    info["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    at_most = next((r for r in results if r["tails"] == most and not r["mixed"]), None)
    if at_most is not None:
        rss[f"{most}_tails_connected"] = at_most["rss_mib"]["connected"]
        rss[f"{most}_tails_streaming_max"] = at_most["rss_mib"]["max"]
    result = {
        "benchmark": "tail",
        "command": args.command,
        "machine": info,
        "options": {
            "rate": args.rate,
            "batch": args.batch,
            "seconds": args.seconds,
            "warmup": args.warmup,
            "poll_ms": args.poll_ms or 100,
            "workers": 1,
            "tails_per_key": TAILS_PER_KEY,
            "client": "writer and tails: asyncio tasks of one process (uvloop), bare sockets",
            "statements_source": "pg_stat_statements" if statements else "table statistics",
        },
        "configs": results,
        "rss_mib": rss,
        "seconds": round(time.monotonic() - began, 1),
    }
    result["targets"] = targets(result)
    publish("tail", result, render(result), write_to=args.write_to)
    return result


def targets(r: dict[str, Any]) -> list[dict[str, Any]]:
    configs = [c for c in r["configs"] if not c["mixed"]]
    most = max(configs, key=lambda c: c["tails"])
    one = next((c for c in configs if c["tails"] == 1), None)
    checks = [
        {
            "target": f"delay p50 <= {TARGET_P50_MS:.0f} ms at {most['tails']} tails",
            "met": most["delay_ms"]["p50"] <= TARGET_P50_MS,
            "measured": f"{fmt_ms(most['delay_ms']['p50'])} ms",
        },
        {
            "target": f"delay p99 <= {TARGET_P99_MS:.0f} ms at {most['tails']} tails",
            "met": most["delay_ms"]["p99"] <= TARGET_P99_MS,
            "measured": f"{fmt_ms(most['delay_ms']['p99'])} ms",
        },
    ]
    if one is not None and one is not most:
        field_, what = (
            ("tail_reads_per_s", "tail-journal reads/s (pg_stat_statements)")
            if "tail_reads_per_s" in one["queries"]
            else ("journal_idx_scans_per_s", "tail_journal index scans/s")
        )
        q1, qn = one["queries"][field_], most["queries"][field_]
        checks.append(
            {
                "target": f"{what} independent of the number of tails"
                f" ({most['tails']} within {TARGET_FLAT:.0%} or 1/s of 1)",
                "met": abs(qn - q1) <= max(TARGET_FLAT * q1, 1.0),
                "measured": f"{q1:.1f}/s at 1, {qn:.1f}/s at {most['tails']}",
            }
        )
    return checks


def _ms(s: dict[str, float], *keys: str) -> str:
    return " / ".join(fmt_ms(s[k]) for k in keys)


def render(r: dict[str, Any]) -> str:
    o = r["options"]
    lines = [
        f"## {r['machine']['date']}: {o['rate']:g} lines/s in batches of {o['batch']},"
        f" {o['seconds']:g} s per configuration, poll {o['poll_ms']} ms",
        "",
        f"`{r['command']}`, {r['seconds']:,.0f} s in all. Client: {o['client']};"
        f" {o['tails_per_key']} tails per consumer key. Statements: {o['statements_source']}.",
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in r["machine"].items() if k != "date") + ".",
        "",
        "Delivery, ms from the batch's 2xx at the writer to the line's event at a tail"
        " (p50 / p99 / max; the first tail of each line; the spread from first to last tail):",
        "",
        "| configuration | events (expected) | missing | dup | delay p50 / p99 / max"
        " | first tail p50 / p99 | spread p50 / p99 | ingest POST p50 / p99"
        " | client: loop lag p99, parse lag p99 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in r["configs"]:
        if not c["tails"]:
            continue
        d = c["delivery"]
        lines.append(
            f"| {c['label']} | {d['events']:,} ({d['expected']:,}) | {d['missing']}"
            f" | {d['duplicates']} | {_ms(c['delay_ms'], 'p50', 'p99', 'max')}"
            f" | {_ms(c['first_tail_ms'], 'p50', 'p99')} | {_ms(c['spread_ms'], 'p50', 'p99')}"
            f" | {_ms(c['ingest_ms'], 'p50', 'p99')}"
            f" | {fmt_ms(c['loop_lag_ms']['p99'])}, {fmt_ms(c['parse_lag_ms']['p99'])} |"
        )
    lines += [
        "",
        "Cost, per second of the measured window (CPU: share of one core; the client is the"
        " writer and every tail):",
        "",
        "| configuration | statements/s | tail-journal reads/s | xact/s | tail_journal idx scans/s"
        " | CPU server / PostgreSQL / client | server RSS MiB connected / max / end |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in r["configs"]:
        q, cpu, m = c["queries"], c["cpu_share"], c["rss_mib"]
        stmts = f"{q['statements_per_s']:.1f}" if "statements_per_s" in q else "—"
        reads = f"{q['tail_reads_per_s']:.1f}" if "tail_reads_per_s" in q else "—"
        lines.append(
            f"| {c['label']} | {stmts} | {reads} | {q['xact_per_s']:.1f}"
            f" | {q['journal_idx_scans_per_s']:.1f}"
            f" | {cpu['server']:.0%} / {cpu['postgres']:.0%} / {cpu['clients']:.0%}"
            f" | {m['connected']} / {m['max']} / {m['end']} |"
        )
    rss = r["rss_mib"]
    lines += ["", "Server RSS (MiB): " + ", ".join(f"{k} {v}" for k, v in rss.items()) + "."]
    if all("statements" in c["queries"] for c in r["configs"]):
        lines += ["", "Statements per second by configuration (pg_stat_statements):", ""]
        lines += pgstats.statement_table(r["configs"])
    lines += ["", "| target (the issue's) | met | measured |", "|---|---|---|"]
    for t in r["targets"]:
        lines.append(f"| {t['target']} | {'yes' if t['met'] else '**no**'} | {t['measured']} |")
    return "\n".join(lines) + "\n"


def _options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rate", type=float, default=200.0, help="lines per second (200)")
    p.add_argument("--batch", type=int, default=20, help="lines per POST (20)")
    p.add_argument(
        "--tails",
        type=lambda v: [int(x) for x in v.split(",")],
        default=[1, 10, 100],
        help="unfiltered tail counts, comma-separated (1,10,100)",
    )
    p.add_argument("--mixed", type=int, default=100, help="tails of the mixed filters (100)")
    p.add_argument("--no-mixed", dest="mixed", action="store_const", const=0)
    p.add_argument("--seconds", type=float, default=30.0, help="measured seconds (30)")
    p.add_argument("--warmup", type=float, default=12.0, help="seconds before measuring (12)")
    p.add_argument("--poll-ms", type=int, help="GRAMLOGS_TAIL_POLL_MS (the server's: 100)")
    p.add_argument("--database-url", help="a PostgreSQL server (default: an embedded one)")


def _smoke(args: argparse.Namespace) -> None:
    args.rate, args.batch, args.tails, args.mixed = 20.0, 2, [1, 3], 4
    args.seconds, args.warmup = 3.0, 1.0


if __name__ == "__main__":
    runner.run(
        "tail",
        __doc__,
        main,
        options=_options,
        smoke=_smoke,
        smoke_help="1 and 3 tails, 20 lines/s",
        results=runner.results_file("tail"),
    )
