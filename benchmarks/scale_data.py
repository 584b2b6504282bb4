"""The lines of benchmarks/scale_ingest.py: generated once from a seed, kept on disk, streamed.

How it measures, and how to run it: docs/benchmarks.md, "scale_data".
"""

from __future__ import annotations

import json
import os
import random
import shutil
import struct
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec

CACHE = Path(__file__).parent / ".cache"
VERSION = 1  # bump when the lines change, so that old caches are not reused
MAX_AGE = timedelta(days=20)  # well inside the server's 30 days of partitions

RARE, FREQUENT, ABSENT = "quokka", "latency", "wombat"
RARE_SHARE, FREQUENT_SHARE = 0.001, 0.30
KEYWORDS = {"rare (0.1%)": RARE, "absent": ABSENT, "frequent (30%)": FREQUENT}  # as reported
HOT_SHARE = 0.20
MAX_LINE = 300  # bytes of an NDJSON line, its newline included
FUNCTIONS, DEPLOYMENTS, INSTANCES = 10, 3, 4

# The columns of rows.pgcopy, in order: those of gramlogs' logs table.
FLOOR_COLUMNS = (
    "project_id", "id", "timestamp", "instance", "level", "source", "raw_log", "message",
    "attributes", "deployment_id", "function_id", "execution_id",
)  # fmt: skip

_TOOLS = (
    "search_flights", "get_weather", "create_ticket", "send_email", "lookup_customer",
    "summarize_doc", "charge_card", "list_orders", "fetch_invoice", "book_room",
)  # fmt: skip
_HOSTS = ("api.stripe.com", "maps.example.org", "crm.internal", "mail.relay", "search.svc")
_ADJECTIVES = ("snowy", "misty", "amber", "rapid", "silent", "lucky", "bold", "hidden")
_NOUNS = ("water", "forest", "river", "cloud", "stone", "meadow", "ember", "harbor")
_MESSAGES = {
    "debug": (
        "cache lookup key=user:{k} hit={b}",
        "parsed {n} arguments for {tool}",
        "retrying request to {host} attempt={a} after {n} ms",
        "connection pool size={a} idle={b}",
    ),
    "info": (
        "tool call started tool={tool} call={k}",
        "tool call finished tool={tool} status=200 in {n} ms",
        "fetched {n} records from {host}",
        "request id={k} completed status=200",
        "wrote {n} bytes to object store bucket={k}",
    ),
    "warn": (
        "slow upstream {host}: {n} ms",
        "rate limited by {host}, backing off {n} ms",
        "deprecated argument {k} passed to {tool}",
    ),
    "error": (
        "upstream {host} returned 502 after {n} ms",
        "timeout calling {host} after {n} ms",
        "unhandled exception in {tool}: KeyError('{k}')",
    ),
}
_SERVER_LINES = ("container started", "health check ok", "cold start {n} ms", "scaled up to {a}")
_SOURCES = ("function",) * 80 + ("stdout",) * 8 + ("stderr",) * 7 + ("server",) * 5
_LEVELS = ("debug",) * 20 + ("info",) * 55 + ("warn",) * 15 + ("error",) * 10
# Few functions send most lines: Zipf-like weights over a project's ten.
_FUNCTION_WEIGHTS = tuple(1 / (i + 1) for i in range(FUNCTIONS))

_encode = msgspec.json.encode
_PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01T00:00:00Z, the origin of binary timestamptz
_PGCOPY_HEAD = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
_PGCOPY_TAIL = struct.pack("!h", -1)
_NULL = struct.pack("!i", -1)


@dataclass(frozen=True)
class Spec:
    lines: int
    projects: int
    batch: int
    seed: int = 0
    span_hours: float = 6.0

    @property
    def name(self) -> str:
        return f"scale_{self.lines}_{self.projects}p_b{self.batch}_s{self.seed}_v{VERSION}"


@dataclass(frozen=True)
class Batch:
    project: int  # index into Data.projects
    lines: int
    body: tuple[int, int]  # offset and length in bodies.ndjson
    rows: tuple[int, int]  # offset and length in rows.pgcopy


@dataclass(frozen=True)
class Project:
    slug: str
    id: str
    functions: list[str]  # most lines first
    lines: int
    rare: int  # lines with RARE
    frequent: int  # lines with FREQUENT


