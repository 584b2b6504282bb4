"""Every statement the server runs touches buffers in proportion to what it returns, even on a
database whose tables have never been analyzed.

A new install, a new weekly partition and a new project's first burst all meet the planner with
no statistics, or with statistics of an empty table; and the server's pools keep one generic plan
per statement per connection (pages.PLAN_SETTINGS), made the first time the statement ran, maybe
while the tables were empty. A plan that is only right with statistics (a hash join over the
partition, the primary key filtered for a rare level) then reads the whole partition for every
call, and the cost grows with every line written.

So: a database of its own with autovacuum off and no ANALYZE; one connection with the server's
settings runs every statement once while the tables are empty (its generic plans are cached
then), then 100,000 lines arrive over four weekly partitions, and the same connection runs every
statement again. auto_explain reports each statement's plan with its buffers, as the server
executes it (the cached plan, the real parameters): each statement's buffers must stay within
:data:`BASE_BUFFERS` plus :data:`BUFFERS_PER_ROW` per row of the work it is asked for (rows
returned, counted, written or deleted), never near the partition's ~30,000 rows.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import cast

import asyncpg
import msgspec
import pytest

from gramlogs.core import ids
from gramlogs.core.config import Config
from gramlogs.core.keys import KeyScope, Permission
from gramlogs.live.watchers import TailFilter, catch_up
from gramlogs.local.seed import SeedPlan, generate, seed_logs
from gramlogs.storage import (
    access,
    blocks,
    functions,
    histogram,
    idempotency,
    journal,
    maintenance,
    retention,
    tenants,
    writer,
)
from gramlogs.storage.database import Database
from gramlogs.storage.idempotency import Claim, Reply
from gramlogs.storage.journal import Position
from gramlogs.storage.pages import PLAN_SETTINGS, LogFilter, PageRequest, fetch_page

pytestmark = pytest.mark.single_node(
    "auto_explain reports the coordinator's plan on Citus; the worker's plan of the journal read"
    " is checked in test_citus"
)

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)
LINES = 100_000
DAYS = 25  # four weekly partitions and a bit
CHUNK = 1_000  # lines a seeded batch (a journal row) holds

# An index descent per partition for a statement whose partitions are pruned only at run time
# (8 partitions, 3 levels) and a few probes more: a statement's fixed cost.
BASE_BUFFERS = 300
# A line read through an index: its index leaf entry and its heap page, and the same again for
# each of the 7 indexes a written or deleted line touches, with room.
BUFFERS_PER_ROW = 12

_AUTO_EXPLAIN = (
    "LOAD 'auto_explain'; SET auto_explain.log_min_duration = 0;"
    " SET auto_explain.log_analyze = on; SET auto_explain.log_buffers = on;"
    " SET auto_explain.log_timing = off; SET auto_explain.log_format = json;"
    " SET auto_explain.log_level = notice; SET client_min_messages = notice"
)


@dataclass
class Plans:
    """The plans auto_explain reports, and the work each was asked for."""

    work: int | None = None  # rows of work the statements being run may do; None: not recording
    label: str = ""
    seen: list[tuple[str, int, str, dict]] = field(default_factory=list)

    def notice(self, conn: object, message: asyncpg.PostgresLogMessage) -> None:
        if self.work is None or not message.message.startswith("duration:"):
            return
        report = msgspec.json.decode(message.message.split("plan:", 1)[1])
        self.seen.append((self.label, self.work, report["Query Text"], report["Plan"]))

    @contextlib.contextmanager
    def expect(self, label: str, work: int) -> Iterator[None]:
        self.label, self.work = label, work
        try:
            yield
        finally:
            self.work = None


def _buffers(plan: dict) -> int:
    return sum(plan.get(f"Shared {kind} Blocks", 0) for kind in ("Hit", "Read", "Dirtied"))


@dataclass
class Scene:
    conn: asyncpg.Connection
    plans: Plans
    project: uuid.UUID
    neighbour: uuid.UUID
    key: str
    function: uuid.UUID
    deployment: uuid.UUID
    instance: str


def _fixed_id(n: int) -> uuid.UUID:
    return uuid.UUID(f"0190f000-0000-7000-8000-{n:012x}")


async def _no_autovacuum(conn: asyncpg.Connection) -> None:
    tables = await conn.fetch(
        "SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid ="
        " c.relnamespace WHERE n.nspname = 'public' AND c.relkind = 'r'"
    )
    for (table,) in tables:
        await conn.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")


@pytest.fixture(scope="module")
async def scene(new_database) -> AsyncIterator[Scene]:
    config = Config()
    async with new_database("gramlogs_nostats") as url:
        setup = await asyncpg.connect(url)
        conn = await asyncpg.connect(url, server_settings=PLAN_SETTINGS)
        try:
            await maintenance.ensure_partitions(setup, config, now=NOW)
            await _no_autovacuum(setup)
            org = await tenants.create_organization(setup, "nostats", org_id=_fixed_id(0))
            project = await tenants.create_project(setup, org, "p", project_id=_fixed_id(1))
            neighbour = await tenants.create_project(setup, org, "n", project_id=_fixed_id(2))
            key = await tenants.create_key(setup, org, KeyScope.PRODUCER, project_id=project)
            row = next(generate(SeedPlan(project, 1, NOW, days=DAYS, seed=7)))
            plans = Plans()
            await conn.execute(_AUTO_EXPLAIN)
            conn.add_log_listener(plans.notice)
            function, deployment, instance = row[10], row[9], row[2]
            assert isinstance(function, uuid.UUID) and isinstance(deployment, uuid.UUID)
            assert isinstance(instance, str)
            s = Scene(conn, plans, project, neighbour, key.key, function, deployment, instance)
            # The first burst: every statement planned (and its generic plan kept) while the
            # tables are empty, as on a new install.
            await _run_all(s, first=True)
            await seed_logs(setup, SeedPlan(project, LINES, NOW, days=DAYS, seed=7), chunk=CHUNK)
            await seed_logs(setup, SeedPlan(neighbour, LINES // 4, NOW, days=DAYS, seed=3))
            plans.seen.clear()
            await _run_all(s, first=False)
            yield s
        finally:
            await conn.close()
            await setup.close()


def _line(s: Scene, at: datetime, n: int, text: str) -> writer.NewRow:
    return (
        ids.new_id(at, rand_b=n).hex, at, s.instance, "info", "function", text, text, "{}",
        str(s.project), str(s.deployment), str(s.function), f"exec-{n % 3}",
    )  # fmt: skip


def _filter(s: Scene, **equals: object) -> LogFilter:
    return LogFilter(project_id=s.project, equals=equals)


def _window(s: Scene, hours: float, **equals: object) -> LogFilter:
    start = NOW - timedelta(days=10)
    lo, hi = ids.lowest_id(start).int, ids.highest_id(start + timedelta(hours=hours)).int
    return LogFilter(project_id=s.project, lo=lo, hi=hi, equals=equals)


def _pages(s: Scene) -> list[tuple[str, PageRequest]]:
    deep = ids.new_id(NOW - timedelta(days=DAYS * 0.9), 0)
    out: list[tuple[str, PageRequest]] = []
    filters: dict[str, LogFilter] = {
        "no filter": _filter(s),
        "function": _filter(s, function_id=s.function),
        "deployment": _filter(s, deployment_id=s.deployment),
        "instance": _filter(s, instance=s.instance),
        "level error": _filter(s, level="error"),
        "source server": _filter(s, source="server"),
        "execution": _filter(s, execution_id="exec-1"),
        "poly sources": LogFilter(project_id=s.project, sources=("function", "stdout", "stderr")),
        "two filters": _filter(s, function_id=s.function, level="warn"),
        "window": _window(s, 1),
        "keyword frequent": LogFilter(project_id=s.project, keyword="tool call"),
        "keyword rare": LogFilter(project_id=s.project, keyword="KeyError"),
        "keyword absent": LogFilter(project_id=s.project, keyword="no such words here"),
        "keyword with a function": LogFilter(
            project_id=s.project, equals={"function_id": s.function}, keyword="timeout calling"
        ),
    }
    for name, f in filters.items():
        for ascending in (False, True):
            order = "asc" if ascending else "desc"
            out.append((f"{name} {order}", PageRequest(f, 20, ascending=ascending)))
            out.append((f"{name} {order} deep", PageRequest(f, 20, ascending, cursor=deep)))
            out.append(
                (f"{name} {order} prev", PageRequest(f, 20, ascending, forward=False, cursor=deep))
            )
    return out


# A keyword page reads up to this many rows in order before it asks the block summaries, and
# then whole 256-line blocks: work it does by design, whatever the page returns.
_KEYWORD_WORK = 1_100 + 8 * 256


async def _run_all(s: Scene, *, first: bool) -> None:
    """Every statement the server runs, once, with the work each may do (see the module doc)."""
    conn, plans = s.conn, s.plans
    with plans.expect("authenticate", 1):
        principal = await access.authenticate(conn, s.key, Permission.WRITE, project_slug="p")
        holder = await access.identify(conn, s.key)
    assert principal.project_id == holder.bound_project_id == s.project

    # Writes: small batches (as clients send them), one with an Idempotency-Key, and the same
    # lines again (the duplicate path).
    at = NOW - timedelta(hours=2, seconds=0 if first else 30)
    lines = [_line(s, at + timedelta(microseconds=n), n, f"written {n}") for n in range(50)]
    claim = Claim(s.project, f"key-{first}", b"h" * 32, 24)
    with plans.expect("store a batch", 10):
        await claim.replay_if_recorded(conn)
        reply = claim.recorder(lambda stored, dup: Reply(200, "application/json", b"{}"))
        assert await writer.store_batch(conn, s.project, lines[:10], companion=reply) == (10, 0)
        for n in range(10, 50, 10):
            assert await writer.store_batch(conn, s.project, lines[n : n + 10]) == (10, 0)
        assert await writer.store_batch(conn, s.project, lines[:10]) == (0, 10)
        assert await functions.disabled_among(conn, s.project, {s.function}) == set()

    for name, req in _pages(s):
        keyword = req.filter.keyword is not None
        with plans.expect(
            f"page: {name}", 2 * (req.per_page + 1) + (_KEYWORD_WORK if keyword else 0)
        ):
            page = await fetch_page(conn, req)
        if not first and name.startswith("no filter"):
            assert len(page.rows) == req.per_page

    # A histogram of a day, and of an hour of one level: the work is the rows it counts.
    ten_minutes = 1 / 6
    for name, f in (
        ("10 min", _window(s, ten_minutes)),
        ("an hour, level", _window(s, 1, level="error")),
    ):
        edges = [f.lo + (f.hi - f.lo) * k // 12 for k in range(1, 12)]
        counted = 0 if first else await _count(conn, f)
        with plans.expect(f"histogram: {name}", counted + 12):
            assert sum(await histogram.count_ranges(conn, f, edges)) == counted or first

    # The live tail: where a tail starts, a resumed tail catching up, the watcher's reads.
    with plans.expect("tail: start", 21):
        head = await journal.head(conn, s.project)
        await journal.check_kept(conn, s.project, Position(head - 5), head)
        errors = PageRequest(LogFilter(project_id=s.project, equals={"level": "error"}), 20)
        await journal.newest_before(conn, errors, head)
    with plans.expect("tail: next batches", 5):
        batches = await journal.next_batches(conn, s.project, head - 4)
    assert [b.lines for b in batches] == [10] * 5
    with plans.expect("tail: read lines", 50):
        rows = await journal.read_lines(conn, s.project, head - 4, head, ["%timeout%"])
    assert len(rows) == 50
    with plans.expect("tail: catch up", 50):
        frames, _, ended = await catch_up(
            cast(Database, _OneConnection(conn)),
            s.project,
            TailFilter(),
            Position(head - 5),
        )
    assert (len(frames), ended) == (50, True)

    # Keyword block summaries made later (upkeep), and Poly's function lookup.
    with plans.expect("summarise pending blocks", 0):
        await blocks.summarise_pending(conn, max_rows=0)
    with plans.expect("poly: find the function", 1):
        await functions.find_function(conn, holder.organization_id, s.function)
        await functions.set_logs_enabled(conn, s.project, s.function, True)

    # Upkeep: expired journal batches and idempotency keys (none yet: a probe each).
    with plans.expect("expire journal and keys", 1):
        await journal.delete_expired(conn, hours=24 * 365)
        await idempotency.delete_expired(conn, hours=24 * 365)

    # Poly DELETE of a function that has a few lines (its own function id), among 100k others.
    doomed = uuid.UUID(int=0xD00D + int(first))
    lines = [
        (*_line(s, at + timedelta(minutes=n), 100 + n, "doomed")[:10], str(doomed), None)
        for n in range(30)
    ]
    await writer.store_batch(conn, s.project, lines)
    with plans.expect("poly: delete a function's lines", len(lines)):
        assert await functions.delete_logs(conn, s.project, doomed) == len(lines)

    # Retention: a project whose period ends inside the oldest partition deletes what is older.
    if not first:
        days = (NOW - ids.MIN_TIMESTAMP).days  # nothing expires by the server's default
        cutoff = NOW - timedelta(days=DAYS - 1)
        expired = await _count(
            conn, LogFilter(project_id=s.neighbour, hi=ids.lowest_id(cutoff).int - 1)
        )
        await conn.execute(
            "UPDATE projects SET retention_days = $2 WHERE id = $1", s.neighbour, DAYS - 1
        )
        with plans.expect("retention", expired):
            report = await retention.apply_retention(conn, default_days=days, now=NOW)
        assert report.deleted_rows == expired  # fmt: skip


async def _count(conn: asyncpg.Connection, f: LogFilter) -> int:
    """How many rows ``f`` selects, counted outside the recorded statements."""
    where = ["project_id = $1", "id BETWEEN $2 AND $3"]
    args: list[object] = [f.project_id, uuid.UUID(int=f.lo), uuid.UUID(int=f.hi)]
    for column, value in f.equals.items():
        args.append(value)
        where.append(f"{column} = ${len(args)}")
    count: int = await conn.fetchval(
        f"SELECT count(*) FROM logs WHERE {' AND '.join(where)}", *args
    )
    return count


class _OneConnection:
    """The Database interface of watchers.catch_up, lending the test's one connection."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        yield self._conn


async def test_every_statement_reads_in_proportion_to_its_work(scene: Scene) -> None:
    seen = scene.plans.seen
    labels = {label for label, *_ in seen}
    assert len(labels) >= 50, labels  # every group of statements reported its plans
    over = []
    for label, work, query, plan in seen:
        limit = BASE_BUFFERS + BUFFERS_PER_ROW * work
        if _buffers(plan) > limit:
            over.append(f"{label}: {_buffers(plan)} buffers > {limit}\n  {query[:300]}")
    assert not over, "\n".join(over)
