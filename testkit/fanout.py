"""Many live tails of one project under a steady writer: the lines, the filters, the tails'
client and the writer, shared by tests/test_tail_fan_out.py (every tail gets every line it
matches exactly once) and benchmarks/tail.py (how late, at what cost).

Every line's raw_log starts with a marker (a run's prefix and the line's number), so that a tail
knows which line each event is. A tail is a bare asyncio protocol that times the bytes as the
event loop hands them over and leaves the parsing to one :class:`Arrivals` queue, parsed in
arrival order with a turn of the event loop between reads: parsing a burst of 100 tails' events
in their callbacks would make the later tails' bytes look late by the earlier tails' parsing.
The events are split by the client's own parser (:mod:`gramlogs.client.sse`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from array import array
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlencode

import asyncpg
import msgspec

from gramlogs.client.sse import EventParser
from gramlogs.core.keys import KeyScope
from gramlogs.storage import tenants
from testkit.http import AsyncHttpClient
from testkit.ports import HOST

__all__ = [
    "MIXED",
    "UNFILTERED",
    "Arrivals",
    "Filter",
    "Tail",
    "Tally",
    "Writer",
    "batch_body",
    "tally",
    "tenants_of",
]

PROJECT = "tail"
FUNCTIONS = [uuid.UUID(int=i + 1, version=4) for i in range(4)]
DEPLOYMENT = uuid.UUID(int=99, version=4)
WORDS = ("tool call started", "tool call finished", "upstream timeout", "cache lookup", "parsed")
LEVELS = ("debug", "info", "info", "warn", "error")


def line_function(n: int) -> uuid.UUID:
    return FUNCTIONS[n % len(FUNCTIONS)]


def line_level(n: int) -> str:
    return LEVELS[(n // len(FUNCTIONS)) % len(LEVELS)]


def line_word(n: int) -> str:
    return WORDS[(n // 3) % len(WORDS)]


def batch_body(prefix: str, first: int, lines: int) -> bytes:
    """NDJSON lines ``first`` .. ``first + lines - 1``; each raw_log starts with its marker.
    No timestamp: the server stamps them on arrival, as most producers' lines are."""
    out = []
    for n in range(first, first + lines):
        entry = {
            "raw_log": f"{prefix}{n} {line_word(n)} n={n}",
            "function_id": str(line_function(n)),
            "deployment_id": str(DEPLOYMENT),
            "level": line_level(n),
        }
        out.append(json.dumps(entry, separators=(",", ":")))
    return ("\n".join(out) + "\n").encode()


@dataclass(frozen=True)
class Filter:
    label: str
    params: dict[str, str]
    matches: Callable[[int], bool]


UNFILTERED = Filter("all", {}, lambda n: True)
MIXED = (
    UNFILTERED,
    Filter("level=error", {"level": "error"}, lambda n: line_level(n) == "error"),
    Filter(
        "function_id",
        {"function_id": str(FUNCTIONS[0])},
        lambda n: line_function(n) == FUNCTIONS[0],
    ),
    Filter("keyword=timeout", {"keyword": "timeout"}, lambda n: "timeout" in line_word(n)),
)


async def tenants_of(url: str, consumers: int) -> tuple[dict[str, str], list[str]]:
    """Project ``tail``: the writer's headers and ``consumers`` consumer keys."""
    conn = await asyncpg.connect(url)
    try:
        org = await tenants.create_organization(conn, "tailbench")
        project = await tenants.create_project(conn, org, PROJECT)
        producer = await tenants.create_key(conn, org, KeyScope.PRODUCER, project_id=project)
        keys = [
            (await tenants.create_key(conn, org, KeyScope.CONSUMER, name=f"tail{i}")).key
            for i in range(consumers)
        ]
    finally:
        await conn.close()
    headers = {
        "Gram-Key": producer.key,
        "Gram-Project": PROJECT,
        "Content-Type": "application/x-ndjson",
    }
    return headers, keys


class _Entry(msgspec.Struct):
    raw_log: str


_decode_entry = msgspec.json.Decoder(_Entry).decode


