"""POST /rpc/logs.ingest: formats, defaults, ids, idempotence, atomicity, limits, durability."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import signal
import time
import uuid
import zlib
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, cast

import httpx
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from gramlogs.core import ids
from gramlogs.core.config import Config
from gramlogs.storage.functions import set_logs_enabled
from gramlogs.web.app import create_app
from gramlogs.web.ingest import LEVEL_ALIASES, MAX_ENTRIES, SOURCES
from tests._support import bad_request, error, stored_lines

URL = "/rpc/logs.ingest"
LIST = "/rpc/logs.listToolExecutionLogs"
NDJSON = {"content-type": "application/x-ndjson"}
OK3 = {"stored": 3, "duplicates": 0}


def entry(function_id: uuid.UUID, deployment_id: uuid.UUID, **fields: Any) -> dict[str, Any]:
    return {
        "raw_log": fields.pop("raw_log", "hello"),
        "function_id": str(function_id),
        "deployment_id": str(deployment_id),
        **fields,
    }


def ndjson(entries: list[dict[str, Any]]) -> bytes:
    return b"\n".join(json.dumps(e).encode() for e in entries) + b"\n"


async def read_all(client: httpx.AsyncClient, tenant, **params: str) -> list[dict[str, Any]]:
    """Every row of the tenant's project, oldest first, through the read API."""
    logs: list[dict[str, Any]] = []
    query = {"sort": "asc", "per_page": "100", **params}
    while True:
        r = await client.get(LIST, params=query, headers=tenant.headers())
        assert r.status_code == 200, r.text
        body = r.json()
        logs += body["logs"]
        if not body["pagination"]["has_next_page"]:
            return logs
        query["cursor"] = body["pagination"]["next_page_cursor"]


async def count_rows(pool, tenant) -> int:
    """The tenant's lines, rows and sealed (a batch of 1,000 or more is written sealed)."""
    return await stored_lines(pool, tenant.project_id)


# -- formats ------------------------------------------------------------------------------------


async def test_json_array_is_stored_and_read_back_whole(client, tenant, fd, pool):
    f, d = fd
    batch = [
        entry(
            f,
            d,
            raw_log='{"msg": "started"}',
            timestamp="2025-03-01T12:00:00.123456Z",
            instance="snowy-water-123",
            level="info",
            source="stdout",
            message="started",
            attributes={"tool": "search", "n": 3},
            execution_id="exec-1",
        ),
        entry(f, d, raw_log="boom", timestamp="2025-03-01T13:00:00+01:00", level="ERROR"),
        entry(f, d, raw_log="later", timestamp="2025-03-01T12:00:01.5Z", source="server"),
    ]
    r = await client.post(URL, json=batch, headers=tenant.headers(producer=True))
    assert (r.status_code, r.json()) == (200, OK3)
    logs = await read_all(client, tenant)
    common = {
        "project_id": str(tenant.project_id),
        "deployment_id": str(d),
        "function_id": str(f),
    }
    assert [{k: v for k, v in log.items() if k != "id"} for log in logs] == [
        {
            "timestamp": "2025-03-01T12:00:00Z",
            "instance": "",
            "level": "error",
            "source": "function",
            "raw_log": "boom",
            "attributes": "{}",
            **common,
        },
        {
            "timestamp": "2025-03-01T12:00:00.123456Z",
            "instance": "snowy-water-123",
            "level": "info",
            "source": "stdout",
            "raw_log": '{"msg": "started"}',
            "message": "started",
            "attributes": '{"n": 3, "tool": "search"}',
            **common,
        },
        {
            "timestamp": "2025-03-01T12:00:01.500000Z",
            "instance": "",
            "level": "info",
            "source": "server",
            "raw_log": "later",
            "attributes": "{}",
            **common,
        },
    ]
    for log in logs:
        assert ids.matches_timestamp(uuid.UUID(log["id"]), ids.parse_rfc3339(log["timestamp"]))
    stored = await pool.fetch(
        "SELECT execution_id FROM logs WHERE project_id = $1 ORDER BY id", tenant.project_id
    )
    assert [row["execution_id"] for row in stored] == [None, "exec-1", None]


async def test_logs_object_is_accepted(client, tenant, fd):
    batch = [entry(*fd, raw_log=f"line {i}", timestamp="2025-01-01T00:00:00Z") for i in range(3)]
    r = await client.post(URL, json={"logs": batch}, headers=tenant.headers(producer=True))
    assert (r.status_code, r.json()) == (200, OK3)
    assert [log["raw_log"] for log in await read_all(client, tenant)] == [
        "line 0",
        "line 1",
        "line 2",
    ]


