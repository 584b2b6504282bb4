"""Grafana's Loki data source, replayed: the requests Grafana makes, in the order a user makes
them, against a real server, asserting the shapes Grafana parses.

Written from Grafana's and Loki's public docs: "Save & test" (buildinfo, then the query
``vector(1)+vector(1)``), Explore's label browser (labels, label values, series, index stats),
a logs query with its log volume above it, paging back with an earlier ``end``, and Live (the
tail over a WebSocket, through which a line pushed after connecting arrives). The data source
is set up with basic auth (user = project slug, password = API key), as docs/grafana.md says;
the lines come in through Loki's push API, as a shipper sends them.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import websockets

from testkit.logql import logql

BASE = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
SERVICES = ("checkout", "search")
LEVELS = ("info", "warn", "error", "debug")
LINES = 120  # 60 a service, 30 s apart: an hour
START = BASE - timedelta(minutes=5)
END = BASE + timedelta(hours=1)


def ns(ts: datetime) -> int:
    return int(ts.timestamp()) * 10**9 + ts.microsecond * 1000


def basic(tenant: Any, *, producer: bool = False) -> dict[str, str]:
    key = tenant.producer_key if producer else tenant.consumer_key
    return {"Authorization": "Basic " + base64.b64encode(f"{tenant.slug}:{key}".encode()).decode()}


def line_of(i: int) -> tuple[str, str, datetime, str]:
    """The i-th line pushed: its service, level, time and text."""
    service = SERVICES[i % 2]
    level = LEVELS[(i // 2) % 4]
    text = f"order {i} {'timeout' if i % 3 == 0 else 'ok'} level={level}"
    return service, level, BASE + timedelta(seconds=30 * (i // 2), milliseconds=i % 2), text


def push_body(indexes: range) -> bytes:
    streams: dict[tuple[str, str], list[list[str]]] = {}
    for i in indexes:
        service, level, ts, text = line_of(i)
        streams.setdefault((service, level), []).append([str(ns(ts)), text])
    return json.dumps(
        {
            "streams": [
                {"stream": {"service_name": s, "level": lv, "env": "prod"}, "values": values}
                for (s, lv), values in streams.items()
            ]
        }
    ).encode()


@pytest.fixture(scope="module")
def server(serve) -> Iterator[Any]:
    with serve(GRAMLOGS_TAIL_POLL_MS="20") as s:
        yield s


@pytest.fixture(scope="module")
async def grafana(server, make_tenant) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    """Grafana's HTTP client to the data source, and the project the lines were pushed to."""
    tenant = await make_tenant("grafana")
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        r = await client.post(
            "/loki/api/v1/push",
            content=push_body(range(LINES)),
            headers={"Content-Type": "application/json", **basic(tenant, producer=True)},
        )
        assert r.status_code == 204, r.text
        client.headers.update(basic(tenant))
        yield client, tenant


def window(**more: Any) -> dict[str, Any]:
    return {"start": ns(START), "end": ns(END), **more}