@dataclass(frozen=True)
class Data:
    spec: Spec
    folder: Path
    base: datetime  # the newest line is at most a second after it
    projects: list[Project]
    batches: list[Batch]
    body_bytes: int
    line_bytes: dict[str, float]  # min, mean, max of one NDJSON line, newline included
    generated_s: float

    @property
    def hot(self) -> Project:
        return self.projects[0]

    def bodies(self) -> Iterator[tuple[Batch, bytes]]:
        """Each batch and its request body, read from disk as it is needed."""
        with (self.folder / "bodies.ndjson").open("rb") as f:
            for b in self.batches:
                f.seek(b.body[0])
                yield b, f.read(b.body[1])

    def rows(self) -> Iterator[tuple[Batch, bytes]]:
        """Each batch and its binary COPY payload."""
        with (self.folder / "rows.pgcopy").open("rb") as f:
            for b in self.batches:
                f.seek(b.rows[0])
                yield b, f.read(b.rows[1])


def hot_line(data: Data, k: int) -> dict[str, Any]:
    """The hot project's line ``k`` as its NDJSON says, 0 its first (lines are made oldest
    first, give or take the second of jitter), read from the one body that holds it."""
    seen = 0
    for batch in data.batches:
        if batch.project != 0:
            continue
        if k < seen + batch.lines:
            with (data.folder / "bodies.ndjson").open("rb") as f:
                f.seek(batch.body[0])
                body = f.read(batch.body[1])
            line: dict[str, Any] = msgspec.json.decode(body.splitlines()[k - seen])
            return line
        seen += batch.lines
    raise IndexError(f"the hot project has {seen:,} lines, not {k + 1:,}")


def load(spec: Spec, *, now: datetime | None = None) -> Data:
    """The cached lines of ``spec``, generating them first when there are none fit to use."""
    now = now or datetime.now(UTC)
    folder = CACHE / spec.name
    meta = folder / "meta.json"
    if meta.exists():
        data = _read(spec, folder)
        if now - MAX_AGE <= data.base <= now + timedelta(hours=1):
            return data
        print(f"{spec.name}: made {data.base:%Y-%m-%d %H:%M}, too old: made again", file=sys.stderr)
    shutil.rmtree(folder, ignore_errors=True)
    base = now.replace(minute=0, second=0, microsecond=0)
    return generate(spec, folder, base)


def _read(spec: Spec, folder: Path) -> Data:
    meta = json.loads((folder / "meta.json").read_text())
    return Data(
        spec=spec,
        folder=folder,
        base=datetime.fromisoformat(meta["base"]),
        projects=[Project(**p) for p in meta["projects"]],
        batches=[Batch(p, n, (bo, bl), (ro, rl)) for p, n, bo, bl, ro, rl in meta["batches"]],
        body_bytes=meta["body_bytes"],
        line_bytes=meta["line_bytes"],
        generated_s=meta["generated_s"],
    )


def _batch_projects(spec: Spec) -> list[int]:
    """Each batch's project: the hot one every fifth, the others in turns (shuffled once)."""
    count = -(-spec.lines // spec.batch)
    rng = random.Random(f"batches-{spec.seed}")
    others = list(range(1, spec.projects))
    rng.shuffle(others)
    out, turn = [], 0
    for k in range(count):
        # Bresenham: exactly round(count * HOT_SHARE) hot batches, evenly spread.
        if not others or int((k + 1) * HOT_SHARE) > int(k * HOT_SHARE):
            out.append(0)
        else:
            out.append(others[turn % len(others)])
            turn += 1
    return out


def _planted(lines: int, share: float, rng: random.Random) -> set[int]:
    return set(rng.sample(range(lines), round(lines * share)))


class _Project:
    """What one project's lines are made of, and its running state (executions)."""

    def __init__(self, index: int, rng: random.Random, lines: int) -> None:
        self.slug = f"p{index:03d}"
        self.id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        self.id_bytes = uuid.UUID(self.id).bytes
        self.functions = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(10)]
        self.function_bytes = [uuid.UUID(f).bytes for f in self.functions]
        self.deployments = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(3)]
        self.deployment_bytes = [uuid.UUID(d).bytes for d in self.deployments]
        self.instances = [
            f"{rng.choice(_ADJECTIVES)}-{rng.choice(_NOUNS)}-{rng.randrange(100, 1000)}"
            for _ in range(INSTANCES)
        ]
        self.executions = [f"ex-{rng.getrandbits(32):08x}" for _ in range(FUNCTIONS)]
        self.lines = lines
        planter = random.Random(f"plant-{index}-{rng.random()}")
        self.rare = _planted(lines, RARE_SHARE, planter)
        self.frequent = _planted(lines, FREQUENT_SHARE, planter)
        self.done = 0  # lines made so far
        self.found = dict.fromkeys((RARE, FREQUENT, ABSENT), 0)  # lines a keyword search finds


