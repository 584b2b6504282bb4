"""Schema versions: a database made at an older version is upgraded in place, rows kept."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg
import pytest

from gramlogs.core import ids
from gramlogs.storage import schema
from gramlogs.storage.store import COLUMNS


async def _indexes(conn: asyncpg.Connection) -> set[str]:
    rows = await conn.fetch("SELECT indexname FROM pg_indexes WHERE tablename = 'logs'")
    return {r["indexname"] for r in rows}


async def _at_version_1(conn: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch) -> None:
    """What version 1 left: schema.sql and its version record, without later steps."""
    baseline = schema.steps()[0]
    assert baseline.version == 1
    with monkeypatch.context() as m:
        m.setattr(schema, "steps", lambda: [baseline])
        await schema.migrate(conn)


async def test_a_version_1_database_is_upgraded_in_place_without_losing_rows(
    empty_database, monkeypatch
):
    conn = await asyncpg.connect(empty_database)
    try:
        await _at_version_1(conn, monkeypatch)
        assert await schema.current_version(conn) == 1
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
