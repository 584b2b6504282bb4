"""On a Citus cluster (make test-citus): every page is a router query to one shard, a database
that already holds logs is distributed without losing a line, and the cluster grows online.

Skipped on a single PostgreSQL; the rest of the suite runs on the cluster unchanged.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from gramlogs.core import ids
from gramlogs.core.keys import KeyScope
from gramlogs.local.seed import SeedPlan, seed_logs
from gramlogs.storage import citus, journal, pages, routing, schema, tenants
from testkit.citus import CitusServer
from testkit.postgres import temporary_database, with_database
from testkit.serve import live_server
from tests.conftest import ON_CITUS

pytestmark = pytest.mark.skipif(not ON_CITUS, reason="needs a Citus cluster (make test-citus)")

URL = "/rpc/logs.listToolExecutionLogs"
END = datetime(2026, 11, 30, 12, tzinfo=UTC)
FUNCTION = uuid.UUID("0193a5b0-0000-7000-8000-00000000f001")
DEPLOYMENT = uuid.UUID("0193a5b0-0000-7000-8000-00000000d001")


async def _tenant(conn: asyncpg.Connection, slug: str) -> tuple[uuid.UUID, str, str]:
    org = await tenants.create_organization(conn, f"org-{slug}")
    project = await tenants.create_project(conn, org, slug)
    consumer = await tenants.create_key(conn, org, KeyScope.CONSUMER)
    producer = await tenants.create_key(conn, org, KeyScope.PRODUCER)
    return project, consumer.key, producer.key


FILTERS: list[dict[str, object]] = [
    {},
    {"function_id": FUNCTION},
    {"deployment_id": DEPLOYMENT},
    {"instance": "i-1"},
    {"level": "error"},
]


@pytest.mark.parametrize("equals", FILTERS, ids=lambda f: ",".join(f) or "none")
@pytest.mark.parametrize("keyword", [None, "timeout"])
async def test_every_page_is_a_router_query_to_one_shard(
    database_url: str, equals: dict[str, object], keyword: str | None
) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await citus.prepare_connection(conn)
        project, _, _ = await _tenant(conn, f"router-{uuid.uuid4().hex[:8]}")
        window = pages.LogFilter(
            project_id=project,
            lo=ids.lowest_id(END - timedelta(days=1)).int,
            hi=ids.highest_id(END).int,
            equals=equals,
            keyword=keyword,
        )
        request = pages.PageRequest(filter=window, per_page=20)
        sql, args = pages.page_query(request)
        async with conn.transaction():
            if keyword is not None:
                await conn.execute(pages.KEYWORD_SETTINGS)
            plan = "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + sql, *args))
        call, call_args = routing.call_query(request, (sql, args))
        call_plan = "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + call, *call_args))
    finally:
        await conn.close()
    # One task on one shard: Citus's router executor, no multi-shard fan-out or merge step.
    assert "Custom Scan (Citus Adaptive)" in plan, plan
    assert "Task Count: 1" in plan, plan
    if keyword is None:
        # What the server's connections run instead: the page function, handed whole to the
        # worker of the shard (routing.py).
        assert "Task Count: 1" in call_plan, call_plan
        assert "Function Scan on gramlogs_page_rows" in call_plan, call_plan


async def test_a_page_reads_its_rows_in_one_call_run_by_the_worker_of_its_project(
    database_url: str,
) -> None:
    """A pooled connection (a RoutedConnection) reads a page's rows through the page function,
    which Citus delegates whole to the worker holding the project's shard: in the page's
    transaction too (force_delegation), with no statement of its own over the shard's rows."""
    conn = await asyncpg.connect(
        database_url, server_settings=pages.PLAN_SETTINGS, connection_class=routing.RoutedConnection
    )
    messages: list[asyncpg.PostgresLogMessage] = []
    try:
        await citus.prepare_connection(conn)
        assert routing.delegates(conn)
        project, _, _ = await _tenant(conn, f"delegated-{uuid.uuid4().hex[:8]}")
        await seed_logs(conn, SeedPlan(project, 500, END, days=1, seed=3))
        port = await conn.fetchval(
            "SELECT nodeport FROM citus_shards WHERE table_name = 'logs'::regclass"
            " AND shardid = get_shard_id_for_distribution_column('logs', $1::uuid)",
            project,
        )
        conn.add_log_listener(lambda _conn, message: messages.append(message))
        await conn.execute("SET citus.log_remote_commands = on; SET client_min_messages = debug1")
        page = await pages.fetch_page(conn, pages.PageRequest(pages.LogFilter(project), 20))
        await conn.execute("RESET client_min_messages; RESET citus.log_remote_commands")
    finally:
        await conn.close()
    assert len(page.rows) == 20 and page.has_more
    assert any(m.message == "pushing down the function call" for m in messages)
    issued = [m for m in messages if m.message.startswith("issuing ")]
    calls = [m for m in issued if "gramlogs_page_rows(" in m.message]
    assert len(calls) == 1 and f":{port} " in str(calls[0].detail), [m.message for m in issued]
    assert not any("FROM public.logs_" in m.message for m in issued), [m.message for m in issued]