def generate(spec: Spec, folder: Path, base: datetime) -> Data:
    """Make the cache of ``spec`` in ``folder``, timestamps ending at ``base``."""
    started = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(spec.seed)
    owners = _batch_projects(spec)
    counts = [0] * spec.projects
    for k, owner in enumerate(owners):
        counts[owner] += min(spec.batch, spec.lines - k * spec.batch)
    projects = [_Project(i, rng, counts[i]) for i in range(spec.projects)]
    span_us = int(spec.span_hours * 3600e6)
    start_us = int(base.timestamp() * 1e6) - span_us
    batches: list[list[int]] = []
    lengths = [1 << 30, 0, 0]  # min, total, max
    seconds: dict[int, str] = {}
    body_at = rows_at = 0
    with (
        (folder / "bodies.ndjson").open("wb") as bodies,
        (folder / "rows.pgcopy").open("wb") as rows,
    ):
        for k, owner in enumerate(owners):
            project = projects[owner]
            lines, records = [], [_PGCOPY_HEAD]
            for g in range(k * spec.batch, min((k + 1) * spec.batch, spec.lines)):
                jitter = rng.randrange(-1_000_000, 1_000_000)
                ts = start_us + int(span_us * (g + rng.random()) / spec.lines) + jitter
                line, record = _line(project, g, ts, spec.lines, rng, seconds)
                lines.append(line)
                records.append(record)
                lengths[0] = min(lengths[0], len(line) + 1)
                lengths[1] += len(line) + 1
                lengths[2] = max(lengths[2], len(line) + 1)
            body = b"\n".join(lines) + b"\n"
            payload = b"".join(records) + _PGCOPY_TAIL
            bodies.write(body)
            rows.write(payload)
            batches.append([owner, len(lines), body_at, len(body), rows_at, len(payload)])
            body_at += len(body)
            rows_at += len(payload)
            if k % 20 == 0 or k == len(owners) - 1:
                _progress(k + 1, len(owners), started)
    for p in projects:
        planted = {RARE: len(p.rare), FREQUENT: len(p.frequent), ABSENT: 0}
        if p.found != planted:
            raise RuntimeError(f"{p.slug}: words found {p.found}, planted {planted}")
    described = [
        {"slug": p.slug, "id": p.id, "functions": p.functions, "lines": p.lines,
         "rare": len(p.rare), "frequent": len(p.frequent)}
        for p in projects
    ]  # fmt: skip
    meta: dict[str, Any] = {
        "spec": asdict(spec),
        "base": base.isoformat(),
        "projects": described,
        "batches": batches,
        "body_bytes": body_at,
        "line_bytes": {
            "min": lengths[0],
            "mean": round(lengths[1] / spec.lines, 1),
            "max": lengths[2],
        },
        "generated_s": round(time.perf_counter() - started, 1),
    }
    tmp = folder / "meta.json.tmp"
    tmp.write_text(json.dumps(meta))
    os.replace(tmp, folder / "meta.json")
    return _read(spec, folder)


def _progress(done: int, total: int, started: float) -> None:
    rate = done / max(time.perf_counter() - started, 1e-9)
    end = "\n" if done == total else ""
    print(f"\rgenerating lines: batch {done:,}/{total:,} ({rate:,.0f}/s)", end=end, file=sys.stderr)


