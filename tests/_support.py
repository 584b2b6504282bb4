"""Helpers for tests that need an application of their own, and for reading error bodies.

Ports, servers and databases are in ``testkit`` (shared with the benchmarks)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, cast

import asyncpg
import httpx

from gramlogs.core.config import Config
from gramlogs.storage import sealing
from gramlogs.storage.access import KeyCache
from gramlogs.web.app import create_app


@contextlib.asynccontextmanager
async def app_client(database_url: str, **settings: object) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process client on an application of its own, with ``settings`` over the defaults."""
    # The failed-authentication limit off: tests send many bad keys from one address on purpose
    # (test_ratelimit.py turns it on). Sealing off: it moves every project's older lines, and
    # tests that count rows run beside this app (test_sealing.py seals when it means to).
    settings = {
        "pool_min": 1,
        "pool_max": 4,
        "auth_failures_per_minute": 0,
        "seal_interval_s": 0,
        **settings,
    }
    app = create_app(Config(database_url=database_url, **settings))  # type: ignore[arg-type]
    async with app.router.lifespan_context(app):
        on_key_clock(app)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gramlogs.test") as c:
            yield c


class ManualClock:
    """Monotonic seconds that move only when a test says (a key cache's clock)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


KEY_CLOCK = ManualClock()


def on_key_clock(app: Any) -> None:
    """Run ``app``'s key cache on :data:`KEY_CLOCK`: a key's answer is reused until a test
    moves the clock (:func:`key_answers_expire`), never for however long a slow run takes."""
    state = app.state.gramlogs
    state.keys = KeyCache(state.config.key_cache_s, clock=KEY_CLOCK)


def key_answers_expire(app: Any) -> None:
    """Past the key cache's bound in ``app`` (on :data:`KEY_CLOCK`): the next request looks
    its key up again, as every worker does within ``key_cache_s`` of a revocation."""
    cache = app.state.gramlogs.keys
    assert cache.clock is KEY_CLOCK, "the app's key cache must run on KEY_CLOCK"
    KEY_CLOCK.advance(cache.seconds)


async def until(
    condition: Callable[[], bool], limit: float = 60.0, state: Callable[[], object] = str
) -> None:
    """Wait for ``condition``: a phase of a test lasts until what it is for has happened, not
    for a time, so a slow machine only makes it longer. ``limit`` only fails a broken run, with
    ``state()`` in its message."""
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, state()
        await asyncio.sleep(0.02)


async def wait_for_lock_waiters(pool: asyncpg.Pool, count: int = 1, limit: float = 30.0) -> None:
    """Wait until ``count`` gramlogs sessions are blocked on a lock (a held-up request)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        waiting = await pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE application_name = 'gramlogs' AND wait_event_type = 'Lock'"
            " AND datname = current_database()"
        )
        if waiting >= count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"no {count} gramlogs request(s) blocked on a lock within {limit} s")


def get_scope(path: str, query: bytes, tenant: Any) -> dict[str, Any]:
    """An ASGI scope of a GET with the tenant's consumer key: for tests that call the app
    themselves, to see each message it sends."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query,
        "headers": [
            (b"gram-key", tenant.consumer_key.encode()),
            (b"gram-project", tenant.slug.encode()),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("gramlogs.test", 80),
    }


def error(r: httpx.Response) -> dict[str, Any]:
    """The error body with its (random) id checked and removed."""
    body = r.json()
    assert isinstance(body.pop("id"), str)
    return body


def bad_request(message: str, name: str = "bad_request") -> dict[str, Any]:
    return {"name": name, "message": message, "temporary": False, "timeout": False, "fault": False}


@contextlib.asynccontextmanager
async def connection(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A connection of ``pool``, typed as the Connection that gramlogs' storage functions take:
    asyncpg hands out a proxy that stands for one (its stubs do not say so)."""
    async with pool.acquire() as conn:
        yield cast(asyncpg.Connection, conn)


async def stored_ids(pool: asyncpg.Pool, project_id: uuid.UUID) -> list[uuid.UUID]:
    """Every id the project has, rows and sealed lines, in id order (a duplicate twice)."""
    from gramlogs.storage import codec

    async with connection(pool) as conn:
        found = [
            r[0] for r in await conn.fetch("SELECT id FROM logs WHERE project_id = $1", project_id)
        ]
        for function_id, keys in await conn.fetch(
            "SELECT function_id, keys FROM log_sealed WHERE project_id = $1", project_id
        ):
            decoded = codec.decode_keys(keys, function_id)
            found += [decoded.id(i) for i in range(decoded.lines)]
    return sorted(found, key=lambda i: i.int)


async def stored_lines(pool: asyncpg.Pool, project_id: uuid.UUID) -> int:
    """How many lines the project has: rows, and lines of sealed blocks."""
    count: int = await pool.fetchval(
        "SELECT (SELECT count(*) FROM logs WHERE project_id = $1)"
        " + (SELECT coalesce(sum(lines), 0) FROM log_sealed WHERE project_id = $1)",
        project_id,
    )
    return count


@contextlib.contextmanager
def small_blocks(rows: int) -> Iterator[None]:
    """Seal blocks of ``rows`` rows (and merge below half of that), so a test seals many."""
    saved = sealing.BLOCK_ROWS, sealing.MERGE_BELOW
    sealing.BLOCK_ROWS, sealing.MERGE_BELOW = rows, max(2, rows // 2)
    try:
        yield
    finally:
        sealing.BLOCK_ROWS, sealing.MERGE_BELOW = saved


def loki_labels(
    *,
    level: str,
    source: str,
    instance: str,
    function_id: uuid.UUID,
    deployment_id: uuid.UUID,
    service_name: str | None = None,
) -> dict[str, str]:
    """A stored line's Loki labels from its columns (docs/grafana.md), written out apart from
    web/loki/labels.py so that a test can catch it; ``service_name`` defaults to the function."""
    return {
        "level": level,
        "detected_level": level,
        "source": source,
        "instance": instance,
        "function_id": str(function_id),
        "deployment_id": str(deployment_id),
        "service_name": service_name or str(function_id),
    }