async def test_the_worker_prepares_a_page_statement_once_and_keeps_its_generic_plan(
    database_url: str, citus_workers: tuple[tuple[str, int], ...]
) -> None:
    """The page function where Citus runs it, on the worker holding the shard: the statement
    over the shard itself is prepared once per session and its generic plan reused. Called on
    the other worker (a call Citus did not delegate), it reads the same rows through ``logs``
    and prepares nothing."""
    conn = await asyncpg.connect(database_url)
    try:
        project, _, _ = await _tenant(conn, f"prepared-{uuid.uuid4().hex[:8]}")
        await seed_logs(conn, SeedPlan(project, 300, END, days=1, seed=4))
        placement = await conn.fetchrow(
            "SELECT shardid, nodename, nodeport FROM citus_shards"
            " WHERE table_name = 'logs'::regclass"
            " AND shardid = get_shard_id_for_distribution_column('logs', $1::uuid)",
            project,
        )
        name = await conn.fetchval("SELECT current_database()")
    finally:
        await conn.close()
    assert placement is not None
    shard, host, port = placement
    ((other_host, other_port),) = [w for w in citus_workers if w[1] != port]
    found: dict[int, list[list[uuid.UUID]]] = {}
    prepared: dict[int, list[tuple[object, ...]]] = {}
    for node_host, node_port in ((host, port), (other_host, other_port)):
        url = with_database(f"postgresql://postgres@{node_host}:{node_port}/x", name)
        worker = await asyncpg.connect(url)
        try:
            found[node_port] = []
            for cursor in (None, ids.highest_id(END - timedelta(hours=6)), None):
                req = pages.PageRequest(pages.LogFilter(project), 20, cursor=cursor)
                query = pages.page_query(req)
                rows = await worker.fetch(*_unpacked(routing.call_query(req, query)))
                found[node_port].append([r["id"] for r in rows])
            prepared[node_port] = [
                tuple(r)
                for r in await worker.fetch(
                    "SELECT name, generic_plans, custom_plans FROM pg_prepared_statements"
                    " WHERE name LIKE 'gramlogs_page_rows_%'"
                )
            ]
        finally:
            await worker.close()
    pages_read = found[port]
    assert pages_read[0] == pages_read[2] and len(pages_read[0]) == 21
    assert pages_read[1] != pages_read[0]
    assert prepared[port] == [(f"gramlogs_page_rows_{shard}_desc_0", 3, 0)]
    assert found[other_port] == pages_read and prepared[other_port] == []


def _unpacked(query: tuple[str, list[object]]) -> tuple[str, *tuple[object, ...]]:
    return (query[0], *query[1])


async def test_a_single_node_database_with_logs_is_distributed_without_losing_a_line(
    server_url: str, citus_workers: tuple[tuple[str, int], ...]
) -> None:
    """`gramlogs citus distribute` on a database that holds logs (migrated as a single node)."""
    async with temporary_database(
        server_url, "gramlogs_move", migrated=False, citus_workers=citus_workers
    ) as url:
        conn = await asyncpg.connect(url)
        try:
            await schema.migrate(conn)  # tables local to the coordinator, as on one node
            project, _, _ = await _tenant(conn, "moving")
            plan = SeedPlan(project_id=project, rows=3000, end=END, days=2, seed=7)
            await seed_logs(conn, plan)
            before = await conn.fetch("SELECT id, raw_log FROM logs ORDER BY id")
            assert not (await citus.topology(conn)).distributed
            done = await citus.distribute(conn)
            assert any(d.startswith("logs:") for d in done)
            assert (await citus.topology(conn)).distributed
            after = await conn.fetch("SELECT id, raw_log FROM logs ORDER BY id")
            assert [tuple(r) for r in after] == [tuple(r) for r in before]
            assert await citus.distribute(conn) == []  # a second run changes nothing
        finally:
            await conn.close()


