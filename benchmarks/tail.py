"""Live tails under a steady ingest: delivery delay, database queries, memory.

How it measures, and how to run it: docs/benchmarks.md, "tail".
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

from benchmarks import pgstats, runner
from benchmarks.cpu import CpuMeter
from benchmarks.results import (
    check,
    fmt_ms,
    machine,
    percentiles,
    print_machine,
    publish,
    targets_table,
)
from testkit import fanout
from testkit.datasets import counting_database
from testkit.serve import LiveServer, gramlogs_server

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
        "ingest_ms": percentiles(writer.posts[first_counted:], extremes=True),
        "writer_late_ms_max": max(writer.late) * 1000,
        "loop_lag_ms": percentiles(window_lag, extremes=True),
        "parse_lag_ms": percentiles(parse_lag, extremes=True),
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
        "delay_ms": percentiles(delays, extremes=True),
        "first_tail_ms": percentiles([first[n] for n in counted], extremes=True),
        "spread_ms": percentiles([last[n] - first[n] for n in counted], extremes=True),
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
    async with counting_database(args.database_url) as (url, name, statements):
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
            with gramlogs_server(url, settings=settings) as server:
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
            **{k: getattr(args, k) for k in ("rate", "batch", "seconds", "warmup")},
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
    delay = most["delay_ms"]
    at = f"at {most['tails']} tails"
    checks = [
        check(f"delay p50 <= {TARGET_P50_MS:.0f} ms {at}", delay["p50"] <= TARGET_P50_MS,
              f"{fmt_ms(delay['p50'])} ms"),
        check(f"delay p99 <= {TARGET_P99_MS:.0f} ms {at}", delay["p99"] <= TARGET_P99_MS,
              f"{fmt_ms(delay['p99'])} ms"),
    ]  # fmt: skip
    if one is not None and one is not most:
        field_, what = (
            ("tail_reads_per_s", "tail-journal reads/s (pg_stat_statements)")
            if "tail_reads_per_s" in one["queries"]
            else ("journal_idx_scans_per_s", "tail_journal index scans/s")
        )
        q1, qn = one["queries"][field_], most["queries"][field_]
        checks.append(
            check(
                f"{what} independent of the number of tails"
                f" ({most['tails']} within {TARGET_FLAT:.0%} or 1/s of 1)",
                abs(qn - q1) <= max(TARGET_FLAT * q1, 1.0),
                f"{q1:.1f}/s at 1, {qn:.1f}/s at {most['tails']}",
            )
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
    lines += targets_table(r["targets"])
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
