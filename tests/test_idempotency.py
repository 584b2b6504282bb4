"""Idempotency-Key on POST /rpc/logs.ingest and POST /v1/logs: a resend is answered from the
record and stores nothing (storage/idempotency.py).

The batches here carry no timestamps: each line is stamped with the time it arrives, so without
a key every resend stores it again (asserted too, as the control that shows each test can fail).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from gramlogs.core.config import Config
from gramlogs.storage import idempotency, maintenance, tenants
from gramlogs.storage.functions import set_logs_enabled
from tests._support import app_client, error, wait_for_lock_waiters

INGEST = "/rpc/logs.ingest"
OTLP = "/v1/logs"
NDJSON = {"content-type": "application/x-ndjson"}
KEY = "Idempotency-Key"
REPLAYED = "idempotent-replayed"
LINES = 3
REUSED = (
    "Idempotency-Key {!r} was first used with a different request (body, endpoint, content type"
    " or encoding); send a new key with a new request"
)


def batch(fd: tuple[uuid.UUID, uuid.UUID], text: str = "line", n: int = LINES) -> bytes:
    """NDJSON lines without a timestamp: stamped on arrival, so new ids on every send."""
    f, d = fd
    entries = [
        {"raw_log": f"{text} {i}", "function_id": str(f), "deployment_id": str(d)} for i in range(n)
    ]
    return b"".join(json.dumps(e).encode() + b"\n" for e in entries)


def headers(tenant, key: str | None = None, **more: str) -> dict[str, str]:
    found = {**tenant.headers(producer=True), **NDJSON, **more}
    if key is not None:
        found[KEY] = key
    return found


async def count_rows(pool: asyncpg.Pool, tenant) -> int:
    return await pool.fetchval("SELECT count(*) FROM logs WHERE project_id = $1", tenant.project_id)


async def record(pool: asyncpg.Pool, tenant, key: str) -> asyncpg.Record | None:
    return await pool.fetchrow(
        "SELECT request_hash, status, media_type, response, created_at FROM idempotency_keys"
        " WHERE project_id = $1 AND key = $2",
        tenant.project_id,
        key,
    )


async def age(pool: asyncpg.Pool, tenant, key: str, interval: str) -> None:
    """Make a record older instead of waiting: the clock never decides a test. (The new time is
    read first: Citus refuses "created_at - interval" in an UPDATE, a STABLE operator on a
    column.)"""
    older = await pool.fetchval(
        f"SELECT created_at - interval '{interval}' FROM idempotency_keys"
        " WHERE project_id = $1 AND key = $2",
        tenant.project_id,
        key,
    )
    status = await pool.execute(
        "UPDATE idempotency_keys SET created_at = $3 WHERE project_id = $1 AND key = $2",
        tenant.project_id,
        key,
        older,
    )
    assert status == "UPDATE 1"


def assert_replay_of(first: httpx.Response, again: httpx.Response) -> None:
    assert REPLAYED not in first.headers
    assert again.headers[REPLAYED] == "true"
    assert again.status_code == first.status_code
    assert again.headers["content-type"] == first.headers["content-type"]
    assert again.content == first.content


# -- replays ------------------------------------------------------------------------------------


async def test_a_resend_with_the_same_key_is_answered_byte_for_byte_and_stores_nothing(
    client, tenant, fd, pool
):
    body = batch(fd)
    first = await client.post(INGEST, content=body, headers=headers(tenant, "batch-1"))
    assert (first.status_code, first.content) == (200, b'{"stored":3,"duplicates":0}')
    assert first.headers["content-type"] == "application/json"
    for _ in range(2):
        again = await client.post(INGEST, content=body, headers=headers(tenant, "batch-1"))
        assert_replay_of(first, again)
    assert await count_rows(pool, tenant) == LINES
    stored = await record(pool, tenant, "batch-1")
    assert stored is not None
    assert (stored["status"], stored["media_type"], stored["response"]) == (
        200,
        "application/json",
        first.content,
    )

    # The control: without a key the same resend stores the lines again.
    plain = await client.post(INGEST, content=body, headers=headers(tenant))
    assert (plain.status_code, plain.json()) == (200, {"stored": 3, "duplicates": 0})
    assert REPLAYED not in plain.headers
    assert await count_rows(pool, tenant) == 2 * LINES


def otlp_export(fd: tuple[uuid.UUID, uuid.UUID]) -> ExportLogsServiceRequest:
    """Two records stamped on arrival (time 0) and one without gram.function_id: a partial
    success, so that the reply has something to replay."""
    f, d = fd

    def record(text: str, **attrs: str) -> LogRecord:
        return LogRecord(
            body=AnyValue(string_value=text),
            attributes=[KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in attrs.items()],
        )

    records = [
        record("one", **{"gram.function_id": str(f)}),
        record("two", **{"gram.function_id": str(f)}),
        record("lost"),
    ]
    resource = Resource(
        attributes=[KeyValue(key="gram.deployment_id", value=AnyValue(string_value=str(d)))]
    )
    return ExportLogsServiceRequest(
        resource_logs=[ResourceLogs(resource=resource, scope_logs=[ScopeLogs(log_records=records)])]
    )


@pytest.mark.parametrize("encoding", ["protobuf", "json"])
async def test_an_otlp_resend_with_the_same_key_is_replayed_in_its_encoding(
    client, tenant, fd, pool, encoding
):
    export = otlp_export(fd)
    if encoding == "protobuf":
        body, kind = export.SerializeToString(), "application/x-protobuf"
    else:
        body, kind = json_format.MessageToJson(export).encode(), "application/json"
    sent = {**tenant.headers(producer=True), "content-type": kind, KEY: "otlp-1"}
    first = await client.post(OTLP, content=body, headers=sent)
    assert first.status_code == 200
    assert first.headers["content-type"] == kind
    reply = ExportLogsServiceResponse()
    if encoding == "protobuf":
        reply.ParseFromString(first.content)
    else:
        json_format.Parse(first.content, reply)
    assert reply.partial_success.rejected_log_records == 1
    assert "gram.function_id: is missing" in reply.partial_success.error_message

    again = await client.post(OTLP, content=body, headers=sent)
    assert_replay_of(first, again)
    assert await count_rows(pool, tenant) == 2

    del sent[KEY]
    plain = await client.post(OTLP, content=body, headers=sent)
    assert (plain.status_code, plain.content) == (200, first.content)
    assert await count_rows(pool, tenant) == 4


async def test_a_replay_answers_as_the_first_send_even_once_the_function_is_disabled(
    client, tenant, fd, pool
):
    body = batch(fd)
    first = await client.post(INGEST, content=body, headers=headers(tenant, "before"))
    assert first.status_code == 200
    async with pool.acquire() as conn:
        await set_logs_enabled(conn, tenant.project_id, fd[0], False)
    again = await client.post(INGEST, content=body, headers=headers(tenant, "before"))
    assert_replay_of(first, again)
    fresh = await client.post(INGEST, content=body, headers=headers(tenant, "after"))
    assert fresh.status_code == 409
    assert await count_rows(pool, tenant) == LINES


async def test_an_empty_batch_is_recorded_too(client, tenant, fd, pool):
    first = await client.post(INGEST, content=b"", headers=headers(tenant, "empty"))
    assert (first.status_code, first.json()) == (200, {"stored": 0, "duplicates": 0})
    again = await client.post(INGEST, content=b"", headers=headers(tenant, "empty"))
    assert_replay_of(first, again)
    other = await client.post(INGEST, content=batch(fd), headers=headers(tenant, "empty"))
    assert other.status_code == 422
    assert await count_rows(pool, tenant) == 0


# -- the same key, another request --------------------------------------------------------------


def for_both_endpoints(fd: tuple[uuid.UUID, uuid.UUID]) -> str:
    """One JSON body both endpoints store: logs.ingest reads its "logs", OTLP its "resourceLogs"
    (each ignores what it does not know)."""
    export = json.loads(json_format.MessageToJson(otlp_export(fd)))
    return json.dumps({"logs": [json.loads(line) for line in batch(fd).splitlines()], **export})


Request = tuple[str, bytes, dict[str, str]]


def _two_requests(variant: str, tenant, fd) -> tuple[Request, Request]:
    """A first request with the key "k", and another that differs from it in ``variant``."""
    body = batch(fd)
    first = INGEST, body, headers(tenant, "k")
    if variant == "body":
        return first, (INGEST, batch(fd, "other"), headers(tenant, "k"))
    if variant == "endpoint":
        json_body = for_both_endpoints(fd).encode()
        sent = headers(tenant, "k", **{"content-type": "application/json"})
        return (INGEST, json_body, sent), (OTLP, json_body, sent)
    if variant == "content type":
        return first, (INGEST, body, headers(tenant, "k", **{"content-type": "application/jsonl"}))
    assert variant == "encoding"
    zipped = headers(tenant, "k", **{"content-encoding": "gzip"})
    return first, (INGEST, gzip.compress(body), zipped)


@pytest.mark.parametrize("variant", ["body", "endpoint", "content type", "encoding"])
async def test_the_same_key_with_another_request_is_a_422_that_stores_nothing(
    client, tenant, fd, pool, variant
):
    (url, body, sent), (other_url, other_body, other_sent) = _two_requests(variant, tenant, fd)
    first = await client.post(url, content=body, headers=sent)
    assert first.status_code == 200
    r = await client.post(other_url, content=other_body, headers=other_sent)
    assert r.status_code == 422
    assert REPLAYED not in r.headers
    assert error(r) == {
        "name": "unprocessable_content",
        "message": REUSED.format("k"),
        "temporary": False,
        "timeout": False,
        "fault": False,
    }
    assert await count_rows(pool, tenant) == LINES
    # The record is the first request's still.
    again = await client.post(url, content=body, headers=sent)
    assert_replay_of(first, again)


async def test_a_bad_body_is_a_400_whatever_its_key_was_used_for(client, tenant, fd, pool):
    first = await client.post(INGEST, content=batch(fd), headers=headers(tenant, "k"))
    assert first.status_code == 200
    bad = await client.post(INGEST, content=b"{}\n", headers=headers(tenant, "k"))
    assert bad.status_code == 400
    assert error(bad)["message"].startswith("nothing was stored: 1 invalid entry: entries[0]")
    again = await client.post(INGEST, content=batch(fd), headers=headers(tenant, "k"))
    assert_replay_of(first, again)
    assert await count_rows(pool, tenant) == LINES


async def test_the_same_content_compressed_again_or_with_a_charset_is_the_same_request(
    client, tenant, fd, pool
):
    # gzip writes a time into its header: a client that compresses again for a retry sends
    # other bytes for the same request. A media type's parameters do not count either.
    body = batch(fd)
    sent = headers(tenant, "zipped", **{"content-encoding": "gzip"})
    first = await client.post(INGEST, content=gzip.compress(body, mtime=1), headers=sent)
    again = await client.post(INGEST, content=gzip.compress(body, mtime=2), headers=sent)
    assert first.status_code == 200
    assert_replay_of(first, again)

    sent = headers(tenant, "charset", **{"content-type": "application/x-ndjson"})
    first = await client.post(INGEST, content=body, headers=sent)
    sent["content-type"] = "application/x-ndjson; charset=utf-8"
    again = await client.post(INGEST, content=body, headers=sent)
    assert first.status_code == 200
    assert_replay_of(first, again)
    assert await count_rows(pool, tenant) == 2 * LINES


async def test_keys_are_scoped_per_project(client, make_tenant, fd, pool):
    one, two = await make_tenant(), await make_tenant()
    for tenant, text in ((one, "one"), (two, "two")):
        r = await client.post(INGEST, content=batch(fd, text), headers=headers(tenant, "shared"))
        assert (r.status_code, r.json()) == (200, {"stored": 3, "duplicates": 0})
        assert REPLAYED not in r.headers
    assert [await count_rows(pool, t) for t in (one, two)] == [LINES, LINES]


# -- only stores are recorded -------------------------------------------------------------------


async def test_a_refused_request_leaves_no_record_and_its_fixed_resend_is_stored(
    client, tenant, fd, pool
):
    bad = batch(fd) + b'{"raw_log": "no function"}\n'
    r = await client.post(INGEST, content=bad, headers=headers(tenant, "fix-me"))
    assert r.status_code == 400
    assert await record(pool, tenant, "fix-me") is None

    async with pool.acquire() as conn:
        await set_logs_enabled(conn, tenant.project_id, fd[0], False)
    r = await client.post(INGEST, content=batch(fd), headers=headers(tenant, "fix-me"))
    assert r.status_code == 409
    assert await record(pool, tenant, "fix-me") is None

    async with pool.acquire() as conn:
        await set_logs_enabled(conn, tenant.project_id, fd[0], True)
    r = await client.post(INGEST, content=batch(fd), headers=headers(tenant, "fix-me"))
    assert (r.status_code, r.json()) == (200, {"stored": 3, "duplicates": 0})
    assert REPLAYED not in r.headers
    assert await count_rows(pool, tenant) == LINES


# -- malformed keys -----------------------------------------------------------------------------

_FORMAT = "Idempotency-Key must be formatted as printable ASCII text, 1 to 255 characters"


@pytest.mark.parametrize(
    ("value", "name", "message"),
    [
        (b"", "invalid_format", f'{_FORMAT} but got value ""'),
        (
            b"k" * 256,
            "invalid_length",
            "length of Idempotency-Key must be lesser or equal than 255 but got 256",
        ),
        (b"caf\xe9", "invalid_format", f'{_FORMAT} but got value "caf\u00e9"'),
        (b"a\tb", "invalid_format", f'{_FORMAT} but got value "a\\tb"'),
        (b"del\x7f", "invalid_format", f'{_FORMAT} but got value "del\x7f"'),
    ],
    ids=["empty", "256 characters", "latin-1", "tab", "DEL"],
)
async def test_a_malformed_key_is_a_400_naming_the_header(
    client, tenant, fd, pool, value, name, message
):
    sent = [*headers(tenant).items(), (KEY.encode(), value)]
    for url in (INGEST, OTLP):
        r = await client.post(url, content=batch(fd), headers=sent)
        assert r.status_code == 400
        assert error(r) == {
            "name": name,
            "message": message,
            "temporary": False,
            "timeout": False,
            "fault": False,
        }
    assert await count_rows(pool, tenant) == 0


async def test_a_key_sent_twice_is_a_400(client, tenant, fd, pool):
    sent = [*headers(tenant).items(), (KEY, "a"), (KEY, "b")]
    r = await client.post(INGEST, content=batch(fd), headers=sent)
    assert r.status_code == 400
    assert error(r)["message"] == "Idempotency-Key must be sent once"
    assert await count_rows(pool, tenant) == 0


async def test_the_longest_key_and_every_printable_character_are_accepted(client, tenant, fd, pool):
    printable = "".join(chr(c) for c in range(0x20, 0x7F))
    for key in ("k" * 255, printable):
        first = await client.post(INGEST, content=batch(fd), headers=headers(tenant, key))
        again = await client.post(INGEST, content=batch(fd), headers=headers(tenant, key))
        assert first.status_code == 200
        assert_replay_of(first, again)
    assert await count_rows(pool, tenant) == 2 * LINES


# -- concurrency --------------------------------------------------------------------------------


async def test_concurrent_sends_with_the_same_key_store_once_and_answer_alike(
    database_url, tenant, fd, pool
):
    body = batch(fd)
    async with app_client(database_url, pool_max=10) as c:
        answers = await asyncio.gather(
            *(c.post(INGEST, content=body, headers=headers(tenant, "race")) for _ in range(8))
        )
    assert [r.status_code for r in answers] == [200] * 8
    assert {r.content for r in answers} == {b'{"stored":3,"duplicates":0}'}
    assert sum(REPLAYED not in r.headers for r in answers) == 1
    assert await count_rows(pool, tenant) == LINES


async def _lock_waiter(pool: asyncpg.Pool, statement: str, limit: float = 30.0) -> int:
    """The pid of the gramlogs session blocked on a lock in ``statement`` (its start)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        pid = await pool.fetchval(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'gramlogs'"
            " AND wait_event_type = 'Lock' AND datname = current_database()"
            " AND starts_with(btrim(query, E' \\n'), $1)",
            statement,
        )
        if pid is not None:
            return pid
        await asyncio.sleep(0.02)
    raise AssertionError(f"no gramlogs session waited in {statement!r} within {limit} s")


