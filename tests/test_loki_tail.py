"""GET /loki/api/v1/tail: Loki's live tail over a real WebSocket (the websockets library's client)
against a real server process: the backlog then new lines, exactly once and filtered; the
handshake refused with Loki's statuses; a revoked key; tenant isolation."""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus

from gramlogs.web.loki.logql import LogQLError, parse
from gramlogs.web.loki.tail import parse_tail_query
from testkit.logql import logql
from tests._support import loki_labels, until
from tests.test_tail import entry, ingest, revoke

PATH = "/loki/api/v1/tail"
BASE = datetime(2026, 12, 1, tzinfo=UTC)


def ns(ts: str) -> str:
    return str(int(datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()) * 10**9)


def basic_auth(tenant) -> dict[str, str]:
    """What Grafana's Loki data source sends with basic auth: user = slug, password = key."""
    pair = f"{tenant.slug}:{tenant.consumer_key}".encode()
    return {"Authorization": "Basic " + base64.b64encode(pair).decode()}


def labels(f: uuid.UUID, d: uuid.UUID, level: str, instance: str) -> dict[str, str]:
    return loki_labels(
        level=level, source="function", instance=instance, function_id=f, deployment_id=d
    )


@pytest.fixture(scope="module")
def server(serve):
    with serve(GRAMLOGS_TAIL_POLL_MS="20") as s:
        yield s


