"""A first burst of lines with live tails reading them: the scenario of a new install.

Writers POST NDJSON batches of 1 to 40 lines to one function of one project (a share of them
dated minutes in the past: late lines), ``lines`` in all at about ``lines_per_s``: a fixed
count, so that a slow machine takes longer rather than sending fewer. Meanwhile one tail hangs
up after every ``hang_up_after`` lines and reconnects at once with ``Last-Event-ID``, and
another stays connected with ``level=error``. :func:`run` returns what each tail received and
when, for the exactly-once check (tests/test_tail_catch_up.py), and made the figures of
benchmarks/catch_up.py (retired since af8a818; see docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import msgspec

from gramlogs.client.sse import EventParser
from gramlogs.core.keys import KeyScope
from gramlogs.storage import tenants

__all__ = ["Burst", "Outcome", "keys_of_a_new_tenant", "post_retrying", "run"]

_LEVELS = ("debug", "info", "info", "info", "warn", "error")


@dataclass(frozen=True)
class Burst:
    url: str
    project: str  # slug
    consumer_key: str
    producer_key: str
    writers: int = 4
    lines: int = 32_000  # all writers together
    lines_per_s: float = 1600.0  # all writers together, at most
    late_share: float = 0.15  # lines dated 1 to 90 minutes in the past
    hang_up_after: int = 150
    settle_s: float = 30.0  # how long the tails may take to finish after the writers stop
    seed: int = 0


@dataclass
class Outcome:
    sent: dict[str, str] = field(default_factory=dict)  # raw_log -> level
    writers_done_at: float = 0.0
    reconnecting: list[str] = field(default_factory=list)  # raw_logs in arrival order
    connected: list[str] = field(default_factory=list)  # the level=error tail's
    connections: list[float] = field(default_factory=list)  # seconds each reconnecting one lasted
    caught_up_at: float | None = None  # when the reconnecting tail had every line
    errors: list[str] = field(default_factory=list)


class _Line(msgspec.Struct):
    raw_log: str


_decode = msgspec.json.Decoder(_Line).decode
_encode = msgspec.json.Encoder().encode


async def post_retrying(
    client: httpx.AsyncClient, url: str, *, attempts: int = 5, **kwargs: object
) -> httpx.Response:
    """POST as a well-behaved client does: again after a 503 (a busy server's statement time
    limit or pool wait; the batch was not stored, or is a duplicate the second time), after
    its Retry-After or a fifth of a second."""
    for _ in range(attempts - 1):
        r = await client.post(url, **kwargs)  # type: ignore[arg-type]
        if r.status_code != 503:
            return r
        await asyncio.sleep(float(r.headers.get("retry-after", "0.2")))
    return await client.post(url, **kwargs)  # type: ignore[arg-type]


async def keys_of_a_new_tenant(database_url: str, slug: str) -> tuple[str, str]:
    """A new organization with project ``slug``: its consumer and producer keys."""
    conn = await asyncpg.connect(database_url)
    try:
        org = await tenants.create_organization(conn, slug)
        await tenants.create_project(conn, org, slug)
        consumer = await tenants.create_key(conn, org, KeyScope.CONSUMER)
        producer = await tenants.create_key(conn, org, KeyScope.PRODUCER)
    finally:
        await conn.close()
    return consumer.key, producer.key


async def run(burst: Burst) -> Outcome:
    """Write ``burst.lines``, then wait until the tails have every line (or settle_s)."""
    outcome = Outcome()
    stop = asyncio.Event()
    headers = {"Gram-Key": burst.consumer_key, "Gram-Project": burst.project}
    limits = httpx.Limits(max_connections=burst.writers + 4)
    async with httpx.AsyncClient(base_url=burst.url, timeout=30, limits=limits) as client:
        tails = [
            asyncio.create_task(_reconnecting(client, headers, burst, outcome, stop)),
            asyncio.create_task(_connected(client, headers, outcome, stop)),
        ]
        await asyncio.sleep(0.5)  # both tails open before the first line
        function = str(uuid.UUID(int=burst.seed + 1))
        writers = [
            _write(client, burst, outcome, function, n, random.Random(burst.seed * 100 + n))
            for n in range(burst.writers)
        ]
        await asyncio.gather(*writers)
        outcome.writers_done_at = time.monotonic()
        errors = sum(1 for level in outcome.sent.values() if level == "error")
        deadline = outcome.writers_done_at + burst.settle_s
        while time.monotonic() < deadline:
            if outcome.caught_up_at is None and len(outcome.reconnecting) >= len(outcome.sent):
                outcome.caught_up_at = time.monotonic()
            if outcome.caught_up_at is not None and len(outcome.connected) >= errors:
                break
            await asyncio.sleep(0.02)
        stop.set()
        for task in tails:
            task.cancel()
        await asyncio.gather(*tails, return_exceptions=True)
    return outcome


async def _write(
    client: httpx.AsyncClient,
    burst: Burst,
    outcome: Outcome,
    function: str,
    writer: int,
    rng: random.Random,
) -> None:
    rate = burst.lines_per_s / burst.writers
    share = burst.lines // burst.writers + (writer < burst.lines % burst.writers)
    start = time.monotonic()
    sent = 0
    deployment = str(uuid.UUID(int=burst.seed + 2))
    while sent < share:
        if sent > rate * (elapsed := time.monotonic() - start):
            await asyncio.sleep(sent / rate - elapsed)
        now = datetime.now(UTC)
        entries = []
        for _ in range(min(rng.randint(1, 40), share - sent)):
            at = now
            if rng.random() < burst.late_share:
                at -= timedelta(minutes=rng.uniform(1, 90))
            raw = f"w{writer}-{sent}"
            level = rng.choice(_LEVELS)
            outcome.sent[raw] = level
            sent += 1
            entries.append(
                {
                    "raw_log": raw,
                    "level": level,
                    "timestamp": at.isoformat(),
                    "function_id": function,
                    "deployment_id": deployment,
                }
            )
        body = b"\n".join(_encode(e) for e in entries)
        headers = {
            "Gram-Key": burst.producer_key,
            "Gram-Project": burst.project,
            "Content-Type": "application/x-ndjson",
        }
        r = await post_retrying(client, "/rpc/logs.ingest", content=body, headers=headers)
        if r.status_code != 200:
            outcome.errors.append(f"ingest answered {r.status_code}: {r.text[:200]}")
            return


async def _reconnecting(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    burst: Burst,
    outcome: Outcome,
    stop: asyncio.Event,
) -> None:
    last_id = ""
    while not stop.is_set():
        opened = time.monotonic()
        parser = EventParser(last_id)
        extra = {"Last-Event-ID": last_id} if last_id else {}
        async with client.stream("GET", "/rpc/logs.tail", headers={**headers, **extra}) as r:
            if r.status_code != 200:
                outcome.errors.append(f"tail answered {r.status_code}: {(await r.aread())[:200]!r}")
                return
            last_id = await _read_some(r, parser, burst.hang_up_after, outcome.reconnecting)
        outcome.connections.append(time.monotonic() - opened)


async def _read_some(r: httpx.Response, parser: EventParser, lines: int, into: list[str]) -> str:
    """Read ``lines`` lines (however the server cut them into chunks) and hang up; the id of the
    last one read, to resume after."""
    last_id = parser.last_event_id
    async for chunk in r.aiter_raw():
        for event in parser.feed(chunk):
            if event.type != "message":
                continue
            into.append(_decode(event.data).raw_log)
            last_id = event.id
            if (lines := lines - 1) == 0:
                return last_id
    return last_id


async def _connected(
    client: httpx.AsyncClient, headers: dict[str, str], outcome: Outcome, stop: asyncio.Event
) -> None:
    parser = EventParser()
    params = {"level": "error"}
    async with client.stream("GET", "/rpc/logs.tail", params=params, headers=headers) as r:
        async for chunk in r.aiter_raw():
            for event in parser.feed(chunk):
                if event.type == "message":
                    outcome.connected.append(_decode(event.data).raw_log)
                elif event.type == "end":
                    outcome.errors.append(f"the connected tail ended: {event.data}")
            if stop.is_set():
                return