async def _hold_function(conn: asyncpg.Connection, tenant, fd) -> None:
    """Insert the batch's function in an open transaction: the first send, which registers it
    after claiming its key, waits on it (single node: the waits are the coordinator's)."""
    await conn.execute(
        "INSERT INTO functions (project_id, id) VALUES ($1, $2)", tenant.project_id, fd[0]
    )


@dataclass
class _Held:
    """A first send of a batch with a key, claimed and waiting on the batch's function, which an
    open transaction holds (single node: the waits are the coordinator's)."""

    send: Callable[[], Coroutine[Any, Any, httpx.Response]]  # the same request again
    first: asyncio.Task[httpx.Response]
    first_pid: int
    release: Callable[[], Awaitable[None]]  # roll the holding transaction back


@contextlib.asynccontextmanager
async def _first_send_held(database_url, pool, tenant, fd, key: str) -> AsyncIterator[_Held]:
    body = batch(fd)
    async with app_client(database_url, pool_max=10) as c, pool.acquire() as holder:
        transaction = holder.transaction()
        await transaction.start()
        await _hold_function(holder, tenant, fd)

        def send() -> Coroutine[Any, Any, httpx.Response]:
            return c.post(INGEST, content=body, headers=headers(tenant, key))

        first = asyncio.create_task(send())
        first_pid = await _lock_waiter(pool, "INSERT INTO functions")
        yield _Held(send, first, first_pid, transaction.rollback)


