"""Synthetic, realistic log lines written through COPY: for the demo, tests and benchmarks.

The same ``seed`` gives the same rows (ids included) for the same ``end`` and ``days``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from gramlogs.core import ids
from gramlogs.storage.functions import register_functions
from gramlogs.storage.writer import copy_lines

__all__ = ["SeedPlan", "generate", "seed_logs"]

_ADJECTIVES = ("snowy", "quiet", "bold", "misty", "amber", "rapid", "silent", "lucky")
_NOUNS = ("water", "forest", "river", "cloud", "stone", "meadow", "ember", "harbor")
_TOOLS = (
    "search_flights",
    "get_weather",
    "create_ticket",
    "send_email",
    "lookup_customer",
    "summarize_doc",
    "charge_card",
    "list_orders",
)
_MESSAGES = {
    "debug": ("cache lookup key={k} hit={b}", "parsed {n} arguments", "retrying in {n}ms"),
    "info": (
        "tool call started",
        "tool call finished in {n}ms",
        "fetched {n} records",
        "request id={k} status=200",
    ),
    "warn": ("slow upstream: {n}ms", "rate limited, backing off {n}ms", "deprecated argument {k}"),
    "error": (
        "upstream returned 502 after {n}ms",
        "timeout calling {k}",
        "unhandled exception: KeyError('{k}')",
    ),
}
_SERVER_LINES = (
    "container started",
    "health check ok",
    "cold start {n}ms",
    "instance scaled up",
    "memory usage {n}MB",
)
_LEVEL_WEIGHTS = (("debug", 20), ("info", 55), ("warn", 15), ("error", 10))


@dataclass(frozen=True)
class SeedPlan:
    project_id: uuid.UUID
    rows: int
    end: datetime
    days: float = 7.0
    functions: int = 8
    deployments_per_function: int = 3
    instances: int = 12
    seed: int = 0
    # (word, fraction): append ``word`` to about that fraction of lines (message and raw line),
    # so that keyword benchmarks and tests know how many lines a word matches. A separate random
    # stream decides, so planting changes no other column of any row.
    plant: tuple[tuple[str, float], ...] = ()


def _uuid(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def generate(plan: SeedPlan) -> Iterator[tuple[object, ...]]:
    """Rows in time order, as tuples in ``pages.COLUMNS`` order plus nothing else."""
    rng = random.Random(plan.seed)
    functions = [_uuid(rng) for _ in range(plan.functions)]
    tool_names = {f: _TOOLS[i % len(_TOOLS)] for i, f in enumerate(functions)}
    deployments = {f: [_uuid(rng) for _ in range(plan.deployments_per_function)] for f in functions}
    instances = [
        f"{rng.choice(_ADJECTIVES)}-{rng.choice(_NOUNS)}-{rng.randrange(100, 1000)}"
        for _ in range(plan.instances)
    ]
    levels = [name for name, weight in _LEVEL_WEIGHTS for _ in range(weight)]
    span_us = int(plan.days * 86_400_000_000)
    start = max(plan.end - timedelta(microseconds=span_us), ids.MIN_TIMESTAMP)
    # Stratified times: row i falls at a random point of the i-th equal slice of the span, so
    # rows come in time order (as real lines do) and fill the span evenly.
    gap = span_us / max(plan.rows, 1)
    execution = f"exec-{rng.getrandbits(40):010x}"
    planter = random.Random(f"plant-{plan.seed}")
    for i in range(plan.rows):
        ts = start + timedelta(microseconds=int((i + rng.random()) * gap))
        if rng.random() < 0.05:
            execution = f"exec-{rng.getrandbits(40):010x}"
        function_id = rng.choice(functions)
        level = rng.choice(levels)
        server = rng.random() < 0.2
        template = rng.choice(_SERVER_LINES if server else _MESSAGES[level])
        message = template.format(
            n=rng.randrange(1, 5000), k=f"{rng.getrandbits(24):06x}", b=rng.random() < 0.5
        )
        for word, fraction in plan.plant:
            if planter.random() < fraction:
                message = f"{message} {word}"
        tool = tool_names[function_id]
        raw = json.dumps({"level": level, "msg": message, "tool": tool}) if not server else message
        yield (
            ids.new_id(ts, rng.getrandbits(62)),
            ts,
            rng.choice(instances),
            level,
            "server" if server else "function",
            raw,
            None if server and rng.random() < 0.5 else message,
            json.dumps({"tool": tool}) if not server else "{}",
            plan.project_id,
            rng.choice(deployments[function_id]),
            function_id,
            None if server else execution,
        )


async def seed_logs(
    conn: asyncpg.Connection,
    plan: SeedPlan,
    *,
    chunk: int = 50_000,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """COPY ``plan.rows`` generated rows into ``logs``; register their functions. Returns rows.

    The next chunk is generated in a thread while the current one is copied: PostgreSQL's side
    of COPY (index maintenance, WAL) runs in its own process, so the two overlap.
    """
    done = 0
    functions: set[uuid.UUID] = set()
    rows = generate(plan)

    def next_chunk() -> list[tuple[object, ...]]:
        return list(itertools.islice(rows, chunk))

    batch = await asyncio.to_thread(next_chunk)
    while batch:
        copying = asyncio.ensure_future(_copy(conn, batch, functions))
        try:
            batch = await asyncio.to_thread(next_chunk)
        finally:
            done += await copying
        if progress:
            progress(done, plan.rows)
    await register_functions(conn, plan.project_id, functions)
    if progress and plan.rows == 0:
        progress(0, 0)
    return done


async def _copy(
    conn: asyncpg.Connection, batch: list[tuple[object, ...]], functions: set[uuid.UUID]
) -> int:
    functions.update(row[10] for row in batch)  # type: ignore[misc]
    await copy_lines(conn, batch)
    return len(batch)


class ProgressBar:
    """A one-line progress bar on stderr, with the rate so far."""

    def __init__(self, label: str = "rows") -> None:
        self.label = label
        self.started = time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        width = 30
        filled = width * done // max(total, 1)
        rate = done / max(time.monotonic() - self.started, 1e-9)
        sys.stderr.write(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {done:,}/{total:,} {self.label}"
            f" ({rate:,.0f}/s)"
        )
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()
