"""Ingest through a database restart: every line of every acknowledged batch is stored exactly
once, and the server answers nothing but 200, or 503 while the database is away.

The check benchmarks/soak.py (retired at af8a818) made of its own run; here it fails a test. A real
server process on a PostgreSQL of the test's own (it is stopped and started), writers that send
a batch again, unchanged, after a 503 or a dropped connection: lines with a timestamp get ids
from their content, so a resend stores nothing twice.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from gramlogs.core.keys import KeyScope
from gramlogs.storage import schema, tenants
from testkit.postgres import OwnPostgres
from testkit.postgres import own_postgres as own_postgres_server
from testkit.serve import live_server
from tests._support import until

FUNCTION = "00000000-0000-4000-8000-000000000001"
DEPLOYMENT = "00000000-0000-4000-8000-000000000002"


@pytest.fixture
def own_postgres() -> Iterator[OwnPostgres]:
    with own_postgres_server("gramlogs-test-restart-") as pg:
        yield pg


def _batch(writer: int, number: int, lines: int) -> tuple[bytes, list[str]]:
    # Dated now, not at a fixed date: the server's partitions and retention are around now,
    # and only the ids derived from each line's content matter to the check.
    base = datetime.now(UTC)
    out, markers = [], []
    for i in range(lines):
        marker = f"w{writer}-{number}-{i}"
        at = (base + timedelta(microseconds=i)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        entry = {
            "raw_log": f"{marker} n={i}",
            "function_id": FUNCTION,
            "deployment_id": DEPLOYMENT,
            "timestamp": at,
        }
        out.append(json.dumps(entry))
        markers.append(marker)
    return ("\n".join(out) + "\n").encode(), markers


async def test_no_acknowledged_line_is_lost_or_doubled_across_a_database_restart(
    own_postgres, tmp_path
):
    conn = await asyncpg.connect(own_postgres.url)
    try:
        await schema.migrate(conn)
        org = await tenants.create_organization(conn, "restart")
        project = await tenants.create_project(conn, org, "restart")
        key = (await tenants.create_key(conn, org, KeyScope.PRODUCER)).key
    finally:
        await conn.close()
    headers = {
        "Gram-Key": key,
        "Gram-Project": "restart",
        "Content-Type": "application/x-ndjson",
    }
    acknowledged: list[str] = []
    statuses: Counter[str] = Counter()
    stop = asyncio.Event()

    async def writer(client: httpx.AsyncClient, n: int) -> None:
        number = 0
        while not stop.is_set():
            body, markers = _batch(n, number, 20)
            number += 1
            while True:
                try:
                    r = await client.post("/rpc/logs.ingest", content=body, headers=headers)
                except httpx.TransportError:
                    statuses["no answer"] += 1
                    await asyncio.sleep(0.2)
                    continue
                statuses[str(r.status_code)] += 1
                if r.status_code != 503:
                    break
                await asyncio.sleep(float(r.headers.get("retry-after", "1")))
            if r.status_code == 200:
                acknowledged.extend(markers)
            await asyncio.sleep(0.02)

    env = {"GRAMLOGS_LOG_LEVEL": "warning"}
    with live_server(own_postgres.url, tmp_path, settings=env) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            writers = [asyncio.create_task(writer(client, n)) for n in range(3)]
            # Each phase lasts until what it is for has happened, not for a time: a slow
            # machine only makes the test longer.
            await until(lambda: len(acknowledged) > 0, state=statuses.copy)
            await asyncio.to_thread(own_postgres.stop)
            await until(
                lambda: statuses["503"] > 0, state=statuses.copy
            )  # the server saw the database go
            before = len(acknowledged)
            await asyncio.to_thread(own_postgres.start)
            await until(lambda: len(acknowledged) > before, state=statuses.copy)
            stop.set()
            await asyncio.gather(*writers)

    conn = await asyncpg.connect(own_postgres.url)
    try:
        rows = await conn.fetch(
            "SELECT split_part(raw_log, ' ', 1) AS marker FROM logs WHERE project_id = $1",
            project,
        )
    finally:
        await conn.close()
    stored = Counter(r["marker"] for r in rows)
    assert set(statuses) <= {"200", "503", "no answer"}, statuses
    assert [m for m in acknowledged if stored[m] != 1] == []
    assert [m for m, c in stored.items() if c > 1] == []
