"""What every gramlogs benchmark shares: a seeded, cached dataset; timing and percentiles; the
machine and versions; the server and a bare Starlette app as the baseline (testkit's runner); wrk.

Datasets live in their own databases (``bench_<rows>_<projects>_...``) on the embedded PostgreSQL
under ``benchmarks/.cache`` (or the server in ``GRAMLOGS_BENCH_DATABASE_URL``) and are reused by
later runs: a ``bench_meta`` row records that seeding finished, with the keys and the time span.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from gramlogs.core.keys import KeyScope
from gramlogs.local.seed import ProgressBar, SeedPlan, seed_logs
from gramlogs.storage import citus, partitions, schema, tenants
from testkit.ports import HOST
from testkit.postgres import with_database
from testkit.serve import LiveServer, live_server

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


# -- datasets -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetSpec:
    rows: int
    projects: int
    hot_share: float = 0.0  # share of all rows in project 0; the rest spread evenly
    days: float = 30.0
    seed: int = 0
    version: int = 1  # bump when seeding changes, so old caches are not reused
    partition_days: int = 7  # width of the logs partitions (GRAMLOGS_PARTITION_DAYS)

    @property
    def name(self) -> str:
        hot = f"_hot{round(self.hot_share * 100)}" if self.hot_share else ""
        days = f"{round(self.days)}d"
        width = f"_w{self.partition_days}" if self.partition_days != 1 else ""
        name = f"bench_{self.rows}_{self.projects}{hot}_{days}_s{self.seed}_v{self.version}"
        return name + width

    def rows_of(self, index: int) -> int:
        if self.projects == 1:
            return self.rows
        hot = round(self.rows * self.hot_share)
        rest, extra = divmod(self.rows - hot, self.projects - (1 if self.hot_share else 0))
        if self.hot_share and index == 0:
            return hot
        position = index - (1 if self.hot_share else 0)
        return rest + (1 if position < extra else 0)


@dataclass(frozen=True)
class Dataset:
    spec: DatasetSpec
    url: str
    end: datetime  # newest row's time
    slugs: list[str]
    key: str  # a consumer key of the organization (reads every project)

    @property
    def hot_slug(self) -> str:
        return self.slugs[0]


def server_url() -> str:
    """A PostgreSQL server to keep benchmark databases in: the configured one or the embedded
    one under benchmarks/.cache (started now, stopped when this process exits)."""
    configured = os.environ.get("GRAMLOGS_BENCH_DATABASE_URL")
    if configured:
        return configured
    from gramlogs.local.embedded import embedded_url

    return with_database(embedded_url(CACHE), "postgres")


async def dataset(spec: DatasetSpec, *, fresh: bool = False) -> Dataset:
    """The seeded database of ``spec``, seeding it first unless a finished one is cached."""
    admin = await asyncpg.connect(server_url())
    try:
        url = with_database(server_url(), spec.name)
        exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", spec.name)
        if exists and not fresh:
            found = await _finished(url)
            if found is not None:
                return found
        await admin.execute(f"DROP DATABASE IF EXISTS {spec.name} WITH (FORCE)")
        await admin.execute(f"CREATE DATABASE {spec.name}")
    finally:
        await admin.close()
    return await seed_dataset(spec, url)


async def _finished(url: str) -> Dataset | None:
    conn = await asyncpg.connect(url)
    try:
        if not await conn.fetchval("SELECT to_regclass('bench_meta') IS NOT NULL"):
            return None
        meta = json.loads(await conn.fetchval("SELECT meta FROM bench_meta"))
    finally:
        await conn.close()
    return Dataset(
        spec=DatasetSpec(**meta["spec"]),
        url=url,
        end=datetime.fromisoformat(meta["end"]),
        slugs=meta["slugs"],
        key=meta["key"],
    )


def _offset(progress: ProgressBar, before: int, total: int) -> Callable[[int, int], None]:
    """A project's seeding progress as a share of the whole dataset's."""
    return lambda done, _of: progress(before + done, total)


async def seed_dataset(spec: DatasetSpec, url: str, *, distribute: bool = False) -> Dataset:
    """Seed ``spec`` into the empty database ``url``; with ``distribute``, a Citus
    coordinator's, its tables distributed first (the rows then go straight to the shards)."""
    end = datetime.now(UTC).replace(microsecond=0)
    conn = await asyncpg.connect(url)
    try:
        await schema.migrate(conn)
        if distribute:
            await citus.distribute(conn)
        # Partitions over the data's whole span before the load, as a live server has them.
        await partitions.ensure(
            conn,
            default_retention_days=max(30, int(spec.days) + 1),
            ahead_days=7,
            width_days=spec.partition_days,
            now=end,
        )
        org = await tenants.create_organization(conn, "bench")
        key = await tenants.create_key(conn, org, KeyScope.CONSUMER, name="bench")
        slugs = []
        progress = ProgressBar(f"rows into {spec.name}")
        done = 0
        for i in range(spec.projects):
            slug = f"p{i:03d}"
            project = await tenants.create_project(conn, org, slug)
            rows = spec.rows_of(i)
            plan = SeedPlan(project, rows=rows, end=end, days=spec.days, seed=spec.seed * 1000 + i)
            await seed_logs(conn, plan, progress=_offset(progress, done, spec.rows))
            done += rows
            slugs.append(slug)
        print(f"{spec.name}: VACUUM ANALYZE", file=sys.stderr, flush=True)
        await conn.execute("VACUUM (ANALYZE) logs")
        meta = {"spec": asdict(spec), "end": end.isoformat(), "slugs": slugs, "key": key.key}
        await conn.execute("CREATE TABLE bench_meta (meta text NOT NULL)")
        await conn.execute("INSERT INTO bench_meta VALUES ($1)", json.dumps(meta))
    finally:
        await conn.close()
    return Dataset(spec=spec, url=url, end=end, slugs=slugs, key=key.key)