@pytest.mark.single_node("waits on a Citus worker are not lock waits on the coordinator")
async def test_sends_that_wait_on_the_first_one_replay_its_reply_once_it_commits(
    database_url, tenant, fd, pool
):
    async with _first_send_held(database_url, pool, tenant, fd, "w") as held:
        others = [asyncio.create_task(held.send()) for _ in range(7)]
        # The first holds the key; the seven wait on its row in the primary key.
        await wait_for_lock_waiters(pool, 8)
        await held.release()
        answers = [await held.first, *(await asyncio.gather(*others))]
    assert [r.status_code for r in answers] == [200] * 8
    assert REPLAYED not in answers[0].headers
    for again in answers[1:]:
        assert_replay_of(answers[0], again)
    assert await count_rows(pool, tenant) == LINES


@pytest.mark.single_node("waits on a Citus worker are not lock waits on the coordinator")
async def test_when_the_first_send_rolls_back_one_waiting_on_its_key_stores(
    database_url, tenant, fd, pool
):
    async with _first_send_held(database_url, pool, tenant, fd, "rb") as held:
        second = asyncio.create_task(held.send())
        await _lock_waiter(pool, "INSERT INTO idempotency_keys")
        # The first send fails (its statement cancelled: a 503) and rolls back, key included.
        assert await pool.fetchval("SELECT pg_cancel_backend($1)", held.first_pid)
        assert (await held.first).status_code == 503
        # The second now holds the key and waits where the first did.
        await _lock_waiter(pool, "INSERT INTO functions")
        await held.release()
        stored = await second
        again = await held.send()
    assert (stored.status_code, stored.json()) == (200, {"stored": 3, "duplicates": 0})
    assert_replay_of(stored, again)
    assert await count_rows(pool, tenant) == LINES


