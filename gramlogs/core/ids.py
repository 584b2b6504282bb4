"""Log ids: UUIDv7 values that are positions in time.

Layout (RFC 9562 UUIDv7, "method 3" sub-millisecond precision)::

    bits 0-47    unix_ts_ms     milliseconds since 1970-01-01T00:00:00Z
    bits 48-51   ver            0b0111
    bits 52-63   rand_a         microseconds within that millisecond, 0-999
    bits 64-65   var            0b10
    bits 66-127  rand_b         62 random bits

PostgreSQL compares uuids bytewise (as unsigned 128-bit integers), so ``ORDER BY id`` equals
``ORDER BY timestamp`` to the microsecond with a random, stable tie-break. That one fact lets a
cursor be a bare id, a time window be an id range, and partitions be id ranges.
"""

from __future__ import annotations

import re
import secrets
import uuid
from datetime import UTC, datetime, timedelta

import uuid6

__all__ = [
    "MAX_TIMESTAMP",
    "MIN_TIMESTAMP",
    "IdError",
    "highest_id",
    "id_prefix",
    "lowest_id",
    "new_id",
    "parse_rfc3339",
    "parse_uuid",
    "timestamp_of",
]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MIN_TIMESTAMP = EPOCH
# Gram's documented default for ts_end; later timestamps are refused so every id stays sortable
# in the same 48-bit field for the life of any deployment.
MAX_TIMESTAMP = datetime(2100, 1, 1, tzinfo=UTC)

_VERSION_BITS = 0x7 << 12
_VARIANT = 0b10 << 62
_RAND_B_MASK = (1 << 62) - 1
_LOW_64 = (1 << 64) - 1
# A derived id's low 64 bits (ingestion, when an entry brings no id): the variant, the entry's
# rank among the batch's entries of the same microsecond, and a hash of its content. Ranks up to
# ESCAPE - 1 take 14 bits and leave 48 for the hash; from ESCAPE on, the 14 bits hold ESCAPE and
# the rank takes the next 24 bits, leaving 24 of the hash: the ids stay distinct (no two entries
# of a batch share a microsecond and a rank) and in batch order (ESCAPE sorts after every short
# rank), however many identical lines a batch holds.
RANK_BITS = 14
HASH_BITS = 62 - RANK_BITS
ESCAPE = (1 << RANK_BITS) - 1
LONG_RANK_BITS = 24
MAX_RANK = ESCAPE + (1 << LONG_RANK_BITS) - 1
_LONG_HASH_BYTES = (HASH_BITS - LONG_RANK_BITS) // 8


class IdError(ValueError):
    """A timestamp outside [MIN_TIMESTAMP, MAX_TIMESTAMP], or a value that is not an id."""


def _micros_since_epoch(ts: datetime) -> int:
    if ts.tzinfo is None:
        raise IdError("timestamp must carry a time zone")
    if ts < MIN_TIMESTAMP or ts > MAX_TIMESTAMP:
        raise IdError(
            f"timestamp {ts.isoformat()} is outside the supported range "
            f"{MIN_TIMESTAMP.isoformat()} .. {MAX_TIMESTAMP.isoformat()}"
        )
    delta = ts - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def id_prefix(ts: datetime) -> int:
    """The first 64 bits every id of ``ts`` has: milliseconds, version 7, microseconds."""
    micros = _micros_since_epoch(ts)
    millis, sub = divmod(micros, 1000)
    return (millis << 16) | _VERSION_BITS | sub


def new_id(ts: datetime, rand_b: int | None = None) -> uuid6.UUID:
    """A fresh id for a log line stamped ``ts``; ``rand_b`` (62 bits) makes it deterministic."""
    if rand_b is None:
        rand_b = secrets.randbits(62)
    value = (id_prefix(ts) << 64) | _VARIANT | (rand_b & _RAND_B_MASK)
    return uuid6.UUID(int=value)


