"""GET /rpc/logs.export: the lines listToolExecutionLogs pages through, as NDJSON, capped.

The property: for random rows over several projects, random filters, both sorts, both
directions, cursors and limits, the export is the concatenation of the list's pages (walked to
the end, in sort order), cut to ``limit`` lines (the first ones going next, the last ones, those
nearest the cursor, going prev). The rest: the cap, the headers, bad parameters, keys and
projects, an export of many internal pages, and what a database error or a client that hangs
up does to a stream that has begun.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gramlogs.core import ids
from gramlogs.core.config import Config
from gramlogs.core.errors import Unavailable
from gramlogs.core.keys import hash_key
from gramlogs.storage import tenants, writer
from gramlogs.web import export
from gramlogs.web.app import create_app
from tests._support import app_client, bad_request, connection, error, get_scope
from tests.test_gram_paging import (
    DEPLOYMENTS,
    FUNCTIONS,
    INSTANCES,
    LEVELS,
    PROPERTY,
    SOURCES,
    Row,
    World,
    make_world,
    timestamps,
)

URL = "/rpc/logs.export"
LIST_URL = "/rpc/logs.listToolExecutionLogs"
BASE = datetime(2025, 6, 1, tzinfo=UTC)


def lines(r: httpx.Response) -> list[dict[str, Any]]:
    assert r.status_code == 200, r.text
    assert r.text == "" or r.text.endswith("\n")
    return [json.loads(line) for line in r.text.splitlines()]


async def listed(client: httpx.AsyncClient, world: World, params: dict[str, str]) -> list[dict]:
    """Every entry listToolExecutionLogs gives by following next_page_cursor, in sort order."""
    pages: list[list[dict]] = []
    query = {**params, "per_page": "100"}
    while True:
        r = await client.get(LIST_URL, params=query, headers=world.tenants[0].headers())
        assert r.status_code == 200, r.text
        body = r.json()
        pages.append(body["logs"])
        if not body["pagination"]["has_next_page"]:
            break
        query["cursor"] = body["pagination"]["next_page_cursor"]
    if params.get("direction") == "prev":
        pages.reverse()
    return [e for page in pages for e in page]


def random_rows(seed: int, count: int) -> list[Row]:
    """``count`` rows over three projects (half of them the caller's), from ``seed``: timestamps
    on a few milliseconds of three days, so that ties and equal milliseconds are common."""
    rng = random.Random(seed)
    rows = {}
    for _ in range(count):
        ts = BASE + timedelta(
            days=rng.randrange(3),
            milliseconds=rng.randrange(7),
            microseconds=rng.choice([0, 1, 999]),
        )
        row = Row(
            ids.new_id(ts, rng.getrandbits(62)),
            ts,
            rng.choice([0, 0, 1, 2]),
            rng.choice(FUNCTIONS),
            rng.choice(DEPLOYMENTS),
            rng.choice(INSTANCES),
            rng.choice(LEVELS),
            rng.choice(SOURCES),
        )
        rows[row.id] = row
    return list(rows.values())


@st.composite
def filters(draw: st.DrawFn) -> dict[str, str]:
    """At most one filter and a time window: enough rows match for the limit to bite."""
    chosen: dict[str, str] = {}
    kind = draw(st.sampled_from(["none", "none", "function_id", "level", "source", "keyword"]))
    if kind == "function_id":
        chosen[kind] = str(draw(st.sampled_from(FUNCTIONS)))
    elif kind == "level":
        chosen[kind] = draw(st.sampled_from(LEVELS))
    elif kind == "source":
        chosen[kind] = draw(st.sampled_from(SOURCES))
    elif kind == "keyword":
        # raw_log is "line <id>": a hex digit pair matches some lines, "line" all of them.
        chosen[kind] = draw(st.sampled_from(["line", "a", "7f", "zz"]))
    if draw(st.integers(0, 2)) == 0:
        start, end = sorted([draw(timestamps), draw(timestamps)])
        chosen["ts_start"] = start.isoformat().replace("+00:00", "Z")
        chosen["ts_end"] = end.isoformat().replace("+00:00", "Z")
    return chosen


@st.composite
def cursors(draw: st.DrawFn, rows: list[Row]) -> str | None:
    """No cursor, a row's id, or a position between rows."""
    kind = draw(st.sampled_from(["none", "row", "position"]))
    if kind == "row" and rows:
        return str(draw(st.sampled_from(rows)).id)
    if kind == "position":
        ts = BASE + timedelta(days=draw(st.integers(0, 2)), milliseconds=draw(st.integers(0, 6)))
        return str(ids.new_id(ts, draw(st.integers(0, (1 << 62) - 1))))
    return None


@PROPERTY
@given(
    data=st.data(),
    seed=st.integers(0, 2**32),
    count=st.integers(0, 150),
    f=filters(),
    ascending=st.booleans(),
    forward=st.booleans(),
    limit=st.one_of(st.none(), st.integers(1, 5), st.integers(1, 40)),
)
async def test_an_export_is_the_list_pages_cut_to_the_limit(
    client, make_tenant, pool, data, seed, count, f, ascending, forward, limit
) -> None:
    rows = random_rows(seed, count)
    world = await make_world(make_tenant, pool, rows)
    params = {**f, "sort": "asc" if ascending else "desc"}
    if not forward:
        params["direction"] = "prev"
    cursor = data.draw(cursors([r for r in rows if r.owner == 0]))
    if cursor is not None:
        params["cursor"] = cursor
    want = await listed(client, world, params)
    if limit is not None:
        params["limit"] = str(limit)
    cap = export.DEFAULT_LIMIT if limit is None else limit
    want = want[:cap] if forward else want[max(len(want) - cap, 0) :]

    r = await client.get(URL, params=params, headers=world.tenants[0].headers())
    assert lines(r) == want
    assert r.headers[export.LIMIT_HEADER] == str(cap)


async def store(pool: asyncpg.Pool, project_id: uuid.UUID, count: int, seed: int = 0) -> list[str]:
    """``count`` lines a millisecond apart from BASE, in ``project_id``; their ids, oldest first."""
    records = []
    for i in range(count):
        ts = BASE + timedelta(milliseconds=i)
        line_id = ids.new_id(ts, seed * 1_000_000 + i)
        deployment, fn = uuid.UUID(int=2), uuid.UUID(int=1)
        line = f"line {i}"
        records.append(
            (
                line_id,
                ts,
                "snowy-water-1",
                "info",
                "function",
                line,
                None,
                "{}",
                project_id,
                deployment,
                fn,
                None,
            )
        )
    async with connection(pool) as conn:
        await writer.copy_lines(conn, records)
    return [str(r[0]) for r in records]


async def test_the_cap_sends_limit_lines_and_fewer_when_fewer_exist(client, tenant, pool) -> None:
    stored = await store(pool, tenant.project_id, 30)
    newest_first = stored[::-1]
    headers = tenant.headers()

    r = await client.get(URL, params={"limit": "10"}, headers=headers)
    assert [e["id"] for e in lines(r)] == newest_first[:10]
    r = await client.get(URL, params={"limit": "30", "sort": "asc"}, headers=headers)
    assert [e["id"] for e in lines(r)] == stored
    r = await client.get(URL, params={"limit": "31"}, headers=headers)
    assert [e["id"] for e in lines(r)] == newest_first
    r = await client.get(URL, headers=headers)
    assert [e["id"] for e in lines(r)] == newest_first


async def test_a_cursor_exports_from_there_in_its_direction(client, tenant, pool) -> None:
    stored = await store(pool, tenant.project_id, 20)
    headers = tenant.headers()
    params = {"sort": "asc", "cursor": stored[9], "limit": "5"}

    r = await client.get(URL, params=params, headers=headers)
    assert [e["id"] for e in lines(r)] == stored[10:15]
    r = await client.get(URL, params={**params, "direction": "prev"}, headers=headers)
    assert [e["id"] for e in lines(r)] == stored[4:9]
    r = await client.get(URL, params={**params, "sort": "desc"}, headers=headers)
    assert [e["id"] for e in lines(r)] == stored[8::-1][:5]


async def test_headers_say_ndjson_attachment_and_limit(client, tenant, pool) -> None:
    await store(pool, tenant.project_id, 3)
    r = await client.get(URL, params={"limit": "2"}, headers=tenant.headers())
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/x-ndjson"
    assert re.fullmatch(
        r'attachment; filename="gramlogs-proj-\d{8}T\d{6}Z\.ndjson"',
        r.headers["content-disposition"],
    )
    assert r.headers["gramlogs-export-limit"] == "2"
    assert r.headers["cache-control"] == "no-store"
    assert len(lines(r)) == 2


@pytest.mark.parametrize(
    ("params", "name", "message"),
    [
        ({"limit": "0"}, "invalid_range", "limit must be greater or equal than 1 but got value 0"),
        (
            {"limit": "100001"},
            "invalid_range",
            "limit must be lesser or equal than 100000 but got value 100001",
        ),
        (
            {"limit": "ten"},
            "invalid_field_type",
            'invalid value "ten" for limit, must be a integer',
        ),
        (
            {"limit": "1.5"},
            "invalid_field_type",
            'invalid value "1.5" for limit, must be a integer',
        ),
        ({"sort": "up"}, "invalid_enum_value", None),
        ({"direction": "sideways"}, "invalid_enum_value", None),
        ({"cursor": "nope"}, "invalid_format", None),
        ({"ts_start": "yesterday"}, "invalid_format", None),
        ({"level": "loud"}, "invalid_enum_value", None),
        (
            {"ts_start": "2025-06-02T00:00:00Z", "ts_end": "2025-06-01T00:00:00Z"},
            "bad_request",
            None,
        ),
    ],
)
async def test_bad_parameters_are_a_400_naming_them(client, tenant, params, name, message) -> None:
    r = await client.get(URL, params=params, headers=tenant.headers())
    assert r.status_code == 400
    body = error(r)
    assert body["name"] == name
    assert next(iter(params)) in body["message"]
    if message is not None:
        assert body == bad_request(message, name)


async def test_per_page_is_ignored(client, tenant, pool) -> None:
    stored = await store(pool, tenant.project_id, 5)
    r = await client.get(URL, params={"per_page": "1000", "sort": "asc"}, headers=tenant.headers())
    assert [e["id"] for e in lines(r)] == stored


async def test_the_limit_maximum_is_a_setting(database_url, tenant) -> None:
    async with app_client(database_url, export_max_lines=5) as c:
        r = await c.get(URL, params={"limit": "6"}, headers=tenant.headers())
        assert error(r) == bad_request(
            "limit must be lesser or equal than 5 but got value 6", "invalid_range"
        )
        r = await c.get(URL, headers=tenant.headers())
        assert r.headers[export.LIMIT_HEADER] == "5"


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({"Gram-Project": "proj"}, "missing Gram-Key header"),
        ({"Gram-Key": "glk_" + "A" * 43, "Gram-Project": "proj"}, None),
    ],
)
async def test_without_a_valid_key_it_is_a_401_before_any_line(client, headers, message) -> None:
    r = await client.get(URL, headers=headers)
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/json"
    body = error(r)
    assert body["name"] == "unauthorized"
    if message is not None:
        assert body["message"] == message


