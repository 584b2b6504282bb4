"""Page scenarios of listToolExecutionLogs, resolved to what each benchmark times: the HTTP
request, the very SQL statement the server runs for it (``pages.page_query``), and the OFFSET
query a dashboard would run for the same page; and the side-by-side measurement of the three.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import asyncpg

from benchmarks.results import percentiles
from benchmarks.timing import timed_loop
from gramlogs.storage.pages import COLUMNS, PLAN_SETTINGS, page_query
from gramlogs.web.gram import parse_list_query
from testkit.bare import bare_server
from testkit.http import HttpClient

PAGE_PATH = "/rpc/logs.listToolExecutionLogs"


@dataclass(frozen=True)
class Scenario:
    """A listToolExecutionLogs request: its query (no cursor) and how deep its page lies, as a
    fraction of the filtered rows before it in walking order."""

    name: str
    params: dict[str, str]
    depth: float = 0.0


@dataclass
class Prepared:
    scenario: Scenario
    path: str  # the HTTP request
    sql: str  # the same page statement the server runs
    args: list[Any]
    offset_sql: str  # what an OFFSET-paginated dashboard runs for the same page
    offset_args: list[Any]
    offset: int
    rows_in_set: int


async def prepare(conn: asyncpg.Connection, project_id: Any, scenario: Scenario) -> Prepared:
    """Resolve a scenario to its cursor, its HTTP path, its SQL and its OFFSET twin."""
    base = parse_list_query(scenario.params).page_request(project_id)
    f = base.filter
    filters = sorted(f.equals)
    where = "project_id = $1 AND id BETWEEN $2 AND $3" + "".join(
        f" AND {col} = ${i + 4}" for i, col in enumerate(filters)
    )
    values = [project_id, _uuid(f.lo), _uuid(f.hi), *(f.equals[c] for c in filters)]
    total = await conn.fetchval(f"SELECT count(*) FROM logs WHERE {where}", *values)
    params = dict(scenario.params)
    order = "ASC" if base.ascending else "DESC"
    # The page covers sort positions [skip, skip + per_page). Its cursor is the row just before
    # it in sort order when walking next, just after it when walking prev.
    skip = min(int(scenario.depth * total), max(0, total - base.per_page))
    if skip > 0:
        pos = skip - 1 if base.forward else skip + base.per_page
        cursor = await conn.fetchval(
            f"SELECT id FROM logs WHERE {where} ORDER BY id {order} OFFSET {pos} LIMIT 1", *values
        )
        params["cursor"] = str(cursor)
    req = parse_list_query(params).page_request(project_id)
    sql, args = page_query(req)
    offset = skip
    cols = ", ".join('"timestamp"' if c == "timestamp" else c for c in COLUMNS)
    n = len(values)
    offset_sql = (
        f"SELECT {cols} FROM logs WHERE {where} ORDER BY id {order} OFFSET ${n + 1} LIMIT ${n + 2}"
    )
    return Prepared(
        scenario=scenario,
        path=PAGE_PATH + "?" + urlencode(params),
        sql=sql,
        args=args,
        offset_sql=offset_sql,
        offset_args=[*values, offset, base.per_page],
        offset=offset,
        rows_in_set=total,
    )


def _uuid(value: int) -> uuid.UUID:
    return uuid.UUID(int=value)


async def sql_connection(url: str) -> asyncpg.Connection:
    """A connection set up as the server's pool sets up its own (gramlogs/database.py)."""
    return await asyncpg.connect(url, server_settings=PLAN_SETTINGS)


async def project_id(conn: asyncpg.Connection, slug: str) -> Any:
    return await conn.fetchval("SELECT id FROM projects WHERE slug = $1", slug)


async def measure(
    prepared: Prepared,
    client: HttpClient,
    conn: asyncpg.Connection,
    *,
    iterations: int,
    warmup: int,
    offset: bool = True,
    offset_budget_s: float = 5.0,
    floor: str | None = None,
) -> dict[str, Any]:
    """p50/p95/p99 of the endpoint, of its SQL run directly and of its OFFSET twin, side by side;
    with ``floor``, also of the same SQL over that table instead of ``logs``."""

    async def http() -> None:
        status, _ = client.get(prepared.path)
        if status != 200:
            raise RuntimeError(f"{prepared.scenario.name}: HTTP {status}")

    async def sql() -> None:
        await conn.fetch(prepared.sql, *prepared.args)

    async def by_offset() -> None:
        await conn.fetch(prepared.offset_sql, *prepared.offset_args)

    # HTTP and SQL interleave; OFFSET runs apart: a deep OFFSET query (tens of ms of CPU)
    # between two requests would slow the request after it, not the SQL step beside it.
    steps = {"http": http, "sql": sql}
    if floor is not None:
        floor_sql = prepared.sql.replace(" FROM logs ", f" FROM {floor} ")

        async def on_floor() -> None:
            await conn.fetch(floor_sql, *prepared.args)

        steps["floor"] = on_floor
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
