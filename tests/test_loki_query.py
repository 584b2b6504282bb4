"""GET /loki/api/v1/query_range and /query: the shapes Grafana parses (streams, matrix, vector,
categorize-labels), the lines a selector and line filters give (against the Gram list API and a
Python filter over every line), metric counts (against a Python count; the counted fast path
against the line-reading path), and the errors, as plain text.

Each query's text is marked with ``logql`` (Grafana's grammar checks it) and written beside
the syntax tree the test reasons about (:func:`q` checks that the parser agrees).
"""

from __future__ import annotations

import itertools
import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gramlogs.core import ids
from gramlogs.core.keys import KeyScope
from gramlogs.storage import tenants, writer
from gramlogs.web.loki import lines, series
from gramlogs.web.loki.logql import (
    BinaryOp,
    Drop,
    LineFilter,
    LogQuery,
    Matcher,
    Parser,
    Query,
    RangeAggregation,
    VectorAggregation,
    VectorLiteral,
    parse,
)
from gramlogs.web.loki.series import fast_path
from testkit.logql import logql
from tests._support import connection, loki_labels

RANGE = "/loki/api/v1/query_range"
INSTANT = "/loki/api/v1/query"
LIST = "/rpc/logs.listToolExecutionLogs"
BASE = datetime(2025, 6, 1, 10, tzinfo=UTC)
BASE_NS = int(BASE.timestamp()) * 10**9
MINUTE_NS = 60 * 10**9
FUNCTIONS = [uuid.UUID(int=i + 1) for i in range(2)]
DEPLOYMENT = uuid.UUID(int=100)
INSTANCES = ["snowy-water-1", "quiet-river-2"]
LEVELS = ["debug", "info", "warn", "error"]
SOURCES = ["server", "function", "stdout", "stderr"]
WORDS = ["Timeout calling upstream", "tool call finished", "cache HIT", "50% done"]


def q(text: str, tree: Query) -> str:
    """``text``, checked to parse to ``tree`` (the tree the test reasons about)."""
    assert parse(text) == tree, text
    return text


