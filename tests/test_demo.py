"""The first-run demo's keys: a consumer, an ingest-only and an admin key, on new data
directories and on those an earlier version made."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import asyncpg
import pytest

from gramlogs.core.config import Config
from gramlogs.core.keys import KeyScope
from gramlogs.local import demo
from gramlogs.storage import maintenance, schema, tenants
from tests._support import app_client

LIST = "/rpc/logs.listToolExecutionLogs"
LINE = {
    "raw_log": "hello from curl",
    "function_id": demo.DEMO_FUNCTION,
    "deployment_id": demo.DEMO_DEPLOYMENT,
}


def _gram(key: str) -> dict[str, str]:
    return {"Gram-Key": key, "Gram-Project": demo.DEMO_SLUG}


async def _keys_by_name(conn: asyncpg.Connection) -> dict[str, tuple[str, str | None]]:
    return {k.name: (k.scope, k.project_slug) for k in await tenants.list_keys(conn)}


async def _the_banner_keys_work(url: str, shown: demo.Demo) -> None:
    assert shown.consumer_key and shown.ingest_key and shown.admin_key
    async with app_client(url) as client:
        assert (await client.get(LIST, headers=_gram(shown.consumer_key))).status_code == 200
        r = await client.post("/rpc/logs.ingest", json=[LINE], headers=_gram(shown.ingest_key))
        assert (r.status_code, r.json()) == (200, {"stored": 1, "duplicates": 0})
        r = await client.get(LIST, headers=_gram(shown.ingest_key))
        assert (r.status_code, r.json()["message"]) == (
            403,
            "this key has scope 'ingest', which lacks the 'read' permission",
        )
        r = await client.delete(
            f"/functions/server/{demo.DEMO_FUNCTION}/logs",
            headers={"Authorization": f"Bearer {shown.admin_key}"},
        )
        assert (r.status_code, r.json()) == (200, {"deleted": 1})


async def test_a_new_data_dir_gets_an_ingest_only_and_an_admin_key_bound_to_the_demo(
    fresh_database: str, tmp_path: Path
):
    conn = await asyncpg.connect(fresh_database)
    try:
        await maintenance.ensure_partitions(conn, Config())
        shown = await demo.ensure_demo(conn, tmp_path)
        assert shown.created
        assert await _keys_by_name(conn) == {
            "demo consumer": ("consumer", None),
            "demo ingest": ("ingest", "demo"),
            "demo admin": ("admin", "demo"),
        }
        saved = tmp_path / "demo-keys.json"
        assert json.loads(saved.read_text()) == {
            "consumer": shown.consumer_key,
            "ingest": shown.ingest_key,
            "admin": shown.admin_key,
        }
        assert stat.S_IMODE(saved.stat().st_mode) == 0o600
        assert await demo.ensure_demo(conn, tmp_path) == demo.Demo(
            False, "demo", shown.consumer_key, shown.ingest_key, shown.admin_key
        )
    finally:
        await conn.close()
    await _the_banner_keys_work(fresh_database, shown)
    text = demo.banner(shown, "http://127.0.0.1:8080")
    assert f"\n  admin key: {shown.admin_key}\n" in text
    (send,) = [line for line in text.splitlines() if "/rpc/logs.ingest" in line]
    assert f'-H "Gram-Key: {shown.ingest_key}"' in send


async def test_a_data_dir_of_an_earlier_version_shows_working_keys_after_a_restart(
    empty_database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """What the demo made before ingest and admin keys: a consumer and an org-wide producer
    key, saved; the next start adds the two new keys and the producer keeps working."""
    (step,) = [s for s in schema.steps() if s.name.endswith("_key_permissions.sql")]
    kept = schema.steps()[: step.version - 1]
    conn = await asyncpg.connect(empty_database)
    try:
        with monkeypatch.context() as m:
            m.setattr(schema, "steps", lambda: kept)
            await schema.migrate(conn)
        org = await tenants.create_organization(conn, "demo")
        await tenants.create_project(conn, org, "demo", "Demo project")
        consumer = await tenants.create_key(conn, org, KeyScope.CONSUMER, name="demo consumer")
        producer = await tenants.create_key(conn, org, KeyScope.PRODUCER, name="demo producer")
        old = {"consumer": consumer.key, "producer": producer.key}
        (tmp_path / "demo-keys.json").write_text(json.dumps(old))

        await schema.migrate(conn)
        await maintenance.ensure_partitions(conn, Config())
        shown = await demo.ensure_demo(conn, tmp_path)

        assert (shown.created, shown.consumer_key) == (False, consumer.key)
        assert shown.ingest_key and shown.admin_key
        assert json.loads((tmp_path / "demo-keys.json").read_text()) == {
            **old,
            "ingest": shown.ingest_key,
            "admin": shown.admin_key,
        }
        assert await _keys_by_name(conn) == {
            "demo consumer": ("consumer", None),
            "demo producer": ("producer", None),
            "demo ingest": ("ingest", "demo"),
            "demo admin": ("admin", "demo"),
        }
        # Made once: the start after that shows the same keys.
        assert await demo.ensure_demo(conn, tmp_path) == shown
        assert len(await tenants.list_keys(conn)) == 4
    finally:
        await conn.close()
    await _the_banner_keys_work(empty_database, shown)
    async with app_client(empty_database) as client:
        assert (await client.get(LIST, headers=_gram(producer.key))).status_code == 200
        r = await client.post("/rpc/logs.ingest", json=[LINE], headers=_gram(producer.key))
        assert r.status_code == 200
    assert f"\n  admin key: {shown.admin_key}\n" in demo.banner(shown, "http://127.0.0.1:8080")


async def test_an_earlier_data_dir_whose_demo_is_gone_shows_no_keys(
    fresh_database: str, tmp_path: Path
):
    conn = await asyncpg.connect(fresh_database)
    try:
        org = await tenants.create_organization(conn, "demo")
        await tenants.create_project(conn, org, "demo")
        consumer = await tenants.create_key(conn, org, KeyScope.CONSUMER)
        assert await tenants.revoke_key(conn, consumer.id)
        (tmp_path / "demo-keys.json").write_text(json.dumps({"consumer": consumer.key}))
        shown = await demo.ensure_demo(conn, tmp_path)
        assert (shown.ingest_key, shown.admin_key) == (None, None)
        assert len(await tenants.list_keys(conn)) == 1
    finally:
        await conn.close()
    assert "demo keys not found" in demo.banner(shown, "http://127.0.0.1:8080")
