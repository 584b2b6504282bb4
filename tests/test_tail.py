"""GET /rpc/logs.tail against real servers: exactly once, across processes, disconnects,
late lines, slow readers, the maximum duration and shutdown."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import socket
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from gramlogs.core.keys import hash_key
from gramlogs.storage import journal, tenants
from gramlogs.storage.pages import like_pattern
from gramlogs.web.tail import decode_token, encode_token
from testkit.tailing import post_retrying
from tests._support import connection, error

TAIL = "/rpc/logs.tail"
INGEST = "/rpc/logs.ingest"
# Far enough back to be older than anything delivered before it, within the default retention.
BASE = datetime(2026, 12, 1, tzinfo=UTC)


# -- a server-sent events reader (the WHATWG parsing rules, as EventSource applies them) ---------


@dataclass
class Event:
    event: str = "message"
    data: str = ""
    id: str | None = None


@dataclass
class Stream:
    """What one connection of a tail read: its events, and the last event id it set."""

    status: int
    events: list[Event] = field(default_factory=list)
    last_id: str | None = None
    retry: int | None = None

    @property
    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(e.data) for e in self.events if e.event == "message"]

    @property
    def end(self) -> Event | None:
        return next((e for e in self.events if e.event == "end"), None)


class Reader:
    """Feeds a stream's lines one by one; returns each event as it is dispatched."""

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self.event, self.data = Event(), list[str]()

    def feed(self, line: str) -> Event | None:
        if line == "":
            event, data = self.event, self.data
            self.event, self.data = Event(), list[str]()
            if not data:
                return None
            event.data = "\n".join(data)
            self.stream.events.append(event)
            return event
        if not line.startswith(":"):
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                self.data.append(value)
            elif name == "event":
                self.event.event = value
            elif name == "id":
                self.event.id = self.stream.last_id = value
            elif name == "retry":
                self.stream.retry = int(value)
        return None


async def events(response: httpx.Response, stream: Stream) -> AsyncIterator[Event]:
    """Dispatch ``response``'s events into ``stream`` (id-only events set its last id)."""
    reader = Reader(stream)
    async for line in response.aiter_lines():
        if (event := reader.feed(line)) is not None:
            yield event


def tail_headers(tenant, last_id: str | None = None) -> dict[str, str]:
    return {**tenant.headers(), **({"Last-Event-ID": last_id} if last_id else {})}


async def read_tail(
    client: httpx.AsyncClient,
    tenant,
    *,
    params: dict[str, Any] | None = None,
    last_id: str | None = None,
    count: int | None = None,
    until_end: bool = False,
) -> Stream:
    """One connection: read until ``count`` lines, or the end event, then hang up."""
    async with client.stream(
        "GET", TAIL, params=params or {}, headers=tail_headers(tenant, last_id)
    ) as r:
        stream = Stream(r.status_code)
        if r.status_code != 200:
            await r.aread()
            stream.events.append(Event("error", r.text))
            return stream
        async with asyncio.timeout(20):
            async for event in events(r, stream):
                if event.event == "end":
                    break
                if count is not None and len(stream.lines) >= count and not until_end:
                    break
    return stream


async def opened(client: httpx.AsyncClient, tenant, **params: Any) -> str:
    """The start token of a tail opened now (its first, id-only event)."""
    async with client.stream("GET", TAIL, params=params, headers=tenant.headers()) as r:
        assert r.status_code == 200, await r.aread()
        assert r.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert (r.headers["cache-control"], r.headers["x-accel-buffering"]) == ("no-store", "no")
        lines = r.aiter_lines()
        assert await anext(lines) == "retry: 1000"
        start = await anext(lines)
        assert start.startswith("id: "), start
        return start.removeprefix("id: ")


def entry(f: uuid.UUID, d: uuid.UUID, raw: str, **more: Any) -> dict[str, Any]:
    return {"raw_log": raw, "function_id": str(f), "deployment_id": str(d), **more}


async def ingest(client: httpx.AsyncClient, tenant, logs: list[dict[str, Any]]) -> None:
    r = await client.post(INGEST, json={"logs": logs}, headers=tenant.headers(producer=True))
    assert r.status_code == 200, r.text


@pytest.fixture(scope="module")
def server(serve):
    with serve(GRAMLOGS_TAIL_POLL_MS="20", GRAMLOGS_TAIL_HEARTBEAT_S="0.5") as s:
        yield s


