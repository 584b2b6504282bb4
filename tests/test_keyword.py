"""Keyword search: a case-insensitive, literal substring of message or raw_log, in both dialects."""

from __future__ import annotations

import contextlib
import random
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gramlogs.core import ids
from gramlogs.storage import blocks, trigrams
from gramlogs.storage import pages as pages_module
from gramlogs.storage.pages import COLUMNS, LogFilter, PageRequest, fetch_page, like_pattern

URL = "/rpc/logs.listToolExecutionLogs"


@contextlib.contextmanager
def probe_reads(rows: int | None):
    """Make keyword pages read only ``rows`` rows in order before the block summaries (None: as
    shipped), so that small test sets exercise both branches of the page query."""
    if rows is None:
        yield
        return
    saved = pages_module.KEYWORD_PROBE_ROWS, pages_module.KEYWORD_PROBE_PER_ROW
    pages_module.KEYWORD_PROBE_ROWS, pages_module.KEYWORD_PROBE_PER_ROW = rows, 0
    try:
        yield
    finally:
        pages_module.KEYWORD_PROBE_ROWS, pages_module.KEYWORD_PROBE_PER_ROW = saved


@pytest.fixture(params=[None, 1, 3], ids=["probe-as-shipped", "probe-1", "probe-3"])
def probe(request):
    with probe_reads(request.param):
        yield request.param


T0 = datetime(2025, 4, 1, tzinfo=UTC)
FUNCTION = uuid.UUID(int=7)
FUNCTIONS = (FUNCTION, uuid.UUID(int=9), uuid.UUID(int=10))


@pytest.mark.parametrize(
    ("keyword", "pattern"),
    [
        ("plain", "%plain%"),
        ("50%", "%50\\%%"),
        ("a_b", "%a\\_b%"),
        ("C:\\temp", "%C:\\\\temp%"),
        ("\\%_", "%\\\\\\%\\_%"),
    ],
)
def test_like_pattern_escapes_every_wildcard(keyword, pattern):
    assert like_pattern(keyword) == pattern


@dataclass(frozen=True)
class Row:
    message: str | None
    raw_log: str
    level: str = "info"
    function_id: uuid.UUID = FUNCTION


async def store(pool, project_id: uuid.UUID, rows: list[Row]) -> list[uuid.UUID]:
    """COPY rows a microsecond apart; return their ids, oldest first.

    The rows' block summaries are written as three interleaved batches (every third row) of
    blocks of five rows would be: many blocks with overlapping id ranges, so that keyword pages
    walk blocks in several rounds even on a few rows.
    """
    records = []
    for i, row in enumerate(rows):
        ts = T0 + timedelta(microseconds=i)
        records.append(
            (
                ids.new_id(ts),
                ts,
                "inst",
                row.level,
                "function",
                row.raw_log,
                row.message,
                "{}",
                project_id,
                uuid.UUID(int=1),
                row.function_id,
                None,
            )
        )
    async with pool.acquire() as conn:
        await conn.copy_records_to_table("logs", records=records, columns=list(COLUMNS))
        with small_blocks(5):
            for start in range(3):
                await blocks.write_blocks(conn, records[start::3])
    return [r[0] for r in records]


@contextlib.contextmanager
def small_blocks(rows: int):
    saved = trigrams.BLOCK_ROWS
    trigrams.BLOCK_ROWS = rows
    try:
        yield
    finally:
        trigrams.BLOCK_ROWS = saved


ROWS = [
    Row("100% done", "raw a"),
    Row("100 percent done", "raw b"),
    Row("a_b", "raw c"),
    Row("axb", "raw d"),
    Row(None, "C:\\temp\\file"),
    Row("C:tempfile", "raw e"),
    Row("MiXeD CaSe", "raw f"),
    Row("parsed only", '{"msg": "json \\u00e9scaped"}'),
    Row(None, "raw only, no message"),
    Row("", "empty message, RAW line", level="error"),
]


@pytest.fixture(scope="module")
async def tenant(make_tenant, pool):
    tenant = await make_tenant()
    await store(pool, tenant.project_id, ROWS)
    return tenant


async def messages(client, tenant, **params: str) -> list[str]:
    r = await client.get(URL, params=params, headers=tenant.headers())
    assert r.status_code == 200, r.text
    return [log.get("message", log["raw_log"]) for log in r.json()["logs"]]


