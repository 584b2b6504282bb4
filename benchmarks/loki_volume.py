"""Where the counted log volume's time goes, below HTTP: one ``storage.histogram.count_ranges``
per level (what ``sum by (level, detected_level) (count_over_time(…[1m]))`` runs, web/loki/
series.py), split into its two parts, the rows statement and ``sealed.count_in_ranges``, and
the calls inside the second (cProfile).

On benchmarks.loki's dataset, sealed by a server first: how to run it, docs/benchmarks.md,
"loki".
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import asyncpg

from benchmarks import runner
from benchmarks.loki import dataset_spec, pick_function
from benchmarks.results import fmt_ms, json_line, machine, print_machine
from benchmarks.settling import wait_sealed
from gramlogs.storage import histogram, sealed
from gramlogs.storage.filters import LogFilter
from gramlogs.web.loki.lines import id_at_micros
from testkit import datasets
from testkit.serve import gramlogs_server

LEVELS = ("debug", "info", "warn", "error")


async def _median_ms(go: Callable[[], Awaitable[object]], repeats: int) -> float:
    await go()  # the blocks' keys decoded and cached, as in a server that has answered once
    samples = []
    for _ in range(repeats):
        t = time.perf_counter()
        await go()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples) * 1000


async def main(args: argparse.Namespace) -> dict[str, Any]:
    spec = dataset_spec(args.lines)
    ds = await datasets.dataset(spec)
    conn = await asyncpg.connect(ds.url)
    info = machine(await conn.fetchval("SHOW server_version"))
    print_machine(info)
    project, function_id = await pick_function(conn, ds.slugs[0])
    # Sealed by a server, as benchmarks.loki's reads find it; then stopped, so that only this
    # process and PostgreSQL run while it measures.
    with gramlogs_server(ds.url):
        await wait_sealed(conn, args.seal_wait, project=project)
    end_us = (ds.end.replace(microsecond=0) + timedelta(seconds=1)).timestamp()
    end = int(end_us) * 1_000_000
    step = args.step * 1_000_000
    # The edges series.py cuts at: each step's range (t - step, t], t from start to end.
    bounds = [
        id_at_micros(end - 86_400_000_000 - step + i * step + 1)
        for i in range(1, 86_400 // args.step + 3)
    ]
    rows: dict[str, Any] = {}
    for level in (None, *LEVELS):
        equals: dict[str, object] = {"function_id": function_id}
        if level:
            equals["level"] = level
        f = LogFilter(project_id=project, lo=bounds[0], hi=bounds[-1] - 1, equals=equals)
        sql, values, _ = histogram.histogram_query(f, bounds[1:-1])

        async def whole(f: LogFilter = f) -> object:
            return await histogram.count_ranges(conn, f, bounds[1:-1])

        async def statement(sql: str = sql, values: list[object] = values) -> object:
            return await conn.fetch(sql, *values)

        async def blocks(f: LogFilter = f) -> object:
            return await sealed.count_in_ranges(conn, f, bounds)

        label = level or "all levels"
        rows[label] = {
            "count_ranges_ms": await _median_ms(whole, args.repeats),
            "rows_statement_ms": await _median_ms(statement, args.repeats),
            "sealed_ms": await _median_ms(blocks, args.repeats),
            "lines": sum(await histogram.count_ranges(conn, f, bounds[1:-1])),
        }
    f = LogFilter(
        project_id=project,
        lo=bounds[0],
        hi=bounds[-1] - 1,
        equals={"function_id": function_id, "level": "info"},
    )
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(args.repeats):
        await sealed.count_in_ranges(conn, f, bounds)
    profiler.disable()
    await conn.close()
    calls = _calls(pstats.Stats(profiler), args.repeats)
    result = {
        "benchmark": "loki_volume",
        "machine": info,
        "dataset": spec.name,
        "function_id": str(function_id),
        "step_s": args.step,
        "ranges": len(bounds) - 1,
        "counts": rows,
        "sealed_calls_info": calls,
    }
    _print(result)
    json_line("loki_volume", result)
    return result


def _calls(stats: pstats.Stats, repeats: int) -> dict[str, dict[str, float]]:
    """Calls and their time, per count_in_ranges, of the functions worth naming."""
    # Not count_in_ranges itself: a coroutine's every resumption counts as a call of its own.
    wanted = ("_first_at_least", "searchsorted", "span", "matching", "_decode_keys")
    out = {}
    for (path, line, name), (_, calls, own, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        if name in wanted and ("gramlogs" in path or "numpy" in path):
            key = f"{name} ({path.rsplit('/', 1)[-1]}:{line})"
            out[key] = {
                "calls": calls / repeats,
                "own_ms": own / repeats * 1000,
                "cumulative_ms": cumulative / repeats * 1000,
            }
    return out


def _print(r: dict[str, Any]) -> None:
    print(f"\n{r['ranges']:,} ranges of {r['step_s']} s over 24 h, function {r['function_id']}")
    print(f"{'level':<11} {'lines':>8} {'count_ranges':>13} {'rows stmt':>10} {'sealed':>8}  (ms)")
    for label, c in r["counts"].items():
        print(
            f"{label:<11} {c['lines']:>8,} {fmt_ms(c['count_ranges_ms']):>13}"
            f" {fmt_ms(c['rows_statement_ms']):>10} {fmt_ms(c['sealed_ms']):>8}"
        )
    print("\nsealed.count_in_ranges for level=info, per call (cProfile, which slows calls):")
    for name, c in sorted(r["sealed_calls_info"].items(), key=lambda kv: -kv[1]["cumulative_ms"]):
        print(f"  {name:<50} {c['calls']:>8,.0f} calls {c['cumulative_ms']:>7.1f} ms cumulative")


def _options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lines", type=int, default=1_000_000, help="the loki benchmark's dataset")
    p.add_argument("--step", type=int, default=60, help="seconds (Grafana's for 24 h: 60)")
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--seal-wait", type=float, default=600.0, help="most seconds (600)")


def _smoke(args: argparse.Namespace) -> None:
    args.lines, args.repeats = 20_000, 3


if __name__ == "__main__":
    runner.run(
        "loki_volume",
        __doc__,
        main,
        options=_options,
        smoke=_smoke,
        smoke_help="20,000 lines, 3 repeats",
    )