@pytest.fixture
async def http(server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as c:
        yield c


# -- the basics ---------------------------------------------------------------------------------


async def test_new_lines_arrive_in_commit_order_each_once_late_lines_included(http, tenant, fd):
    f, d = fd
    await ingest(http, tenant, [entry(f, d, "before the tail")])
    start = await opened(http, tenant)
    await ingest(
        http, tenant, [entry(f, d, "now"), entry(f, d, "late", timestamp="2026-11-01T00:00:00Z")]
    )
    await ingest(http, tenant, [entry(f, d, "later")])

    stream = await read_tail(http, tenant, last_id=start, count=3)

    assert [line["raw_log"] for line in stream.lines] == ["late", "now", "later"]
    listed = (await http.get("/rpc/logs.listToolExecutionLogs", headers=tenant.headers())).json()
    by_id = {log["id"]: log for log in listed["logs"]}
    assert all(by_id[line["id"]] == line for line in stream.lines)


async def test_lines_sends_the_newest_matching_lines_first_then_the_tail(http, tenant, fd):
    f, d = fd
    await ingest(
        http,
        tenant,
        [entry(f, d, f"old {i}", timestamp=f"2026-11-0{i}T00:00:00Z") for i in range(1, 6)],
    )
    async with http.stream("GET", TAIL, params={"lines": 3}, headers=tenant.headers()) as r:
        stream = Stream(r.status_code)
        seen = []
        async for event in events(r, stream):
            seen.append(json.loads(event.data)["raw_log"])
            if len(seen) == 3:
                await ingest(http, tenant, [entry(f, d, "new")])
            if len(seen) == 4:
                break
    assert seen == ["old 3", "old 4", "old 5", "new"]
    assert stream.retry == 1000


async def test_a_resume_token_continues_right_after_the_last_line_read(http, tenant, fd):
    f, d = fd
    start = await opened(http, tenant)
    await ingest(http, tenant, [entry(f, d, f"line {i}") for i in range(10)])
    first = await read_tail(http, tenant, last_id=start, count=4)
    # The same token as a query parameter, as a client without headers would send it.
    rest = await read_tail(http, tenant, params={"last_event_id": first.last_id}, count=6)
    assert [x["raw_log"] for x in first.lines + rest.lines] == [f"line {i}" for i in range(10)]


@pytest.mark.parametrize(
    ("params", "status", "name", "message"),
    [
        ({"level": "nope"}, 400, "invalid_enum_value", "value of level must be one of"),
        ({"function_id": "x"}, 400, "invalid_format", "function_id must be formatted as"),
        ({"lines": "1001"}, 400, "invalid_range", "lines must be lesser or equal than 1000"),
        ({"last_event_id": "nope"}, 400, "invalid_format", "last_event_id must be formatted"),
    ],
)
async def test_bad_parameters_are_refused_naming_them(http, tenant, params, status, name, message):
    r = await http.get(TAIL, params=params, headers=tenant.headers())
    assert (r.status_code, error(r)["name"]) == (status, name)
    assert error(r)["message"].startswith(message)


async def test_another_projects_token_and_a_future_one_are_refused(http, make_tenant, tenant):
    other = await make_tenant()
    theirs = await opened(http, other)
    r = await http.get(TAIL, headers=tail_headers(tenant, theirs))
    assert (r.status_code, error(r)["message"]) == (
        400,
        "Last-Event-ID is a resume token of another project's tail",
    )
    ahead = encode_token(tenant.project_id, journal.Position(10**6))
    r = await http.get(TAIL, params={"last_event_id": ahead}, headers=tenant.headers())
    assert (r.status_code, error(r)["message"]) == (
        400,
        "last_event_id is past the end of this project's tail",
    )


async def test_a_missing_key_is_401(http, tenant):
    r = await http.get(TAIL, headers={"Gram-Project": tenant.slug})
    assert (r.status_code, error(r)["name"]) == (401, "unauthorized")


async def test_a_token_past_the_kept_journal_is_410(http, tenant, fd, pool):
    f, d = fd
    start = await opened(http, tenant)
    await ingest(http, tenant, [entry(f, d, "soon forgotten")])
    await ingest(http, tenant, [entry(f, d, "kept")])
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE tail_journal SET committed_at = now() - interval '2 days'"
            " WHERE project_id = $1 AND seq = (SELECT min(seq) FROM tail_journal"
            " WHERE project_id = $1)",
            tenant.project_id,
        )
        assert await journal.delete_expired(conn, hours=24) >= 1
    r = await http.get(TAIL, headers=tail_headers(tenant, start))
    assert (r.status_code, error(r)["name"]) == (410, "gone")
    assert "start a new tail" in error(r)["message"]


# -- limits and ends ----------------------------------------------------------------------------


