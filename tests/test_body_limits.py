"""What a write request may cost the server: every identical line of a batch stored, entries
counted before they are built, large bodies decoded off the event loop, the key checked before
the body is read, and a cap on the body bytes a process holds at once."""

from __future__ import annotations

import gzip
import json
import threading
import tracemalloc
import uuid
import zlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from gramlogs.client.sse import EventParser
from gramlogs.core.config import Config
from gramlogs.core.errors import PayloadTooLarge, Unavailable
from gramlogs.live.watchers import TailFilter, catch_up
from gramlogs.storage.database import Database
from gramlogs.storage.journal import Position
from gramlogs.web import body as web_body
from gramlogs.web import ingest, otlp
from gramlogs.web.body import BodyBudget
from gramlogs.web.counting import more_values_than
from gramlogs.web.tail import frame_line
from testkit import tailing
from tests._support import app_client, bad_request, error, stored_ids, stored_lines

INGEST = "/rpc/logs.ingest"
OTLP = "/v1/logs"
JSON = {"content-type": "application/json"}
NDJSON = {"content-type": "application/x-ndjson"}
PROTOBUF = {"content-type": "application/x-protobuf"}
GZIP = {"content-encoding": "gzip"}
TIME = "2025-01-01T00:00:00Z"
TIME_NANOS = 1_735_689_600_000_000_000
IDENTICAL = 100_000


async def count_rows(pool, tenant) -> int:
    """The tenant's lines, rows and sealed (a batch of 1,000 or more is written sealed)."""
    return await stored_lines(pool, tenant.project_id)


def entry(fd: tuple[uuid.UUID, uuid.UUID]) -> dict[str, Any]:
    f, d = fd
    return {
        "raw_log": "retrying",
        "timestamp": TIME,
        "function_id": str(f),
        "deployment_id": str(d),
    }


def otlp_request(fd: tuple[uuid.UUID, uuid.UUID], records: int) -> ExportLogsServiceRequest:
    f, d = fd
    resource = [
        KeyValue(key="gram.function_id", value=AnyValue(string_value=str(f))),
        KeyValue(key="gram.deployment_id", value=AnyValue(string_value=str(d))),
    ]
    one = LogRecord(time_unix_nano=TIME_NANOS, body=AnyValue(string_value="retrying"))
    return ExportLogsServiceRequest(
        resource_logs=[
            ResourceLogs(
                resource=Resource(attributes=resource),
                scope_logs=[ScopeLogs(log_records=[one] * records)],
            )
        ]
    )


def otlp_json(fd: tuple[uuid.UUID, uuid.UUID], records: int) -> bytes:
    f, d = fd
    one = {"timeUnixNano": str(TIME_NANOS), "body": {"stringValue": "retrying"}}
    resource = {
        "attributes": [
            {"key": "gram.function_id", "value": {"stringValue": str(f)}},
            {"key": "gram.deployment_id", "value": {"stringValue": str(d)}},
        ]
    }
    body = {
        "resourceLogs": [{"resource": resource, "scopeLogs": [{"logRecords": [one] * records}]}]
    }
    return json.dumps(body).encode()


# -- every identical line of a batch is stored ----------------------------------------------------