def dechunk(raw: bytes) -> tuple[bytes, bytes, bool]:
    """HTTP/1.1 chunked transfer coding: (the payload of the whole chunks in ``raw``, the rest,
    whether the last chunk came)."""
    out: list[bytes] = []
    pos = 0
    while (eol := raw.find(b"\r\n", pos)) >= 0:
        size = int(raw[pos:eol].split(b";", 1)[0], 16)
        end = eol + 2 + size
        if end + 2 > len(raw):
            break
        if size == 0:
            return b"".join(out), b"", True
        out.append(raw[eol + 2 : end])
        pos = end + 2
    return b"".join(out), raw[pos:], False


class Tail(asyncio.Protocol):
    """One ``GET /rpc/logs.tail`` of project ``tail``: each line's number (from its marker) and
    when the bytes of its event arrived (``time.monotonic``)."""

    def __init__(
        self,
        arrivals: Arrivals,
        port: int,
        key: str,
        tail_filter: Filter,
        prefix: str,
    ) -> None:
        self.arrivals = arrivals
        self.port = port
        self.filter = tail_filter
        self.prefix = prefix
        query = urlencode(tail_filter.params)
        head = f"GET /rpc/logs.tail{'?' + query if query else ''} HTTP/1.1\r\n"
        head += f"Host: {HOST}:{port}\r\nAccept: text/event-stream\r\n"
        head += f"Gram-Key: {key}\r\nGram-Project: {PROJECT}\r\n"
        self.request = (head + "\r\n").encode()
        self.lines = array("q")  # line numbers, in the order received
        self.times = array("d")  # time.monotonic() of the bytes that completed each
        self.foreign = 0  # events that are no line of this run
        self.ended: str | None = None  # an end event, or the stream closing, while open
        self.started = asyncio.Event()
        self.closing = False
        self.refused: str | None = None
        self._head: bytes | None = b""  # None once the response's head is read
        self._raw = b""
        self._chunked = True
        self._events = EventParser()

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        self.transport, _ = await loop.create_connection(lambda: self, HOST, self.port)
        self.transport.write(self.request)
        # The first event (an id only) comes once the tail has its start position: lines
        # committed from then on are the tail's.
        await asyncio.wait_for(self.started.wait(), 10)
        if self.refused or self.ended:
            raise RuntimeError(self.refused or f"GET /rpc/logs.tail: {self.ended}")

    def data_received(self, data: bytes) -> None:
        self.arrivals.queue(self, time.monotonic(), data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.arrivals.queue(self, time.monotonic(), None)

    def feed(self, at: float, data: bytes | None) -> None:
        """Parse bytes that arrived at ``at`` (None: the connection closed)."""
        if data is None:
            self._end("the server closed the connection")
            self.started.set()
            return
        if self._head is not None:
            self._head += data
            head, sep, rest = self._head.partition(b"\r\n\r\n")
            if not sep:
                return
            self._head = None
            status = int(head.split(b" ", 2)[1])
            if status != 200:
                self.refused = f"GET /rpc/logs.tail answered {status}: {rest[:500]!r}"
                self.started.set()
                return
            self._chunked = b"transfer-encoding: chunked" in head.lower()
            data = rest
        payload = data
        if self._chunked:
            payload, self._raw, last = dechunk(self._raw + data)
            if last:
                self._end("the response ended")
        for event in self._events.feed(payload):
            if event.type != "message":
                self._end(f"event {event.type}: {event.data}")
                continue
            marker = _decode_entry(event.data).raw_log.partition(" ")[0]
            if not marker.startswith(self.prefix):
                self.foreign += 1
                continue
            self.lines.append(int(marker[len(self.prefix) :]))
            self.times.append(at)
        if self._events.last_event_id:
            self.started.set()

    def _end(self, reason: str) -> None:
        if not self.closing and self.ended is None:
            self.ended = reason

    def close(self) -> None:
        self.closing = True
        self.transport.close()


class Arrivals:
    """Parses every tail's bytes in arrival order, one read at a time, giving the event loop a
    turn between reads so that other tails' bytes are timed as they come."""

    def __init__(self) -> None:
        self.pending: deque[tuple[Tail, float, bytes | None]] = deque()
        self._wake = asyncio.Event()
        self._parsed = asyncio.Event()
        self.lag: list[float] = []  # from a read's arrival to its parsing, s
        self._task = asyncio.create_task(self._run())

    def queue(self, tail: Tail, at: float, data: bytes | None) -> None:
        self.pending.append((tail, at, data))
        self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self.pending:
                tail, at, data = self.pending.popleft()
                self.lag.append(time.monotonic() - at)
                tail.feed(at, data)
                self._parsed.set()
                await asyncio.sleep(0)

    async def until(self, done: Callable[[], bool]) -> None:
        """Wait until ``done()`` holds, checked after each read parsed."""
        while not done():
            self._parsed.clear()
            await self._parsed.wait()

    async def drain(self, tails: list[Tail], lines: int, limit_s: float) -> None:
        """Until every tail has the lines it matches of ``lines`` (or ended, or ``limit_s``),
        then half a second more, so that a duplicate arriving late is seen."""
        wanted = [sum(1 for n in range(lines) if t.filter.matches(n)) for t in tails]
        with contextlib.suppress(TimeoutError):  # what is missing then is the caller's to see
            async with asyncio.timeout(limit_s):
                await self.until(
                    lambda: all(
                        len(t.lines) >= w or t.ended is not None
                        for t, w in zip(tails, wanted, strict=True)
                    )
                )
        await asyncio.sleep(0.5)
        async with asyncio.timeout(limit_s):
            await self.until(lambda: not self.pending)

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


@dataclass
class Writer:
    """POSTs ``batch`` lines at ``rate`` lines/s, open-loop: batch k is sent at
    k * batch / rate seconds, or at once when the previous answer came later."""

    url: str
    headers: dict[str, str]
    prefix: str
    rate: float
    batch: int
    acks: list[float] = field(default_factory=list)  # when each batch's 2xx arrived
    posts: list[float] = field(default_factory=list)  # each POST's time, s
    late: list[float] = field(default_factory=list)  # each send after its schedule, s

    @property
    def interval(self) -> float:
        return self.batch / self.rate

    @property
    def lines(self) -> int:
        return len(self.acks) * self.batch

    async def run(self, t0: float, seconds: float) -> None:
        async with AsyncHttpClient(self.url) as http:
            k = 0
            while (due := k * self.interval) < seconds:
                body = batch_body(self.prefix, k * self.batch, self.batch)
                request = http.request("/rpc/logs.ingest", self.headers, body)
                await asyncio.sleep(max(0.0, t0 + due - time.monotonic()))
                sent = time.monotonic()
                status, reply = await http.send(request)
                acked = time.monotonic()
                if status != 200:
                    raise RuntimeError(f"ingest answered {status}: {reply[:300]!r}")
                if json.loads(reply)["stored"] != self.batch:
                    raise RuntimeError(f"ingest stored less than the batch: {reply[:300]!r}")
                self.acks.append(acked)
                self.posts.append(acked - sent)
                self.late.append(sent - (t0 + due))
                k += 1


@dataclass(frozen=True)
class Tally:
    """What one tail got against the ``lines`` written: ``counts[n]`` times line n (at most
    255), and what is wrong."""

    counts: bytearray
    missing: int  # lines it matches and never got
    duplicates: int  # second and later copies
    unexpected: int  # lines it does not match, or no line of the run
    foreign: int  # events of another run
    ended: str | None

    @property
    def problem(self) -> str | None:
        if not (self.missing or self.duplicates or self.unexpected or self.foreign or self.ended):
            return None
        return (
            f"{self.missing} missing, {self.duplicates} duplicates, {self.unexpected} not"
            f" matching its filter, {self.foreign} of another run"
            + (f"; ended: {self.ended}" if self.ended else "")
        )


def tally(tail: Tail, lines: int) -> Tally:
    counts = bytearray(lines)
    stray = 0
    for n in tail.lines:
        if not (0 <= n < lines) or not tail.filter.matches(n):
            stray += 1
            continue
        counts[n] = min(255, counts[n] + 1)
    lost = sum(1 for n in range(lines) if tail.filter.matches(n) and not counts[n])
    doubled = sum(c - 1 for c in counts if c > 1)
    return Tally(counts, lost, doubled, stray, tail.foreign, tail.ended)