async def test_a_key_over_its_tail_cap_gets_429_with_retry_after(serve, tenant):
    with serve(GRAMLOGS_TAIL_MAX_PER_KEY="2") as s:
        async with httpx.AsyncClient(base_url=s.url) as c:
            async with (
                c.stream("GET", TAIL, headers=tenant.headers()) as one,
                c.stream("GET", TAIL, headers=tenant.headers()) as two,
            ):
                assert (one.status_code, two.status_code) == (200, 200)
                r = await c.get(TAIL, headers=tenant.headers())
                assert (r.status_code, error(r)["name"]) == (429, "too_many_requests")
                assert r.headers["retry-after"] == "5"
            # Closed tails free their places.
            await _no_tail_open(s.url)
            assert (await opened(c, tenant)) is not None


async def test_the_maximum_duration_ends_the_stream_with_a_token_that_resumes(serve, tenant, fd):
    f, d = fd
    with serve(GRAMLOGS_TAIL_MAX_S="1", GRAMLOGS_TAIL_POLL_MS="20") as s:
        async with httpx.AsyncClient(base_url=s.url) as c:
            start = await opened(c, tenant)
            await ingest(c, tenant, [entry(f, d, "one")])
            first = await read_tail(c, tenant, last_id=start, until_end=True)
            await ingest(c, tenant, [entry(f, d, "two")])
            # A slow machine may end the first stream before "one": then the second has it.
            second = await read_tail(c, tenant, last_id=first.last_id, count=2 - len(first.lines))
    assert first.end is not None
    assert json.loads(first.end.data) == {"reason": "duration", "resume": first.last_id}
    assert [x["raw_log"] for x in first.lines + second.lines] == ["one", "two"]


async def test_shutdown_ends_tails_with_their_tokens_and_another_process_resumes(serve, tenant, fd):
    f, d = fd
    with serve() as first_server:
        async with httpx.AsyncClient(base_url=first_server.url) as c:
            start = await opened(c, tenant)
            await ingest(c, tenant, [entry(f, d, "before")])
            async with c.stream("GET", TAIL, headers=tail_headers(tenant, start)) as r:
                stream = Stream(r.status_code)
                async for event in events(r, stream):
                    if event.event == "message":
                        first_server.process.send_signal(signal.SIGTERM)
                    if event.event == "end":
                        break
    assert stream.end is not None and json.loads(stream.end.data)["reason"] == "shutdown"
    with serve() as second_server:
        async with httpx.AsyncClient(base_url=second_server.url) as c:
            await ingest(c, tenant, [entry(f, d, "after")])
            rest = await read_tail(c, tenant, last_id=stream.last_id, count=1)
    assert [x["raw_log"] for x in stream.lines + rest.lines] == ["before", "after"]


async def test_a_reader_too_slow_is_ended_with_its_token_and_catches_up(serve, tenant, fd):
    """A client that stops reading: its lines are not held without bound; it gets an end event
    (slow) once it reads again, and its token resumes with nothing lost."""
    f, d = fd
    big = "x" * 8000
    with serve(GRAMLOGS_TAIL_BUFFER_LINES="50", GRAMLOGS_TAIL_POLL_MS="20") as s:
        async with httpx.AsyncClient(base_url=s.url, timeout=60) as c:
            start = await opened(c, tenant)
            host, port = s.url.removeprefix("http://").split(":")
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect((host, int(port)))
            head = f"GET {TAIL} HTTP/1.1\r\nHost: x\r\nLast-Event-ID: {start}\r\n"
            head += "".join(f"{k}: {v}\r\n" for k, v in tenant.headers().items()) + "\r\n"
            sock.sendall(head.encode())
            # ~8 MB the client does not read: far more than the socket buffers hold.
            for n in range(20):
                await ingest(c, tenant, [entry(f, d, f"{n}.{i} {big}") for i in range(50)])
            reader = await asyncio.open_connection(sock=sock)
            received = await asyncio.wait_for(_read_until_closed(reader[0]), 30)
            reader[1].close()
            stream = _parse(received)
            assert stream.end is not None, "the slow stream did not end"
            assert json.loads(stream.end.data)["reason"] == "slow"
            rest = await read_tail(
                c, tenant, last_id=stream.last_id, count=1000 - len(stream.lines)
            )
    raws = [x["raw_log"].split()[0] for x in stream.lines + rest.lines]
    assert raws == [f"{n}.{i}" for n in range(20) for i in range(50)]