async def test_a_hot_project_gets_a_shard_of_its_own_without_losing_a_line(
    server_url: str, citus_workers: tuple[tuple[str, int], ...]
) -> None:
    """`gramlogs citus isolate`: the project's lines move to a shard holding only them."""
    async with temporary_database(server_url, "gramlogs_hot", citus_workers=citus_workers) as url:
        conn = await asyncpg.connect(url)
        try:
            await citus.prepare_connection(conn)
            hot, _, _ = await _tenant(conn, "hot")
            cold, _, _ = await _tenant(conn, "cold")
            for project, seed in ((hot, 1), (cold, 2)):
                await seed_logs(
                    conn, SeedPlan(project_id=project, rows=2000, end=END, days=2, seed=seed)
                )
            count = (
                "SELECT project_id, count(*), md5(string_agg(id::text || raw_log, ',' ORDER BY id))"
                " FROM logs GROUP BY 1 ORDER BY 1"
            )
            before = await conn.fetch(count)
            shard_id = await citus.isolate(conn, hot)
            assert await citus.isolate(conn, hot) == shard_id  # a second run changes nothing
            after = await conn.fetch(count)
            hashes = await conn.fetchrow(
                "SELECT shardminvalue, shardmaxvalue FROM pg_dist_shard WHERE shardid = $1",
                shard_id,
            )
            assert hashes is not None
            of_project = await conn.fetchval(
                "SELECT get_shard_id_for_distribution_column('logs', $1::uuid)", hot
            )
        finally:
            await conn.close()
    assert [tuple(r) for r in after] == [tuple(r) for r in before]
    assert of_project == shard_id
    assert hashes["shardminvalue"] == hashes["shardmaxvalue"]  # one hash value: one tenant


async def test_a_worker_is_added_and_shards_move_online_under_load(
    server_url: str,
    citus_workers: tuple[tuple[str, int], ...],
    citus_cluster: CitusServer,
    tmp_path: Path,
) -> None:
    """Ingestion and paging go on while a third worker joins and the shards are rebalanced:
    every acknowledged line is stored exactly once, and nothing answers a 5xx but a 503 with
    Retry-After."""
    async with temporary_database(server_url, "gramlogs_grow", citus_workers=citus_workers) as url:
        name = url.rsplit("/", 1)[1]
        conn = await asyncpg.connect(url)
        try:
            project, consumer, producer = await _tenant(conn, "growing")
            seeded = await seed_logs(
                conn, SeedPlan(project_id=project, rows=20_000, end=END, days=1, seed=3)
            )
        finally:
            await conn.close()
        node = await asyncio.to_thread(citus_cluster.cluster.extra_worker, "worker3", name)
        statuses: Counter[int] = Counter()
        acknowledged: set[str] = set()
        stop = asyncio.Event()

        with live_server(url, tmp_path) as server:
            async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:

                def check(r: httpx.Response) -> None:
                    statuses[r.status_code] += 1
                    assert r.status_code < 500 or (
                        r.status_code == 503 and "retry-after" in r.headers
                    ), r.text

                async def ingest(worker: int) -> None:
                    batch = 0
                    headers = {"Gram-Key": producer, "Gram-Project": "growing"}
                    while not stop.is_set():
                        lines = [f"grow-{worker}-{batch}-{i}" for i in range(20)]
                        entries = [
                            {
                                "raw_log": line,
                                "timestamp": END.isoformat(),
                                "function_id": str(FUNCTION),
                                "deployment_id": str(DEPLOYMENT),
                            }
                            for line in lines
                        ]
                        r = await client.post("/rpc/logs.ingest", json=entries, headers=headers)
                        check(r)
                        if r.status_code == 200:
                            acknowledged.update(lines)
                            batch += 1
                        else:
                            await asyncio.sleep(float(r.headers.get("retry-after", "1")))

                async def page() -> None:
                    headers = {"Gram-Key": consumer, "Gram-Project": "growing"}
                    while not stop.is_set():
                        r = await client.get(URL, params={"per_page": 100}, headers=headers)
                        check(r)

                load = [asyncio.create_task(ingest(w)) for w in range(2)]
                load.append(asyncio.create_task(page()))
                admin = await asyncpg.connect(url)
                try:
                    await asyncio.sleep(1)
                    await citus.add_worker(admin, "127.0.0.1", node.port)
                    moves = await citus.rebalance(admin, poll_s=0.2)
                    placements = await citus.shard_placements(admin)
                finally:
                    await admin.close()
                await asyncio.sleep(1)
                stop.set()
                await asyncio.gather(*load)

                # Every acknowledged line, read back through the API, exactly once.
                seen: Counter[str] = Counter()
                cursor = None
                headers = {"Gram-Key": consumer, "Gram-Project": "growing"}
                while True:
                    params: dict[str, str | int] = {"per_page": 100, "function_id": str(FUNCTION)}
                    if cursor:
                        params["cursor"] = cursor
                    r = await client.get(URL, params=params, headers=headers)
                    assert r.status_code == 200, r.text
                    body = r.json()
                    seen.update(entry["raw_log"] for entry in body["logs"])
                    cursor = body["pagination"].get("next_page_cursor")
                    if not cursor:
                        break

        assert moves > 0 and f"127.0.0.1:{node.port}" in placements, placements
        assert acknowledged, statuses
        # The function's lines are exactly the acknowledged ones (seeded lines have others).
        assert set(seen) == acknowledged, "a line lost, or one never acknowledged"
        assert all(count == 1 for count in seen.values()), "a line doubled"
        assert seeded == 20_000