@dataclass(frozen=True)
class Row:
    id: uuid.UUID
    ts: datetime
    function_id: uuid.UUID
    instance: str
    level: str
    source: str
    text: str
    attributes: str = "{}"

    @property
    def ns(self) -> int:
        return ((self.ts - ids.EPOCH) // timedelta(microseconds=1)) * 1000

    def labels(self) -> dict[str, str]:
        return loki_labels(
            level=self.level,
            source=self.source,
            instance=self.instance,
            function_id=self.function_id,
            deployment_id=DEPLOYMENT,
        )


async def store(pool: asyncpg.Pool, project_id: uuid.UUID, rows: list[Row]) -> None:
    records = [
        (
            r.id,
            r.ts,
            r.instance,
            r.level,
            r.source,
            r.text,
            None,
            r.attributes,
            project_id,
            DEPLOYMENT,
            r.function_id,
            None,
        )
        for r in rows
    ]
    async with connection(pool) as conn:
        await writer.copy_lines(conn, records)


# Each made line's own id bits: no two tests' lines share an id, even in one microsecond.
_ID_BITS = itertools.count(1)


def row_at(us: int, level: str = "info", text: str = "hello", **kw: Any) -> Row:
    ts = BASE + timedelta(microseconds=us)
    return Row(
        ids.new_id(ts, next(_ID_BITS)),
        ts,
        kw.pop("function_id", FUNCTIONS[0]),
        kw.pop("instance", INSTANCES[0]),
        level,
        kw.pop("source", "stdout"),
        text,
        **kw,
    )


async def get(
    client: httpx.AsyncClient, path: str, tenant: Any, params: dict[str, str], **headers: str
) -> dict[str, Any]:
    r = await client.get(path, params=params, headers={**tenant.headers(), **headers})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


FN0 = str(FUNCTIONS[0])
SELECT_FN = q(logql('{function_id="00000000-0000-0000-0000-000000000001"}'), LogQuery(
    (Matcher("function_id", "=", FN0),)
))  # fmt: skip


# -- Shapes -----------------------------------------------------------------------------------


async def test_streams_shape_backward_with_stats(client, tenant, pool) -> None:
    rows = [row_at(1_000_000 * i, text=f"line {i}") for i in range(3)]
    await store(pool, tenant.project_id, rows)
    params = {"query": SELECT_FN, "start": str(BASE_NS), "end": str(BASE_NS + MINUTE_NS)}
    body = await get(client, RANGE, tenant, params)
    assert body["status"] == "success"
    data = body["data"]
    assert data["resultType"] == "streams"
    assert set(data["stats"]["summary"]) >= {"execTime", "totalLinesProcessed"}
    assert data["stats"]["summary"]["totalLinesProcessed"] == 3
    assert data["result"] == [
        {
            "stream": rows[0].labels(),
            "values": [[str(r.ns), r.text] for r in reversed(rows)],
        }
    ]
    assert "encodingFlags" not in data and "warnings" not in body


async def test_window_is_start_inclusive_end_exclusive_in_nanoseconds(client, tenant, pool) -> None:
    rows = [row_at(0), row_at(1), row_at(2)]
    await store(pool, tenant.project_id, rows)
    # [BASE, BASE + 2 µs): the first two; a start 1 ns after BASE leaves out the first.
    for start, end, want in [
        (BASE_NS, BASE_NS + 2000, rows[:2]),
        (BASE_NS + 1, BASE_NS + 2001, rows[1:]),
        (BASE_NS, BASE_NS + 1999, rows[:2]),
    ]:
        params = {
            "query": SELECT_FN,
            "start": str(start),
            "end": str(end),
            "direction": "forward",
        }
        body = await get(client, RANGE, tenant, params)
        values = body["data"]["result"][0]["values"]
        assert values == [[str(r.ns), r.text] for r in want]


async def test_times_as_seconds_floats_and_rfc3339(client, tenant, pool) -> None:
    row = row_at(500_000)
    await store(pool, tenant.project_id, [row])
    base_s = BASE_NS // 10**9
    for start, end in [
        (str(base_s), str(base_s + 1)),
        (f"{base_s}.0", f"{base_s}.999"),
        ("2025-06-01T10:00:00Z", "2025-06-01T10:00:00.6Z"),
    ]:
        body = await get(client, RANGE, tenant, {"query": SELECT_FN, "start": start, "end": end})
        assert body["data"]["result"][0]["values"] == [[str(row.ns), row.text]], (start, end)


JSON_APP = q(
    logql('{app="web"} | json'),
    LogQuery((Matcher("app", "=", "web"),), (Parser("json"),)),
)


async def test_categorize_labels_puts_metadata_and_parsed_labels_beside_the_line(
    client, tenant, pool
) -> None:
    attributes = json.dumps({"labels": {"app": "web"}, "trace_id": "t1"})
    row = row_at(10, text='{"status":200,"user":{"id":"u1"}}', attributes=attributes)
    await store(pool, tenant.project_id, [row])
    params = {"query": JSON_APP, "start": str(BASE_NS), "end": str(BASE_NS + MINUTE_NS)}
    body = await get(
        client, RANGE, tenant, params, **{"X-Loki-Response-Encoding-Flags": "categorize-labels"}
    )
    data = body["data"]
    assert data["encodingFlags"] == ["categorize-labels"]
    assert data["result"] == [
        {
            "stream": {**row.labels(), "app": "web"},
            "values": [
                [
                    str(row.ns),
                    row.text,
                    {
                        "structuredMetadata": {"trace_id": "t1"},
                        "parsed": {"status": "200", "user_id": "u1"},
                    },
                ]
            ],
        }
    ]
    # Without the flag every label is the stream's, as Loki answers older clients.
    plain = await get(client, RANGE, tenant, params)
    assert plain["data"]["result"] == [
        {
            "stream": {
                **row.labels(),
                "app": "web",
                "trace_id": "t1",
                "status": "200",
                "user_id": "u1",
            },
            "values": [[str(row.ns), row.text]],
        }
    ]


VECTOR_SUM = q(logql("vector(1)+vector(1)"), BinaryOp("+", VectorLiteral(1.0), VectorLiteral(1.0)))


async def test_vector_plus_vector_is_grafanas_save_and_test(client, tenant) -> None:
    body = await get(client, INSTANT, tenant, {"query": VECTOR_SUM, "time": str(BASE_NS)})
    assert body == {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [{"metric": {}, "value": [BASE_NS / 10**9, "2"]}],
            "stats": body["data"]["stats"],
        },
    }


def volume(inner: LogQuery, by: tuple[str, ...] | None, fn: str = "count_over_time") -> Query:
    return VectorAggregation("sum", RangeAggregation(fn, inner, MINUTE_NS), by=by)  # type: ignore[arg-type]