async def _read_until_closed(reader: asyncio.StreamReader) -> bytes:
    chunks = []
    while chunk := await reader.read(1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


def _parse(raw: bytes) -> Stream:
    """The events of a raw chunked HTTP response."""
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    data = bytearray()
    while body:
        size, _, body = body.partition(b"\r\n")
        n = int(size, 16)
        if n == 0:
            break
        data += body[:n]
        body = body[n + 2 :]
    stream = Stream(200)
    reader = Reader(stream)
    for line in data.decode().split("\n"):
        reader.feed(line)
    return stream


# -- exactly once, under concurrency ------------------------------------------------------------

FILTERS = ("none", "function_id", "deployment_id", "instance", "level", "source", "keyword")


def _filter_params(kind: str, f: uuid.UUID, d: uuid.UUID) -> dict[str, str]:
    return {
        "none": {},
        "function_id": {"function_id": str(f)},
        "deployment_id": {"deployment_id": str(d)},
        "instance": {"instance": "i-1"},
        "level": {"level": "error"},
        "source": {"source": "stderr"},
        # Case-insensitive, % taken literally.
        "keyword": {"keyword": "NEEDLE%"},
    }[kind]


async def _expected(pool: asyncpg.Pool, project: uuid.UUID, params: dict[str, str]) -> Counter:
    where, args = ["project_id = $1"], list[object]([project])
    for column, value in params.items():
        args.append(like_pattern(value) if column == "keyword" else value)
        n = len(args)
        if column == "keyword":
            where.append(f"(message ILIKE ${n} OR raw_log ILIKE ${n})")
        elif column in ("function_id", "deployment_id"):
            where.append(f"{column} = ${n}::uuid")
        else:
            where.append(f"{column} = ${n}")
    async with pool.acquire() as conn:
        rows = await conn.fetch(f"SELECT id FROM logs WHERE {' AND '.join(where)}", *args)
    return Counter(str(row[0]) for row in rows)


def _line(rng: random.Random, n: int, writer: int, fs, ds) -> dict[str, Any]:
    raw = f"w{writer} n{n} " + rng.choice(["plain", "a needle% here", "Needle%", "needle"])
    line = {
        **entry(rng.choice(fs), rng.choice(ds), raw),
        "level": rng.choice(["info", "error", "debug"]),
        "source": rng.choice(["stdout", "stderr", "function"]),
        "instance": rng.choice(["i-1", "i-2"]),
    }
    if rng.random() < 0.3:  # late: before what was sent already
        line["timestamp"] = (BASE - timedelta(seconds=rng.randrange(86_400))).isoformat()
    return line


async def _write(urls: list[str], tenant, writer: int, seed: int, fs, ds) -> None:
    rng = random.Random(seed)
    async with httpx.AsyncClient(timeout=30) as c:
        n = 0
        for _ in range(25):
            size = rng.randint(1, 40)
            logs = [_line(rng, n + i, writer, fs, ds) for i in range(size)]
            n += size
            url = urls[writer % len(urls)]
            if writer == 1:  # NDJSON
                body = "\n".join(json.dumps(x) for x in logs)
                r = await post_retrying(
                    c,
                    url + INGEST,
                    content=body,
                    headers={
                        **tenant.headers(producer=True),
                        "content-type": "application/x-ndjson",
                    },
                )
            else:
                r = await post_retrying(
                    c, url + INGEST, json={"logs": logs}, headers=tenant.headers(producer=True)
                )
            assert r.status_code == 200, r.text
            await asyncio.sleep(rng.random() / 50)


async def _follow(
    urls: list[str],
    tenant,
    params: dict[str, str],
    start: str,
    seed: int,
    done: asyncio.Event,
    want: list[int],
) -> list[str]:
    """A tail that hangs up after a random number of lines, then resumes on a random server,
    until ``want[0]`` lines have come and the writers are ``done``."""
    rng = random.Random(seed)
    got: list[str] = []
    last = start
    async with httpx.AsyncClient(timeout=30) as c:
        while not (done.is_set() and len(got) >= want[0]):
            url = rng.choice(urls)
            cut = rng.randint(1, 30)
            async with c.stream(
                "GET", url + TAIL, params=params, headers=tail_headers(tenant, last)
            ) as r:
                assert r.status_code == 200, await r.aread()
                stream = Stream(200)
                read = 0
                try:
                    async with asyncio.timeout(0.5 + rng.random()):
                        async for event in events(r, stream):
                            if event.event == "message":
                                got.append(json.loads(event.data)["id"])
                                read += 1
                            if read >= cut or event.event == "end":
                                break
                except TimeoutError:
                    pass
                last = stream.last_id or last
    return got


@pytest.mark.parametrize("seed", [1, 2])
async def test_every_committed_line_reaches_every_tail_exactly_once(serve, make_tenant, pool, seed):
    """4 writers (JSON and NDJSON, some lines late) on 2 server processes; one tail per filter,
    each hanging up at random points and resuming on either server: each tail's lines are
    exactly the matching committed lines, each once."""
    tenant = await make_tenant()
    rng = random.Random(seed)
    fs = [uuid.UUID(int=rng.getrandbits(128)) for _ in range(3)]
    ds = [uuid.UUID(int=rng.getrandbits(128)) for _ in range(2)]
    # A tail reconnects within milliseconds of hanging up, maybe before a busy server has seen
    # the hang-up (the cap has a test of its own); no tail outlives its connection (below).
    env = {
        "GRAMLOGS_TAIL_POLL_MS": "20",
        "GRAMLOGS_POOL_MAX": "8",
        "GRAMLOGS_TAIL_MAX_PER_KEY": "100",
    }
    with serve(**env) as one, serve(**env) as two:
        urls = [one.url, two.url]
        async with httpx.AsyncClient(base_url=one.url) as c:
            start = await opened(c, tenant)
        done = asyncio.Event()
        wants = {kind: [1 << 30] for kind in FILTERS}
        tails = {
            kind: asyncio.create_task(
                _follow(
                    urls,
                    tenant,
                    _filter_params(kind, fs[0], ds[0]),
                    start,
                    seed * 100 + i,
                    done,
                    wants[kind],
                )
            )
            for i, kind in enumerate(FILTERS)
        }
        await asyncio.gather(*(_write(urls, tenant, w, seed * 10 + w, fs, ds) for w in range(4)))
        expected = {}
        for kind in FILTERS:
            expected[kind] = await _expected(
                pool, tenant.project_id, _filter_params(kind, fs[0], ds[0])
            )
            wants[kind][0] = sum(expected[kind].values())
        done.set()
        async with asyncio.timeout(120):
            got = {kind: Counter(await task) for kind, task in tails.items()}
        for server in (one, two):
            await _no_tail_open(server.url)
    for kind in FILTERS:
        assert expected[kind], f"{kind}: no line matched; the test proves nothing"
        assert got[kind] == expected[kind], f"{kind}: delivered lines differ from the committed"


async def _no_tail_open(url: str) -> None:
    async with httpx.AsyncClient(base_url=url) as c:
        for _ in range(100):
            metrics = (await c.get("/metrics")).text
            if "\ngramlogs_tails_open 0.0\n" in metrics:
                assert "\ngramlogs_tail_watchers 0.0\n" in metrics
                return
            await asyncio.sleep(0.05)
    raise AssertionError("tails are still open on a server after their clients hung up")


def test_tokens_round_trip_and_are_bound_to_their_project():
    project, other = uuid.UUID(int=1), uuid.UUID(int=2)
    for position in (journal.Position(0), journal.Position(7, 12345), journal.Position(2**63 - 1)):
        token = encode_token(project, position)
        assert decode_token(project, token) == position
        assert token.isascii() and "=" not in token
        with pytest.raises(Exception, match="another project's tail"):
            decode_token(other, token)


# -- revocation ---------------------------------------------------------------------------------


async def revoke(pool: asyncpg.Pool, key: str) -> None:
    """Revoke ``key`` in the database, as `gramlogs keys revoke` does from any process."""
    async with connection(pool) as conn:
        key_id = await conn.fetchval("SELECT id FROM api_keys WHERE key_hash = $1", hash_key(key))
        assert await tenants.revoke_key(conn, key_id)


async def test_a_revoked_key_ends_its_open_tail_on_another_process(serve, tenant, fd, pool):
    f, d = fd
    with serve(GRAMLOGS_STREAM_KEY_CHECK_S="0.1", GRAMLOGS_TAIL_POLL_MS="20") as s:
        async with httpx.AsyncClient(base_url=s.url, timeout=30) as c:
            async with c.stream("GET", TAIL, headers=tenant.headers()) as r:
                assert r.status_code == 200
                stream = Stream(r.status_code)
                reader = Reader(stream)
                revoked = False
                async with asyncio.timeout(30):
                    async for line in r.aiter_lines():
                        event = reader.feed(line)
                        if stream.last_id and not revoked:
                            # The stream is open (its start id read): the key goes (through
                            # the database, not this server), then a line comes.
                            revoked = True
                            await revoke(pool, tenant.consumer_key)
                            await ingest(c, tenant, [entry(f, d, "after the revocation")])
                        if event is not None and event.event == "end":
                            break
            again = await c.get(TAIL, headers=tenant.headers())
    assert stream.end is not None
    assert json.loads(stream.end.data) == {"reason": "revoked", "resume": stream.last_id}
    assert again.status_code == 401