def derived_id_hex(prefix: int, rank: int, digest: bytes) -> str:
    """The id of an entry that brought none, as 32 hex digits: ``prefix`` (:func:`id_prefix`),
    then the variant, ``rank`` (0 to MAX_RANK) and the 48-bit content ``digest``; a rank of
    ESCAPE or more keeps 24 bits of the digest (see RANK_BITS).

    Hex text, which asyncpg encodes in C (a uuid.UUID costs more than the rest of the row);
    bytes.hex() is three times faster than formatting the ints.
    """
    if rank < ESCAPE:
        low = ((_VARIANT >> 48) | rank).to_bytes(2, "big") + digest
    elif rank <= MAX_RANK:
        low = (
            ((_VARIANT >> 48) | ESCAPE).to_bytes(2, "big")
            + (rank - ESCAPE).to_bytes(LONG_RANK_BITS // 8, "big")
            + digest[:_LONG_HASH_BYTES]
        )
    else:
        raise IdError(f"rank {rank} is past {MAX_RANK}: too many entries share one microsecond")
    return (prefix.to_bytes(8, "big") + low).hex()


def lowest_id(ts: datetime) -> uuid.UUID:
    """A bound no greater than any id stamped ``ts`` or later."""
    return uuid.UUID(int=id_prefix(ts) << 64)


def highest_id(ts: datetime) -> uuid.UUID:
    """A bound no smaller than any id stamped ``ts`` or earlier."""
    return uuid.UUID(int=(id_prefix(ts) << 64) | _LOW_64)


def timestamp_of(log_id: uuid.UUID) -> datetime:
    """The timestamp an id encodes (exact to the microsecond for ids made by :func:`new_id`)."""
    high = log_id.int >> 64
    millis = high >> 16
    sub = min(high & 0xFFF, 999)
    return EPOCH + timedelta(milliseconds=millis, microseconds=sub)


def matches_timestamp(log_id: uuid.UUID, ts: datetime) -> bool:
    """Whether a client-supplied id is consistent with its entry's timestamp (see
    docs/ingestion.md, "Ids and retries")."""
    return (log_id.int >> 64) == id_prefix(ts) and (log_id.int >> 62) & 0b11 == 0b10


_UUID_RE = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z", re.ASCII
)


def parse_uuid(text: str) -> uuid.UUID:
    """Parse the canonical 8-4-4-4-12 form only (Go's uuid.Parse also accepts braces, urn:)."""
    if not _UUID_RE.match(text):
        raise IdError(f"{text!r} is not a uuid")
    return uuid.UUID(text)


# RFC 3339 date-time. A space instead of '+' before the offset is accepted because an unescaped
# '+' in a query string arrives as a space ("?ts_start=2025-01-01T00:00:00+02:00").
_RFC3339_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(?:([Zz])|([+\- ])(\d{2}):(\d{2}))\Z",
    re.ASCII,
)


def parse_rfc3339(text: str) -> datetime:
    """Parse an RFC 3339 timestamp to an aware UTC datetime, truncated to the microsecond."""
    m = _RFC3339_RE.match(text)
    if m is None:
        raise IdError(f"{text!r} is not an RFC 3339 timestamp")
    year, month, day, hour, minute, second = (int(g) for g in m.group(1, 2, 3, 4, 5, 6))
    fraction = (m.group(7) or "").ljust(6, "0")[:6]
    try:
        ts = datetime(
            year,
            month,
            day,
            hour,
            minute,
            59 if second == 60 else second,
            int(fraction),
            tzinfo=UTC,
        )
        if m.group(8) is None:
            sign = -1 if m.group(9) == "-" else 1
            offset = timedelta(hours=int(m.group(10)), minutes=int(m.group(11)))
            if offset >= timedelta(hours=24):
                raise ValueError("offset out of range")
            ts -= sign * offset
    except (ValueError, OverflowError) as exc:
        raise IdError(f"{text!r} is not a valid RFC 3339 timestamp") from exc
    return ts