async def test_another_projects_key_sees_nothing_of_this_one(client, make_tenant, pool) -> None:
    mine, theirs = await make_tenant("proj"), await make_tenant("proj")
    await store(pool, mine.project_id, 10, seed=1)
    their_ids = await store(pool, theirs.project_id, 3, seed=2)
    # Same slug, other organization: the key reads its own project only.
    r = await client.get(URL, params={"sort": "asc"}, headers=theirs.headers())
    assert [e["id"] for e in lines(r)] == their_ids
    assert {e["project_id"] for e in lines(r)} == {str(theirs.project_id)}
    # A slug the key's organization does not have.
    other = await make_tenant("other")
    r = await client.get(URL, headers={"Gram-Key": other.consumer_key, "Gram-Project": "proj"})
    assert r.status_code == 403
    assert error(r) == {
        "name": "forbidden",
        "message": "this key may not access project 'proj'",
        "temporary": False,
        "timeout": False,
        "fault": False,
    }


async def test_a_large_export_pages_across_many_statements(client, tenant, pool) -> None:
    stored = await store(pool, tenant.project_id, 25_000)
    r = await client.get(URL, params={"limit": "20000"}, headers=tenant.headers())
    got = [e["id"] for e in lines(r)]
    assert len(got) == 20_000 > 10 * export.PAGE_ROWS
    assert got == stored[::-1][:20_000]