@pytest.fixture
async def http(server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as c:
        yield c


def tail_url(server, **params: Any) -> str:
    return server.url.replace("http://", "ws://") + PATH + "?" + urlencode(params)


async def messages(ws: ClientConnection, lines: int) -> list[dict[str, Any]]:
    """Messages until they hold ``lines`` lines in all."""
    got: list[dict[str, Any]] = []
    async with asyncio.timeout(20):
        while sum(len(s["values"]) for m in got for s in m["streams"]) < lines:
            got.append(json.loads(await ws.recv()))
    return got


def flat(got: list[dict[str, Any]]) -> list[tuple[dict[str, str], str, str]]:
    """Each line received, in order: its stream's labels, its timestamp and its text."""
    return [(s["stream"], ts, line) for m in got for s in m["streams"] for ts, line in s["values"]]


# -- backlog, then live lines --------------------------------------------------------------------


async def test_backlog_then_new_lines_exactly_once_in_order_filtered_by_the_query(
    server, http, tenant, fd
):
    f, d = fd

    def line(raw: str, level: str, at: str | None = None) -> dict[str, Any]:
        more: dict[str, Any] = {"level": level, "instance": "i-1", "source": "function"}
        return entry(f, d, raw, **more, **({"timestamp": at} if at else {}))

    await ingest(
        http,
        tenant,
        [
            line("boom too old", "error", "2026-11-29T00:00:00Z"),  # before start
            line("boom 1", "error", "2026-12-01T00:00:01Z"),
            line("boom 2", "error", "2026-12-01T00:00:02Z"),
            line("quiet", "error", "2026-12-01T00:00:03Z"),
            line("boom info", "info", "2026-12-01T00:00:04Z"),
            line("boom 3", "error", "2026-12-01T00:00:05Z"),
        ],
    )
    query = logql('{level="error"} |= "boom"')
    url = tail_url(server, query=query, start=ns("2026-11-30T00:00:00Z"), limit=4, delay_for=1)
    async with websockets.connect(url, additional_headers=basic_auth(tenant)) as ws:
        backlog = await messages(ws, 3)
        # After the connection: one that matches, and ones the level, the case-sensitive line
        # filter (the keyword index is case-insensitive) and the text leave out.
        await ingest(
            http,
            tenant,
            [
                line("boom live", "error", "2026-12-01T00:00:06Z"),
                line("boom live info", "info", "2026-12-01T00:00:07Z"),
                line("BOOM upper case", "error", "2026-12-01T00:00:08Z"),
                line("quiet live", "error", "2026-12-01T00:00:09Z"),
            ],
        )
        await ingest(http, tenant, [line("boom last", "error", "2026-11-30T12:00:00Z")])
        live = await messages(ws, 2)

    error = labels(f, d, "error", "i-1")
    assert backlog == [
        {
            "streams": [
                {
                    "stream": error,
                    "values": [
                        [ns("2026-12-01T00:00:01Z"), "boom 1"],
                        [ns("2026-12-01T00:00:02Z"), "boom 2"],
                        [ns("2026-12-01T00:00:05Z"), "boom 3"],
                    ],
                }
            ],
            "dropped_entries": [],
        }
    ]
    # In commit order (a late line after the batch before it), each once.
    assert flat(live) == [
        (error, ns("2026-12-01T00:00:06Z"), "boom live"),
        (error, ns("2026-11-30T12:00:00Z"), "boom last"),
    ]


async def test_lines_of_several_streams_come_grouped_by_their_labels(server, http, tenant, fd):
    f, d = fd
    url = tail_url(server, query=logql('{source="function"} != "skip"'), limit=0)
    async with websockets.connect(url, additional_headers=tenant.headers()) as ws:
        await ingest(
            http,
            tenant,
            [
                entry(f, d, "a", level="info", instance="i-1"),
                entry(f, d, "b", level="warn", instance="i-1"),
                entry(f, d, "skip", level="warn", instance="i-1"),
                entry(f, d, "c", level="info", instance="i-2"),
                entry(f, d, "d", level="info", instance="i-1"),
            ],
        )
        got = await messages(ws, 4)
    streams = [s for m in got for s in m["streams"]]
    assert {
        json.dumps(s["stream"], sort_keys=True): [v[1] for v in s["values"]] for s in streams
    } == {
        json.dumps(labels(f, d, "info", "i-1"), sort_keys=True): ["a", "d"],
        json.dumps(labels(f, d, "warn", "i-1"), sort_keys=True): ["b"],
        json.dumps(labels(f, d, "info", "i-2"), sort_keys=True): ["c"],
    }


async def test_the_pipeline_runs_on_the_backlog_and_live_lines_and_drops_what_it_filters(
    server, http, tenant, fd
):
    f, d = fd

    def request(status: int, method: str, path: str, at: str | None = None) -> dict[str, Any]:
        raw = json.dumps({"msg": "req", "status": status, "method": method, "path": path})
        more: dict[str, Any] = {"level": "error", "instance": "i-1", "source": "function"}
        return entry(f, d, raw, **more, **({"timestamp": at} if at else {}))

    await ingest(
        http,
        tenant,
        [
            request(503, "GET", "/a", "2026-12-01T00:00:01Z"),
            request(504, "GET", "/b", "2026-12-01T00:00:02Z"),
            # Newer, but the label filter drops it: limit counts the lines that pass.
            request(200, "GET", "/c", "2026-12-01T00:00:03Z"),
        ],
    )
    piped = logql(
        '{source="function"} |= "req" | json | status >= 500 | line_format "{{.method}} {{.path}}"'
    )
    plain = logql('{source="function"} |= "req"')
    start = ns("2026-11-30T00:00:00Z")
    headers = tenant.headers()
    piped_url = tail_url(server, query=piped, start=start, limit=2)
    async with (
        websockets.connect(piped_url, additional_headers=headers) as ws,
        websockets.connect(
            tail_url(server, query=plain, limit=0), additional_headers=headers
        ) as raw_ws,
    ):
        backlog = await messages(ws, 2)
        more = {"level": "error", "instance": "i-1", "timestamp": "2026-12-01T00:00:05Z"}
        not_json = entry(f, d, "plain req", **more)
        await ingest(
            http,
            tenant,
            [
                request(404, "PUT", "/d", "2026-12-01T00:00:04Z"),  # status < 500
                not_json,  # no status to compare
                request(500, "POST", "/e", "2026-12-01T00:00:06Z"),
            ],
        )
        live = await messages(ws, 1)
        # The same frames, read once for both tails, rendered for each.
        raw = await messages(raw_ws, 3)

    def parsed(status: str, method: str, path: str) -> dict[str, str]:
        return {
            **labels(f, d, "error", "i-1"),
            "msg": "req",
            "status": status,
            "method": method,
            "path": path,
        }

    assert flat(backlog) == [
        (parsed("503", "GET", "/a"), ns("2026-12-01T00:00:01Z"), "GET /a"),
        (parsed("504", "GET", "/b"), ns("2026-12-01T00:00:02Z"), "GET /b"),
    ]
    assert flat(live) == [(parsed("500", "POST", "/e"), ns("2026-12-01T00:00:06Z"), "POST /e")]
    assert [line for _, _, line in flat(raw)] == [
        json.dumps({"msg": "req", "status": 404, "method": "PUT", "path": "/d"}),
        "plain req",
        json.dumps({"msg": "req", "status": 500, "method": "POST", "path": "/e"}),
    ]
    assert {tuple(sorted(stream)) for stream, _, _ in flat(raw)} == {
        tuple(sorted(labels(f, d, "error", "i-1")))
    }


# -- the handshake -------------------------------------------------------------------------------


async def refused(url: str, headers: dict[str, str]) -> tuple[int, str]:
    with pytest.raises(InvalidStatus) as caught:
        async with websockets.connect(url, additional_headers=headers):
            pass
    response = caught.value.response
    return response.status_code, response.body.decode()


async def test_a_handshake_without_a_key_is_refused_with_401(server):
    url = tail_url(server, query=logql('{level="error"}'))
    status, body = await refused(url, {})
    assert (status, body) == (
        401,
        "missing API key: send the API key as basic auth's password with the project slug as its "
        "user, or as Gram-Key with Gram-Project, or as a Bearer token with X-Scope-OrgID",
    )


async def test_a_key_of_another_organization_is_refused_with_403(server, tenant, make_tenant):
    other = await make_tenant("elsewhere")  # its organization has no project "proj"
    url = tail_url(server, query=logql('{level="error"}'))
    headers = {"Authorization": f"Bearer {other.consumer_key}", "X-Scope-OrgID": tenant.slug}
    status, _ = await refused(url, headers)
    assert status == 403


async def test_a_query_that_does_not_parse_is_refused_with_400_and_the_parsers_message(
    server, tenant
):
    with pytest.raises(LogQLError) as caught:
        parse("{")
    status, body = await refused(tail_url(server, query="{"), tenant.headers())
    assert (status, body) == (400, caught.value.message)


@pytest.mark.parametrize(
    ("query", "params", "message"),
    [
        (
            logql('{level="error"} | line_format "{{ .msg | upper }}"'),
            {},
            "line_format supports only {{.label}} actions, not '{{ .msg | upper }}'",
        ),
        (
            logql('sum(count_over_time({level="error"}[1m]))'),
            {},
            "the live tail takes a log query, not a metric query",
        ),
        (
            logql('{level="error"}'),
            {"limit": "5001"},
            "limit must be lesser or equal than 5000 but got value 5001",
        ),
        (
            logql('{level="error"}'),
            {"delay_for": "6"},
            "delay_for must be lesser or equal than 5 but got value 6",
        ),
        (
            logql('{level="error"}'),
            {"start": "yesterday"},
            "invalid start 'yesterday': expected Unix nanoseconds, Unix seconds (with a fraction "
            "or 10 digits or fewer) or RFC 3339",
        ),
        (
            logql('{level="error"}'),
            {"start": "-5"},
            "start '-5' is outside 1970-01-01 to 2100-01-01",
        ),
        ("", {}, 'missing query: a log query such as {level="error"}'),
    ],
)
async def test_a_bad_request_is_refused_with_400_and_its_reason(
    server, tenant, query, params, message
):
    status, body = await refused(tail_url(server, query=query, **params), tenant.headers())
    assert (status, body) == (400, message)


# -- the key, and other projects -----------------------------------------------------------------


async def test_a_key_revoked_mid_stream_closes_the_tail_within_the_check_interval(
    serve, tenant, fd, pool
):
    f, d = fd
    with serve(GRAMLOGS_STREAM_KEY_CHECK_S="0.2", GRAMLOGS_TAIL_POLL_MS="20") as s:
        url = tail_url(s, query=logql('{source="function"}'), limit=0)
        async with httpx.AsyncClient(base_url=s.url, timeout=30) as c:
            async with websockets.connect(url, additional_headers=tenant.headers()) as ws:
                await ingest(c, tenant, [entry(f, d, "before the revocation")])
                assert flat(await messages(ws, 1))[0][2] == "before the revocation"
                await revoke(pool, tenant.consumer_key)
                loop = asyncio.get_running_loop()
                revoked_at = loop.time()
                await ingest(c, tenant, [entry(f, d, "after the revocation")])
                with pytest.raises(ConnectionClosed) as closed:
                    async with asyncio.timeout(10):
                        while True:
                            got = json.loads(await ws.recv())
                            # A line committed before the check may still come; none after.
                            assert flat([got])[0][2] == "after the revocation"
                took = loop.time() - revoked_at
            status, _ = await refused(url, tenant.headers())
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1008, "the API key was revoked")
    assert took < 0.2 + 5.0  # the check interval, and a generous margin for a loaded machine
    assert status == 401