async def test_the_citus_commands_run_as_a_user_runs_them(
    server_url: str, citus_workers: tuple[tuple[str, int], ...]
) -> None:
    """`gramlogs citus distribute | isolate | status` on the coordinator, as subprocesses."""
    async with temporary_database(server_url, "gramlogs_cli", citus_workers=citus_workers) as url:
        conn = await asyncpg.connect(url)
        try:
            await _tenant(conn, "busy")
        finally:
            await conn.close()
        env = {**os.environ, "GRAMLOGS_DATABASE_URL": url}

        def gramlogs(*args: str) -> Any:
            done = subprocess.run(
                [sys.executable, "-m", "gramlogs", "citus", *args, "--json"],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert done.returncode == 0, done.stderr
            return json.loads(done.stdout)

        assert gramlogs("distribute") == {"done": []}  # distributed already: nothing to do
        isolated = gramlogs("isolate", "busy", "--org", "org-busy")
        assert isolated["project"] == "busy" and isinstance(isolated["shard_id"], int)
        status = gramlogs("status")
    assert status["distributed"] is True and status["citus"]
    assert sum(status["shards"].values()) == 8 + 2  # the isolated project's shard split in 3


async def test_the_tail_reads_its_lines_by_primary_key_on_the_worker(database_url: str) -> None:
    """The journal read (a resumed tail, the watcher) is a router query, and the worker probes
    the primary key once per line, whatever the shard's statistics (test_plans_without_statistics
    checks the buffers on one node)."""
    conn = await asyncpg.connect(database_url)
    try:
        await citus.prepare_connection(conn)
        project, _, _ = await _tenant(conn, f"journal-{uuid.uuid4().hex[:8]}")
        await seed_logs(conn, SeedPlan(project, 2_000, END, days=1, seed=5), chunk=100)
        sql, args = journal.read_lines_query(project, 3, 7, ["%timeout%"])
        plan = "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + sql, *args))
    finally:
        await conn.close()
    assert "Task Count: 1" in plan, plan
    assert "Hash" not in plan and "Seq Scan on logs" not in plan, plan
    probes = [line for line in plan.splitlines() if "Index Cond" in line and "u.id" in line]
    assert probes and all("id >= u.id" in line for line in probes), plan
    scans = [line for line in plan.splitlines() if "Scan" in line and " on logs_" in line]
    assert scans and all("pkey" in line for line in scans), plan