async def get(client: httpx.AsyncClient, path: str, params: Any, **headers: str) -> Any:
    r = await client.get("/loki/api/v1/" + path, params=params, headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    return r.json()


# -- "Save & test" ---------------------------------------------------------------------------


async def test_save_and_test(grafana):
    client, _ = grafana
    info = await get(client, "status/buildinfo", {})
    assert info["version"].startswith("3.")
    body = await get(client, "query", {"query": logql("vector(1)+vector(1)"), "time": ns(END)})
    assert body["status"] == "success"
    assert body["data"]["resultType"] == "vector"
    [sample] = body["data"]["result"]
    assert sample["metric"] == {}
    assert sample["value"][1] == "2"
    assert float(sample["value"][0]) == pytest.approx(END.timestamp())


async def test_a_wrong_key_fails_save_and_test_with_a_plain_text_401(server):
    async with httpx.AsyncClient(base_url=server.url) as client:
        auth = base64.b64encode(b"grafana:not-a-key").decode()
        r = await client.get(
            "/loki/api/v1/query",
            params={"query": "vector(1)+vector(1)"},
            headers={"Authorization": f"Basic {auth}"},
        )
    assert r.status_code == 401
    assert r.headers["content-type"].startswith("text/plain")
    assert "key" in r.text


# -- the label browser -----------------------------------------------------------------------


async def test_the_label_browser(grafana):
    client, _ = grafana
    labels = (await get(client, "labels", window()))["data"]
    assert {"service_name", "level", "detected_level", "env"} <= set(labels)
    assert labels == sorted(labels)
    services = await get(client, "label/service_name/values", window())
    assert services == {"status": "success", "data": list(SERVICES)}
    levels = await get(
        client, "label/level/values", window(query=logql('{service_name="checkout"}'))
    )
    assert set(levels["data"]) == set(LEVELS)
    series = await get(client, "series", window(**{"match[]": logql('{service_name="search"}')}))
    assert series["status"] == "success" and series["data"]
    assert {s["service_name"] for s in series["data"]} == {"search"}
    assert {s["level"] for s in series["data"]} == set(LEVELS)
    stats = await get(client, "index/stats", window(query=logql('{service_name="checkout"}')))
    assert stats["entries"] == LINES // 2
    assert set(stats) == {"streams", "chunks", "entries", "bytes"}


# -- Explore: the logs, their volume, paging back ----------------------------------------------


def lines_of(body: dict[str, Any]) -> list[tuple[int, str, dict[str, str]]]:
    """Every line of a streams answer, newest first, as Grafana merges the streams."""
    assert body["status"] == "success"
    assert body["data"]["resultType"] == "streams"
    out = [
        (int(value[0]), value[1], stream["stream"])
        for stream in body["data"]["result"]
        for value in stream["values"]
    ]
    return sorted(out, key=lambda x: -x[0])


async def test_explore_logs_then_paging_back_with_an_earlier_end(grafana):
    client, _ = grafana
    query = logql('{service_name="checkout"}')
    expected = sorted(
        (
            (ns(ts), text)
            for i in range(LINES)
            for s, _, ts, text in [line_of(i)]
            if s == SERVICES[0]
        ),
        reverse=True,
    )
    seen: list[tuple[int, str]] = []
    end = ns(END)
    while True:
        body = await get(
            client,
            "query_range",
            {
                "query": query,
                "start": ns(START),
                "end": end,
                "limit": 25,
                "direction": "backward",
                "step": "1s",
            },
        )
        page = lines_of(body)
        for _, _, stream in page:
            assert stream["service_name"] == "checkout"
            assert stream["level"] == stream["detected_level"]
        seen += [(t, text) for t, text, _ in page]
        if len(page) < 25:
            break
        end = page[-1][0]  # Grafana asks again up to the oldest line it has
    assert seen == expected


async def test_the_log_volume_above_the_logs(grafana):
    client, _ = grafana
    query = logql(
        'sum by (level, detected_level) (count_over_time({service_name="checkout"} '
        "| drop __error__[1m]))"
    )
    body = await get(
        client,
        "query_range",
        window(query=query, step="60"),
        **{"X-Query-Tags": "Source=logvolhist"},
    )
    assert body["data"]["resultType"] == "matrix"
    totals: dict[str, float] = {}
    for series in body["data"]["result"]:
        metric = series["metric"]
        assert metric["level"] == metric["detected_level"]
        for t, value in series["values"]:
            assert isinstance(t, (int, float)) and isinstance(value, str)
            totals[metric["level"]] = totals.get(metric["level"], 0) + float(value)
    expected: dict[str, float] = {}
    for i in range(LINES):
        service, level, _, _ = line_of(i)
        if service == "checkout":
            expected[level] = expected.get(level, 0) + 1
    assert totals == expected


async def test_a_filtered_query_with_structured_metadata(grafana):
    client, _ = grafana
    query = logql('{service_name="checkout", level="error"} |= "timeout"')
    body = await get(
        client,
        "query_range",
        window(query=query, limit=1000, direction="forward"),
        **{"X-Loki-Response-Encoding-Flags": "categorize-labels"},
    )
    assert body["data"].get("encodingFlags") == ["categorize-labels"]
    got = [(int(v[0]), v[1]) for s in body["data"]["result"] for v in s["values"]]
    expected = [
        (ns(ts), text)
        for i in range(LINES)
        for service, level, ts, text in [line_of(i)]
        if service == "checkout" and level == "error" and "timeout" in text
    ]
    assert sorted(got) == expected and expected


# -- Live ------------------------------------------------------------------------------------


async def test_live_tail_shows_a_line_pushed_after_it_opened(server, grafana):
    client, tenant = grafana
    url = (
        server.url.replace("http://", "ws://")
        + "/loki/api/v1/tail?"
        + urlencode(
            {"query": logql('{service_name="search"} |= "live"'), "start": ns(END), "limit": 10}
        )
    )
    async with websockets.connect(url, additional_headers=basic(tenant)) as ws:
        await asyncio.sleep(0.2)
        r = await client.post(
            "/loki/api/v1/push",
            content=json.dumps(
                {
                    "streams": [
                        {
                            "stream": {"service_name": "search", "level": "info"},
                            "values": [[str(ns(END)), "live line"], [str(ns(END) + 1000), "other"]],
                        }
                    ]
                }
            ).encode(),
            headers={"Content-Type": "application/json", **basic(tenant, producer=True)},
        )
        assert r.status_code == 204, r.text
        async with asyncio.timeout(20):
            message = json.loads(await ws.recv())
    assert message["dropped_entries"] == []
    [stream] = message["streams"]
    assert stream["stream"]["service_name"] == "search"
    assert stream["values"] == [[str(ns(END)), "live line"]]