@pytest.fixture(scope="module")
async def roomy(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """An app that takes batches of 100,000 entries."""
    async with app_client(
        database_url,
        max_batch_entries=IDENTICAL,
        max_body_bytes=64 * 1024 * 1024,
        max_body_bytes_in_flight=256 * 1024 * 1024,
    ) as c:
        yield c


def _identical_bodies(fd: tuple[uuid.UUID, uuid.UUID], door: str) -> tuple[str, bytes, dict]:
    if door == "json":
        return INGEST, json.dumps([entry(fd)] * IDENTICAL).encode(), JSON
    if door == "ndjson":
        return INGEST, b"\n".join([json.dumps(entry(fd)).encode()] * IDENTICAL), NDJSON
    if door == "otlp-json":
        return OTLP, otlp_json(fd, IDENTICAL), JSON
    return OTLP, otlp_request(fd, IDENTICAL).SerializeToString(), PROTOBUF


@pytest.mark.parametrize("door", ["json", "ndjson", "otlp-json", "otlp-protobuf"])
async def test_every_identical_line_of_a_batch_is_stored_once(roomy, tenant, fd, pool, door):
    url, body, kind = _identical_bodies(fd, door)
    headers = {**tenant.headers(producer=True), **kind, **GZIP}
    r = await roomy.post(url, content=gzip.compress(body, mtime=0), headers=headers)
    assert r.status_code == 200, r.text
    assert await count_rows(pool, tenant) == IDENTICAL
    # The same batch again maps to the same ids: nothing is stored twice.
    r = await roomy.post(url, content=gzip.compress(body, mtime=0), headers=headers)
    assert r.status_code == 200, r.text
    if url == INGEST:
        assert r.json() == {"stored": 0, "duplicates": IDENTICAL}
    assert await count_rows(pool, tenant) == IDENTICAL
    ids = await stored_ids(pool, tenant.project_id)
    assert len(set(ids)) == len(ids) == IDENTICAL


# -- entries counted while parsing, before they are built ----------------------------------------

TOO_MANY = bad_request(
    "a batch holds at most 10000 entries; this one has more", name="payload_too_large"
)
TOO_MANY_RECORDS = bad_request(
    "a request holds at most 10000 log records; this one has more", name="payload_too_large"
)
# 4,190,000 entries of two bytes each: about 8 MiB inflated, a few KB of gzip.
TINY_ENTRIES = 4_190_000


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (b"[" + b"0," * (TINY_ENTRIES - 1) + b"0]", ingest.JSON_TYPES[0]),
        (b'{"logs": [' + b"0," * (TINY_ENTRIES - 1) + b"0]}", ingest.JSON_TYPES[0]),
        (b"[" + b"{}," * (TINY_ENTRIES // 2) + b"{}]", ingest.JSON_TYPES[0]),
        (b"0\n" * TINY_ENTRIES, ingest.NDJSON_TYPES[0]),
    ],
    ids=["json-array", "json-logs", "json-objects", "ndjson"],
)
def test_millions_of_tiny_entries_are_refused_before_they_are_built(body: bytes, kind: str):
    tracemalloc.start()
    try:
        with pytest.raises(PayloadTooLarge, match="at most 10000 entries; this one has more"):
            ingest.decode_entries(body, kind)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Counting makes at most a small object per entry up to the cap, never one per entry.
    assert peak < 2 * 1024 * 1024


@pytest.mark.parametrize("kind", ["protobuf", "json"])
def test_hundreds_of_thousands_of_empty_records_are_refused_before_they_are_built(kind: str):
    records = 400_000
    if kind == "protobuf":
        body = ExportLogsServiceRequest(
            resource_logs=[
                ResourceLogs(scope_logs=[ScopeLogs(log_records=[LogRecord()] * records)])
            ]
        ).SerializeToString()
        media = otlp.PROTOBUF
    else:
        body = b'{"resourceLogs":[{"scopeLogs":[{"logRecords":[' + b"{}," * records + b"{}]}]}]}"
        media = otlp.JSON
    tracemalloc.start()
    try:
        with pytest.raises(PayloadTooLarge, match="at most 10000 log records"):
            otlp.check_count(body, media, 10_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * 1024 * 1024


async def test_a_tiny_gzip_of_empty_otlp_records_is_413(client, tenant):
    body = ExportLogsServiceRequest(
        resource_logs=[ResourceLogs(scope_logs=[ScopeLogs(log_records=[LogRecord()] * 400_000)])]
    ).SerializeToString()
    compressed = gzip.compress(body, mtime=0)
    assert len(compressed) < 2048
    headers = {**tenant.headers(producer=True), **PROTOBUF, **GZIP}
    r = await client.post(OTLP, content=compressed, headers=headers)
    assert (r.status_code, error(r)) == (413, TOO_MANY_RECORDS)


async def test_otlp_json_past_the_cap_is_413_and_at_the_cap_is_stored(client, tenant, fd, pool):
    headers = {**tenant.headers(producer=True), **JSON}
    r = await client.post(OTLP, content=otlp_json(fd, 10_001), headers=headers)
    assert (r.status_code, error(r)) == (413, TOO_MANY_RECORDS)
    assert await count_rows(pool, tenant) == 0
    r = await client.post(OTLP, content=otlp_json(fd, 10_000), headers=headers)
    assert (r.status_code, r.json()) == (200, {})
    assert await count_rows(pool, tenant) == 10_000


async def test_json_of_the_wrong_shape_with_many_values_is_400_without_being_decoded(
    client, tenant
):
    body = b'{"resourceLogs":[{"scopeLogs":[{"logRecords":[' + b"{}," * 100_000 + b"5]}]}]}"
    r = await client.post(OTLP, content=body, headers={**tenant.headers(producer=True), **JSON})
    assert (r.status_code, error(r)) == (
        400,
        bad_request(
            "the body is not an OTLP/JSON ExportLogsServiceRequest:"
            " $.resourceLogs[0].scopeLogs[0].logRecords[100000] must be an object"
        ),
    )


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (b"[" + b"0," * 10_000 + b"0]", JSON),
        (b"0\n" * 10_001, NDJSON),
        (b"[" + b'"a",' * 10_000 + b"[1,2]]", JSON),
    ],
)
async def test_an_ingest_batch_past_the_cap_is_413_whatever_its_entries(client, tenant, body, kind):
    headers = {**tenant.headers(producer=True), **kind, **GZIP}
    r = await client.post(INGEST, content=gzip.compress(body, mtime=0), headers=headers)
    assert (r.status_code, error(r)) == (413, TOO_MANY)


