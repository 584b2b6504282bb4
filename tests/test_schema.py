"""Schema versions: a database made at an older version is upgraded in place, rows kept."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from gramlogs.core import ids
from gramlogs.core.errors import Forbidden
from gramlogs.core.keys import KeyScope, Permission
from gramlogs.storage import access, blocks, idempotency, pages, schema, tenants, writer
from gramlogs.storage.pages import COLUMNS, LogFilter, PageRequest


async def _indexes(conn: asyncpg.Connection) -> set[str]:
    rows = await conn.fetch("SELECT indexname FROM pg_indexes WHERE tablename = 'logs'")
    return {r["indexname"] for r in rows}


async def _at_version(
    conn: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch, version: int
) -> None:
    """What ``version`` left: its steps and their version records, without later steps."""
    kept = schema.steps()[:version]
    assert [s.version for s in kept] == list(range(1, version + 1))
    with monkeypatch.context() as m:
        m.setattr(schema, "steps", lambda: kept)
        await schema.migrate(conn)


async def _at_version_1(conn: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch) -> None:
    await _at_version(conn, monkeypatch, 1)


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
        head = (ids.new_id(ts), ts, "i", "warn", "server", "disk timeout", None, "{}")
        row = (*head, project, uuid.uuid4(), uuid.uuid4(), "exec-1")
        await conn.copy_records_to_table("logs", records=[row], columns=list(COLUMNS))
        assert "logs_keyword" in await _indexes(conn)

        applied = await schema.migrate(conn)

        assert [s.version for s in applied] == list(range(2, len(schema.steps()) + 1))
        assert await schema.current_version(conn) == len(schema.steps())
        stored = await conn.fetch(f"SELECT {', '.join(COLUMNS)} FROM logs")
        assert [tuple(r) for r in stored] == [row]
        indexes = await _indexes(conn)
        assert not {"logs_keyword", "logs_keyword_tenant"} & indexes
        assert await schema.migrate(conn) == []
    finally:
        await conn.close()


async def test_version_3_keeps_lines_stored_before_it_searchable(empty_database, monkeypatch):
    """Lines stored under the trigram index (version 2) are found by keyword at once after the
    upgrade (through a block not summarised yet), and still after maintenance summarises them,
    in fewer reads."""
    conn = await asyncpg.connect(empty_database)
    try:
        await _at_version(conn, monkeypatch, 2)
        org = await tenants.create_organization(conn, "o")
        project = await tenants.create_project(conn, org, "p")
        other = await tenants.create_project(conn, org, "q")
        start = datetime(2025, 6, 1, tzinfo=UTC)
        functions = [uuid.UUID(int=1), uuid.UUID(int=2)]
        rows = []
        for i in range(1200):
            ts = start + timedelta(seconds=i)
            word = "quokka" if i in (4, 700) else "wombat"
            owner = project if i % 2 else other
            line = (ids.new_id(ts), ts, "i", "info", "server", f"line {i} {word}", None, "{}")
            rows.append((*line, owner, uuid.uuid4(), functions[i % 4 // 2], None))
        await conn.copy_records_to_table("logs", records=rows, columns=list(COLUMNS))
        assert "logs_keyword_tenant" in await _indexes(conn)

        await schema.migrate(conn)

        pending = await conn.fetch(
            "SELECT project_id, function_id FROM log_blocks WHERE grams IS NULL"
        )
        expected_pending = {(p, f) for p in (project, other) for f in functions}
        assert {tuple(r) for r in pending} == expected_pending
        req = PageRequest(LogFilter(project_id=other, keyword="QUOKKA"), per_page=10)
        expected = [rows[700][0], rows[4][0]]
        found = await pages.fetch_page(conn, req)
        assert [r["id"] for r in found.rows] == expected

        monkeypatch.setattr(blocks, "SUMMARISE_ROWS", 250)
        assert await blocks.summarise_pending(conn) == 1200
        assert await conn.fetchval("SELECT count(*) FROM log_blocks WHERE grams IS NULL") == 0
        # 300 lines a function, summarised 250 at a time: blocks of 250 and 50 lines.
        assert await conn.fetchval("SELECT count(*) FROM log_blocks") == 4 * 2
        found = await pages.fetch_page(conn, req)
        assert [r["id"] for r in found.rows] == expected
        assert await blocks.summarise_pending(conn) == 0
    finally:
        await conn.close()


async def test_the_version_before_idempotency_keys_is_upgraded_in_place_with_its_rows(
    empty_database, monkeypatch
):
    (step,) = [s for s in schema.steps() if s.name.endswith("_idempotency_keys.sql")]
    conn = await asyncpg.connect(empty_database)
    try:
        await _at_version(conn, monkeypatch, step.version - 1)
        assert await conn.fetchval("SELECT to_regclass('idempotency_keys')") is None
        project = await tenants.create_project(
            conn, await tenants.create_organization(conn, "o"), "p"
        )
        ts = datetime(2025, 6, 1, 10, 0, 0, 123456, tzinfo=UTC)
        head = (ids.new_id(ts), ts, "i", "warn", "server", "disk timeout", None, "{}")
        row = (*head, project, uuid.uuid4(), uuid.uuid4(), "exec-1")
        await conn.copy_records_to_table("logs", records=[row], columns=list(COLUMNS))

        applied = await schema.migrate(conn)

        assert applied[0] == step
        assert [s.version for s in applied] == list(range(step.version, len(schema.steps()) + 1))
        stored = await conn.fetch(f"SELECT {', '.join(COLUMNS)} FROM logs")
        assert [tuple(r) for r in stored] == [row]
        indexes = await conn.fetch(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'idempotency_keys'"
        )
        assert {r["indexname"] for r in indexes} == {
            "idempotency_keys_pkey",
            "idempotency_keys_expiry",
        }
        # The new table does its work: a batch stored with a key is replayed from it.
        claim = idempotency.Claim(project, "k", idempotency.request_hash("/p", "t", "e", b""), 24)
        reply = idempotency.Reply(200, "application/json", b"{}")
        await writer.store_batch(conn, project, [], companion=claim.recorder(lambda *_: reply))
        with pytest.raises(idempotency.Replay) as replay:
            await claim.replay_if_recorded(conn)
        assert replay.value.reply == reply
        assert await schema.migrate(conn) == []
    finally:
        await conn.close()


async def test_keys_made_before_key_permissions_keep_their_power_after_the_upgrade(
    empty_database, monkeypatch
):
    (step,) = [s for s in schema.steps() if s.name.endswith("_key_permissions.sql")]
    conn = await asyncpg.connect(empty_database)
    try:
        await _at_version(conn, monkeypatch, step.version - 1)
        org = await tenants.create_organization(conn, "o")
        await tenants.create_project(conn, org, "p")
        producer = await tenants.create_key(conn, org, KeyScope.PRODUCER)
        consumer = await tenants.create_key(conn, org, KeyScope.CONSUMER)
        # The previous schema knows no ingest key.
        with pytest.raises(asyncpg.CheckViolationError):
            await tenants.create_key(conn, org, KeyScope.INGEST)

        applied = await schema.migrate(conn)

        assert applied[0] == step
        for permission in Permission:
            principal = await access.authenticate(conn, producer.key, permission, project_slug="p")
            assert principal.scope is KeyScope.PRODUCER
            (await access.identify(conn, producer.key)).require(permission)
        await access.authenticate(conn, consumer.key, Permission.READ, project_slug="p")
        with pytest.raises(Forbidden):
            await access.authenticate(conn, consumer.key, Permission.WRITE, project_slug="p")
        for scope in (KeyScope.INGEST, KeyScope.ADMIN):
            made = await tenants.create_key(conn, org, scope)
            assert (await access.identify(conn, made.key)).scope is scope
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("UPDATE api_keys SET scope = 'reader' WHERE id = $1", consumer.id)
        assert await schema.migrate(conn) == []
    finally:
        await conn.close()