STDOUT = LogQuery((Matcher("source", "=", "stdout"),))
STDOUT_READ = LogQuery((Matcher("source", "=", "stdout"),), (LineFilter("!=", "zzz-absent"),))
VOLUME = q(
    logql(
        'sum by (level, detected_level) (count_over_time({source="stdout"} | drop __error__ [1m]))'
    ),
    volume(LogQuery(STDOUT.matchers, (Drop(("__error__",)),)), ("level", "detected_level")),
)
VOLUME_READ = q(
    logql(
        'sum by (level, detected_level) (count_over_time({source="stdout"} != "zzz-absent" [1m]))'
    ),
    volume(STDOUT_READ, ("level", "detected_level")),
)
TOTAL = q(logql('sum(count_over_time({source="stdout"}[1m]))'), volume(STDOUT, None))
TOTAL_READ = q(
    logql('sum(count_over_time({source="stdout"} != "zzz-absent" [1m]))'),
    volume(STDOUT_READ, None),
)
RATE = q(logql('sum(rate({source="stdout"}[1m]))'), volume(STDOUT, None, "rate"))
RATE_READ = q(
    logql('sum(rate({source="stdout"} != "zzz-absent" [1m]))'), volume(STDOUT_READ, None, "rate")
)


def test_the_volume_query_takes_the_counted_path_and_a_line_filter_does_not() -> None:
    assert fast_path(parse(VOLUME)) and fast_path(parse(TOTAL)) and fast_path(parse(RATE))  # type: ignore[arg-type]
    assert not fast_path(parse(VOLUME_READ)) and not fast_path(parse(TOTAL_READ))  # type: ignore[arg-type]