@pytest.mark.parametrize(
    ("keyword", "expected"),
    [
        ("%", ["100% done"]),
        ("0%", ["100% done"]),
        ("_", ["a_b"]),
        ("a_b", ["a_b"]),
        ("\\", ["parsed only", "C:\\temp\\file"]),
        ("c:\\TEMP", ["C:\\temp\\file"]),
        ("mixed case", ["MiXeD CaSe"]),
        ("MIXED", ["MiXeD CaSe"]),
        # The raw line counts when the message is null, empty, or does not hold the word.
        ("raw only", ["raw only, no message"]),
        ("raw line", [""]),
        ("\\u00e9", ["parsed only"]),
        # ... and the message counts when the raw line does not hold the word.
        ("parsed", ["parsed only"]),
        ("nowhere", []),
        (" done", ["100 percent done", "100% done"]),
    ],
)
async def test_gram_keyword_is_a_literal_case_insensitive_substring(
    client, tenant, probe, keyword, expected
):
    assert await messages(client, tenant, keyword=keyword) == expected


async def test_gram_keyword_combines_with_the_other_filters(client, tenant, probe):
    assert await messages(client, tenant, keyword="message", level="error") == [""]
    assert await messages(client, tenant, keyword="message", level="info") == [
        "raw only, no message"
    ]
    assert await messages(client, tenant, keyword="done", function_id=str(uuid.UUID(int=8))) == []
    end = (T0 + timedelta(microseconds=0)).isoformat()
    assert await messages(client, tenant, keyword="done", ts_end=end) == ["100% done"]
    assert await messages(client, tenant, keyword="done", sort="asc", per_page="1") == ["100% done"]


async def test_gram_empty_keyword_is_ignored(client, tenant):
    assert len(await messages(client, tenant, keyword="")) == len(ROWS)


@pytest.mark.parametrize(
    ("value", "name", "message"),
    [
        ("x" * 1025, "invalid_length",
         "length of keyword must be lesser or equal than 1024 but got 1025"),
        (
            "a\x00",
            "invalid_format",
            "keyword must be formatted as UTF-8 text without NUL characters"
            ' but got value "a\ufffd"',
        ),
    ],
)  # fmt: skip
async def test_gram_malformed_keyword_is_400(client, tenant, value, name, message):
    r = await client.get(URL, params={"keyword": value}, headers=tenant.headers())
    assert r.status_code == 400
    body = r.json()
    del body["id"]
    assert body == {
        "name": name,
        "message": message,
        "temporary": False,
        "timeout": False,
        "fault": False,
    }


async def test_longest_keyword_is_accepted(client, tenant):
    assert await messages(client, tenant, keyword="x" * 1024) == []


async def test_keyword_page_leaves_the_connection_as_it_found_it(pool, tenant):
    req = PageRequest(LogFilter(project_id=tenant.project_id, keyword="done"), per_page=5)
    async with pool.acquire() as conn:
        page = await fetch_page(conn, req)
        assert len(page.rows) == 2
        assert await conn.fetchval("SHOW plan_cache_mode") == "auto"
        assert not conn.is_in_transaction()


# -- paging through the matches -----------------------------------------------------------------

VOCAB = ("error", "Timeout", "50%", "x_y", "back\\slash", "ok")


@pytest.fixture(scope="module")
async def paged(make_tenant, pool):
    rng = random.Random(11)
    tenant = await make_tenant()
    rows = [
        Row(
            rng.choice([None, " ".join(rng.sample(VOCAB, 2))]),
            f"line {i} {rng.choice(VOCAB)}",
            level=rng.choice(("info", "warn")),
            function_id=rng.choice(FUNCTIONS),
        )
        for i in range(150)
    ]
    row_ids = await store(pool, tenant.project_id, rows)
    return tenant, list(zip(row_ids, rows, strict=True))


def matches(row: Row, keyword: str) -> bool:
    k = keyword.lower()
    return k in (row.message or "").lower() or k in row.raw_log.lower()