async def test_ndjson_skips_blank_lines_and_accepts_crlf(client, tenant, fd):
    lines = [json.dumps(entry(*fd, raw_log=f"line {i}")).encode() for i in range(3)]
    body = b"\n" + lines[0] + b"\r\n\r\n" + lines[1] + b"\n   \n" + lines[2]
    r = await client.post(URL, content=body, headers={**tenant.headers(producer=True), **NDJSON})
    assert (r.status_code, r.json()) == (200, OK3)
    assert [log["raw_log"] for log in await read_all(client, tenant)] == [
        "line 0",
        "line 1",
        "line 2",
    ]


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_compressed_body_is_accepted(client, tenant, fd, encoding):
    data = ndjson([entry(*fd, raw_log=f"line {i}") for i in range(3)])
    body = gzip.compress(data) if encoding == "gzip" else zlib.compress(data)
    headers = {**tenant.headers(producer=True), **NDJSON, "content-encoding": encoding}
    r = await client.post(URL, content=body, headers=headers)
    assert (r.status_code, r.json()) == (200, OK3)


@pytest.mark.parametrize(
    "content_type",
    ["application/x-ndjson", "application/ndjson", "application/jsonl", "Application/X-NDJSON"],
)
async def test_ndjson_media_types(client, tenant, fd, content_type):
    body = ndjson([entry(*fd)])
    headers = {**tenant.headers(producer=True), "content-type": content_type}
    r = await client.post(URL, content=body, headers=headers)
    assert (r.status_code, r.json()) == (200, {"stored": 1, "duplicates": 0})


async def test_empty_batch_stores_nothing(client, tenant):
    r = await client.post(URL, json=[], headers=tenant.headers(producer=True))
    assert (r.status_code, r.json()) == (200, {"stored": 0, "duplicates": 0})
    r = await client.post(URL, content=b"\n", headers={**tenant.headers(producer=True), **NDJSON})
    assert (r.status_code, r.json()) == (200, {"stored": 0, "duplicates": 0})


# -- defaults and normalisation -------------------------------------------------------------------


async def test_defaults_fill_missing_fields(client, tenant, fd):
    before = datetime.now(UTC)
    r = await client.post(
        URL, json=[entry(*fd, attributes=None)], headers=tenant.headers(producer=True)
    )
    after = datetime.now(UTC)
    assert r.status_code == 200
    [log] = await read_all(client, tenant)
    assert before - timedelta(microseconds=1) <= ids.parse_rfc3339(log["timestamp"]) <= after
    assert {k: log[k] for k in ("instance", "level", "source", "attributes")} == {
        "instance": "",
        "level": "info",
        "source": "function",
        "attributes": "{}",
    }
    assert "message" not in log


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("TRACE", "debug"),
        ("debug", "debug"),
        ("Info", "info"),
        ("notice", "info"),
        ("WARNING", "warn"),
        ("warn", "warn"),
        ("err", "error"),
        ("Error", "error"),
        ("fatal", "error"),
        ("CRITICAL", "error"),
        ("panic", "error"),
    ],
)
async def test_level_aliases_are_normalised(client, tenant, fd, given, stored):
    r = await client.post(
        URL, json=[entry(*fd, level=given)], headers=tenant.headers(producer=True)
    )
    assert r.status_code == 200
    assert [log["level"] for log in await read_all(client, tenant)] == [stored]


async def test_unknown_level_and_source_are_refused(client, tenant, fd):
    batch = [entry(*fd, level="loud"), entry(*fd, source="kernel")]
    r = await client.post(URL, json=batch, headers=tenant.headers(producer=True))
    assert (r.status_code, error(r)) == (
        400,
        bad_request(
            "nothing was stored: 2 invalid entries: entries[0].level: must be debug, info, warn"
            " or error (or an alias such as warning, err, fatal, trace), any case; got 'loud';"
            " entries[1].source: must be one of function, server, stdout, stderr; got 'kernel'"
        ),
    )


# -- ids and idempotence --------------------------------------------------------------------------


async def test_client_id_is_kept(client, tenant, fd):
    ts = datetime(2025, 5, 1, 8, 30, 0, 250_001, tzinfo=UTC)
    log_id = ids.new_id(ts)
    batch = [entry(*fd, id=str(log_id), timestamp="2025-05-01T08:30:00.250001999Z")]
    r = await client.post(URL, json=batch, headers=tenant.headers(producer=True))
    assert (r.status_code, r.json()) == (200, {"stored": 1, "duplicates": 0})
    [log] = await read_all(client, tenant)
    assert (log["id"], log["timestamp"]) == (str(log_id), "2025-05-01T08:30:00.250001Z")


async def test_id_without_timestamp_takes_the_ids_time(client, tenant, fd):
    log_id = ids.new_id(datetime(2024, 2, 29, 23, 59, 59, 999_999, tzinfo=UTC))
    r = await client.post(
        URL, json=[entry(*fd, id=str(log_id))], headers=tenant.headers(producer=True)
    )
    assert r.status_code == 200
    [log] = await read_all(client, tenant)
    assert (log["id"], log["timestamp"]) == (str(log_id), "2024-02-29T23:59:59.999999Z")


