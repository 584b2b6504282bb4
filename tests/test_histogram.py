"""GET /rpc/logs.histogram: exact counts per bucket, the bucket width and its alignment, every
bucket present, errors naming their parameter, and no project's counts seen by another's key.

The counts are checked against listToolExecutionLogs itself: the buckets add up to the rows a
walk over the same window and filters visits, and each bucket holds the rows that the list
gives for the bucket's own bounds.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gramlogs.core import ids
from gramlogs.storage import writer
from gramlogs.web import histogram
from tests._support import app_client, bad_request, connection, error

URL = "/rpc/logs.histogram"
LIST = "/rpc/logs.listToolExecutionLogs"
# 10:00 on a fixed day: the data straddles bucket edges of every width up to an hour.
BASE = datetime(2025, 6, 1, 10, tzinfo=UTC)
FUNCTIONS = [uuid.UUID(int=i + 1) for i in range(2)]
DEPLOYMENT = uuid.UUID(int=100)
INSTANCES = ["snowy-water-1", "quiet-river-2"]
LEVELS = ["debug", "info", "warn", "error"]
SOURCES = ["server", "function", "stdout", "stderr"]
WORDS = ["Timeout calling upstream", "tool call finished", "cache HIT", "50% done"]
KEYWORDS = ["timeout", "TOOL", "call", "%", "hit", "absent"]


def iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Row:
    id: uuid.UUID
    ts: datetime
    owner: int  # 0: the caller's project; 1: another tenant's
    function_id: uuid.UUID
    instance: str
    level: str
    source: str
    text: str


# Offsets from BASE in µs: on and beside the edges of 1 s to 1 h buckets, and anywhere.
_EDGES = [k * 1_000_000 * s for s in (1, 10, 60, 300, 3600) for k in (1, 2, 3)]
offsets = st.one_of(
    st.sampled_from(_EDGES).flatmap(lambda e: st.sampled_from([e - 1, e, e + 1])),
    st.integers(0, 2 * 3600 * 1_000_000),
)
timestamps = st.builds(lambda us: BASE + timedelta(microseconds=us), offsets)

rows_strategy = st.lists(
    st.builds(
        lambda ts, owner, f, i, lv, s, w, r: Row(
            ids.new_id(ts, r), ts, owner, FUNCTIONS[f], INSTANCES[i], lv, s, WORDS[w]
        ),
        timestamps,
        st.sampled_from([0, 0, 0, 1]),
        st.integers(0, len(FUNCTIONS) - 1),
        st.integers(0, len(INSTANCES) - 1),
        st.sampled_from(LEVELS),
        st.sampled_from(SOURCES),
        st.integers(0, len(WORDS) - 1),
        st.integers(0, (1 << 62) - 1),
    ),
    max_size=40,
    unique_by=lambda r: r.id,
)


@st.composite
def filters(draw: st.DrawFn) -> dict[str, str]:
    chosen: dict[str, str] = {}
    if draw(st.integers(0, 2)) == 0:
        chosen["function_id"] = str(draw(st.sampled_from(FUNCTIONS)))
    if draw(st.integers(0, 3)) == 0:
        chosen["instance"] = draw(st.sampled_from(INSTANCES))
    if draw(st.integers(0, 2)) == 0:
        chosen["level"] = draw(st.sampled_from(LEVELS))
    if draw(st.integers(0, 3)) == 0:
        chosen["source"] = draw(st.sampled_from(SOURCES))
    if draw(st.integers(0, 2)) == 0:
        chosen["keyword"] = draw(st.sampled_from(KEYWORDS))
    start, end = sorted([draw(timestamps), draw(timestamps)])
    chosen["ts_start"], chosen["ts_end"] = iso(start), iso(end)
    return chosen


def matches(row: Row, f: dict[str, str]) -> bool:
    if not ids.parse_rfc3339(f["ts_start"]) <= row.ts <= ids.parse_rfc3339(f["ts_end"]):
        return False
    for name in ("function_id", "instance", "level", "source"):
        if name in f and str(getattr(row, name)) != f[name]:
            return False
    return "keyword" not in f or f["keyword"].lower() in row.text.lower()


async def store(pool: asyncpg.Pool, tenants: list, rows: list[Row]) -> None:
    records = [
        (
            r.id,
            r.ts,
            r.instance,
            r.level,
            r.source,
            r.text,
            None,
            "{}",
            tenants[r.owner].project_id,
            DEPLOYMENT,
            r.function_id,
            None,
        )
        for r in rows
    ]
    async with connection(pool) as conn:
        await writer.copy_lines(conn, records)


async def get_histogram(client: httpx.AsyncClient, tenant, params: dict[str, str]) -> dict:
    r = await client.get(URL, params=params, headers=tenant.headers())
    assert r.status_code == 200, r.text
    return r.json()


async def listed(client: httpx.AsyncClient, tenant, params: dict[str, str]) -> list[str]:
    """Every id listToolExecutionLogs pages through for ``params``."""
    found: list[str] = []
    query = {**params, "per_page": "100", "sort": "asc"}
    while True:
        r = await client.get(LIST, params=query, headers=tenant.headers())
        assert r.status_code == 200, r.text
        body = r.json()
        found += [log["id"] for log in body["logs"]]
        if not body["pagination"]["has_next_page"]:
            return found
        query["cursor"] = body["pagination"]["next_page_cursor"]


@settings(max_examples=60)
@given(rows=rows_strategy, f=filters(), most=st.integers(1, 8))
async def test_counts_are_the_rows_the_list_gives_for_the_window_and_for_each_bucket(
    client, make_tenant, pool, rows, f, most
) -> None:
    tenants = [await make_tenant(), await make_tenant()]
    await store(pool, tenants, rows)
    body = await get_histogram(client, tenants[0], {**f, "buckets": str(most)})

    width = timedelta(seconds=body["bucket_seconds"])
    starts = [ids.parse_rfc3339(b["start"]) for b in body["buckets"]]
    counts = [b["count"] for b in body["buckets"]]
    ts_start, ts_end = ids.parse_rfc3339(f["ts_start"]), ids.parse_rfc3339(f["ts_end"])
    # Contiguous, aligned buckets that cover the window, no more than asked for.
    assert 1 <= len(starts) <= most
    assert starts == [starts[0] + i * width for i in range(len(starts))]
    assert (starts[0] - ids.EPOCH) % width == timedelta(0)
    assert starts[0] <= ts_start < starts[0] + width
    assert starts[-1] <= ts_end < starts[-1] + width

    whole = await listed(client, tenants[0], f)
    assert body["total"] == sum(counts) == len(whole)
    assert sum(counts) == sum(1 for r in rows if r.owner == 0 and matches(r, f))
    for start, count in zip(starts, counts, strict=True):
        lo = max(start, ts_start)
        hi = min(start + width - timedelta(microseconds=1), ts_end)
        bounds = {"ts_start": iso(lo), "ts_end": iso(hi)}
        assert count == len(await listed(client, tenants[0], {**f, **bounds})), start


@pytest.mark.parametrize(
    ("start", "end", "most", "width", "first", "buckets"),
    [
        # A day at the default 60: 30-minute buckets, the first one reaching before ts_start.
        ("2025-06-01T10:07:00Z", "2025-06-02T10:07:00Z", 60, 1800, "2025-06-01T10:00:00Z", 49),
        # An hour ending on an edge: the end's own microsecond needs a 61st minute, so 2 min.
        ("2025-06-01T10:00:00Z", "2025-06-01T11:00:00Z", 60, 120, "2025-06-01T10:00:00Z", 31),
        ("2025-06-01T10:00:00Z", "2025-06-01T10:59:59.999999Z", 60, 60, "2025-06-01T10:00:00Z", 60),
        # One instant: one bucket of the narrowest width.
        ("2025-06-01T10:00:00.5Z", "2025-06-01T10:00:00.5Z", 1, 1, "2025-06-01T10:00:00Z", 1),
        ("2025-06-01T10:00:00Z", "2025-06-01T10:00:09Z", 1000, 1, "2025-06-01T10:00:00Z", 10),
        # Wider than a day: 7-day buckets are whole weeks since the epoch (a Thursday).
        ("2025-01-01T00:00:00Z", "2025-12-31T00:00:00Z", 60, 604800, "2024-12-26T00:00:00Z", 53),
    ],
)
def test_the_narrowest_nice_width_within_the_buckets_asked_for(
    start, end, most, width, first, buckets
):
    query = histogram.parse_histogram_query(
        {"ts_start": start, "ts_end": end, "buckets": str(most)}
    )
    assert (query.width_s, query.buckets) == (width, buckets)
    assert query.starts()[0] == ids.parse_rfc3339(first)


def test_every_width_is_a_whole_number_of_seconds_and_wider_than_the_last():
    assert list(histogram.WIDTHS) == sorted(set(histogram.WIDTHS))
    assert histogram.WIDTHS[0] == 1


async def test_the_whole_body_with_empty_buckets_and_z_timestamps(client, make_tenant, pool):
    tenant = await make_tenant()
    at = BASE + timedelta(minutes=2, microseconds=5)
    rows = [
        Row(ids.new_id(at, n), at, 0, FUNCTIONS[0], INSTANCES[0], "info", "function", "x")
        for n in range(3)
    ]
    await store(pool, [tenant], rows)
    params = {"ts_start": iso(BASE), "ts_end": iso(BASE + timedelta(minutes=4, seconds=59))}
    body = await get_histogram(client, tenant, {**params, "buckets": "5"})
    assert body == {
        "bucket_seconds": 60,
        "buckets": [
            {"start": "2025-06-01T10:00:00Z", "count": 0},
            {"start": "2025-06-01T10:01:00Z", "count": 0},
            {"start": "2025-06-01T10:02:00Z", "count": 3},
            {"start": "2025-06-01T10:03:00Z", "count": 0},
            {"start": "2025-06-01T10:04:00Z", "count": 0},
        ],
        "total": 3,
    }
    # Default buckets: 60, so 5-second buckets here.
    body = await get_histogram(client, tenant, params)
    assert body["bucket_seconds"] == 5
    assert len(body["buckets"]) == 60
    assert [b["count"] for b in body["buckets"] if b["count"]] == [3]


async def test_a_key_never_sees_another_projects_counts(client, make_tenant, pool):
    mine, theirs = await make_tenant(), await make_tenant()
    assert mine.slug == theirs.slug  # same slug, other organizations
    rows = [
        Row(ids.new_id(BASE, n), BASE, n % 2, FUNCTIONS[0], INSTANCES[0], "info", "function", "x")
        for n in range(5)
    ]
    await store(pool, [mine, theirs], rows)
    params = {"ts_start": iso(BASE), "ts_end": iso(BASE), "buckets": "1"}
    assert (await get_histogram(client, mine, params))["total"] == 3
    assert (await get_histogram(client, theirs, params))["total"] == 2
    # Their key with my project's slug is their own project: never mine.
    headers = {"Gram-Key": theirs.consumer_key, "Gram-Project": mine.slug}
    r = await client.get(URL, params=params, headers=headers)
    assert r.json()["total"] == 2


WINDOW = {"ts_start": "2025-06-01T10:00:00Z", "ts_end": "2025-06-01T11:00:00Z"}


@pytest.mark.parametrize(
    ("params", "name", "message"),
    [
        (
            {"ts_end": WINDOW["ts_end"]},
            "bad_request",
            "ts_start is required (an RFC 3339 date-time): a histogram needs a window",
        ),
        (
            {"ts_start": WINDOW["ts_start"], "ts_end": ""},
            "bad_request",
            "ts_end is required (an RFC 3339 date-time): a histogram needs a window",
        ),
        (
            {**WINDOW, "ts_start": "yesterday"},
            "invalid_format",
            'ts_start must be formatted as an RFC 3339 date-time but got value "yesterday"',
        ),
        (
            {**WINDOW, "ts_start": "1969-12-31T23:59:59Z"},
            "invalid_range",
            "ts_start must be between 1970-01-01T00:00:00Z and 2100-01-01T00:00:00Z but got "
            "value 1969-12-31T23:59:59Z",
        ),
        (
            {**WINDOW, "ts_end": "9999-12-31T23:59:59Z"},
            "invalid_range",
            "ts_end must be between 1970-01-01T00:00:00Z and 2100-01-01T00:00:00Z but got "
            "value 9999-12-31T23:59:59Z",
        ),
        (
            {"ts_start": WINDOW["ts_end"], "ts_end": WINDOW["ts_start"]},
            "bad_request",
            "ts_start (2025-06-01T11:00:00Z) must not be after ts_end (2025-06-01T10:00:00Z)",
        ),
        (
            {**WINDOW, "buckets": "0"},
            "invalid_range",
            "buckets must be greater or equal than 1 but got value 0",
        ),
        (
            {**WINDOW, "buckets": "1001"},
            "invalid_range",
            "buckets must be lesser or equal than 1000 but got value 1001",
        ),
        (
            {**WINDOW, "buckets": "ten"},
            "invalid_field_type",
            'invalid value "ten" for buckets, must be a integer',
        ),
        (
            {"ts_start": "1970-01-01T00:00:00Z", "ts_end": "2100-01-01T00:00:00Z"},
            "bad_request",
            "the window from ts_start to ts_end needs more than 60 buckets (buckets) even 7 "
            "days wide: ask for a shorter window or more buckets (at most 1000)",
        ),
        (
            {**WINDOW, "level": "fatal"},
            "invalid_enum_value",
            'value of level must be one of "debug", "info", "warn", "error" but got value "fatal"',
        ),
        (
            {**WINDOW, "source": "stdin"},
            "invalid_enum_value",
            'value of source must be one of "server", "function", "stdout", "stderr" but got '
            'value "stdin"',
        ),
        (
            {**WINDOW, "function_id": "f1"},
            "invalid_format",
            'function_id must be formatted as a uuid but got value "f1"',
        ),
        (
            {**WINDOW, "deployment_id": "d1"},
            "invalid_format",
            'deployment_id must be formatted as a uuid but got value "d1"',
        ),
        (
            {**WINDOW, "keyword": "k" * 1025},
            "invalid_length",
            "length of keyword must be lesser or equal than 1024 but got 1025",
        ),
    ],
)
async def test_each_malformed_parameter_is_a_400_naming_it(client, tenant, params, name, message):
    r = await client.get(URL, params=params, headers=tenant.headers())
    assert r.status_code == 400, r.text
    assert error(r) == bad_request(message, name)


async def test_without_a_key_or_project_it_is_a_401(client, tenant):
    r = await client.get(URL, params=WINDOW)
    assert r.status_code == 401
    assert error(r)["message"] == "missing Gram-Key header"
    r = await client.get(URL, params=WINDOW, headers={"Gram-Key": tenant.consumer_key})
    assert r.status_code == 401
    assert error(r)["message"] == "missing Gram-Project header"
    headers = {"Gram-Key": "glk_" + "A" * 43, "Gram-Project": tenant.slug}
    assert (await client.get(URL, params=WINDOW, headers=headers)).status_code == 401


async def test_a_histogram_past_the_statement_timeout_is_a_503_timeout(
    database_url, make_tenant, pool
):
    tenant = await make_tenant()
    rows = [
        Row(
            ids.new_id(BASE + timedelta(milliseconds=n), n),
            BASE + timedelta(milliseconds=n),
            0,
            FUNCTIONS[0],
            INSTANCES[0],
            "info",
            "function",
            f"line {n} of a long window",
        )
        for n in range(100_000)
    ]
    await store(pool, [tenant], rows)
    params = {"ts_start": iso(BASE), "ts_end": iso(BASE + timedelta(minutes=2)), "keyword": "zz"}
    async with app_client(database_url, statement_timeout_ms=20) as c:
        r = await c.get(URL, params=params, headers=tenant.headers())
    assert r.status_code == 503, r.text
    body = error(r)
    assert (body["name"], body["timeout"], body["temporary"]) == ("unavailable", True, True)


def test_the_operation_is_a_documented_extension_with_a_required_window():
    from gramlogs.web import openapi

    operation = openapi.DOCUMENT["paths"][URL]["get"]
    assert operation["x-gramlogs-extension"] is True
    assert operation["security"] == openapi.DOCUMENT["paths"][LIST]["get"]["security"]
    parameters = {p["name"]: p for p in operation["parameters"] if p["in"] == "query"}
    assert [n for n, p in parameters.items() if p.get("required")] == ["ts_start", "ts_end"]
    assert set(parameters) == {
        "ts_start", "ts_end", "deployment_id", "function_id", "instance", "level", "source",
        "keyword", "buckets",
    }  # fmt: skip
    assert parameters["buckets"]["schema"]["maximum"] == histogram.MAX_BUCKETS
    ok = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/HistogramResult"}