@settings(max_examples=50, deadline=None, derandomize=True)
@given(
    keyword=st.sampled_from((*VOCAB, "ERROR", "_", "%", "\\", "line 1")),
    level=st.none() | st.sampled_from(("info", "warn")),
    function=st.none() | st.sampled_from(FUNCTIONS),
    per_page=st.integers(1, 40),
    sort=st.sampled_from(("asc", "desc")),
    direction=st.sampled_from(("next", "prev")),
    probe=st.sampled_from((None, 1, 2, 7, 60)),
)
async def test_walking_keyword_pages_visits_every_match_once_in_order(
    client, paged, keyword, level, function, per_page, sort, direction, probe
):
    tenant, stored = paged
    expected = [
        str(row_id)
        for row_id, row in stored
        if matches(row, keyword)
        and (level is None or row.level == level)
        and (function is None or row.function_id == function)
    ]
    if sort == "desc":
        expected.reverse()
    params = {"keyword": keyword, "per_page": str(per_page), "sort": sort, "direction": direction}
    if level is not None:
        params["level"] = level
    if function is not None:
        params["function_id"] = str(function)
    pages: list[list[str]] = []
    while True:
        with probe_reads(probe):
            r = await client.get(URL, params=params, headers=tenant.headers())
        assert r.status_code == 200
        body = r.json()
        pages.append([log["id"] for log in body["logs"]])
        if not body["pagination"]["has_next_page"]:
            break
        params["cursor"] = body["pagination"]["next_page_cursor"]
        assert len(pages) <= len(stored)
    if direction == "prev":
        pages.reverse()
    assert [i for page in pages for i in page] == expected


async def test_keyword_with_the_separator_is_matched_column_by_column(client, make_tenant, pool):
    tenant = await make_tenant()
    await store(pool, tenant.project_id, [Row("ab", "cd"), Row("x\x01y", "raw")])
    # "b\x01c" spans message and raw line of the first row: no match; the second holds it.
    assert await messages(client, tenant, keyword="b\x01c") == []
    assert await messages(client, tenant, keyword="X\x01Y") == ["x\x01y"]
    assert await messages(client, tenant, keyword="bc") == []


@pytest.mark.single_node(
    "reads the plan where the rows are; on Citus the coordinator's plan is a router scan to one"
    " shard (test_citus), and the worker plans the shard's statement as a single node does"
)
async def test_candidate_blocks_are_found_through_the_gin_index(pool):
    """A rare word's blocks can come from log_blocks_grams, not from reading every block."""
    codes = trigrams.keyword_codes("quokka")
    async with pool.acquire() as conn, conn.transaction():
        # Without sequential and plain index scans, the condition alone can be answered only by
        # a bitmap scan of an index that covers it: the plan names one if, and only if, it can.
        await conn.execute("SET LOCAL enable_seqscan = off; SET LOCAL enable_indexscan = off")
        plan = await conn.fetchval(
            "EXPLAIN (FORMAT JSON) SELECT lo, hi FROM log_blocks WHERE grams @> $1::int4[]", codes
        )
    assert set(re.findall(r'"Index Name": "([^"]+)"', plan)) == {"log_blocks_grams"}


async def test_a_keyword_page_reads_only_the_blocks_that_may_hold_the_word(pool, make_tenant):
    """600 lines, the word in two of them: the page reads their blocks, not the other lines."""
    tenant = await make_tenant()
    rows = [Row(None, f"line {i} {'quokka' if i in (17, 444) else 'wombat'}") for i in range(600)]
    stored = await store(pool, tenant.project_id, rows)
    req = PageRequest(LogFilter(project_id=tenant.project_id, keyword="QUOKKA"), per_page=5)
    with probe_reads(10):
        async with pool.acquire() as conn:
            await conn.execute("SELECT pg_stat_reset()")
            page = await fetch_page(conn, req)
    assert [r["id"] for r in page.rows] == [stored[444], stored[17]]
    assert not page.has_more and not page.has_back
    ranges = await _candidate_ranges(pool, tenant.project_id, "quokka")
    # Three interleaved batches of five-row blocks: each word's block spans ~15 lines.
    assert 1 <= len(ranges) <= 4
    assert sum(_lines_in(stored, lo, hi) for _, lo, hi in ranges) <= 60


async def _candidate_ranges(pool, project_id, word):
    async with pool.acquire() as conn:
        lo, hi = uuid.UUID(int=0), uuid.UUID(int=(1 << 128) - 1)
        return await blocks.candidates(conn, project_id, lo, hi, trigrams.keyword_codes(word))


def _lines_in(stored: list[uuid.UUID], lo: int, hi: int) -> int:
    return sum(1 for i in stored if lo <= i.int <= hi)