# -- large bodies are decoded off the event loop --------------------------------------------------


async def test_a_large_body_is_decoded_in_the_body_threads(client, tenant, fd, monkeypatch):
    seen: list[str] = []
    real_batch, real_request = ingest.decode_batch, otlp.parse_request

    def batch(*args: Any, **kwargs: Any) -> Any:
        seen.append(threading.current_thread().name)
        return real_batch(*args, **kwargs)

    def request(*args: Any, **kwargs: Any) -> Any:
        seen.append(threading.current_thread().name)
        return real_request(*args, **kwargs)

    real_inflate = web_body._inflate

    def inflate(*args: Any, **kwargs: Any) -> Any:
        seen.append("inflate: " + threading.current_thread().name)
        return real_inflate(*args, **kwargs)

    monkeypatch.setattr(ingest, "decode_batch", batch)
    monkeypatch.setattr(otlp, "parse_request", request)
    monkeypatch.setattr(web_body, "_inflate", inflate)
    headers = {**tenant.headers(producer=True), **JSON}
    r = await client.post(INGEST, json=[entry(fd)] * 1000, headers=headers)
    assert r.status_code == 200, r.text
    r = await client.post(OTLP, content=otlp_json(fd, 1000), headers=headers)
    assert r.status_code == 200, r.text
    # A few KB of gzip, which might inflate to megabytes: inflated off the loop too.
    small = gzip.compress(json.dumps([entry(fd)] * 1000).encode(), mtime=0)
    assert len(small) < 16 * 1024
    r = await client.post(INGEST, content=small, headers=headers | GZIP)
    assert r.status_code == 200, r.text
    # A small body is decoded where it is, on the event loop.
    r = await client.post(INGEST, json=[entry(fd)], headers=headers)
    assert r.status_code == 200, r.text
    where = [name.rpartition(" ")[2].startswith("gramlogs-body") for name in seen]
    assert [name.partition(":")[0] for name in seen][2] == "inflate"
    assert where == [True, True, True, True, False]


# -- the key is checked before the body is read ---------------------------------------------------


@pytest.mark.parametrize("url", [INGEST, OTLP])
async def test_a_bad_key_is_401_without_the_body_being_read(client, tenant, url):
    pulled: list[bytes] = []

    async def body() -> AsyncIterator[bytes]:
        for chunk in (b"\x1f\x8b not gzip", b"at all"):
            pulled.append(chunk)
            yield chunk

    headers = {"Gram-Key": "glk_not_a_key", "Gram-Project": tenant.slug, **JSON, **GZIP}
    r = await client.post(url, content=body(), headers=headers)
    assert (r.status_code, error(r)) == (
        401,
        bad_request("invalid or revoked API key", name="unauthorized"),
    )
    assert pulled == []


# -- a cap on the body bytes in flight ------------------------------------------------------------