async def test_id_that_does_not_match_its_timestamp_is_refused(client, tenant, fd, pool):
    log_id = ids.new_id(datetime(2025, 1, 1, tzinfo=UTC), rand_b=0)
    batch = [entry(*fd), entry(*fd, id=str(log_id), timestamp="2025-01-01T00:00:00.001Z")]
    r = await client.post(URL, json=batch, headers=tenant.headers(producer=True))
    assert (r.status_code, error(r)) == (
        400,
        bad_request(
            f"nothing was stored: 1 invalid entry: entries[1].id: {log_id} does not match the"
            " entry's timestamp 2025-01-01T00:00:00.001000+00:00: its first 64 bits must be"
            f" {ids.id_prefix(datetime(2025, 1, 1, 0, 0, 0, 1000, tzinfo=UTC)):016x}"
            " (see docs/ingestion.md, 'Ids and retries')"
        ),
    )
    assert await count_rows(pool, tenant) == 0


async def test_id_far_in_the_future_without_timestamp_is_refused(client, tenant, fd):
    log_id = uuid.UUID("ffffffff-ffff-7000-8000-000000000000")
    r = await client.post(
        URL, json=[entry(*fd, id=str(log_id))], headers=tenant.headers(producer=True)
    )
    assert (r.status_code, error(r)) == (
        400,
        bad_request(
            f"nothing was stored: 1 invalid entry: entries[0].id: {log_id} is not a UUIDv7 of a"
            " time before 2100"
        ),
    )


async def test_resending_a_batch_stores_nothing_twice(client, tenant, fd, pool):
    batch = [
        entry(*fd, raw_log=f"line {i}", timestamp=f"2025-01-01T00:00:0{i}Z", attributes={"i": i})
        for i in range(3)
    ]
    headers = tenant.headers(producer=True)
    assert (await client.post(URL, json=batch, headers=headers)).json() == OK3
    again = await client.post(URL, json={"logs": batch}, headers=headers)
    assert (again.status_code, again.json()) == (200, {"stored": 0, "duplicates": 3})
    # The same entries in another format, with their attributes' keys reordered, are the same.
    batch[0]["attributes"] = {"i": 0}
    r = await client.post(URL, content=ndjson(batch), headers={**headers, **NDJSON})
    assert r.json() == {"stored": 0, "duplicates": 3}
    assert await count_rows(pool, tenant) == 3


async def test_overlapping_resend_counts_what_was_already_there(client, tenant, fd, pool):
    first = [entry(*fd, raw_log=f"a{i}", timestamp="2025-01-01T00:00:00Z") for i in range(4)]
    more = [entry(*fd, raw_log=f"b{i}", timestamp="2025-01-01T00:00:01Z") for i in range(2)]
    headers = tenant.headers(producer=True)
    assert (await client.post(URL, json=first, headers=headers)).json() == {
        "stored": 4,
        "duplicates": 0,
    }
    r = await client.post(URL, json=first + more, headers=headers)
    assert (r.status_code, r.json()) == (200, {"stored": 2, "duplicates": 4})
    assert await count_rows(pool, tenant) == 6


async def test_identical_lines_in_one_batch_are_all_kept_in_order(client, tenant, fd, pool):
    same = entry(*fd, raw_log="tick", timestamp="2025-01-01T00:00:00Z")
    other = entry(*fd, raw_log="tock", timestamp="2025-01-01T00:00:00Z")
    batch = [same, other, same]
    headers = tenant.headers(producer=True)
    assert (await client.post(URL, json=batch, headers=headers)).json() == OK3
    assert (await client.post(URL, json=batch, headers=headers)).json() == {
        "stored": 0,
        "duplicates": 3,
    }
    assert [log["raw_log"] for log in await read_all(client, tenant)] == ["tick", "tock", "tick"]


async def test_same_client_id_twice_in_a_batch_is_stored_once(client, tenant, fd, pool):
    log_id = str(ids.new_id(datetime(2025, 1, 1, tzinfo=UTC)))
    batch = [entry(*fd, id=log_id, raw_log="first"), entry(*fd, id=log_id, raw_log="second")]
    r = await client.post(URL, json=batch, headers=tenant.headers(producer=True))
    assert (r.status_code, r.json()) == (200, {"stored": 1, "duplicates": 1})
    assert [log["raw_log"] for log in await read_all(client, tenant)] == ["first"]


async def test_concurrent_resends_store_each_line_once(client, tenant, fd, pool):
    batch = [entry(*fd, raw_log=f"line {i}", timestamp="2025-01-01T00:00:00Z") for i in range(200)]
    headers = tenant.headers(producer=True)
    replies = await asyncio.gather(
        *(client.post(URL, json=batch, headers=headers) for _ in range(4))
    )
    assert [r.status_code for r in replies] == [200] * 4
    assert sum(r.json()["stored"] for r in replies) == 200
    assert sum(r.json()["duplicates"] for r in replies) == 600
    assert await count_rows(pool, tenant) == 200


# -- atomicity and error messages -----------------------------------------------------------------


async def test_one_bad_entry_rejects_the_whole_batch(client, tenant, fd, pool):
    batch = [entry(*fd, raw_log=f"line {i}") for i in range(5)]
    batch[3]["timestamp"] = "yesterday"
    r = await client.post(URL, json=batch, headers=tenant.headers(producer=True))
    assert (r.status_code, error(r)) == (
        400,
        bad_request(
            "nothing was stored: 1 invalid entry: entries[3].timestamp: must be an RFC 3339"
            " date-time; got 'yesterday'"
        ),
    )
    assert await count_rows(pool, tenant) == 0


