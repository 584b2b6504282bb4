"""Schema versions: a database made at an older version is upgraded in place, rows kept."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime
from urllib.parse import urlsplit

import asyncpg

from gramlogs import ids, schema
from gramlogs.store import COLUMNS


async def _indexes(conn: asyncpg.Connection) -> set[str]:
    rows = await conn.fetch("SELECT indexname FROM pg_indexes WHERE tablename = 'logs'")
    return {r["indexname"] for r in rows}


async def test_a_version_1_database_is_upgraded_in_place_without_losing_rows(server_url):
    name = f"gramlogs_v1_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(server_url)
    await admin.execute(f"CREATE DATABASE {name}")
    try:
        conn = await asyncpg.connect(urlsplit(server_url)._replace(path=f"/{name}").geturl())
        try:
            # A database as version 1 left it: schema.sql and its version record only.
            baseline = schema.steps()[0]
            assert baseline.version == 1
            await conn.execute(baseline.sql)
            await conn.execute(
                "CREATE TABLE gramlogs_schema (version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            await conn.execute("INSERT INTO gramlogs_schema VALUES (1, 'schema.sql')")
            org, project = uuid.uuid4(), uuid.uuid4()
            await conn.execute("INSERT INTO organizations (id, name) VALUES ($1, 'o')", org)
            await conn.execute(
                "INSERT INTO projects (id, organization_id, slug, name) VALUES ($1, $2, 'p', 'p')",
                project,
                org,
            )
            ts = datetime(2025, 6, 1, 10, 0, 0, 123456, tzinfo=UTC)
            row = (ids.new_id(ts), ts, "i", "warn", "server", "disk timeout", None, "{}")
            row += (project, uuid.uuid4(), uuid.uuid4(), "exec-1")
            await conn.copy_records_to_table("logs", records=[row], columns=list(COLUMNS))
            assert "logs_keyword" in await _indexes(conn)

            applied = await schema.migrate(conn)

            assert [s.version for s in applied] == list(range(2, len(schema.steps()) + 1))
            assert await schema.current_version(conn) == len(schema.steps())
            stored = await conn.fetch(f"SELECT {', '.join(COLUMNS)} FROM logs")
            assert [tuple(r) for r in stored] == [row]
            indexes = await _indexes(conn)
            assert "logs_keyword_tenant" in indexes and "logs_keyword" not in indexes
            assert await schema.migrate(conn) == []
        finally:
            await conn.close()
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()