# -- retention ----------------------------------------------------------------------------------


async def test_a_key_older_than_the_retention_is_stored_anew_and_its_record_replaced(
    client, tenant, fd, pool
):
    first = await client.post(INGEST, content=batch(fd), headers=headers(tenant, "old"))
    assert first.status_code == 200
    await age(pool, tenant, "old", "25 hours")  # GRAMLOGS_IDEMPOTENCY_HOURS: 24
    old = await record(pool, tenant, "old")

    # Another body, even: the expired record is as good as absent.
    second = await client.post(INGEST, content=batch(fd, "new"), headers=headers(tenant, "old"))
    assert (second.status_code, second.json()) == (200, {"stored": 3, "duplicates": 0})
    assert REPLAYED not in second.headers
    assert await count_rows(pool, tenant) == 2 * LINES
    replaced = await record(pool, tenant, "old")
    assert replaced is not None and old is not None
    assert replaced["request_hash"] != old["request_hash"]
    assert replaced["created_at"] > old["created_at"]

    again = await client.post(INGEST, content=batch(fd, "new"), headers=headers(tenant, "old"))
    assert_replay_of(second, again)
    assert await count_rows(pool, tenant) == 2 * LINES


async def test_idempotency_hours_sets_the_retention(database_url, tenant, fd, pool):
    body = batch(fd)
    async with app_client(database_url, idempotency_hours=1) as c:
        firsts = {}
        for key in ("kept", "gone"):
            firsts[key] = await c.post(INGEST, content=body, headers=headers(tenant, key))
        await age(pool, tenant, "kept", "50 minutes")
        await age(pool, tenant, "gone", "70 minutes")
        kept = await c.post(INGEST, content=body, headers=headers(tenant, "kept"))
        gone = await c.post(INGEST, content=body, headers=headers(tenant, "gone"))
    assert_replay_of(firsts["kept"], kept)
    assert (gone.status_code, REPLAYED in gone.headers) == (200, False)
    assert await count_rows(pool, tenant) == 3 * LINES