def expected_counts(rows: list[Row], by_level: bool, steps: list[int]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for level in LEVELS if by_level else [""]:
        out[level] = [
            sum(
                1
                for r in rows
                if r.source == "stdout"
                and (not by_level or r.level == level)
                and t - MINUTE_NS < r.ns <= t
            )
            for t in steps
        ]
    return out


def as_counts(result: list[dict[str, Any]], steps: list[int]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for s in result:
        by_time = {round(t * 1000): int(v) for t, v in s["values"]}
        out[s["metric"].get("level", "")] = [by_time.get(t // 10**6, 0) for t in steps]
    return out


def rates(body: dict[str, Any]) -> list[tuple[float, float]]:
    return [(t, float(v)) for s in body["data"]["result"] for t, v in s["values"]]


metric_rows = st.lists(
    st.builds(
        lambda us, lv, s, r: Row(
            ids.new_id(BASE + timedelta(microseconds=us), r),
            BASE + timedelta(microseconds=us),
            FUNCTIONS[0],
            INSTANCES[0],
            lv,
            s,
            "x",
        ),
        st.one_of(
            st.sampled_from([k * MINUTE_NS // 1000 + d for k in range(6) for d in (-1, 0, 1)]),
            st.integers(0, 6 * MINUTE_NS // 1000),
        ),
        st.sampled_from(LEVELS),
        st.sampled_from(["stdout", "stdout", "stderr"]),
        st.integers(0, (1 << 62) - 1),
    ),
    max_size=40,
    unique_by=lambda r: r.id,
)


@settings(max_examples=25, deadline=None)
@given(rows=metric_rows, step_s=st.sampled_from([15, 30, 60, 90]))
async def test_metric_counts_equal_a_python_count_on_both_paths(
    client, make_tenant, pool, rows, step_s
) -> None:
    tenant = await make_tenant()
    await store(pool, tenant.project_id, rows)
    start, end = BASE_NS + MINUTE_NS // 2, BASE_NS + 5 * MINUTE_NS
    steps = list(range(start, end + 1, step_s * 10**9))
    window = {"start": str(start), "end": str(end), "step": f"{step_s}s"}
    for fast, read, by_level in [(VOLUME, VOLUME_READ, True), (TOTAL, TOTAL_READ, False)]:
        counted = await get(client, RANGE, tenant, {"query": fast, **window})
        lines = await get(client, RANGE, tenant, {"query": read, **window})
        assert counted["data"]["resultType"] == "matrix"
        assert counted["data"]["result"] == lines["data"]["result"]
        want = {k: v for k, v in expected_counts(rows, by_level, steps).items() if any(v)}
        assert as_counts(counted["data"]["result"], steps) == want
        for s in counted["data"]["result"]:
            assert all(v != "0" for _, v in s["values"])  # no point where no line
            if by_level:
                assert s["metric"] == {
                    "level": s["metric"]["level"],
                    "detected_level": s["metric"]["level"],
                }
    rated = await get(client, RANGE, tenant, {"query": RATE, **window})
    rated_read = await get(client, RANGE, tenant, {"query": RATE_READ, **window})
    # Rates agree up to rounding: the read path sums each stream's rate, as Loki does.
    counted_rates, read_rates = rates(rated), rates(rated_read)
    assert [t for t, _ in counted_rates] == [t for t, _ in read_rates]
    assert [v for _, v in counted_rates] == pytest.approx([v for _, v in read_rates])


async def test_instant_metric_query_is_a_vector(client, tenant, pool) -> None:
    rows = [row_at(1_000_000 * i, level=LEVELS[i % 2]) for i in range(5)]
    await store(pool, tenant.project_id, rows)
    at = BASE_NS + 30 * 10**9
    body = await get(client, INSTANT, tenant, {"query": VOLUME, "time": str(at)})
    assert body["data"]["resultType"] == "vector"
    assert body["data"]["result"] == [
        {"metric": {"level": "debug", "detected_level": "debug"}, "value": [at / 1e9, "3"]},
        {"metric": {"level": "info", "detected_level": "info"}, "value": [at / 1e9, "2"]},
    ]


PER_LINE = q(
    logql('count_over_time({source="stdout"} | logfmt [1m])'),
    RangeAggregation("count_over_time", LogQuery(STDOUT.matchers, (Parser("logfmt"),)), MINUTE_NS),
)


async def test_a_metric_query_making_too_many_series_is_a_400(
    client, tenant, pool, monkeypatch
) -> None:
    # Every line its own series (its parsed n): series times steps is what a read query holds.
    await store(pool, tenant.project_id, [row_at(1_000_000 * i, text=f"n={i}") for i in range(4)])
    params = {"query": PER_LINE, "start": str(BASE_NS), "end": str(BASE_NS + MINUTE_NS)}
    monkeypatch.setattr(series, "MAX_SERIES", 4)
    body = await get(client, RANGE, tenant, {**params, "step": "10"})
    assert sorted(s["metric"]["n"] for s in body["data"]["result"]) == ["0", "1", "2", "3"]
    monkeypatch.setattr(series, "MAX_SERIES", 3)
    r = await client.get(RANGE, params={**params, "step": "10"}, headers=tenant.headers())
    assert r.status_code == 400
    assert r.text.startswith("maximum of series (3) reached for a single query")


BYTES = q(
    logql('bytes_over_time({source="stdout"}[1m])'),
    RangeAggregation("bytes_over_time", STDOUT, MINUTE_NS),
)
TOPK = q(
    logql('topk(1, sum by (level) (count_over_time({source="stdout"}[1m])))'),
    VectorAggregation("topk", volume(STDOUT, ("level",)), k=1),  # type: ignore[arg-type]
)
PLUS_ONE = q(logql('sum(count_over_time({source="stdout"}[1m])) + vector(1)'), BinaryOp(
    "+", volume(STDOUT, None), VectorLiteral(1.0)  # type: ignore[arg-type]
))  # fmt: skip
COUNT_MAX = q(
    logql('count(count_over_time({source="stdout"}[1m]))'),
    VectorAggregation("count", RangeAggregation("count_over_time", STDOUT, MINUTE_NS)),
)


async def test_bytes_topk_plus_and_count(client, tenant, pool) -> None:
    rows = [
        row_at(1_000_000, level="info", text="héllo"),  # 6 bytes
        row_at(2_000_000, level="error", text="ab"),
        row_at(3_000_000, level="error", text="abc", instance=INSTANCES[1]),
    ]
    await store(pool, tenant.project_id, rows)
    at = {"time": str(BASE_NS + 10 * 10**9)}
    t = (BASE_NS + 10 * 10**9) / 1e9

    body = await get(client, INSTANT, tenant, {"query": BYTES, **at})
    got = {
        (s["metric"]["level"], s["metric"]["instance"]): s["value"] for s in body["data"]["result"]
    }
    assert got == {
        ("info", INSTANCES[0]): [t, "6"],
        ("error", INSTANCES[0]): [t, "2"],
        ("error", INSTANCES[1]): [t, "3"],
    }
    body = await get(client, INSTANT, tenant, {"query": TOPK, **at})
    assert body["data"]["result"] == [{"metric": {"level": "error"}, "value": [t, "2"]}]
    body = await get(client, INSTANT, tenant, {"query": PLUS_ONE, **at})
    assert body["data"]["result"] == [{"metric": {}, "value": [t, "4"]}]
    body = await get(client, INSTANT, tenant, {"query": COUNT_MAX, **at})
    assert body["data"]["result"] == [{"metric": {}, "value": [t, "3"]}]


# -- The lines a selector and line filters give -----------------------------------------------

log_rows = st.lists(
    st.builds(
        lambda us, f, i, lv, s, w, r: Row(
            ids.new_id(BASE + timedelta(microseconds=us), r),
            BASE + timedelta(microseconds=us),
            FUNCTIONS[f],
            INSTANCES[i],
            lv,
            s,
            WORDS[w],
        ),
        st.integers(0, 3_600_000_000),
        st.integers(0, 1),
        st.integers(0, 1),
        st.sampled_from(LEVELS),
        st.sampled_from(SOURCES),
        st.integers(0, len(WORDS) - 1),
        st.integers(0, (1 << 62) - 1),
    ),
    min_size=10,
    max_size=40,
    unique_by=lambda r: r.id,
)
_VALUES = {
    "level": [*LEVELS, "fatal", "err.*", "(info|warn)"],
    "detected_level": [*LEVELS, "d.*"],
    "source": [*SOURCES, "std.*"],
    "instance": [*INSTANCES, ".*-1"],
    "function_id": [*map(str, FUNCTIONS), "not-a-uuid", "0000.*"],
    "service_name": [*map(str, FUNCTIONS), ".*1"],
}
matchers = st.lists(
    st.builds(
        lambda label, op, i: Matcher(label, op, _VALUES[label][i % len(_VALUES[label])]),
        st.sampled_from(sorted(_VALUES)),
        st.sampled_from(["=", "!=", "=~", "!~"]),
        st.integers(0, 20),
    ),
    min_size=1,
    max_size=2,
)
line_filters = st.lists(
    st.builds(
        LineFilter,
        st.sampled_from(["|=", "!=", "|~", "!~"]),
        st.sampled_from(["call", "HIT", "hit", "50%", "(?i)timeout", "o.e", ""]),
    ),
    max_size=2,
)


def text_of(query: LogQuery) -> str:
    """LogQL text of a generated query (its matchers and line filters)."""
    selector = ", ".join(f"{m.label}{m.op}{json.dumps(m.value)}" for m in query.matchers)
    stages = " ".join(
        f"{f.op} {json.dumps(f.value)}" for f in query.stages if isinstance(f, LineFilter)
    )
    return f"{{{selector}}} {stages}".strip()


def python_matches(row: Row, query: LogQuery) -> bool:
    labels = row.labels()
    for m in query.matchers:
        value = labels.get(m.label, "")
        ok = {
            "=": value == m.value,
            "!=": value != m.value,
            "=~": re.fullmatch(m.value, value) is not None,
            "!~": re.fullmatch(m.value, value) is None,
        }[m.op]
        if not ok:
            return False
    for f in query.stages:
        assert isinstance(f, LineFilter)
        ok = {
            "|=": f.value in row.text,
            "!=": f.value not in row.text,
            "|~": re.search(f.value, row.text) is not None,
            "!~": re.search(f.value, row.text) is None,
        }[f.op]
        if not ok:
            return False
    return True


async def gram_listed(
    client: httpx.AsyncClient, tenant: Any, params: dict[str, str]
) -> list[tuple[int, str]]:
    """Every (ns, line) listToolExecutionLogs pages through for ``params``, oldest first."""
    found: list[tuple[int, str]] = []
    query = {**params, "per_page": "100", "sort": "asc"}
    while True:
        r = await client.get(LIST, params=query, headers=tenant.headers())
        assert r.status_code == 200, r.text
        body = r.json()
        for log in body["logs"]:
            us = (ids.parse_rfc3339(log["timestamp"]) - ids.EPOCH) // timedelta(microseconds=1)
            found.append((us * 1000, log["raw_log"]))
        if not body["pagination"]["has_next_page"]:
            return found
        query["cursor"] = body["pagination"]["next_page_cursor"]


@settings(max_examples=60, deadline=None)
@given(
    rows=log_rows,
    ms=matchers,
    fs=line_filters,
    bounds=st.one_of(
        st.tuples(st.integers(0, 600_000_000), st.integers(3_000_000_000, 3_600_000_001)),
        st.tuples(st.integers(0, 3_600_000_000), st.integers(0, 3_600_000_000)),
    ),
    limit=st.integers(1, 12),
    forward=st.booleans(),
)
async def test_query_range_gives_the_lines_a_python_filter_and_the_list_api_give(
    client, make_tenant, pool, rows, ms, fs, bounds, limit, forward
) -> None:
    tenant = await make_tenant()
    await store(pool, tenant.project_id, rows)
    query = LogQuery(tuple(ms), tuple(fs))
    text = q(text_of(query), query)
    start_us, end_us = sorted(bounds)
    start, end = BASE_NS + start_us * 1000, BASE_NS + end_us * 1000
    params = {
        "query": text,
        "start": str(start),
        "end": str(end),
        "limit": str(limit),
        "direction": "forward" if forward else "backward",
    }
    body = await get(client, RANGE, tenant, params)
    result = body["data"]["result"]
    got = sorted((int(ts), line) for s in result for ts, line in s["values"])
    for s in result:
        times = [int(ts) for ts, _ in s["values"]]
        assert times == sorted(times, reverse=not forward)
        assert all(r.labels() == s["stream"] for r in rows if r.ns == times[0])
    matching = sorted(
        (r for r in rows if start <= r.ns < end and python_matches(r, query)),
        key=lambda r: r.id.int,
        reverse=not forward,
    )
    assert got == sorted((r.ns, r.text) for r in matching[:limit])

    # What the list API can say too ("=" on its filters, no line filter): the same lines.
    gram = {m.label: m.value for m in ms}
    listable = {"level", "source", "instance", "function_id"}
    if (
        fs
        or end_us <= start_us
        or any(m.op != "=" or m.label not in listable for m in ms)
        or len(gram) < len(ms)
        or gram.get("function_id", FN0) not in map(str, FUNCTIONS)
        or gram.get("level", "info") not in LEVELS
    ):
        return
    window = {
        "ts_start": (BASE + timedelta(microseconds=start_us)).isoformat(),
        "ts_end": (BASE + timedelta(microseconds=end_us - 1)).isoformat(),
    }
    listed = await gram_listed(client, tenant, {**gram, **window})
    every = await get(client, RANGE, tenant, {**params, "limit": "5000"})
    loki = sorted((int(ts), line) for s in every["data"]["result"] for ts, line in s["values"])
    assert loki == sorted(listed)


# -- Errors -----------------------------------------------------------------------------------


async def plain_error(
    client: httpx.AsyncClient, params: dict[str, str], headers: dict[str, str]
) -> tuple[int, str]:
    r = await client.get(RANGE, params=params, headers=headers)
    assert r.headers["content-type"].startswith("text/plain"), r.text
    return r.status_code, r.text


async def test_errors_are_plain_text(client, tenant, pool) -> None:
    window = {"start": str(BASE_NS), "end": str(BASE_NS + MINUTE_NS)}
    headers = tenant.headers()
    status, text = await plain_error(client, {"query": "{oops", **window}, headers)
    assert status == 400 and text, text
    unsupported = logql('{level="info"} | line_format "{{ .msg | upper }}"')
    status, text = await plain_error(client, {"query": unsupported, **window}, headers)
    assert status == 400 and "line_format" in text, text
    status, text = await plain_error(
        client, {"query": SELECT_FN, "limit": "5001", **window}, headers
    )
    assert status == 400 and "5000" in text
    status, text = await plain_error(
        client, {"query": SELECT_FN, "start": str(BASE_NS + 1), "end": str(BASE_NS)}, headers
    )
    assert (status, text) == (
        400,
        f"start ({BASE_NS + 1}) must not be after end ({BASE_NS})",
    )
    status, text = await plain_error(client, {"query": SELECT_FN, "step": "0", **window}, headers)
    assert status == 400 and "step" in text
    status, text = await plain_error(client, {"query": SELECT_FN, "start": "yesterday"}, headers)
    assert status == 400 and "start" in text
    status, text = await plain_error(client, {**window}, headers)
    assert status == 400 and "query is required" in text
    status, text = await plain_error(
        client,
        {"query": VOLUME, "start": str(BASE_NS), "end": str(BASE_NS + 10**13), "step": "0.5"},
        headers,
    )
    assert status == 400 and "11,000" in text


async def test_401_without_a_key_and_403_for_a_write_only_key(client, tenant, pool) -> None:
    params = {"query": SELECT_FN}
    status, text = await plain_error(client, params, {})
    assert status == 401 and "missing API key" in text
    async with connection(pool) as conn:
        ingest = await tenants.create_key(conn, tenant.organization_id, KeyScope.INGEST)
    status, _ = await plain_error(
        client, params, {"Gram-Key": ingest.key, "Gram-Project": tenant.slug}
    )
    assert status == 403


async def test_basic_auth_reads_the_same_lines(client, tenant, pool) -> None:
    row = row_at(5)
    await store(pool, tenant.project_id, [row])
    params = {"query": SELECT_FN, "start": str(BASE_NS), "end": str(BASE_NS + MINUTE_NS)}
    r = await client.get(RANGE, params=params, auth=(tenant.slug, tenant.consumer_key))
    assert r.status_code == 200, r.text
    assert r.json()["data"]["result"][0]["values"] == [[str(row.ns), row.text]]


async def test_a_read_cut_short_answers_what_it_found_with_a_warning(
    client, tenant, pool, monkeypatch
) -> None:
    rows = [row_at(i, text="a" if i % 2 else "b") for i in range(30)]
    await store(pool, tenant.project_id, rows)
    original = lines.read_lines

    async def small(*args: Any, **kw: Any) -> Any:
        return await original(*args, **{**kw, "max_examined": 10})

    monkeypatch.setattr(lines, "read_lines", small)
    query = q(
        logql('{source="stdout"} != "b"'), LogQuery(STDOUT.matchers, (LineFilter("!=", "b"),))
    )
    params = {"query": query, "start": str(BASE_NS), "end": str(BASE_NS + MINUTE_NS)}
    body = await get(client, RANGE, tenant, params)
    assert len(body["data"]["result"][0]["values"]) == 5  # of the newest 10 examined
    assert "examined 10 lines" in body["warnings"][0]


async def test_every_matcher_and_line_filter_over_fixed_lines(client, tenant, pool) -> None:
    """Each operator with each value of the property's draws, over one fixed set of lines:
    what a few random examples may miss (``!= "hit"`` against ``cache HIT``)."""
    rows = [
        row_at(
            1000 * i,
            level=LEVELS[i % 4],
            text=WORDS[(i // 4) % 4],
            source=SOURCES[(i // 2) % 4],
            instance=INSTANCES[i % 2],
            function_id=FUNCTIONS[(i // 3) % 2],
        )
        for i in range(48)
    ]
    await store(pool, tenant.project_id, rows)
    window = {"start": str(BASE_NS), "end": str(BASE_NS + MINUTE_NS), "limit": "5000"}
    queries = [
        LogQuery((Matcher(label, op, value),))
        for label, values in sorted(_VALUES.items())
        for value in values
        for op in ("=", "!=", "=~", "!~")
    ] + [
        LogQuery((Matcher("source", "=~", ".+"),), (LineFilter(op, value),))
        for op in ("|=", "!=", "|~", "!~")
        for value in ("call", "HIT", "hit", "50%", "(?i)timeout", "o.e", "")
    ]
    for query in queries:
        text = q(text_of(query), query)
        body = await get(client, RANGE, tenant, {"query": text, **window})
        got = sorted((int(ts), line) for s in body["data"]["result"] for ts, line in s["values"])
        want = sorted((r.ns, r.text) for r in rows if python_matches(r, query))
        assert got == want, text


def test_a_level_and_a_first_contains_filter_are_one_indexed_read() -> None:
    query = parse(logql('{level="error"} |= "timeout"'))
    assert isinstance(query, LogQuery)
    p = lines.plan(query, FUNCTIONS[0], BASE_NS, BASE_NS + MINUTE_NS)
    assert p.selection.filter.equals == {"level": "error"}
    assert p.selection.filter.keyword == "timeout"
    assert (p.selection.filter.lo, p.selection.filter.hi) == lines.id_bounds(
        BASE_NS, BASE_NS + MINUTE_NS
    )
    assert not p.selection.label_checks and p.rest == 0
    # The keyword index is case-insensitive, Loki's |= is not: the line is still checked.
    assert len(p.selection.line_checks) == 1