async def test_type_errors_and_missing_fields_name_entry_and_field(client, tenant, fd, pool):
    f, d = fd
    lines = [
        json.dumps(entry(f, d)),
        json.dumps({"raw_log": 7, "function_id": str(f), "deployment_id": str(d)}),
        json.dumps({"raw_log": "x", "deployment_id": str(d)}),
        "{not json",
        json.dumps(entry(f, d, attributes=[1, 2])),
        json.dumps({"raw_log": "x", "function_id": "nope", "deployment_id": str(d)}),
    ]
    body = "\n".join(lines).encode()
    r = await client.post(URL, content=body, headers={**tenant.headers(producer=True), **NDJSON})
    assert r.status_code == 400
    message = error(r)["message"]
    assert message.startswith("nothing was stored: 5 invalid entries: entries[1].raw_log: Expected")
    for problem in [
        "entries[1].raw_log: Expected `str`, got `int`",
        "entries[2].function_id: is required",
        "entries[3]: JSON is malformed",
        "entries[4].attributes: Expected `object | null`, got `array`",
        "entries[5].function_id: must be a uuid; got 'nope'",
    ]:
        assert problem in message
    assert await count_rows(pool, tenant) == 0


async def test_at_most_twenty_bad_entries_are_listed(client, tenant, fd):
    batch = [entry(*fd, level=f"bad{i}") for i in range(25)]
    r = await client.post(URL, json=batch, headers=tenant.headers(producer=True))
    message = error(r)["message"]
    assert r.status_code == 400
    assert message.startswith("nothing was stored: 25 invalid entries (first 20 shown): ")
    assert "entries[19].level" in message
    assert "entries[20]" not in message


@pytest.mark.parametrize("field", ["raw_log", "message", "instance", "execution_id"])
async def test_nul_characters_are_refused_naming_the_field(client, tenant, fd, field):
    r = await client.post(
        URL,
        json=[entry(*fd, **{field: cast(Any, "a\x00b")})],
        headers=tenant.headers(producer=True),
    )
    assert (r.status_code, error(r)) == (
        400,
        bad_request(
            f"nothing was stored: 1 invalid entry: entries[0].{field}: contains a NUL character,"
            " which cannot be stored"
        ),
    )


async def test_nul_in_attributes_is_refused_but_an_escaped_backslash_is_not(client, tenant, fd):
    headers = tenant.headers(producer=True)
    r = await client.post(URL, json=[entry(*fd, attributes={"k": ["a\x00"]})], headers=headers)
    assert (r.status_code, error(r)["message"]) == (
        400,
        "nothing was stored: 1 invalid entry: entries[0].attributes: contains a NUL character,"
        " which cannot be stored",
    )
    r = await client.post(URL, json=[entry(*fd, attributes={"k": "\\u0000"})], headers=headers)
    assert r.status_code == 200
    [log] = await read_all(client, tenant)
    assert json.loads(log["attributes"]) == {"k": "\\u0000"}


@pytest.mark.parametrize("kind", ["application/json", "application/x-ndjson"])
async def test_deeply_nested_attributes_are_400_not_500(client, tenant, fd, kind):
    deep = '{"k":' * 5000 + "1" + "}" * 5000
    line = json.dumps(entry(*fd)).replace('"raw_log"', f'"attributes": {deep}, "raw_log"')
    body = line if kind == "application/x-ndjson" else f"[{line}]"
    headers = {**tenant.headers(producer=True), "content-type": kind}
    r = await client.post(URL, content=body.encode(), headers=headers)
    message = {
        # The whole body is one JSON value: its decoder cannot even find the entries.
        "application/json": "the body is nested too deeply",
        "application/x-ndjson": "nothing was stored: 1 invalid entry: entries[0]: is nested too"
        " deeply",
    }[kind]
    assert (r.status_code, error(r)) == (400, bad_request(message))


async def test_body_that_is_not_a_batch_is_refused(client, tenant):
    headers = {**tenant.headers(producer=True), "content-type": "application/json"}
    shape = bad_request(
        'the body must be a JSON array of log entries or an object {"logs": [...]};'
        " for one entry per line, send Content-Type: application/x-ndjson"
    )
    for body in [b'{"logs": 5}', b'"text"', b'{"raw_log": "a"}\n{"raw_log": "b"}']:
        r = await client.post(URL, content=body, headers=headers)
        assert (r.status_code, error(r)) == (400, shape)
    r = await client.post(URL, content=b"[1,", headers=headers)
    assert (r.status_code, error(r)) == (
        400,
        bad_request(
            "the body is not valid JSON (Input data was truncated); for one entry per line,"
            " send Content-Type: application/x-ndjson"
        ),
    )


# -- limits ---------------------------------------------------------------------------------------