async def _project(conn: asyncpg.Connection) -> uuid.UUID:
    org = await tenants.create_organization(conn, f"org-{uuid.uuid4().hex[:8]}")
    return await tenants.create_project(conn, org, "p")


async def _records(conn: asyncpg.Connection, project: uuid.UUID, ages: dict[str, str]) -> None:
    for key, interval in ages.items():
        await conn.execute(
            "INSERT INTO idempotency_keys (project_id, key, request_hash, status, media_type,"
            f" response, created_at) VALUES ($1, $2, '\\x00', 200, 'application/json', '\\x7b7d',"
            f" now() - interval '{interval}')",
            project,
            key,
        )


async def _keys(conn: asyncpg.Connection) -> set[tuple[uuid.UUID, str]]:
    rows = await conn.fetch("SELECT project_id, key FROM idempotency_keys")
    return {(r["project_id"], r["key"]) for r in rows}


async def test_expired_records_are_deleted_in_batches_a_project_at_a_time(fresh_database):
    conn = await asyncpg.connect(fresh_database)
    try:
        one, two = await _project(conn), await _project(conn)
        await _records(conn, one, {f"old-{i}": "25 hours" for i in range(5)} | {"new": "1 hour"})
        await _records(conn, two, {"old": "30 days", "new": "23 hours"})

        assert await idempotency.delete_expired(conn, hours=24, batch_rows=2) == 6
        assert await _keys(conn) == {(one, "new"), (two, "new")}
        assert await idempotency.delete_expired(conn, hours=24, batch_rows=2) == 0
    finally:
        await conn.close()