@pytest.fixture(scope="module")
async def tight(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """An app whose write requests may hold 64 KiB of bodies at once."""
    async with app_client(database_url, max_body_bytes_in_flight=64 * 1024) as c:
        yield c


UNAVAILABLE = {
    "name": "unavailable",
    "message": "the server is reading too many request bodies at once (more than 65536 bytes,"
    " GRAMLOGS_MAX_BODY_BYTES_IN_FLIGHT); retry shortly",
    "temporary": True,
    "timeout": False,
    "fault": False,
}


@pytest.mark.parametrize("compressed", [False, True])
async def test_past_the_bytes_in_flight_a_write_is_503_and_retried_later(
    tight, tenant, fd, pool, compressed
):
    # 70 KiB of body: more than the process may hold, inflated or as sent.
    batch = [{**entry(fd), "raw_log": f"line {i} " + "x" * 700} for i in range(100)]
    body = json.dumps(batch).encode()
    assert len(body) > 64 * 1024
    headers = {**tenant.headers(producer=True), **JSON}
    if compressed:
        body = zlib.compress(body)
        headers |= {"content-encoding": "deflate"}
    r = await tight.post(INGEST, content=body, headers=headers)
    assert (r.status_code, error(r), r.headers["retry-after"]) == (503, UNAVAILABLE, "1")
    inflating = gzip.compress(otlp_json(fd, 200) + b" " * 70_000, mtime=0)
    r = await tight.post(OTLP, content=inflating, headers={**headers, **GZIP})
    assert (r.status_code, error(r)) == (503, UNAVAILABLE)
    assert await count_rows(pool, tenant) == 0
    # Each request gave its share back: a body that fits is stored.
    r = await tight.post(INGEST, json=batch[:10], headers=tenant.headers(producer=True))
    assert (r.status_code, r.json()) == (200, {"stored": 10, "duplicates": 0})


def test_the_budget_is_shared_by_requests_and_given_back():
    budget = BodyBudget(100)
    with budget.holding() as first:
        first.take(60)
        with budget.holding() as second:
            with pytest.raises(Unavailable):
                second.take(41)
            second.take(40)
            assert budget.held == 100
        assert budget.held == 60
    assert budget.held == 0


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(values=st.lists(json_values, max_size=12), cap=st.integers(0, 12), wrapped=st.booleans())
def test_scanning_counts_the_values_of_the_entries_array(values: list, cap: int, wrapped: bool):
    body = json.dumps({"other": [1, 2, 3], "logs": values} if wrapped else values).encode()
    path = b"{[" if wrapped else b"["
    # An array of another field at the same place counts too: the count is an upper bound.
    counted = len(values) + (3 if wrapped else 0)
    assert more_values_than(body, path, cap) == (counted > cap)


# -- journal batches read in pieces ----------------------------------------------------------------

BIG_BATCH = 5_000


def _lines(fd: tuple[uuid.UUID, uuid.UUID], n: int) -> list[dict[str, Any]]:
    return [{**entry(fd), "raw_log": f"line {i}"} for i in range(n)]


async def test_a_catch_up_reads_a_large_batch_a_piece_at_a_time(
    client, tenant, fd, pool, database_url
):
    r = await client.post(INGEST, json=_lines(fd, BIG_BATCH), headers=tenant.headers(producer=True))
    assert r.status_code == 200, r.text
    seq = await pool.fetchval(
        "SELECT max(seq) FROM tail_journal WHERE project_id = $1", tenant.project_id
    )
    db = await Database.open(database_url, Config(database_url=database_url, pool_max=2))
    try:
        position = Position(seq - 1)
        got: list[str] = []
        reads = 0
        while True:
            frames, position, ended = await catch_up(db, tenant.project_id, TailFilter(), position)
            reads += 1
            assert len(frames) <= 2000  # a piece, never the whole batch
            got += [
                json.loads(f.rendered(frame_line).split(b"data: ", 1)[1])["raw_log"] for f in frames
            ]
            if ended:
                break
    finally:
        await db.close()
    assert reads == 3
    assert sorted(got) == sorted(f"line {i}" for i in range(BIG_BATCH))
    assert len(got) == len(set(got)) == BIG_BATCH


async def _tail_lines(
    c: httpx.AsyncClient, headers: dict[str, str], wanted: int, post: Any = None
) -> tuple[list[tuple[str, str]], str | None]:
    """The lines a tail gets (up to ``wanted``) with their event ids, and how it ended (None:
    it got them all). ``post``, when given, is awaited once the tail is waiting (a heartbeat)."""
    parser = EventParser()
    got: list[tuple[str, str]] = []
    async with c.stream("GET", "/rpc/logs.tail", headers=headers) as r:
        assert r.status_code == 200
        async for chunk in r.aiter_raw():
            if post is not None and b"keep-alive" in chunk:
                await post()
                post = None
            for event in parser.feed(chunk):
                if event.type == "end":
                    return got, json.loads(event.data)["reason"]
                if event.type == "message":
                    got.append((json.loads(event.data)["raw_log"], event.id))
                    if len(got) == wanted:
                        return got, None
    return got, "closed"


async def test_a_tail_that_keeps_up_gets_a_batch_larger_than_its_buffer(serve, database_url, fd):
    consumer, producer = await tailing.keys_of_a_new_tenant(database_url, "pieces")
    env = {
        "GRAMLOGS_TAIL_BUFFER_LINES": "3000",
        "GRAMLOGS_TAIL_POLL_MS": "20",
        "GRAMLOGS_TAIL_HEARTBEAT_S": "0.3",
    }
    headers = {"Gram-Key": consumer, "Gram-Project": "pieces"}
    with serve(**env) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as c:

            async def post() -> None:
                writer = {"Gram-Key": producer, "Gram-Project": "pieces"}
                r = await c.post(INGEST, json=_lines(fd, BIG_BATCH), headers=writer)
                assert r.status_code == 200, r.text

            # Subscribed before the batch, read as fast as it comes: never cut as slow.
            got, ended = await _tail_lines(c, headers, BIG_BATCH, post)
            assert (len(got), ended) == (BIG_BATCH, None)
            assert len({line for line, _ in got}) == BIG_BATCH
            # Resumed in the middle of the batch: the rest, in the same order, exactly once.
            middle = 2_500
            rest, ended = await _tail_lines(
                c, {**headers, "Last-Event-ID": got[middle - 1][1]}, BIG_BATCH - middle
            )
            assert (rest, ended) == (got[middle:], None)