async def test_raw_log_of_16384_bytes_is_stored_and_one_more_is_refused(client, tenant, fd):
    headers = tenant.headers(producer=True)
    fits = "é" * 8192  # 2 bytes each in UTF-8
    r = await client.post(URL, json=[entry(*fd, raw_log=fits)], headers=headers)
    assert (r.status_code, r.json()) == (200, {"stored": 1, "duplicates": 0})
    r = await client.post(URL, json=[entry(*fd, raw_log=fits + "x")], headers=headers)
    assert (r.status_code, error(r)) == (
        400,
        bad_request(
            "nothing was stored: 1 invalid entry: entries[0].raw_log: is 16385 bytes long;"
            " at most 16384 are allowed"
        ),
    )


@pytest.mark.parametrize(
    ("timestamp", "status"),
    [
        ("1970-01-01T00:00:00Z", 200),
        ("2100-01-01T00:00:00Z", 200),
        ("1969-12-31T23:59:59.999999Z", 400),
        ("2100-01-01T00:00:00.000001Z", 400),
        ("2100-01-01T01:00:00+02:00", 200),
    ],
)
async def test_timestamps_outside_the_id_range_are_refused(client, tenant, fd, timestamp, status):
    r = await client.post(
        URL, json=[entry(*fd, timestamp=timestamp)], headers=tenant.headers(producer=True)
    )
    assert r.status_code == status
    if status == 400:
        shown = ids.parse_rfc3339(timestamp).isoformat()
        assert error(r) == bad_request(
            f"nothing was stored: 1 invalid entry: entries[0].timestamp: {shown} is outside"
            " 1970-01-01T00:00:00+00:00 .. 2100-01-01T00:00:00+00:00"
        )


async def test_batch_of_max_entries_is_stored_and_one_more_is_413(client, tenant, fd, pool):
    one = json.dumps(entry(*fd, raw_log="x", timestamp="2025-01-01T00:00:00Z")).encode()
    headers = {**tenant.headers(producer=True), **NDJSON}
    r = await client.post(URL, content=b"\n".join([one] * (MAX_ENTRIES + 1)), headers=headers)
    assert (r.status_code, error(r)) == (
        413,
        bad_request(
            "a batch holds at most 10000 entries; this one has more", name="payload_too_large"
        ),
    )
    r = await client.post(
        URL,
        json=[json.loads(one)] * (MAX_ENTRIES + 1),
        headers=headers | {"content-type": "application/json"},
    )
    assert r.status_code == 413
    assert await count_rows(pool, tenant) == 0
    r = await client.post(URL, content=b"\n".join([one] * MAX_ENTRIES), headers=headers)
    assert (r.status_code, r.json()) == (200, {"stored": MAX_ENTRIES, "duplicates": 0})


@pytest.fixture(scope="module")
async def small_client(database_url):
    """An app whose body limit is 4 KiB."""
    app = create_app(
        Config(
            database_url=database_url,
            pool_min=1,
            pool_max=2,
            max_body_bytes=4096,
            seal_interval_s=0,
        )
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gramlogs.test") as c:
            yield c


TOO_LARGE = bad_request(
    "the request body exceeds 4096 bytes (GRAMLOGS_MAX_BODY_BYTES)", name="payload_too_large"
)


async def test_body_over_the_limit_is_413(small_client, tenant, fd, pool):
    headers = tenant.headers(producer=True)
    fits = [entry(*fd, raw_log="x" * 3900)]
    assert len(json.dumps(fits)) <= 4096
    r = await small_client.post(URL, json=fits, headers=headers)
    assert (r.status_code, r.json()) == (200, {"stored": 1, "duplicates": 0})
    r = await small_client.post(URL, json=[entry(*fd, raw_log="x" * 4096)], headers=headers)
    assert (r.status_code, error(r)) == (413, TOO_LARGE)


async def test_streamed_body_over_the_limit_is_413_without_content_length(small_client, tenant):
    sent = []

    async def chunks():
        for _ in range(100):
            sent.append(1)
            yield b"[" + b" " * 1023

    headers = {**tenant.headers(producer=True), "content-type": "application/json"}
    r = await small_client.post(URL, content=chunks(), headers=headers)
    assert (r.status_code, error(r)) == (413, TOO_LARGE)
    assert len(sent) < 10  # reading stopped at the limit


async def test_gzip_bomb_is_413_after_decompression(small_client, tenant, fd):
    body = gzip.compress(ndjson([entry(*fd)]) + b" " * 1_000_000)
    assert len(body) < 4096
    headers = {**tenant.headers(producer=True), **NDJSON, "content-encoding": "gzip"}
    r = await small_client.post(URL, content=body, headers=headers)
    assert (r.status_code, error(r)) == (
        413,
        bad_request(
            "the decompressed request body exceeds 4096 bytes (GRAMLOGS_MAX_BODY_BYTES)",
            name="payload_too_large",
        ),
    )


async def test_corrupt_gzip_is_400(client, tenant, fd):
    body = gzip.compress(ndjson([entry(*fd)]))
    headers = {**tenant.headers(producer=True), **NDJSON, "content-encoding": "gzip"}
    r = await client.post(URL, content=body[:-8], headers=headers)
    assert (r.status_code, error(r)) == (
        400,
        bad_request("the gzip body ends before its stream does"),
    )
    r = await client.post(URL, content=b"not gzip at all", headers=headers)
    assert (r.status_code, error(r)) == (400, bad_request("the body is not valid gzip data"))


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "none"),
        ({"content-type": "text/plain"}, "'text/plain'"),
        (
            {"content-type": "application/x-www-form-urlencoded"},
            "'application/x-www-form-urlencoded'",
        ),
    ],
)
async def test_other_content_types_are_415(client, tenant, headers, message):
    r = await client.post(URL, content=b"[]", headers={**tenant.headers(producer=True), **headers})
    shown = message if message != "none" else "'none'"
    assert (r.status_code, error(r)) == (
        415,
        bad_request(
            "Content-Type must be one of application/json, application/x-ndjson,"
            f" application/ndjson, application/jsonl; got {shown}",
            name="unsupported_media_type",
        ),
    )


