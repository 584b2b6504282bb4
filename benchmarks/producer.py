"""A producer of log lines, as the benchmarks play one: NDJSON bodies, a project with its
producer key, and concurrent clients POSTing to ``/rpc/logs.ingest``, timed batch by batch."""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg

from gramlogs.core.keys import KeyScope
from gramlogs.storage import tenants
from testkit.http import AsyncHttpClient

__all__ = ["INGEST", "LEVELS", "WORDS", "Sent", "headers", "make_batches", "new_project", "send"]

INGEST = "/rpc/logs.ingest"

# The lines' words and levels (benchmarks/loki_bodies.py makes its lines of the same).
WORDS = (
    "tool call started",
    "tool call finished",
    "fetched records from upstream",
    "cache lookup",
    "retrying request",
    "rate limited, backing off",
    "upstream returned 502",
    "parsed arguments",
)
LEVELS = ("debug",) * 20 + ("info",) * 55 + ("warn",) * 15 + ("error",) * 10


def make_batches(
    lines: int,
    batch: int,
    seed: int,
    start: datetime = datetime(2025, 6, 1, tzinfo=UTC),
    step: timedelta = timedelta(microseconds=997),
) -> list[bytes]:
    """NDJSON bodies of ``batch`` lines of about 200 bytes each, timestamps from ``start`` on,
    ``step`` apart."""
    rng = random.Random(seed)
    functions = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(8)]
    deployments = {f: uuid.UUID(int=rng.getrandbits(128), version=4) for f in functions}
    encode = json.JSONEncoder(separators=(",", ":")).encode
    bodies = []
    for b in range(0, lines, batch):
        out = []
        for i in range(b, min(b + batch, lines)):
            f = rng.choice(functions)
            word = rng.choice(WORDS)
            entry = {
                "raw_log": f"{word} id={rng.getrandbits(32):08x} ms={rng.randrange(1, 5000)}",
                "function_id": str(f),
                "deployment_id": str(deployments[f]),
                "timestamp": f"{start + i * step:%Y-%m-%dT%H:%M:%S.%fZ}",
                "level": rng.choice(LEVELS),
            }
            out.append(encode(entry))
        bodies.append(("\n".join(out) + "\n").encode())
    return bodies


def headers(key: str, slug: str) -> dict[str, str]:
    return {"Gram-Key": key, "Gram-Project": slug, "Content-Type": "application/x-ndjson"}


async def new_project(conn: asyncpg.Connection, label: str) -> tuple[uuid.UUID, dict[str, str]]:
    """A project of a new organization, and the headers of a producer key of it."""
    org = await tenants.create_organization(conn, f"bench-{label}-{secrets.token_hex(3)}")
    project = await tenants.create_project(conn, org, "bench")
    key = await tenants.create_key(conn, org, KeyScope.PRODUCER)
    return project, headers(key.key, "bench")


@dataclass
class Sent:
    lines: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)  # per batch, of the send stored
    stored: int = 0
    duplicates: int = 0
    resent: int = 0

    @property
    def rate(self) -> float:
        return self.lines / self.seconds


async def send(
    base: str,
    batches: Iterable[tuple[dict[str, str], bytes, int]],
    clients: int,
    *,
    on_batch: Callable[[int], None] | None = None,
) -> Sent:
    """POST every (headers, body, lines) of ``batches``, ``clients`` at a time, each client
    taking the next as soon as its last is stored. A 429 or 503 (or a dropped connection) is
    sent again after a second, as a producer would: ids derived from the lines' content make a
    resend store nothing twice. ``on_batch`` hears of each batch's lines as they are stored."""
    sent = Sent()
    queue = iter(batches)

    async def client() -> None:
        http = AsyncHttpClient(base)
        await http.connect()
        try:
            for head, body, lines in queue:
                request = http.request(INGEST, head, body)
                while True:
                    started = time.perf_counter()
                    try:
                        status, reply = await http.send(request)
                    except (ConnectionError, asyncio.IncompleteReadError):
                        status, reply = 0, b""
                        http.writer.close()
                        await http.connect()
                    if status == 200:
                        break
                    if status not in (0, 429, 503):
                        raise RuntimeError(f"ingest answered {status}: {reply[:300]!r}")
                    sent.resent += 1
                    await asyncio.sleep(1.0)
                sent.latencies.append(time.perf_counter() - started)
                answer = json.loads(reply)
                sent.stored += answer["stored"]
                sent.duplicates += answer["duplicates"]
                sent.lines += lines
                if on_batch is not None:
                    on_batch(lines)
        finally:
            http.writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    sent.seconds = time.perf_counter() - started
    return sent
