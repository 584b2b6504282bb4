"""Timing what the benchmarks run: interleaved loops of steps, and lines stored per slice of a
load. (Datasets, servers, the bare Starlette app and wrk are testkit's.)

Datasets live in their own databases (``bench_<rows>_<projects>_...``) on the embedded PostgreSQL
under ``benchmarks/.cache`` (or the server in ``GRAMLOGS_BENCH_DATABASE_URL``) and are reused by
later runs: a ``bench_meta`` row records that seeding finished, with the keys and the time span.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
CACHE = HERE / ".cache"


# -- numbers ------------------------------------------------------------------------------------


async def timed_loop(
    steps: Mapping[str, Callable[[], Awaitable[Any]]],
    *,
    iterations: int,
    warmup: int,
    budget_s: dict[str, float] | None = None,
) -> dict[str, list[float]]:
    """Run each step in turn, ``iterations`` times, interleaved so that a noisy neighbour hurts
    every series alike; a step whose time budget is spent stops early (deep OFFSET queries)."""
    for _ in range(warmup):
        for step in steps.values():
            await step()
    samples: dict[str, list[float]] = {name: [] for name in steps}
    spent = dict.fromkeys(steps, 0.0)
    budget_s = budget_s or {}
    for _ in range(iterations):
        for name, step in steps.items():
            if spent[name] > budget_s.get(name, float("inf")):
                continue
            t0 = time.perf_counter()
            await step()
            elapsed = time.perf_counter() - t0
            samples[name].append(elapsed)
            spent[name] += elapsed
    return samples


class Slices:
    """Lines stored so far, and when each slice of them was complete (thread-safe)."""

    def __init__(self, label: str, total: int, size: int) -> None:
        self.label, self.total, self.size = label, total, size
        self.done = 0
        self.marks: list[float] = []  # when done reached each slice's end
        self.lock = threading.Lock()
        self.start()

    def start(self) -> None:
        """Start the clock: the load's first request goes now."""
        self.started = time.perf_counter()

    def add(self, lines: int) -> None:
        with self.lock:
            self.done += lines
            now = time.perf_counter()
            while self._due() > len(self.marks):
                last = self.marks[-1] if self.marks else self.started
                self.marks.append(now)
                rate = self.size / max(now - last, 1e-9)
                print(f"  {self.label}: {self.done:,} lines, {rate:,.0f}/s", file=sys.stderr)

    def _due(self) -> int:
        """Slices complete: each full one, and the last when the run ends within it."""
        return self.done // self.size + (self.done >= self.total and self.total % self.size > 0)

    def summary(self) -> dict[str, Any]:
        edges = [self.started, *self.marks]
        rows = []
        for i in range(1, len(edges)):
            lo, hi = self.size * (i - 1), min(self.size * i, self.total)
            seconds = edges[i] - edges[i - 1]
            rows.append(
                {"from": lo, "to": hi, "seconds": seconds, "lines_per_s": (hi - lo) / seconds}
            )
        seconds = edges[-1] - edges[0]
        return {
            "lines": self.total,
            "seconds": seconds,
            "lines_per_s": self.total / seconds,
            "sustained_lines_per_s": rows[-1]["lines_per_s"],
            "sustained_lines": rows[-1]["to"] - rows[-1]["from"],
            "slices": rows,
        }


def slice_size(lines: int, wanted: int, batch: int, clients: int) -> int:
    """``wanted`` lines, or a tenth of the run when it holds fewer than two such slices; never
    less than a batch per client (slices end where a batch does, and clients finish batches
    side by side)."""
    return max(batch * clients, wanted if lines >= 2 * wanted else lines // 10)