async def test_another_projects_lines_never_appear(server, http, tenant, make_tenant, fd):
    f, d = fd
    other = await make_tenant("other")
    await ingest(http, other, [entry(f, d, "other's old", level="error")])
    url = tail_url(server, query=logql('{level="error"}'), start=ns("2026-01-01T00:00:00Z"))
    headers = {"Authorization": f"Bearer {tenant.consumer_key}", "X-Scope-OrgID": tenant.slug}
    async with websockets.connect(url, additional_headers=headers) as ws:
        await ingest(http, other, [entry(f, d, "other's new", level="error")])
        await ingest(http, tenant, [entry(f, d, "mine", level="error")])
        got = await messages(ws, 1)
    assert [line for _, _, line in flat(got)] == ["mine"]


# -- what the server records ---------------------------------------------------------------------


async def test_a_tail_is_one_access_log_line_written_when_it_closes(server, tenant):
    url = tail_url(server, query=logql('{source="function"}'), limit=0)
    async with websockets.connect(url, additional_headers=tenant.headers()) as ws:
        assert ws.response is not None
        accepted = ws.response.headers["X-Request-Id"]
    with pytest.raises(InvalidStatus) as caught:
        async with websockets.connect(url, additional_headers={"Gram-Project": tenant.slug}):
            pass
    refusal = caught.value.response.headers["X-Request-Id"]

    def lines() -> dict[str, dict[str, Any]]:
        text = server.stdout.read_text()
        logged = [json.loads(x) for x in text.splitlines() if x[:1] == "{"]
        return {x["id"]: x for x in logged if x["id"] in (accepted, refusal)}

    await until(lambda: len(lines()) == 2, 10)
    got = lines()
    assert [
        (x["method"], x["route"], x["status"], x.get("error"), x["project"])
        for x in (got[accepted], got[refusal])
    ] == [("GET", PATH, 101, None, tenant.slug), ("GET", PATH, 401, "unauthorized", tenant.slug)]