async def test_other_charsets_and_encodings_are_415(client, tenant):
    headers = tenant.headers(producer=True)
    r = await client.post(
        URL, content=b"[]", headers={**headers, "content-type": "application/json; charset=latin-1"}
    )
    assert (r.status_code, error(r)) == (
        415,
        bad_request("the body must be UTF-8; got charset 'latin-1'", "unsupported_media_type"),
    )
    r = await client.post(
        URL,
        content=b"[]",
        headers={**headers, "content-type": "application/json", "content-encoding": "br"},
    )
    assert (r.status_code, error(r)) == (
        415,
        bad_request(
            "Content-Encoding must be gzip, deflate or identity; got 'br'", "unsupported_media_type"
        ),
    )
    r = await client.post(
        URL, content=b"[]", headers={**headers, "content-type": "application/json; charset=UTF-8"}
    )
    assert r.status_code == 200


# -- functions, auth ------------------------------------------------------------------------------


async def test_functions_of_a_stored_batch_are_registered(client, tenant, fd, pool):
    f, d = fd
    g = uuid.uuid4()
    r = await client.post(
        URL, json=[entry(f, d), entry(g, d), entry(f, d)], headers=tenant.headers(producer=True)
    )
    assert r.status_code == 200
    rows = await pool.fetch(
        "SELECT id, logs_enabled FROM functions WHERE project_id = $1 ORDER BY id",
        tenant.project_id,
    )
    assert [(row["id"], row["logs_enabled"]) for row in rows] == sorted([(f, True), (g, True)])


async def test_batch_with_a_disabled_function_is_409_and_stores_nothing(client, tenant, fd, pool):
    f, d = fd
    off = uuid.uuid4()
    async with pool.acquire() as conn:
        await set_logs_enabled(conn, tenant.project_id, off, False)
    batch = [entry(f, d), entry(off, d), entry(f, d), entry(off, d)]
    r = await client.post(URL, json=batch, headers=tenant.headers(producer=True))
    assert (r.status_code, error(r)) == (
        409,
        bad_request(
            f"nothing was stored: logs are disabled for function {off} in this project;"
            " entries 1, 3 belong to it",
            name="conflict",
        ),
    )
    assert await count_rows(pool, tenant) == 0


async def test_ingest_needs_a_producer_key(client, make_tenant, fd):
    tenant = await make_tenant()
    other = await make_tenant()
    body = [entry(*fd)]
    cases = [
        ({"Gram-Project": tenant.slug}, 401, "unauthorized", "missing Gram-Key header"),
        ({"Gram-Key": tenant.producer_key}, 401, "unauthorized", "missing Gram-Project header"),
        (
            {"Gram-Key": "glk_nope", "Gram-Project": tenant.slug},
            401,
            "unauthorized",
            "invalid or revoked API key",
        ),
        (
            tenant.headers(),
            403,
            "forbidden",
            "this key has scope 'consumer', which lacks the 'write' permission",
        ),
        (
            {"Gram-Key": other.producer_key, "Gram-Project": "nope"},
            403,
            "forbidden",
            "this key may not access project 'nope'",
        ),
    ]
    for headers, status, name, message in cases:
        r = await client.post(URL, json=body, headers=headers)
        assert (r.status_code, error(r)) == (status, bad_request(message, name=name))
    r = await client.get(URL, headers=tenant.headers(producer=True))
    assert r.status_code == 405


# -- property: what goes in comes out ------------------------------------------------------------

_text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=30)
_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=8,
)
_stamps = st.lists(
    st.datetimes(
        min_value=datetime(1970, 1, 1), max_value=datetime(2099, 12, 31), timezones=st.just(UTC)
    ),
    min_size=1,
    max_size=4,
)


def _rfc3339(ts: datetime, digits: int, offset_minutes: int) -> str:
    local = ts + timedelta(minutes=offset_minutes)
    base = local.strftime("%Y-%m-%dT%H:%M:%S")
    fraction = f"{local.microsecond:06d}" + "987"  # extra digits are truncated, never rounded
    sign = "+" if offset_minutes >= 0 else "-"
    zone = (
        "Z"
        if offset_minutes == 0
        else f"{sign}{abs(offset_minutes) // 60:02d}:{abs(offset_minutes) % 60:02d}"
    )
    return base + ("." + fraction[:digits] if digits else "") + zone


