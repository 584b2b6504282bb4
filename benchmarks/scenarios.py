"""Page scenarios of listToolExecutionLogs, resolved to what each benchmark times: the HTTP
request, the storage read the server makes for it (``pages.fetch_page`` with the very
``PageRequest`` the endpoint builds), ``/healthz`` beside them, and the OFFSET query a dashboard
would run for the same page over a plain table; and the side-by-side measurement of them.

The server keeps most lines in sealed blocks (benchmarks/settling.py), where no SQL statement
can count or skip them. So a scenario finds its cursor, and an OFFSET query runs, in a plain
copy of the project's lines (:func:`plain_copy`): one unpartitioned table with logs' columns
and btrees, made once per dataset from the storage read itself.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import asyncpg
import msgspec

from benchmarks.results import percentiles
from benchmarks.timing import timed_loop
from gramlogs.core.config import Config
from gramlogs.storage import citus
from gramlogs.storage.filters import EQUALITY_FILTERS, LogFilter
from gramlogs.storage.pages import COLUMN_LIST, COLUMNS, PLAN_SETTINGS, PageRequest, fetch_page
from gramlogs.web.gram import parse_list_query
from testkit.bare import bare_server
from testkit.http import HttpClient

PAGE_PATH = "/rpc/logs.listToolExecutionLogs"
HEALTHZ_PATH = "/healthz"

# The read path's targets (docs/benchmarks.md, "paging"), over the p50s of one client.
TARGET_OVER_STORAGE = 1.3  # endpoint / (storage read + bare Starlette serving the same body)
TARGET_OVER_HEALTHZ = 5.0  # a 100-row page / /healthz


@dataclass(frozen=True)
class Scenario:
    """A listToolExecutionLogs request: its query (no cursor) and how deep its page lies, as a
    fraction of the filtered lines before it in walking order."""

    name: str
    params: dict[str, str]
    depth: float = 0.0


@dataclass
class Prepared:
    scenario: Scenario
    path: str  # the HTTP request
    request: PageRequest  # what the endpoint hands fetch_page for it
    offset_sql: str  # what an OFFSET-paginated dashboard runs for the same page
    offset_args: list[Any]
    offset: int
    lines_in_set: int


async def storage_connection(url: str) -> asyncpg.Connection:
    """A connection set up as the server's pool sets up its own (storage/database.py
    ``_create_pool``): its session settings, and Citus's on a Citus node."""
    config = Config.load({})
    conn = await asyncpg.connect(
        url,
        server_settings={
            "application_name": "gramlogs-bench",
            "statement_timeout": str(config.statement_timeout_ms),
            **PLAN_SETTINGS,
        },
    )
    await citus.prepare_connection(conn)
    return conn


async def project_id(conn: asyncpg.Connection, slug: str) -> Any:
    return await conn.fetchval("SELECT id FROM projects WHERE slug = $1", slug)


# -- the plain copy -----------------------------------------------------------------------------

# Lines read per storage read while copying: a few sealed blocks' worth.
_COPY_PAGE = 10_000


def plain_table(project: uuid.UUID) -> str:
    # The whole id: projects made in one millisecond share their first 12 digits (UUIDv7).
    return f"bench_plain_{project.hex}"


async def plain_copy(url: str, project: uuid.UUID) -> str:
    """The name of a table holding every line of ``project`` as a row, made unless there.

    Read through ``fetch_page`` (rows and sealed blocks alike, so a dataset sealed by an
    earlier run copies as well as a fresh one) and written in one transaction: the table is
    whole or absent. Indexed as ``logs`` is (the primary key and the equality btrees) but not
    partitioned.
    """
    name = plain_table(project)
    writer = await asyncpg.connect(url)
    try:
        if await writer.fetchval("SELECT to_regclass($1) IS NOT NULL", name):
            return name
        print(f"copying project {project}'s lines into {name} ...", flush=True)
        t0 = time.monotonic()
        reader = await storage_connection(url)
        try:
            async with writer.transaction():
                await writer.execute(f"CREATE TABLE {name} (LIKE logs)")
                lines = await _copy(reader, writer, name, project)
                await writer.execute(f"ALTER TABLE {name} ADD PRIMARY KEY (project_id, id)")
                for column in EQUALITY_FILTERS:
                    await writer.execute(f"CREATE INDEX ON {name} (project_id, {column}, id)")
        finally:
            await reader.close()
        await writer.execute(f"VACUUM (ANALYZE) {name}")
        print(f"  {lines:,} lines in {time.monotonic() - t0:.1f} s", flush=True)
        return name
    finally:
        await writer.close()


async def _copy(
    reader: asyncpg.Connection, writer: asyncpg.Connection, name: str, project: uuid.UUID
) -> int:
    lines, cursor = 0, None
    while True:
        req = PageRequest(LogFilter(project), per_page=_COPY_PAGE, ascending=True, cursor=cursor)
        page = await fetch_page(reader, req)
        records = [tuple(row[i] for i in range(len(COLUMNS))) for row in page.rows]
        await writer.copy_records_to_table(name, records=records, columns=COLUMNS)
        lines += len(records)
        if not page.has_more:
            return lines
        cursor = page.rows[-1]["id"]