async def test_a_client_further_behind_than_the_buffer_catches_up_from_the_store(serve, tenant, fd):
    f, d = fd
    with serve(GRAMLOGS_TAIL_BUFFER_LINES="5", GRAMLOGS_TAIL_POLL_MS="20") as s:
        url = tail_url(s, query=logql('{source="function"} |~ "line [0-9]+"'), limit=0)
        async with (
            httpx.AsyncClient(base_url=s.url, timeout=30) as c,
            websockets.connect(url, additional_headers=tenant.headers()) as ws,
        ):
            # One batch of 30 lines, more than the buffer holds: the watcher cuts the
            # subscription off, and the tail reads them from the store instead.
            await ingest(c, tenant, [entry(f, d, f"line {i}") for i in range(30)])
            await ingest(c, tenant, [entry(f, d, "line 30")])
            got = await messages(ws, 31)
    assert [line for _, _, line in flat(got)] == [f"line {i}" for i in range(31)]
    assert all(m["dropped_entries"] == [] for m in got)


async def test_a_handshake_counts_against_the_keys_rate_limit(serve, tenant):
    with serve(GRAMLOGS_RATE_LIMIT="0.001", GRAMLOGS_RATE_LIMIT_BURST="1") as s:
        url = tail_url(s, query=logql('{source="function"}'), limit=0)
        async with websockets.connect(url, additional_headers=tenant.headers()):
            pass
        status, body = await refused(url, tenant.headers())
    assert status == 429
    assert body.startswith("rate limit of 0.001 requests per second for this key exceeded")


async def test_a_tail_the_client_closes_gives_its_place_back_under_the_keys_cap(serve, tenant):
    with serve(GRAMLOGS_TAIL_MAX_PER_KEY="1") as s:
        url = tail_url(s, query=logql('{source="function"}'), limit=0)
        async with websockets.connect(url, additional_headers=tenant.headers()):
            status, body = await refused(url, tenant.headers())
        # Closed by the client: the server notices and ends the session, and the key may
        # open another (a moment later: the server's side of the close is asynchronous).
        async with asyncio.timeout(10):
            while True:
                try:
                    async with websockets.connect(url, additional_headers=tenant.headers()):
                        break
                except InvalidStatus as exc:
                    assert exc.response.status_code == 429
                    await asyncio.sleep(0.05)
    assert status == 429
    assert body.startswith("this key has 1 live tails open, the most allowed")


# -- the parameters, without a server ------------------------------------------------------------

NOW_NS = 1_796_644_800 * 10**9  # 2026-12-07T12:00:00Z


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        (None, NOW_NS - 3600 * 10**9),  # an hour before now, as Loki
        ("1764547200", 1_764_547_200 * 10**9),  # seconds (10 digits or fewer)
        ("1764547200123456789", 1_764_547_200_123_456_789),  # nanoseconds
        ("1764547200.5", 1_764_547_200_500_000_000),  # seconds with a fraction
        ("2025-12-01T01:00:00+01:00", 1_764_547_200 * 10**9),
    ],
)
def test_start_takes_loki_s_timestamp_forms(start, expected):
    params = {"query": logql('{level="error"}'), **({"start": start} if start else {})}
    tail = parse_tail_query(params, NOW_NS)
    assert (tail.start_ns, tail.limit, tail.delay_for) == (expected, 100, 0)


async def test_shutdown_closes_a_tail_with_1012_service_restart(serve, tenant, fd):
    f, d = fd
    with serve() as s:
        url = tail_url(s, query=logql('{source="function"}'), limit=0)
        async with (
            httpx.AsyncClient(base_url=s.url, timeout=30) as c,
            websockets.connect(url, additional_headers=tenant.headers()) as ws,
        ):
            await ingest(c, tenant, [entry(f, d, "before")])
            assert flat(await messages(ws, 1))[0][2] == "before"
            s.process.send_signal(signal.SIGTERM)
            with pytest.raises(ConnectionClosed) as closed:
                async with asyncio.timeout(20):
                    await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
