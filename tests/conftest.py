"""Fixtures: a real PostgreSQL (embedded, or GRAMLOGS_TEST_DATABASE_URL), a fresh database per
run, the application with its lifespan, and tenants made on demand.

Tests isolate themselves by making their own organizations and projects, never by truncating.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass

import asyncpg
import httpx
import pytest
from hypothesis import HealthCheck, settings

from gramlogs.core.config import Config
from gramlogs.core.keys import KeyScope
from gramlogs.storage import tenants
from gramlogs.web.app import create_app
from testkit.citus import CitusServer, local_cluster
from testkit.postgres import own_postgres, temporary_database
from testkit.serve import live_server
from tests._support import connection, on_key_clock

# Every property test draws the same examples on every run and machine, so a failure replays
# and what passes today passes tomorrow. No deadline and no too_slow health check: those fail
# on a slow or loaded machine, and timing belongs in benchmarks. ``--hypothesis-profile=explore``
# draws new examples for a bug hunt by hand.
settings.register_profile(
    "gramlogs", derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("explore", settings.get_profile("gramlogs"), derandomize=False)
settings.load_profile("gramlogs")


ON_CITUS = os.environ.get("GRAMLOGS_TEST_CITUS") == "1"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """On Citus (``make test-citus``), skip the tests marked ``single_node``, with their reason."""
    if not ON_CITUS:
        return
    for item in items:
        marker = item.get_closest_marker("single_node")
        if marker is not None:
            item.add_marker(pytest.mark.skip(reason="single node only: " + marker.args[0]))


@pytest.fixture(scope="session")
def citus_cluster() -> Iterator[CitusServer | None]:
    """With GRAMLOGS_TEST_CITUS=1, a local Citus cluster (a coordinator and two workers) that
    every test database is made on, its tables distributed; None otherwise."""
    if not ON_CITUS:
        yield None
        return
    with local_cluster() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def citus_workers(citus_cluster: CitusServer | None) -> tuple[tuple[str, int], ...]:
    return tuple(citus_cluster.workers) if citus_cluster else ()


@pytest.fixture(scope="session")
def server_url(citus_cluster: CitusServer | None) -> Iterator[str]:
    """A URL of a PostgreSQL server to create test databases in."""
    if citus_cluster is not None:
        yield citus_cluster.url
        return
    external = os.environ.get("GRAMLOGS_TEST_DATABASE_URL")
    if external:
        yield external
        return
    with own_postgres("gramlogs-test-pg-") as pg:
        yield pg.url


@pytest.fixture(scope="session")
async def database_url(
    server_url: str, citus_workers: tuple[tuple[str, int], ...]
) -> AsyncIterator[str]:
    """A database of this run's own, at the current schema; dropped at the end."""
    async with temporary_database(server_url, "gramlogs_test", citus_workers=citus_workers) as url:
        yield url


@pytest.fixture
async def fresh_database(
    server_url: str, citus_workers: tuple[tuple[str, int], ...]
) -> AsyncIterator[str]:
    """A database of this test's own at the current schema, for what is global to a database
    (the partition layout, retention): such tests must not disturb the shared one."""
    async with temporary_database(server_url, "gramlogs_own", citus_workers=citus_workers) as url:
        yield url


@pytest.fixture
async def empty_database(
    server_url: str, citus_workers: tuple[tuple[str, int], ...]
) -> AsyncIterator[str]:
    """A database of this test's own with no schema at all (for schema upgrades)."""
    async with temporary_database(
        server_url, "gramlogs_empty", migrated=False, citus_workers=citus_workers
    ) as url:
        yield url


@pytest.fixture(scope="session")
def new_database(
    server_url: str, citus_workers: tuple[tuple[str, int], ...]
) -> Callable[[str], contextlib.AbstractAsyncContextManager[str]]:
    """``async with new_database(prefix) as url:`` a database of the caller's own at the current
    schema: for plan tests, whose plans follow statistics that other tests' rows would change."""
    return lambda prefix: temporary_database(server_url, prefix, citus_workers=citus_workers)


@pytest.fixture(scope="session")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    async with asyncpg.create_pool(database_url, min_size=1, max_size=4) as p:
        yield p


@pytest.fixture(scope="session")
async def app(database_url: str) -> AsyncIterator[object]:
    # The failed-authentication limit off: the suite sends many bad keys from one address.
    # Sealing off: tests that seal (tests/test_sealing.py) do it themselves, at a fixed time.
    config = Config(
        database_url=database_url,
        pool_min=1,
        pool_max=4,
        auth_failures_per_minute=0,
        seal_interval_s=0,
    )
    application = create_app(config)
    async with application.router.lifespan_context(application):
        on_key_clock(application)
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
        async with connection(pool) as conn:
            org = await tenants.create_organization(conn, f"org-{secrets.token_hex(4)}")
            project = await tenants.create_project(conn, org, slug)
            consumer = await tenants.create_key(conn, org, KeyScope.CONSUMER)
            producer = await tenants.create_key(conn, org, KeyScope.PRODUCER)
        return Tenant(org, project, slug, consumer.key, producer.key)

    return make


@pytest.fixture
async def tenant(make_tenant: MakeTenant) -> Tenant:
    """A new tenant of its own for the test."""
    return await make_tenant()


@pytest.fixture
def fd() -> tuple[uuid.UUID, uuid.UUID]:
    """A function id and a deployment id of the test's own."""
    return uuid.uuid4(), uuid.uuid4()


# -- a real server process (ingestion tests: OTel exporters, kill -9) ----------------------------


@pytest.fixture(scope="session")
def serve(database_url: str, tmp_path_factory: pytest.TempPathFactory):
    """``with serve() as server:`` runs a real server on the test database; ``serve(module=
    "testkit.crash")`` one that dies right after committing a batch; ``serve(port=N)`` one on
    port N."""
    log_dir = tmp_path_factory.mktemp("servers")
    return lambda module="gramlogs", port=None, **env: live_server(
        database_url,
        log_dir,
        module=module,
        port=port,
        # Sealing off unless a test asks for it: a test seals when it means to (test_sealing.py).
        **{"GRAMLOGS_LOG_LEVEL": "warning", "GRAMLOGS_SEAL_INTERVAL_S": "0", **env},
    )