# -- a stream that has begun: called as ASGI, to see each message -------------------------------


async def _run(app, tenant, query: bytes, receive=None) -> list[dict]:
    sent: list[dict] = []
    done = asyncio.Event()

    async def send(message: dict) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            done.set()

    async def wait_forever() -> dict:
        await done.wait()
        return {"type": "http.disconnect"}

    scope = get_scope(URL, query, tenant)
    await app(scope, receive or wait_forever, send)
    return sent


def _body_lines(sent: list[dict]) -> list[str]:
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return [json.loads(line)["id"] for line in body.splitlines()]


async def test_a_database_error_mid_stream_cuts_it_without_ending_the_body(
    app, tenant, pool, monkeypatch
) -> None:
    stored = await store(pool, tenant.project_id, 12)
    monkeypatch.setattr(export, "PAGE_ROWS", 5)
    real = export.fetch_page  # type: ignore[attr-defined]  # the name export.py looks up
    calls = 0

    async def failing(conn, req):
        nonlocal calls
        calls += 1
        if calls == 2:
            raise Unavailable("the database is unavailable; retry shortly")
        return await real(conn, req)

    monkeypatch.setattr(export, "fetch_page", failing)
    sent = await _run(app, tenant, b"sort=asc")
    assert sent[0]["status"] == 200
    assert _body_lines(sent) == stored[:5]
    # No final message: the server closes the connection with the chunked body unfinished.
    assert all(m.get("more_body") for m in sent[1:])


