"""The plans pages run under: the server's settings beside the ones they replaced.

A filtered page is an ordered index range scan that stops after ``per_page + 1`` rows, when the
planner takes it. The server plans page statements once per connection (generic plans), and a
generic plan estimates ``function_id = $n`` from the column's number of distinct values across
all projects, times the default selectivity of an id range with unknown bounds: at scale about
one row per partition. Reading every matching row and sorting them then looks cheaper than the
ordered scan, whose start-up costs add up over the window's partitions, most of them empty in
an installation's first weeks: PostgreSQL chose it with sorts allowed. Measured side by side on
the same data (100 projects, the first holding 20% of the lines, over three days), each setup on
a connection of its own, the page statement of ``pages.fetch_page``:

- ``shipped``: ``pages.PLAN_SETTINGS``, as the server's pools set them (generic plans, no sort);
- ``generic_sorts``: generic plans with sorts allowed, the server's settings before;
- ``custom``: a plan made for each execution with the values known (PostgreSQL's default after
  its first five runs of a statement, when the custom plans cost more than the generic one);
  sorts allowed.

For each filter of the seeded project (none, function, deployment, instance, level, source),
the first page and a page 95% deep, newest first, 20 rows: p50 and p95 per setup, and the ratio
of each to ``shipped``. The plan of each is read too: ``sorted_rows`` is how many rows a Sort
node took in, the rows a page read beyond what it returned.

    .venv/bin/python -m benchmarks.plans            # 1M rows
    .venv/bin/python -m benchmarks.plans --smoke    # 20k rows, seconds

Figures, with the machine they were measured on: benchmarks/plans.md.
"""

from __future__ import annotations

import argparse
import functools
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import asyncpg
import msgspec

from benchmarks import harness as h
from benchmarks import runner
from benchmarks.results import fmt_ms, json_line, machine, percentiles, print_machine
from gramlogs.core import ids
from gramlogs.storage.pages import PLAN_SETTINGS, LogFilter, PageRequest, fetch_page, page_query

SETUPS: dict[str, dict[str, str]] = {
    "shipped": PLAN_SETTINGS,
    "generic_sorts": {"plan_cache_mode": "force_generic_plan", "jit": "off"},
    "custom": {"plan_cache_mode": "force_custom_plan", "jit": "off"},
}
PER_PAGE = 20


async def _filters(conn: asyncpg.Connection, project: uuid.UUID) -> dict[str, dict[str, Any]]:
    newest = await conn.fetchrow(
        "SELECT function_id, deployment_id, instance FROM logs WHERE project_id = $1"
        " ORDER BY id DESC LIMIT 1",
        project,
    )
    assert newest is not None, "the dataset has rows"
    return {
        "none": {},
        "function_id": {"function_id": newest["function_id"]},
        "deployment_id": {"deployment_id": newest["deployment_id"]},
        "instance": {"instance": newest["instance"]},
        "level": {"level": "error"},
        "source": {"source": "server"},
    }


def _request(project: uuid.UUID, equals: dict[str, Any], cursor: uuid.UUID | None) -> PageRequest:
    return PageRequest(
        filter=LogFilter(project_id=project, equals=equals), per_page=PER_PAGE, cursor=cursor
    )


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    found = [plan]
    for child in plan.get("Plans", []):
        found += _nodes(child)
    return found


def _literal(value: object) -> str:
    return str(value) if isinstance(value, int) else "'" + str(value).replace("'", "''") + "'"


async def _sorted_rows(conn: asyncpg.Connection, req: PageRequest) -> int:
    """Rows the page's plan sorted: what it read beyond the ordered scan's ``per_page + 1``."""
    sql, args = page_query(req)
    # PREPARE and EXECUTE, so that the plan is made as the connection's settings make a
    # prepared statement's (generic or custom).
    await conn.execute(f"PREPARE bench_page AS {sql}")
    try:
        literals = ", ".join(_literal(a) for a in args)
        explained = await conn.fetchval(
            f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE bench_page({literals})"
        )
    finally:
        await conn.execute("DEALLOCATE bench_page")
    plan = msgspec.json.decode(explained)[0]["Plan"]
    # PostgreSQL 18 reports rows as averages per loop, with decimals.
    sorted_rows: int = round(
        sum(
            child["Actual Rows"] * child["Actual Loops"]
            for node in _nodes(plan)
            if node["Node Type"] == "Sort"
            for child in node.get("Plans", [])
        )
    )
    return sorted_rows


async def main(args: argparse.Namespace) -> None:
    # Three days of lines, as in a new installation's first days: the partitions of the rest of
    # the window are empty, and cost a generic plan's Sort nothing.
    rows, projects = (20_000, 20) if args.smoke else (1_000_000, 100)
    spec = h.DatasetSpec(rows=rows, projects=projects, hot_share=0.2, days=3, seed=3)
    iterations, warmup = (20, 6) if args.smoke else (args.iterations, 10)
    ds = await h.dataset(spec)
    conns = {
        name: await asyncpg.connect(ds.url, server_settings=settings)
        for name, settings in SETUPS.items()
    }
    shipped = conns["shipped"]
    info = machine(await shipped.fetchval("SHOW server_version"))
    print_machine(info)
    project = await shipped.fetchval("SELECT id FROM projects WHERE slug = $1", ds.slugs[0])
    print(f"dataset {spec.name}: {spec.rows:,} rows, project {ds.slugs[0]}: {spec.rows_of(0):,}")
    deep = ids.highest_id(ds.end - timedelta(days=spec.days * 0.95))
    results: dict[str, Any] = {}
    for fname, equals in (await _filters(shipped, project)).items():
        for where, cursor in (("first", None), ("95% deep", deep)):
            req = _request(project, equals, cursor)
            steps: dict[str, Callable[[], Awaitable[Any]]] = {
                name: functools.partial(fetch_page, conn, req) for name, conn in conns.items()
            }
            # A generic plan is made at a statement's sixth run; warm-up runs past it.
            samples = await h.timed_loop(
                steps, iterations=iterations, warmup=warmup, budget_s=dict.fromkeys(steps, 20.0)
            )
            row: dict[str, Any] = {}
            for name, conn in conns.items():
                row[name] = {
                    **percentiles(samples[name]),
                    "sorted_rows": await _sorted_rows(conn, req),
                }
            results[f"{fname} {where}"] = row
    for conn in conns.values():
        await conn.close()
    _print(results)
    json_line("plans", {"machine": info, "dataset": spec.name, "scenarios": results})


def _print(results: dict[str, Any]) -> None:
    names = list(SETUPS)
    head = "| page | " + " | ".join(f"{n} p50 ms (sorted rows)" for n in names)
    print(head + " | generic_sorts / shipped | custom / shipped |")
    print("|---" * (len(names) + 3) + "|")
    for scenario, row in results.items():
        cells = [f"{fmt_ms(row[n]['p50'])} ({row[n]['sorted_rows']:,})" for n in names]
        ratios = [row[n]["p50"] / row["shipped"]["p50"] for n in ("generic_sorts", "custom")]
        print(f"| {scenario} | " + " | ".join(cells) + f" | {ratios[0]:.1f}x | {ratios[1]:.1f}x |")


def _options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--iterations", type=int, default=200)


if __name__ == "__main__":
    runner.run(
        "plans",
        __doc__,
        main,
        options=_options,
        smoke_help="tiny data",
    )
