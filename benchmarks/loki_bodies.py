"""The same log lines as three request bodies, for benchmarks/loki.py's push comparison: NDJSON
for ``POST /rpc/logs.ingest``, and Loki's JSON and snappy-compressed protobuf ``PushRequest`` for
``POST /loki/api/v1/push``.

A line is what ``producer.make_batches`` writes (about 200 bytes, 8 functions, Gram's level
mix). In a Loki body, a batch's lines are grouped into streams by their labels
(``function_id``, ``deployment_id``, ``level``: the labels that map onto the same columns), as a
shipper groups them, so each batch of 1,000 lines holds about 32 streams.

The protobuf is encoded here by hand from Loki's push.proto (Apache-2.0): PushRequest
{1: repeated StreamAdapter}, StreamAdapter {1: labels text, 2: repeated EntryAdapter},
EntryAdapter {1: google.protobuf.Timestamp, 2: line}; the protobuf runtime would cost the
benchmark a generated class for three messages.
"""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import cramjam

from benchmarks.producer import LEVELS, WORDS

__all__ = ["Line", "loki_json", "loki_protobuf", "make_lines", "ndjson"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Line:
    ts: datetime  # whole microseconds: the store keeps no finer
    function_id: uuid.UUID
    deployment_id: uuid.UUID
    level: str
    text: str

    @property
    def ns(self) -> int:
        return (self.ts - _EPOCH) // timedelta(microseconds=1) * 1000


def make_lines(
    count: int, seed: int, start: datetime = datetime(2025, 6, 1, tzinfo=UTC)
) -> list[Line]:
    """``count`` lines ~1 ms apart from ``start``, the same for the same ``seed``."""
    rng = random.Random(seed)
    functions = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(8)]
    deployments = {f: uuid.UUID(int=rng.getrandbits(128), version=4) for f in functions}
    out = []
    for i in range(count):
        f = rng.choice(functions)
        word = rng.choice(WORDS)
        out.append(
            Line(
                ts=start + timedelta(microseconds=i * 997),
                function_id=f,
                deployment_id=deployments[f],
                level=rng.choice(LEVELS),
                text=f"{word} id={rng.getrandbits(32):08x} ms={rng.randrange(1, 5000)}",
            )
        )
    return out


_encode = json.JSONEncoder(separators=(",", ":")).encode


def ndjson(lines: list[Line]) -> bytes:
    """A ``logs.ingest`` body (application/x-ndjson)."""
    rows = (
        _encode(
            {
                "raw_log": line.text,
                "function_id": str(line.function_id),
                "deployment_id": str(line.deployment_id),
                "timestamp": f"{line.ts:%Y-%m-%dT%H:%M:%S.%fZ}",
                "level": line.level,
            }
        )
        for line in lines
    )
    return ("\n".join(rows) + "\n").encode()


def _streams(lines: list[Line]) -> dict[tuple[uuid.UUID, uuid.UUID, str], list[Line]]:
    streams: dict[tuple[uuid.UUID, uuid.UUID, str], list[Line]] = {}
    for line in lines:
        streams.setdefault((line.function_id, line.deployment_id, line.level), []).append(line)
    return streams


def loki_json(lines: list[Line]) -> bytes:
    """A Loki push body (application/json)."""
    streams = [
        {
            "stream": {"function_id": str(f), "deployment_id": str(d), "level": level},
            "values": [[str(line.ns), line.text] for line in entries],
        }
        for (f, d, level), entries in _streams(lines).items()
    ]
    return _encode({"streams": streams}).encode()


def loki_protobuf(lines: list[Line]) -> bytes:
    """A Loki push body (application/x-protobuf): a PushRequest in snappy's block format."""
    request = bytearray()
    for (f, d, level), entries in _streams(lines).items():
        labels = f'{{function_id="{f}", deployment_id="{d}", level="{level}"}}'
        stream = bytearray(_field(1, labels.encode()))
        for line in entries:
            seconds, nanos = divmod(line.ns, 1_000_000_000)
            timestamp = _tag(1, 0) + _varint(seconds) + _tag(2, 0) + _varint(nanos)
            stream += _field(2, _field(1, timestamp) + _field(2, line.text.encode()))
        request += _field(1, bytes(stream))
    return bytes(cramjam.snappy.compress_raw(bytes(request)))


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _tag(number: int, wire: int) -> bytes:
    return _varint(number << 3 | wire)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _tag(number, 2) + _varint(len(payload)) + payload