async def test_the_maintenance_loop_deletes_records_older_than_idempotency_hours(fresh_database):
    conn = await asyncpg.connect(fresh_database)
    try:
        project = await _project(conn)
        await _records(conn, project, {"kept": "50 minutes", "gone": "70 minutes"})
        config = Config(database_url=fresh_database, idempotency_hours=1)
        assert await maintenance.expire_idempotency_keys(conn, config) == 1
        assert await _keys(conn) == {(project, "kept")}
    finally:
        await conn.close()


# -- kill -9 between commit and reply, across processes -----------------------------------------


async def _send_to_dying_server(serve, body: bytes, sent: dict[str, str]) -> None:
    """Send to a server that dies right after committing the batch: the client hears nothing."""
    with serve(module="testkit.crash") as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as c:
            with pytest.raises(httpx.TransportError):
                await c.post(INGEST, content=body, headers=sent)
        assert server.process.wait(timeout=30) == -signal.SIGKILL


async def test_a_server_killed_between_commit_and_reply_is_answered_by_the_next_from_the_record(
    make_tenant, fd, pool, serve
):
    tenant = await make_tenant()
    body = batch(fd)
    await _send_to_dying_server(serve, body, headers(tenant, "crash"))
    assert await count_rows(pool, tenant) == LINES  # committed, and never acknowledged

    with serve() as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as c:
            again = await c.post(INGEST, content=body, headers=headers(tenant, "crash"))
    assert again.status_code == 200
    assert again.headers[REPLAYED] == "true"
    assert again.headers["content-type"] == "application/json"
    assert again.content == b'{"stored":3,"duplicates":0}'  # what the first send would have got
    assert await count_rows(pool, tenant) == LINES

    # The control: without a key, the resend after the crash stores the lines a second time.
    control = await make_tenant()
    await _send_to_dying_server(serve, body, headers(control))
    assert await count_rows(pool, control) == LINES
    with serve() as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as c:
            plain = await c.post(INGEST, content=body, headers=headers(control))
    assert (plain.status_code, plain.json()) == (200, {"stored": 3, "duplicates": 0})
    assert await count_rows(pool, control) == 2 * LINES