def _line(
    p: _Project, g: int, ts: int, total: int, rng: random.Random, seconds: dict[int, str]
) -> tuple[bytes, bytes]:
    """Line ``g`` of the run (the project's next) as NDJSON and as a binary COPY record."""
    f = rng.choices(range(FUNCTIONS), cum_weights=_CUMULATIVE)[0]
    tool = _TOOLS[f]
    level = _LEVELS[rng.randrange(100)]
    r = rng.random()
    source = _SOURCES[int(r * 100)]
    n, a = rng.randrange(1, 5000), rng.randrange(1, 9)
    k = f"{rng.getrandbits(24):06x}"
    template = rng.choice(_SERVER_LINES if source == "server" else _MESSAGES[level])
    text = template.format(n=n, a=a, k=k, b=r < 0.4, tool=tool, host=_HOSTS[a % len(_HOSTS)])
    i = p.done
    p.done += 1
    if i in p.frequent:
        text += f" {FREQUENT}={rng.randrange(1, 900)}ms"
    if i in p.rare:
        text += f" {RARE}"
    message = None
    if source == "function" and r < 0.15:
        # A structured line: the parsed message beside the JSON it came from.
        message = text
        raw = _encode({"msg": text}).decode()
    else:
        raw = text
    if source == "function" and rng.random() < 0.05:
        p.executions[f] = f"ex-{rng.getrandbits(32):08x}"
    execution = p.executions[f] if source == "function" else None
    u = rng.random()
    attributes: dict[str, int] | None = None
    if u < 0.2:
        attributes = {"attempt": a}
    elif u < 0.3:
        attributes = {"status": 502 if level == "error" else 200}
    instance = p.instances[a % INSTANCES]
    deployment = (f + 3 * g // total) % DEPLOYMENTS
    sec, micros = divmod(ts, 1_000_000)
    stamp = seconds.get(sec)
    if stamp is None:
        if len(seconds) > 100:
            seconds.clear()
        stamp = seconds[sec] = datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    # Level and source are left out when they are the default (info, function), as producers do.
    entry: dict[str, Any] = {"timestamp": f"{stamp}.{micros:06d}Z"}
    optional = {
        "level": level if level != "info" else None,
        "source": source if source != "function" else None,
        "instance": instance,
        "function_id": p.functions[f],
        "deployment_id": p.deployments[deployment],
        "execution_id": execution,
        "raw_log": raw,
        "message": message,
        "attributes": attributes,
    }
    entry |= {k: v for k, v in optional.items() if v is not None}
    line = _encode(entry)
    # At most MAX_LINE bytes: optional fields go, least telling first, until the line fits.
    for name in ("attributes", "execution_id", "instance", "message"):
        if len(line) < MAX_LINE:
            break
        if entry.pop(name, None) is not None:
            line = _encode(entry)
    attributes = entry.get("attributes")
    execution = entry.get("execution_id")
    message = entry.get("message")
    instance = entry.get("instance", "")
    searched = f"{raw}\x01{message or ''}".lower()
    for word in p.found:
        if word in searched:
            p.found[word] += 1
    # The row: its id a UUIDv7 of the timestamp (ms, then µs in rand_a), the line's index below.
    ms, us = divmod(ts, 1000)
    row_id = (ms << 80 | 0x7 << 76 | us << 64 | 0b10 << 62 | g).to_bytes(16, "big")
    record = b"".join((
        b"\x00\x0c", _UUID_FIELD, p.id_bytes, _UUID_FIELD, row_id,
        _INT8_FIELD, struct.pack("!q", ts - _PG_EPOCH_US),
        _text(instance), _text(level), _text(source), _text(raw),
        _NULL if message is None else _text(message),
        _jsonb(b"{}" if attributes is None else _encode(attributes)),
        _UUID_FIELD, p.deployment_bytes[deployment], _UUID_FIELD, p.function_bytes[f],
        _NULL if execution is None else _text(execution),
    ))  # fmt: skip
    return line, record


_CUMULATIVE = [sum(_FUNCTION_WEIGHTS[: i + 1]) for i in range(FUNCTIONS)]
_UUID_FIELD = struct.pack("!i", 16)
_INT8_FIELD = struct.pack("!i", 8)


def _text(value: str) -> bytes:
    data = value.encode()
    return struct.pack("!i", len(data)) + data


def _jsonb(data: bytes) -> bytes:
    return struct.pack("!ib", len(data) + 1, 1) + data
