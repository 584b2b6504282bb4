"""Read endpoints' bodies made by gramlogs/web/rendering.py beside the Struct path it replaced
(testkit/struct_bodies.py: a ``LogEntry`` or ``PolyLog`` per row, then encoded): CPU µs per page
of 20 and 100 lines. No database, no HTTP.

Each body (the list page, and apart its two steps: making the objects, encoding them; Poly's
page; the tail's events; the export's lines) on each kind of row (asyncpg Records as a page
statement returns them, ``has_back`` after the columns, made as asyncpg's own tests make them;
sealed lines, codec.SealedRow): both paths in turn in each of ``--repeats`` (the first
alternates), each a loop over about ``--rows-per-timing`` lines after a warm-up, in this
thread's CPU time (the machines are shared: wall time counts the others' turns); the median and
the least per page. Both paths' bytes are compared once (``same_bytes``; over random rows:
tests/test_rendering.py). Lines: seed.py's.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import os
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
from asyncpg.pgproto.pgproto import UUID as PgUUID
from asyncpg.protocol.protocol import _create_record  # type: ignore[attr-defined]

from benchmarks import runner
from benchmarks.results import machine, print_machine, publish, table
from gramlogs.local.seed import SeedPlan, generate
from gramlogs.storage.codec import SealedRow
from gramlogs.storage.journal import Position
from gramlogs.storage.pages import Page
from gramlogs.storage.rows import COLUMNS
from gramlogs.web import gram, poly, rendering, tail
from testkit import struct_bodies

SIZES = (20, 100)
_PROJECT = uuid.UUID("0190aaaa-0000-7000-8000-000000000001")
_PLAN = SeedPlan(_PROJECT, rows=0, end=datetime(2026, 1, 1, tzinfo=UTC), seed=0)
_POSITION = Position(123_456, 2**100 + 7)

Body = Callable[[list[Any]], object]
_encoder = msgspec.json.Encoder()


def _rows(n: int) -> dict[str, list[Any]]:
    """``n`` lines as each kind of row."""
    lines = list(generate(dataclasses.replace(_PLAN, rows=n)))
    names = {c: i for i, c in enumerate((*COLUMNS, "has_back"))}

    def record(line: tuple[Any, ...]) -> Any:
        values = (PgUUID(v.bytes) if isinstance(v, uuid.UUID) else v for v in line)
        return _create_record(names, (*values, True))

    def sealed(line: tuple[Any, ...]) -> Any:
        values = (uuid.UUID(int=v.int) if isinstance(v, uuid.UUID) else v for v in line)
        return tuple.__new__(SealedRow, tuple(values))

    return {"record": [record(x) for x in lines], "sealed": [sealed(x) for x in lines]}


def _bodies(rows: list[Any]) -> dict[str, tuple[Body, Body]]:
    """Each body of a page of ``rows``: (the Struct path, rendered)."""
    query = gram.parse_list_query({"per_page": str(len(rows))})
    page = Page(rows=rows, has_more=True, has_back=False)
    old, new = [struct_bodies.entry(r) for r in rows], rendering.entries(rows)
    return {
        "list page": (lambda _: struct_bodies.gram_body(page, query),
                      lambda _: gram.render(page, query)),
        "- its objects": (lambda rs: [struct_bodies.entry(r) for r in rs], rendering.entries),
        "- their encoding": (lambda _: _encoder.encode(old), lambda _: _encoder.encode(new)),
        "poly page": (lambda rs: struct_bodies.poly_body(True, rs),
                      lambda rs: poly.render(True, rs)),
        "tail events": (lambda rs: [struct_bodies.tail_frame(r, _POSITION) for r in rs],
                        lambda rs: [tail.frame_line(r, _POSITION) for r in rs]),
        "export lines": (struct_bodies.export_lines, rendering.entry_lines),
    }  # fmt: skip


def _timed_us(body: Body, rows: list[Any], loops: int) -> float:
    """CPU µs per call, this thread's: what bounds a server's throughput."""
    gc.collect()
    t = time.thread_time()
    for _ in range(loops):
        body(rows)
    return (time.thread_time() - t) / loops * 1e6


def _compare(old: Body, new: Body, rows: list[Any], repeats: int, loops: int) -> dict[str, Any]:
    for _ in range(max(1, loops // 10)):
        old(rows), new(rows)
    samples: dict[str, list[float]] = {"struct": [], "rendered": []}
    for r in range(repeats):
        order = (("struct", old), ("rendered", new))
        for name, body in order if r % 2 == 0 else order[::-1]:
            samples[name].append(_timed_us(body, rows, loops))
    out: dict[str, Any] = {
        name: {"p50_us": round(statistics.median(s), 1), "min_us": round(min(s), 1)}
        for name, s in samples.items()
    }
    out["speedup_p50"] = round(out["struct"]["p50_us"] / out["rendered"]["p50_us"], 2)
    out["same_bytes"] = _encoder.encode(old(rows)) == _encoder.encode(new(rows))
    return out


async def main(args: argparse.Namespace) -> None:
    info = machine("none")
    measured: list[dict[str, Any]] = []
    for n in SIZES:
        loops = max(1, args.rows_per_timing // n)
        for kind, rows in _rows(n).items():
            for body, (old, new) in _bodies(rows).items():
                m = _compare(old, new, rows, args.repeats, loops)
                measured.append({"body": body, "rows": n, "kind": kind} | m)
    info["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print_machine(info)
    rows_out = [
        (m["body"], m["rows"], m["kind"],
         f"{m['struct']['p50_us']} ({m['struct']['min_us']})",
         f"{m['rendered']['p50_us']} ({m['rendered']['min_us']})",
         f"{m['speedup_p50']}x", "yes" if m["same_bytes"] else "**no**")
        for m in measured
    ]  # fmt: skip
    report = (
        f"## {info['date']}\n\n`{args.command}`: CPU µs per page, median (least) of {args.repeats}"
        f" timings of ~{args.rows_per_timing:,} lines each. {info['cpu']}, {info['cores']} cores,"
        f" Python {info['python']}, msgspec {info['msgspec']}, asyncpg {info['asyncpg']}; load"
        f" average {info['load_avg_at_start']} at start, {info['load_avg_at_end']} at end.\n\n"
        + table(
            ["body", "rows", "rows as", "Struct path µs", "rendered µs", "speedup", "same bytes"],
            rows_out,
        )
    )
    options = {"repeats": args.repeats, "rows_per_timing": args.rows_per_timing}
    result = {"benchmark": "render", "options": options, "machine": info, "bodies": measured}
    publish("render", result, report, write_to=args.write_to)


def _options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repeats", type=int, default=31, help="timings of each path")
    p.add_argument("--rows-per-timing", type=int, default=4000, help="lines rendered in one timing")


def _smoke(args: argparse.Namespace) -> None:
    args.repeats, args.rows_per_timing = 3, 200


if __name__ == "__main__":
    runner.run(
        "render",
        __doc__,
        main,
        options=_options,
        smoke=_smoke,
        smoke_help="3 repeats of 200 lines",
        results=runner.results_file("render"),
    )
