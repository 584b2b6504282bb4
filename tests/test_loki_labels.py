"""Loki's label browser and Logs Drilldown endpoints (web/loki/browse.py, drilldown.py) over
seeded lines, some sealed into blocks and some left as rows, at fixed times.

The window holds the middle of the lines; the lines before and after it carry values of their
own (instances ``early-*``, ``late-*``), which must never be listed. Another project's lines
carry values of their own too.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gramlogs.core import ids
from gramlogs.storage import sealing, writer
from gramlogs.storage.column_values import column_values
from gramlogs.storage.filters import LogFilter
from gramlogs.web.loki import browse, fields, sample
from gramlogs.web.loki.window import Window, parse_instant
from testkit.logql import logql
from tests._support import connection, loki_labels, small_blocks

T0 = datetime(2025, 3, 3, 12, tzinfo=UTC)
NOW = T0 + timedelta(days=2)  # long after every line: all of them may be sealed
N = 80
START, END = 10, 69  # the window: lines START..END (one a second)
FUNCTIONS = (uuid.UUID(int=0xF1), uuid.UUID(int=0xF2))
DEPLOYMENTS = (uuid.UUID(int=0xD1), uuid.UUID(int=0xD2), uuid.UUID(int=0xD3))
INSTANCES = ("i-a", "i-b", "i-c")
LEVELS = ("debug", "info", "warn", "error")
SOURCES = ("server", "function", "stdout", "stderr")
APPS = ("web", "worker")


def ns(ts: datetime) -> int:
    return (ts - ids.EPOCH) // timedelta(microseconds=1) * 1000


START_NS = ns(T0 + timedelta(seconds=START))
END_NS = ns(T0 + timedelta(seconds=END + 1)) - 1  # line END is at END s and some µs
WINDOW = {"start": str(START_NS), "end": str(END_NS)}


@dataclass(frozen=True)
class Line:
    id: uuid.UUID
    at: datetime
    instance: str
    level: str
    source: str
    text: str
    attributes: dict[str, Any]
    function_id: uuid.UUID
    deployment_id: uuid.UUID

    def row(self, project_id: uuid.UUID) -> tuple[object, ...]:
        return (
            self.id,
            self.at,
            self.instance,
            self.level,
            self.source,
            self.text,
            None,
            msgspec.json.encode(self.attributes).decode(),
            project_id,
            self.deployment_id,
            self.function_id,
            None,
        )

    @property
    def inside(self) -> bool:
        second = int((self.at - T0).total_seconds())
        return START <= second <= END

    def labels(self) -> dict[str, str]:
        pushed = dict(self.attributes.get("labels", {}))
        service = pushed.get("service_name") or str(self.function_id)
        return {
            **pushed,
            **loki_labels(
                level=self.level,
                source=self.source,
                instance=self.instance,
                function_id=self.function_id,
                deployment_id=self.deployment_id,
                service_name=service,
            ),
        }


def make_lines(seed: int, instances: tuple[str, ...] = INSTANCES) -> list[Line]:
    rng = random.Random(seed)
    out = []
    for i in range(N):
        at = T0 + timedelta(seconds=i, microseconds=rng.randrange(1000))
        instance = rng.choice(instances)
        if i < START:
            instance = f"early-{i % 3}"
        elif i > END:
            instance = f"late-{i % 3}"
        attributes: dict[str, Any] = {}
        if i % 2 == 0:  # pushed through Loki: labels, and structured metadata beside them
            attributes = {"labels": {"app": rng.choice(APPS)}, "trace_id": f"t{i % 5}"}
            if i % 4 == 0:
                attributes["labels"]["service_name"] = "checkout"
        text = (
            f'{{"status": {200 + i % 3}, "path": "/p{i % 4}", "user": {{"id": "u{i % 2}"}}}}'
            if i % 3 == 0
            else f"msg=done duration={i % 7}ms user=bob{i % 2}"
        )
        out.append(
            Line(
                id=ids.new_id(at, rng.getrandbits(62)),
                at=at,
                instance=instance,
                level=rng.choice(LEVELS),
                source=rng.choice(SOURCES),
                text=text,
                attributes=attributes,
                function_id=FUNCTIONS[i % 2],
                deployment_id=rng.choice(DEPLOYMENTS),
            )
        )
    return out


async def seed(pool, project_id: uuid.UUID, lines: list[Line], blocks: int) -> tuple[int, int]:
    """Store ``lines`` as rows, then seal up to ``blocks`` blocks of 8; (rows, sealed lines)."""
    async with connection(pool) as conn:
        await writer.copy_lines(conn, [line.row(project_id) for line in lines])
        with small_blocks(8):
            await sealing.seal_some(conn, now=NOW, max_blocks=blocks, project_id=project_id)
        rows = await conn.fetchval("SELECT count(*) FROM logs WHERE project_id = $1", project_id)
        sealed = await conn.fetchval(
            "SELECT coalesce(sum(lines), 0) FROM log_sealed WHERE project_id = $1", project_id
        )
    return rows, sealed


@dataclass
class Seeded:
    tenant: Any
    lines: list[Line]
    other: Any

    @property
    def inside(self) -> list[Line]:
        return [line for line in self.lines if line.inside]


@pytest.fixture
async def seeded(pool, make_tenant) -> Seeded:
    tenant = await make_tenant()
    other = await make_tenant()
    lines = make_lines(7)
    rows, sealed = await seed(pool, tenant.project_id, lines, blocks=6)
    assert rows > 0 and sealed > 0, (rows, sealed)  # both kinds of storage are read
    await seed(pool, other.project_id, make_lines(8, ("o-x", "o-y")), blocks=3)
    return Seeded(tenant, lines, other)


async def get(client: httpx.AsyncClient, tenant: Any, path: str, **params: str) -> httpx.Response:
    return await client.get(path, params={**WINDOW, **params}, headers=tenant.headers())


def values_of(lines: list[Line], name: str) -> list[str]:
    return sorted({v for line in lines if (v := line.labels().get(name))})


# -- labels and label values ------------------------------------------------------------------


async def test_labels_are_the_columns_and_the_pushed_labels(client, seeded):
    r = await get(client, seeded.tenant, "/loki/api/v1/labels")
    assert r.status_code == 200, r.text
    names = sorted({n for line in seeded.inside for n in line.labels()})
    assert r.json() == {"status": "success", "data": names}
    assert "app" in names


@pytest.mark.parametrize(
    "name",
    ["level", "detected_level", "source", "instance", "function_id", "deployment_id",
     "service_name", "app"],
)  # fmt: skip
async def test_label_values_are_those_of_the_windows_lines(client, seeded, name):
    r = await get(client, seeded.tenant, f"/loki/api/v1/label/{name}/values")
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "success", "data": values_of(seeded.inside, name)}


async def test_label_values_never_come_from_outside_the_window_or_another_project(client, seeded):
    r = await get(client, seeded.tenant, "/loki/api/v1/label/instance/values")
    assert r.json()["data"] == ["i-a", "i-b", "i-c"]
    r = await get(client, seeded.other, "/loki/api/v1/label/instance/values")
    assert r.json()["data"] == ["o-x", "o-y"]
    # A window before every line has none.
    before = {"start": "1000", "end": str(ns(T0) - 1)}
    r = await client.get(
        "/loki/api/v1/label/instance/values", params=before, headers=seeded.tenant.headers()
    )
    assert r.json() == {"status": "success", "data": []}
    r = await client.get("/loki/api/v1/labels", params=before, headers=seeded.tenant.headers())
    assert r.json() == {"status": "success", "data": []}


async def test_label_values_agree_with_the_gram_api_over_the_window(client, seeded):
    seen: set[str] = set()
    cursor = None
    while True:
        params = {
            "ts_start": (T0 + timedelta(seconds=START)).isoformat(),
            "ts_end": (T0 + timedelta(seconds=END + 1, microseconds=-1)).isoformat(),
            "per_page": "100",
        }
        if cursor:
            params["cursor"] = cursor
        r = await client.get(
            "/rpc/logs.listToolExecutionLogs", params=params, headers=seeded.tenant.headers()
        )
        body = r.json()
        seen.update(log["instance"] for log in body["logs"])
        cursor = body["pagination"].get("next_page_cursor")
        if not body["pagination"].get("has_next_page"):
            break
    r = await get(client, seeded.tenant, "/loki/api/v1/label/instance/values")
    assert r.json()["data"] == sorted(seen)


@pytest.mark.parametrize(
    ("query", "keep"),
    [
        (logql('{level="error"}'), lambda line: line.level == "error"),
        (logql('{source="stdout", level!="debug"}'),
         lambda line: line.source == "stdout" and line.level != "debug"),
        (logql('{app="web"}'), lambda line: line.labels().get("app") == "web"),
        (logql('{service_name="checkout"}'),
         lambda line: line.labels()["service_name"] == "checkout"),
        (logql('{level=~"warn|error"} |= "duration=3ms"'),
         lambda line: line.level in ("warn", "error") and "duration=3ms" in line.text),
    ],
)  # fmt: skip
@pytest.mark.parametrize("name", ["instance", "deployment_id", "source", "app"])
async def test_query_narrows_label_values(client, seeded, query, keep, name):
    r = await get(client, seeded.tenant, f"/loki/api/v1/label/{name}/values", query=query)
    assert r.status_code == 200, r.text
    expected = values_of([line for line in seeded.inside if keep(line)], name)
    assert r.json()["data"] == expected


async def test_column_values_read_rows_and_blocks_and_cut_blocks_at_the_window(pool, seeded):
    lo = ids.lowest_id(T0 + timedelta(seconds=START)).int
    hi = ids.highest_id(T0 + timedelta(seconds=END + 1, microseconds=-1)).int
    project = seeded.tenant.project_id
    async with connection(pool) as conn:
        found = await column_values(conn, LogFilter(project_id=project, lo=lo, hi=hi))
        narrowed = await column_values(
            conn, LogFilter(project_id=project, lo=lo, hi=hi, equals={"level": "warn"})
        )
    assert found.complete
    assert found.instance == set(INSTANCES)
    assert found.level == {line.level for line in seeded.inside}
    assert found.deployment_id == {line.deployment_id for line in seeded.inside}
    warn = [line for line in seeded.inside if line.level == "warn"]
    assert narrowed.level == {"warn"}
    assert narrowed.source == {line.source for line in warn}
    assert narrowed.instance == {line.instance for line in warn}


@settings(max_examples=25)
@given(
    seed_=st.integers(0, 2**32),
    blocks=st.integers(0, 10),
    window=st.tuples(st.integers(0, N), st.integers(0, N)).map(sorted),
    column=st.sampled_from([None, "level", "source", "instance", "deployment_id"]),
    pick=st.integers(0, 100),
)
async def test_column_values_are_the_distinct_values_of_the_windows_matching_lines(
    pool, make_tenant, seed_, blocks, window, column, pick
):
    """Whatever is sealed and wherever the window cuts the blocks; another project's lines
    (same ids' times, other values) are never counted."""
    tenant, other = await make_tenant(), await make_tenant()
    lines = make_lines(seed_)
    await seed(pool, tenant.project_id, lines, blocks)
    await seed(pool, other.project_id, make_lines(seed_ + 1, ("o-x", "o-y")), blocks)
    lo_s, hi_s = window
    lo = ids.lowest_id(T0 + timedelta(seconds=lo_s)).int
    hi = ids.highest_id(T0 + timedelta(seconds=hi_s)).int
    equals: dict[str, object] = {}
    if column is not None:
        choices = {
            "level": LEVELS,
            "source": SOURCES,
            "instance": INSTANCES,
            "deployment_id": DEPLOYMENTS,
        }[column]
        equals[column] = choices[pick % len(choices)]
    f = LogFilter(project_id=tenant.project_id, lo=lo, hi=hi, equals=equals)
    async with connection(pool) as conn:
        found = await column_values(conn, f)
    chosen = [
        line
        for line in lines
        if lo <= line.id.int <= hi and all(getattr(line, c) == v for c, v in equals.items())
    ]
    assert found.complete
    assert found.level == {line.level for line in chosen}
    assert found.source == {line.source for line in chosen}
    assert found.instance == {line.instance for line in chosen}
    assert found.deployment_id == {line.deployment_id for line in chosen}
    assert found.function_id == {line.function_id for line in chosen}


# -- series ----------------------------------------------------------------------------------


def label_sets(lines: list[Line]) -> list[dict[str, str]]:
    sets = {tuple(sorted(line.labels().items())) for line in lines}
    return [dict(s) for s in sorted(sets)]


async def test_series_are_the_distinct_label_sets_of_each_selector(client, seeded):
    r = await client.get(
        "/loki/api/v1/series",
        params=[
            ("match[]", logql('{level="error"}')),
            ("match[]", logql('{app="worker"}')),
            *WINDOW.items(),
        ],
        headers=seeded.tenant.headers(),
    )
    assert r.status_code == 200, r.text
    lines = [
        line
        for line in seeded.inside
        if line.level == "error" or line.labels().get("app") == "worker"
    ]
    assert r.json() == {"status": "success", "data": label_sets(lines)}


async def test_series_take_a_form_body_too(client, seeded):
    form = {"match[]": logql('{source="server"}'), **WINDOW}
    r = await client.post("/loki/api/v1/series", data=form, headers=seeded.tenant.headers())
    assert r.status_code == 200, r.text
    lines = [line for line in seeded.inside if line.source == "server"]
    assert r.json()["data"] == label_sets(lines)


async def test_series_without_a_selector_is_a_plain_400(client, seeded):
    r = await get(client, seeded.tenant, "/loki/api/v1/series")
    assert (r.status_code, r.text) == (400, "match[] is required: at least one stream selector")
    assert r.headers["content-type"] == "text/plain; charset=utf-8"


# -- index stats and volume ------------------------------------------------------------------


async def test_index_stats_count_entries_exactly(client, seeded):
    r = await get(client, seeded.tenant, "/loki/api/v1/index/stats", query=logql('{level="info"}'))
    assert r.status_code == 200, r.text
    info = [line for line in seeded.inside if line.level == "info"]
    size = sum(len(line.text.encode()) for line in info)
    assert r.json() == {
        "streams": len(label_sets(info)),
        "chunks": len(label_sets(info)),
        "entries": len(info),
        "bytes": size,  # every line sampled: the mean times the count is the sum
    }


async def test_index_stats_of_a_selector_checked_line_by_line(client, seeded):
    r = await get(client, seeded.tenant, "/loki/api/v1/index/stats", query=logql('{app="web"}'))
    web = [line for line in seeded.inside if line.labels().get("app") == "web"]
    assert r.json()["entries"] == len(web)


async def test_a_sampled_selector_is_counted_from_the_newest_lines_share(
    client, seeded, monkeypatch
):
    monkeypatch.setattr(sample, "SAMPLE_LINES", 10)
    r = await get(client, seeded.tenant, "/loki/api/v1/index/stats", query=logql('{app="web"}'))
    newest = sorted(seeded.inside, key=lambda line: line.id.int)[-10:]
    web = [line for line in newest if line.labels().get("app") == "web"]
    mean = sum(len(line.text.encode()) for line in web) / len(web)
    entries = round(len(seeded.inside) * len(web) / 10)
    assert r.json() == {
        "streams": len(label_sets(web)),
        "chunks": len(label_sets(web)),
        "entries": entries,
        "bytes": round(entries * mean),
    }


async def test_volume_is_bytes_by_the_target_labels(client, seeded):
    r = await get(
        client,
        seeded.tenant,
        "/loki/api/v1/index/volume",
        query=logql('{service_name=~".+"}'),
        targetLabels="service_name",
    )
    assert r.status_code == 200, r.text
    by: dict[str, int] = {}
    for line in seeded.inside:
        name = line.labels()["service_name"]
        by[name] = by.get(name, 0) + len(line.text.encode())
    end = END_NS / 1e9
    expected = [
        {"metric": {"service_name": k}, "value": [end, str(v)]}
        for k, v in sorted(by.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
    assert r.json() == {"status": "success", "data": {"resultType": "vector", "result": expected}}


@pytest.mark.parametrize(
    ("query", "label", "value"),
    [(logql('{level="error"}'), "level", "error"), (logql('{app="web"}'), "app", "web")],
)
async def test_volume_range_is_a_matrix_of_each_steps_bytes(client, seeded, query, label, value):
    r = await get(client, seeded.tenant, "/loki/api/v1/index/volume_range", query=query, step="10s")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "success" and body["data"]["resultType"] == "matrix"
    [series] = body["data"]["result"]
    assert series["metric"] == {label: value}
    points: dict[float, int] = {}
    for line in seeded.inside:
        if line.labels().get(label) == value:
            t = START_NS + (ns(line.at) - START_NS) // 10**10 * 10**10
            points[t / 1e9] = points.get(t / 1e9, 0) + len(line.text.encode())
    # Each step's lines are counted exactly, and all of them sampled: their bytes are exact.
    assert {t: int(v) for t, v in series["values"]} == points


async def test_volume_range_refuses_too_many_points(client, seeded):
    r = await get(
        client,
        seeded.tenant,
        "/loki/api/v1/index/volume_range",
        query=logql('{level="error"}'),
        step="1ms",
    )
    assert r.status_code == 400
    assert r.text == (
        "exceeded maximum resolution of 11,000 points per timeseries. Try increasing the value "
        "of the step parameter"
    )


# -- detected labels and fields, patterns, buildinfo ------------------------------------------


async def test_detected_labels_count_each_labels_values(client, seeded):
    r = await get(client, seeded.tenant, "/loki/api/v1/detected_labels")
    assert r.status_code == 200, r.text
    names = sorted({n for line in seeded.inside for n in line.labels()})
    assert r.json() == {
        "detectedLabels": [
            {"label": n, "cardinality": len(values_of(seeded.inside, n))} for n in names
        ]
    }


async def test_detected_fields_are_structured_metadata_and_the_lines_fields(client, seeded):
    r = await get(client, seeded.tenant, "/loki/api/v1/detected_fields")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["limit"] == 1000
    fields = {f["label"]: f for f in body["fields"]}
    assert fields["trace_id"] == {
        "label": "trace_id",
        "type": "string",
        "cardinality": len(
            {line.attributes["trace_id"] for line in seeded.inside if line.attributes}
        ),
        "parsers": [],
    }
    assert fields["status"]["type"] == "int" and fields["status"]["parsers"] == ["json"]
    assert fields["user_id"]["cardinality"] == 2
    assert fields["duration"]["type"] == "duration"
    assert fields["duration"]["parsers"] == ["logfmt"]
    r = await get(client, seeded.tenant, "/loki/api/v1/detected_field/path/values")
    json_lines = [line for line in seeded.inside if line.text.startswith("{")]
    assert r.json() == {
        "values": sorted({msgspec.json.decode(line.text)["path"] for line in json_lines})
    }


@pytest.mark.parametrize(
    ("text", "attributes", "expected"),
    [
        # Named as | json names them, so that Drilldown's | json | http_method="GET" finds it.
        ('{"http.method": "GET", "1st": 1, "a": {"b": true}, "n": null}', "{}",
         {"http_method": ("GET", "json"), "_1st": ("1", "json"), "a_b": ("true", "json")}),
        # A bare word is no field; a structured metadata name wins over the line's.
        ('msg="a \\"b\\"" level=warn word', '{"level": "x"}',
         {"msg": ('a "b"', "logfmt"), "level": ("x", None)}),
        ('plain "text', "{}", {}),  # neither parser reads it
    ],
)  # fmt: skip
def test_a_lines_fields_are_what_the_pipelines_parsers_read(text, attributes, expected):
    row = (None, None, None, None, None, text, None, attributes)
    assert fields.line_fields(row) == expected


async def test_patterns_are_empty_and_buildinfo_is_loki_3(client, seeded):
    r = await get(client, seeded.tenant, "/loki/api/v1/patterns", query=logql('{level="info"}'))
    assert r.json() == {"status": "success", "data": []}
    r = await client.get("/loki/api/v1/status/buildinfo")
    assert r.status_code == 200
    assert r.json()["version"] == browse.LOKI_VERSION
    assert r.json()["version"].startswith("3.")


# -- auth and errors --------------------------------------------------------------------------


async def test_basic_auth_and_bearer_with_the_tenant_header_read_the_project(client, seeded):
    t = seeded.tenant
    r = await client.get(
        "/loki/api/v1/label/instance/values", params=WINDOW, auth=(t.slug, t.consumer_key)
    )
    assert r.json()["data"] == ["i-a", "i-b", "i-c"]
    r = await client.get(
        "/loki/api/v1/label/instance/values",
        params=WINDOW,
        headers={"Authorization": f"Bearer {t.consumer_key}", "X-Scope-OrgID": t.slug},
    )
    assert r.json()["data"] == ["i-a", "i-b", "i-c"]


@pytest.mark.parametrize(
    "path",
    ["/loki/api/v1/labels", "/loki/api/v1/label/level/values", "/loki/api/v1/detected_fields",
     "/loki/api/v1/index/stats"],
)  # fmt: skip
async def test_without_a_key_401_and_with_a_project_of_another_organization_403(
    client, seeded, path
):
    r = await client.get(path, params=WINDOW)
    assert r.status_code == 401
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    # A project the key's organization does not have.
    headers = {"Gram-Key": seeded.other.consumer_key, "Gram-Project": "someone-elses"}
    r = await client.get(path, params={**WINDOW, "query": logql('{level="info"}')}, headers=headers)
    assert (r.status_code, r.text) == (403, "this key may not access project 'someone-elses'")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"start": "yesterday"}, "invalid start 'yesterday'"),
        ({"start": "20", "end": "10"}, "start (20000000000) must not be after end (10000000000)"),
        ({"query": "{level="}, ""),
        ({"query": logql('sum(count_over_time({level="info"}[1m]))')},
         "query must be a log query (a stream selector), not a metric query"),
    ],
)  # fmt: skip
async def test_bad_parameters_are_a_plain_400(client, seeded, params, message):
    r = await client.get(
        "/loki/api/v1/labels", params={**WINDOW, **params}, headers=seeded.tenant.headers()
    )
    assert r.status_code == 400
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    assert r.text.startswith(message)


# -- times ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1700000000000000000", 1_700_000_000_000_000_000),
        ("1700000000", 1_700_000_000_000_000_000),
        ("1700000000.5", 1_700_000_000_500_000_000),
        ("2023-11-14T22:13:20.000000123Z", 1_700_000_000_000_000_123),
        ("2023-11-14T23:13:20+01:00", 1_700_000_000_000_000_000),
    ],
)
def test_a_time_is_nanoseconds_seconds_or_rfc3339(value, expected):
    assert parse_instant("start", value) == expected


def test_a_window_is_cut_at_whole_microseconds():
    lo, hi = Window(1_500, 2_500).id_range()
    assert lo == ids.lowest_id(ids.EPOCH + timedelta(microseconds=1)).int
    assert hi == ids.highest_id(ids.EPOCH + timedelta(microseconds=2)).int