# -- servers ------------------------------------------------------------------------------------


@contextlib.contextmanager
def gramlogs_server(
    database_url: str, *, workers: int = 1, settings: dict[str, str] | None = None
) -> Iterator[LiveServer]:
    """``gramlogs serve`` as a user runs it (the default pool), quiet but for warnings;
    ``settings`` are more ``GRAMLOGS_*`` variables (docs/settings.md)."""
    env = {"GRAMLOGS_WORKERS": str(workers), "GRAMLOGS_LOG_LEVEL": "warning", **(settings or {})}
    with live_server(database_url, small_pool=False, settings=env) as server:
        yield server


@contextlib.contextmanager
def bare_server(body: bytes) -> Iterator[LiveServer]:
    """The floor of any Starlette endpoint (testkit/bare.py) answering ``body``."""
    with tempfile.TemporaryDirectory(prefix="gramlogs-bare-") as tmp:
        (Path(tmp) / "body.json").write_bytes(body)
        path = str(Path(tmp) / "body.json")
        with live_server("", Path(tmp), module="testkit.bare", BENCH_BARE_BODY=path) as server:
            yield server


# -- wrk ----------------------------------------------------------------------------------------


WRK_SCRIPT = """
local paths = {%(paths)s}
local i = 0
wrk.headers["Gram-Key"] = "%(key)s"
wrk.headers["Gram-Project"] = "%(project)s"
request = function()
  i = i %% #paths + 1
  return wrk.format("GET", paths[i])
end
done = function(summary, latency, requests)
  io.write(string.format("JSON {\\"requests\\": %%d, \\"seconds\\": %%.3f, \\"errors\\": %%d,"
    .. " \\"non2xx\\": %%d, \\"p50_ms\\": %%.3f, \\"p99_ms\\": %%.3f}\\n",
    summary.requests, summary.duration / 1e6,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status, latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
"""


def run_wrk(
    wrk: str,
    port: int,
    paths: list[str],
    key: str,
    project: str,
    *,
    connections: int,
    seconds: float,
) -> dict[str, Any]:
    """Requests/s and latency from wrk, cycling through ``paths``; errors and non-2xx counted."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(
            WRK_SCRIPT
            % {"paths": ", ".join(json.dumps(p) for p in paths), "key": key, "project": project}
        )
    try:
        threads = max(1, min(2, connections))
        done = subprocess.run(
            [wrk, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "-s", f.name,
             f"http://{HOST}:{port}"],
            capture_output=True, text=True, check=False, timeout=seconds + 60,
        )  # fmt: skip
    finally:
        os.unlink(f.name)
    line = next((x for x in done.stdout.splitlines() if x.startswith("JSON ")), None)
    if done.returncode or line is None:
        # Reported, not fatal: one failed load run must not lose the rest of a long suite.
        detail = (done.stderr or done.stdout).strip()[-300:]
        print(f"wrk failed (exit {done.returncode}): {detail}", file=sys.stderr, flush=True)
        return {"requests": 0, "seconds": 0, "errors": -1, "non2xx": 0, "p50_ms": float("nan"),
                "p99_ms": float("nan"), "rps": 0.0, "failed": detail}  # fmt: skip
    result: dict[str, Any] = json.loads(line[5:])
    result["rps"] = result["requests"] / result["seconds"]
    return result


def window_ids(end: datetime, hours_before: float, hours: float) -> tuple[str, str]:
    start = end - timedelta(hours=hours_before)
    stop = start + timedelta(hours=hours)
    return start.strftime("%Y-%m-%dT%H:%M:%SZ"), stop.strftime("%Y-%m-%dT%H:%M:%SZ")