@st.composite
def batches(draw) -> list[dict[str, Any]]:
    stamps = draw(_stamps)  # few distinct times, so that ties within a microsecond happen
    functions = [uuid.UUID(int=draw(st.integers(0, 2**128 - 1))) for _ in range(2)]
    out = []
    for _ in range(draw(st.integers(1, 12))):
        ts = draw(st.sampled_from(stamps)).replace(
            microsecond=draw(st.sampled_from([0, 1, 999_999]))
        )
        digits = draw(st.sampled_from([6, 9]))
        e: dict[str, Any] = {
            "raw_log": draw(_text),
            "function_id": str(draw(st.sampled_from(functions))),
            "deployment_id": str(draw(st.sampled_from(functions))),
            "timestamp": _rfc3339(ts, digits, draw(st.sampled_from([0, 90, -330]))),
        }
        for field, strategy in [
            ("instance", _text),
            (
                "level",
                st.sampled_from(sorted(LEVEL_ALIASES)).map(str.upper)
                | st.sampled_from(sorted(LEVEL_ALIASES)),
            ),
            ("source", st.sampled_from(SOURCES)),
            ("message", _text),
            ("attributes", st.dictionaries(_text, _json, max_size=4)),
            ("execution_id", _text),
        ]:
            if draw(st.booleans()):
                e[field] = draw(strategy)
        out.append(e)
    return out


def _exact_json(text: str) -> Any:
    # jsonb keeps numbers as numeric: 1e308 comes back as 1 and 308 zeros. Same value, so compare
    # values, not float-versus-int types.
    return json.loads(text, parse_float=Decimal, parse_int=Decimal)


def _expected(batch: list[dict[str, Any]], tenant) -> list[dict[str, Any]]:
    rows = []
    for e in batch:
        rows.append(
            {
                "timestamp": ids.parse_rfc3339(e["timestamp"]),
                "instance": e.get("instance", ""),
                "level": LEVEL_ALIASES[e.get("level", "info").lower()],
                "source": e.get("source", "function"),
                "raw_log": e["raw_log"],
                **({"message": e["message"]} if "message" in e else {}),
                "attributes": _exact_json(json.dumps(e.get("attributes", {}))),
                "project_id": str(tenant.project_id),
                "deployment_id": e["deployment_id"],
                "function_id": e["function_id"],
            }
        )
    # Sorted by time; ties within a microsecond keep the batch's order (stable sort).
    return sorted(rows, key=lambda row: row["timestamp"])


@seed(20250301)
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batch=batches(), ndjson_format=st.booleans())
async def test_what_is_ingested_is_what_is_read_back(
    client, make_tenant, pool, batch, ndjson_format
):
    tenant = await make_tenant()
    headers = tenant.headers(producer=True)
    if ndjson_format:
        r = await client.post(URL, content=ndjson(batch), headers={**headers, **NDJSON})
    else:
        r = await client.post(URL, json=batch, headers=headers)
    assert (r.status_code, r.json()) == (200, {"stored": len(batch), "duplicates": 0})
    logs = await read_all(client, tenant)
    got = [
        {
            **{k: v for k, v in log.items() if k not in ("id", "attributes", "timestamp")},
            "timestamp": ids.parse_rfc3339(log["timestamp"]),
            "attributes": _exact_json(log["attributes"]),
        }
        for log in logs
    ]
    assert got == _expected(batch, tenant)
    for log in logs:
        assert ids.matches_timestamp(uuid.UUID(log["id"]), ids.parse_rfc3339(log["timestamp"]))
    executions = await pool.fetch(
        "SELECT execution_id FROM logs WHERE project_id = $1 ORDER BY id", tenant.project_id
    )
    by_time = sorted(batch, key=lambda e: ids.parse_rfc3339(e["timestamp"]))
    assert [row["execution_id"] for row in executions] == [e.get("execution_id") for e in by_time]
    again = await client.post(URL, json=batch, headers=headers)
    assert again.json() == {"stored": 0, "duplicates": len(batch)}


@settings(max_examples=300, deadline=None)
@given(
    ts=st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)),
    digits=st.integers(0, 9),
    offset=st.integers(-(24 * 60 - 1), 24 * 60 - 1),
    t=st.sampled_from("Tt"),
    z=st.sampled_from(["Z", "z", None]),
    second=st.sampled_from([None, 60, 61]),
)
def test_fast_timestamp_path_reads_as_parse_rfc3339_does(ts, digits, offset, t, z, second):
    from gramlogs.storage.batch import EntryError
    from gramlogs.web.ingest import _timestamp

    seconds = f"{ts.second if second is None else second:02d}"
    text = f"{ts.year:04d}-{ts.month:02d}-{ts.day:02d}{t}{ts.hour:02d}:{ts.minute:02d}:{seconds}"
    text += ("." + f"{ts.microsecond:06d}987"[:digits]) if digits else ""
    sign = "-" if offset < 0 else "+"
    text += z if z else f"{sign}{abs(offset) // 60:02d}:{abs(offset) % 60:02d}"
    try:
        expected = ids.parse_rfc3339(text)
    except ids.IdError:
        expected = None
    try:
        got = _timestamp(text)
    except EntryError:
        got = None
    assert got == expected
    assert got is None or got.tzinfo is UTC