async def test_a_client_that_hangs_up_stops_the_reading(app, tenant, pool, monkeypatch) -> None:
    await store(pool, tenant.project_id, 50)
    monkeypatch.setattr(export, "PAGE_ROWS", 5)
    real = export.fetch_page  # type: ignore[attr-defined]  # the name export.py looks up
    calls = 0
    first_body = asyncio.Event()

    async def counting(conn, req):
        nonlocal calls
        calls += 1
        if calls > 1:
            await first_body.wait()
        return await real(conn, req)

    async def hang_up() -> dict:
        await first_body.wait()
        return {"type": "http.disconnect"}

    monkeypatch.setattr(export, "fetch_page", counting)

    async def app_noting_the_first_body(scope, receive, send):
        async def noting(message):
            await send(message)
            if message["type"] == "http.response.body":
                first_body.set()

        await app(scope, receive, noting)

    sent = await _run(app_noting_the_first_body, tenant, b"", receive=hang_up)
    assert calls <= 2  # the page in flight when the client left, and no more
    assert len(_body_lines(sent)) == 5


async def test_a_revoked_key_cuts_its_running_export(database_url, tenant, pool, monkeypatch):
    stored = await store(pool, tenant.project_id, 50)
    monkeypatch.setattr(export, "PAGE_ROWS", 5)
    check_every = 0.01
    app = create_app(
        Config(
            database_url=database_url,
            pool_min=1,
            pool_max=2,
            stream_key_check_s=check_every,
            seal_interval_s=0,
        )
    )

    async def app_revoking_after_the_first_body(scope, receive, send):
        revoked = False

        async def revoking(message):
            nonlocal revoked
            await send(message)
            if message["type"] == "http.response.body" and not revoked:
                revoked = True
                # Through another connection, as another process would; then the check is due.
                async with pool.acquire() as conn:
                    key_id = await conn.fetchval(
                        "SELECT id FROM api_keys WHERE key_hash = $1", hash_key(tenant.consumer_key)
                    )
                    assert await tenants.revoke_key(conn, key_id)
                await asyncio.sleep(2 * check_every)

        await app(scope, receive, revoking)

    async with app.router.lifespan_context(app):
        sent = await _run(app_revoking_after_the_first_body, tenant, b"sort=asc")
    assert sent[0]["status"] == 200
    assert _body_lines(sent) == stored[:5]
    # Cut: no final message, so the client sees an incomplete download.
    assert all(m.get("more_body") for m in sent[1:])