# -- scenarios ----------------------------------------------------------------------------------


async def prepare(
    conn: asyncpg.Connection, plain: str, project_id: Any, scenario: Scenario
) -> Prepared:
    """Resolve a scenario to its cursor, its HTTP path, its page request and its OFFSET twin;
    ``plain``: the project's :func:`plain_copy`."""
    base = parse_list_query(scenario.params).page_request(project_id)
    f = base.filter
    filters = sorted(f.equals)
    where = "project_id = $1 AND id BETWEEN $2 AND $3" + "".join(
        f" AND {col} = ${i + 4}" for i, col in enumerate(filters)
    )
    values = [project_id, _uuid(f.lo), _uuid(f.hi), *(f.equals[c] for c in filters)]
    total = await conn.fetchval(f"SELECT count(*) FROM {plain} WHERE {where}", *values)
    params = dict(scenario.params)
    order = "ASC" if base.ascending else "DESC"
    # The page covers sort positions [skip, skip + per_page). Its cursor is the line just before
    # it in sort order when walking next, just after it when walking prev.
    skip = min(int(scenario.depth * total), max(0, total - base.per_page))
    if skip > 0:
        pos = skip - 1 if base.forward else skip + base.per_page
        cursor = await conn.fetchval(
            f"SELECT id FROM {plain} WHERE {where} ORDER BY id {order} OFFSET {pos} LIMIT 1",
            *values,
        )
        params["cursor"] = str(cursor)
    n = len(values)
    return Prepared(
        scenario=scenario,
        path=PAGE_PATH + "?" + urlencode(params),
        request=parse_list_query(params).page_request(project_id),
        offset_sql=(
            f"SELECT {COLUMN_LIST} FROM {plain} WHERE {where} ORDER BY id {order}"
            f" OFFSET ${n + 1} LIMIT ${n + 2}"
        ),
        offset_args=[*values, skip, base.per_page],
        offset=skip,
        lines_in_set=total,
    )


def _uuid(value: int) -> uuid.UUID:
    return uuid.UUID(int=value)


async def same_lines(prepared: Prepared, body: bytes, conn: asyncpg.Connection) -> bool:
    """Whether the endpoint's answer (``body``), the storage read and the OFFSET twin hold the
    same lines: what is compared side by side reads the same page."""
    answered = [str(e["id"]) for e in msgspec.json.decode(body)["logs"]]
    page = await fetch_page(conn, prepared.request)
    read = [str(r["id"]) for r in page.rows]
    twin = [str(r["id"]) for r in await conn.fetch(prepared.offset_sql, *prepared.offset_args)]
    return answered == read == twin


async def measure(
    prepared: Prepared,
    client: HttpClient,
    conn: asyncpg.Connection,
    *,
    iterations: int,
    warmup: int,
    offset: bool = True,
    offset_budget_s: float = 5.0,
) -> dict[str, Any]:
    """p50/p95/p99 of the endpoint, of its storage read in this process and of ``/healthz``
    on the same client, interleaved; then of the OFFSET twin alone."""

    async def http() -> None:
        status, _ = client.get(prepared.path)
        if status != 200:
            raise RuntimeError(f"{prepared.scenario.name}: HTTP {status}")

    async def storage() -> None:
        await fetch_page(conn, prepared.request)

    async def healthz() -> None:
        status, _ = client.get(HEALTHZ_PATH)
        if status != 200:
            raise RuntimeError(f"/healthz: HTTP {status}")

    async def by_offset() -> None:
        await conn.fetch(prepared.offset_sql, *prepared.offset_args)

    # The three interleave; OFFSET runs apart: a deep OFFSET query (tens of ms of CPU)
    # between two requests would slow the request after it, not the step beside it.
    steps = {"http": http, "storage": storage, "healthz": healthz}
    samples = await timed_loop(steps, iterations=iterations, warmup=warmup)
    if offset:
        samples |= await timed_loop(
            {"offset": by_offset},
            iterations=iterations,
            warmup=min(warmup, 3),
            budget_s={"offset": offset_budget_s},
        )
    return {name: percentiles(s) for name, s in samples.items()}


def bare_p50(body: bytes, iterations: int, warmup: int) -> dict[str, float]:
    """Latency of the bare Starlette app serving ``body``, with the same client."""
    with bare_server(body) as bare:
        client = HttpClient(bare.port)
        try:
            for _ in range(warmup):
                client.get(PAGE_PATH)
            samples = []
            for _ in range(iterations):
                t0 = time.perf_counter()
                client.get(PAGE_PATH)
                samples.append(time.perf_counter() - t0)
        finally:
            client.close()
    return percentiles(samples)