# -- durability: kill -9 mid-stream ----------------------------------------------------------------


async def test_server_killed_mid_stream_leaves_whole_batches_or_none(make_tenant, pool, serve):
    tenant = await make_tenant()
    headers = tenant.headers(producer=True)
    function_id = uuid.uuid4()
    size = 200

    def make_batch(n: int) -> tuple[uuid.UUID, bytes]:
        deployment = uuid.uuid4()  # the batch's marker
        start = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(seconds=n)
        body = ndjson(
            [
                {
                    "raw_log": f"batch {n} line {i} " + "x" * 150,
                    "function_id": str(function_id),
                    "deployment_id": str(deployment),
                    "timestamp": (start + timedelta(microseconds=i)).isoformat(),
                }
                for i in range(size)
            ]
        )
        return deployment, body

    batches = [make_batch(n) for n in range(60)]
    backends = "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
    backends += " AND application_name = 'gramlogs'"
    ours = {row["pid"] for row in await pool.fetch(backends)}
    acknowledged: set[uuid.UUID] = set()
    enough = asyncio.Event()
    with serve() as server:
        queue = list(batches)

        async def sender() -> None:
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as c:
                while queue:
                    deployment, body = queue.pop()
                    try:
                        r = await c.post(URL, content=body, headers={**headers, **NDJSON})
                    except httpx.TransportError:
                        return
                    if r.status_code == 200:
                        acknowledged.add(deployment)
                        if len(acknowledged) >= 8:
                            enough.set()

        async def killer() -> None:
            await enough.wait()
            os.kill(server.process.pid, signal.SIGKILL)

        await asyncio.wait_for(asyncio.gather(killer(), *(sender() for _ in range(4))), 60)
        server.process.wait()

    # A backend that had the COMMIT of a batch when the server died still finishes it: wait for
    # the dead server's backends to end before counting.
    deadline = time.monotonic() + 60
    while {row["pid"] for row in await pool.fetch(backends)} - ours:
        assert time.monotonic() < deadline, "the dead server's backends still ran after 60 s"
        await asyncio.sleep(0.05)

    counts = dict(
        await pool.fetch(
            "SELECT deployment_id, count(*) FROM logs WHERE project_id = $1 GROUP BY 1",
            tenant.project_id,
        )
    )
    assert acknowledged and len(acknowledged) < len(batches)
    assert all(counts.get(d) == size for d in acknowledged)
    assert set(counts.values()) <= {size}, "a batch was stored in part"

    # Resending everything stores the missing batches and duplicates nothing.
    with serve() as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as c:
            for deployment, body in batches:
                r = await c.post(URL, content=body, headers={**headers, **NDJSON})
                expected_dupes = size if deployment in counts else 0
                assert r.json() == {"stored": size - expected_dupes, "duplicates": expected_dupes}
    assert await count_rows(pool, tenant) == size * len(batches)


# -- metrics ------------------------------------------------------------------------------------


def _sample(name: str, **labels: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_stored_and_rejected_lines_are_counted_in_metrics(client, tenant, fd, pool):
    stored = _sample("gramlogs_ingested_lines_total")
    invalid = _sample("gramlogs_rejected_lines_total", reason="invalid")
    disabled = _sample("gramlogs_rejected_lines_total", reason="disabled")
    batch = [entry(*fd, raw_log=f"line {i}", timestamp="2025-01-01T00:00:00Z") for i in range(3)]
    r = await client.post(URL, json=batch, headers=tenant.headers(producer=True))
    assert (r.status_code, r.json()) == (200, OK3)
    resend = await client.post(URL, json=batch, headers=tenant.headers(producer=True))
    assert resend.json() == {"stored": 0, "duplicates": 3}
    assert _sample("gramlogs_ingested_lines_total") == stored + 3

    bad = [entry(*fd, level="loud"), entry(*fd), entry(*fd, source="kernel")]
    r = await client.post(URL, json=bad, headers=tenant.headers(producer=True))
    assert r.status_code == 400
    assert _sample("gramlogs_rejected_lines_total", reason="invalid") == invalid + 2

    async with pool.acquire() as conn:
        await set_logs_enabled(conn, tenant.project_id, fd[0], False)
    r = await client.post(URL, json=batch[:2], headers=tenant.headers(producer=True))
    assert r.status_code == 409
    assert _sample("gramlogs_rejected_lines_total", reason="disabled") == disabled + 2


async def test_control_characters_in_gram_project_are_a_400_naming_it(client, tenant, fd):
    headers = {"Gram-Key": tenant.producer_key, "Gram-Project": "proj\x7f"}
    r = await client.post(URL, json=[entry(*fd)], headers=headers)
    assert r.status_code == 400
    body = error(r)
    assert body["name"] == "invalid_format"
    assert body["message"].startswith("Gram-Project must be formatted as printable text")
