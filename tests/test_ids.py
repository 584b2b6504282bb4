"""Ids are positions: id order equals timestamp order to the microsecond, here and in PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import asyncpg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gramlogs.core import ids

in_range = st.datetimes(
    min_value=datetime(1970, 1, 1),
    max_value=datetime(2099, 12, 31, 23, 59, 59, 999999),
    timezones=st.just(UTC),
)
rand_b = st.integers(0, (1 << 62) - 1)


@given(a=in_range, b=in_range, ra=rand_b, rb=rand_b)
def test_id_order_equals_timestamp_order(a: datetime, b: datetime, ra: int, rb: int) -> None:
    ia, ib = ids.new_id(a, ra), ids.new_id(b, rb)
    if a < b:
        assert ia.int < ib.int
    elif a > b:
        assert ia.int > ib.int
    else:
        assert ia.int >> 64 == ib.int >> 64


@given(ts=in_range, r=rand_b)
def test_id_is_a_version_7_uuid_that_encodes_its_timestamp(ts: datetime, r: int) -> None:
    log_id = ids.new_id(ts, r)
    assert log_id.version == 7
    assert log_id.variant == uuid.RFC_4122
    assert ids.timestamp_of(log_id) == ts
    assert ids.matches_timestamp(log_id, ts)
    assert ids.lowest_id(ts).int <= log_id.int <= ids.highest_id(ts).int


@given(ts=in_range, micros=st.integers(1, 999), r=rand_b)
def test_ids_within_one_millisecond_order_by_microsecond(ts: datetime, micros: int, r: int) -> None:
    base = ts.replace(microsecond=ts.microsecond - ts.microsecond % 1000)
    later = base + timedelta(microseconds=micros)
    if later > ids.MAX_TIMESTAMP:
        return
    assert ids.new_id(base, (1 << 62) - 1).int < ids.new_id(later, 0).int
    assert ids.id_prefix(later) - ids.id_prefix(base) == micros


@given(ts=in_range, other=in_range, r=rand_b)
def test_an_id_matches_only_its_own_timestamp(ts: datetime, other: datetime, r: int) -> None:
    assert ids.matches_timestamp(ids.new_id(ts, r), other) == (ts == other)


@pytest.mark.parametrize(
    "ts",
    [
        datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(1900, 1, 1, tzinfo=UTC),
        datetime(2100, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
        datetime(9999, 12, 31, tzinfo=UTC),
    ],
)
def test_timestamps_outside_1970_to_2100_are_rejected(ts: datetime) -> None:
    with pytest.raises(ids.IdError, match="outside the supported range"):
        ids.new_id(ts)


def test_range_ends_are_accepted() -> None:
    assert ids.new_id(ids.MIN_TIMESTAMP, 0).int >> 80 == 0
    assert ids.timestamp_of(ids.new_id(ids.MAX_TIMESTAMP)) == ids.MAX_TIMESTAMP


def test_naive_timestamps_are_rejected() -> None:
    with pytest.raises(ids.IdError, match="time zone"):
        ids.new_id(datetime(2025, 1, 1))


ranks = st.integers(0, ids.MAX_RANK)
digests = st.binary(min_size=6, max_size=6)


@given(ts=in_range, ra=ranks, rb=ranks, da=digests, db=digests)
def test_derived_ids_are_distinct_valid_and_in_rank_order(
    ts: datetime, ra: int, rb: int, da: bytes, db: bytes
) -> None:
    # Past rank 16,382 as before it: entries of one microsecond with different ranks never share
    # an id, whatever their content, and read back in rank (= batch) order.
    prefix = ids.id_prefix(ts)
    ia = uuid.UUID(ids.derived_id_hex(prefix, ra, da))
    ib = uuid.UUID(ids.derived_id_hex(prefix, rb, db))
    for log_id in (ia, ib):
        assert log_id.version == 7
        assert log_id.variant == uuid.RFC_4122
        assert ids.timestamp_of(log_id) == ts
        assert ids.matches_timestamp(log_id, ts)
    if ra < rb:
        assert ia.int < ib.int
    elif ra > rb:
        assert ia.int > ib.int
    else:
        assert (ia == ib) == (da == db or (ra >= ids.ESCAPE and da[:3] == db[:3]))


@given(ts=in_range, rank=ranks, digest=digests)
def test_a_derived_id_is_the_same_each_time(ts: datetime, rank: int, digest: bytes) -> None:
    prefix = ids.id_prefix(ts)
    assert ids.derived_id_hex(prefix, rank, digest) == ids.derived_id_hex(prefix, rank, digest)


def test_derived_id_layout_short_and_escaped_ranks() -> None:
    prefix = ids.id_prefix(datetime(2025, 1, 1, tzinfo=UTC))
    digest = bytes.fromhex("a1b2c3d4e5f6")
    low = int(ids.derived_id_hex(prefix, 5, digest)[16:], 16)
    assert low == (0b10 << 62) | (5 << 48) | 0xA1B2C3D4E5F6
    low = int(ids.derived_id_hex(prefix, ids.ESCAPE + 7, digest)[16:], 16)
    assert low == (0b10 << 62) | (0x3FFF << 48) | (7 << 24) | 0xA1B2C3
    with pytest.raises(ids.IdError):
        ids.derived_id_hex(prefix, ids.MAX_RANK + 1, digest)


def test_known_layout() -> None:
    ts = datetime(2025, 12, 15, 10, 30, 0, 123456, tzinfo=UTC)
    log_id = ids.new_id(ts, 0)
    millis = int((ts - ids.EPOCH) / timedelta(milliseconds=1))
    assert log_id.int >> 80 == millis
    assert (log_id.int >> 76) & 0xF == 7
    assert (log_id.int >> 64) & 0xFFF == 456
    assert (log_id.int >> 62) & 0b11 == 0b10


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-12-15T10:30:00Z", datetime(2025, 12, 15, 10, 30, tzinfo=UTC)),
        ("2025-12-15t10:30:00.5z", datetime(2025, 12, 15, 10, 30, 0, 500000, tzinfo=UTC)),
        ("2025-12-15T10:30:00.123456789Z", datetime(2025, 12, 15, 10, 30, 0, 123456, tzinfo=UTC)),
        ("2025-12-15T12:30:00+02:00", datetime(2025, 12, 15, 10, 30, tzinfo=UTC)),
        ("2025-12-15T12:30:00 02:00", datetime(2025, 12, 15, 10, 30, tzinfo=UTC)),
        ("2025-12-15T08:00:00-02:30", datetime(2025, 12, 15, 10, 30, tzinfo=UTC)),
        ("2016-12-31T23:59:60Z", datetime(2016, 12, 31, 23, 59, 59, tzinfo=UTC)),
    ],
)
def test_rfc3339_parses(text: str, expected: datetime) -> None:
    assert ids.parse_rfc3339(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "2025-12-15",
        "2025-12-15T10:30:00",
        "2025-12-15 10:30:00Z",
        "2025-13-01T00:00:00Z",
        "2025-02-30T00:00:00Z",
        "2025-12-15T24:00:00Z",
        "2025-12-15T10:30:61Z",
        "0000-01-01T00:00:00Z",
        "2025-12-15T10:30:00+24:00",
        "2025-12-15T10:30:00.Z",
        "\uff11\uff12\uff13\uff14-12-15T10:30:00Z",
        "yesterday",
    ],
)
def test_rfc3339_rejects(text: str) -> None:
    with pytest.raises(ids.IdError):
        ids.parse_rfc3339(text)


@given(st.datetimes(min_value=datetime(2, 1, 1), timezones=st.just(timezone(timedelta(hours=5)))))
def test_rfc3339_round_trips_isoformat(ts: datetime) -> None:
    text = ts.isoformat(timespec="microseconds")
    assert ids.parse_rfc3339(text) == ts


@settings(max_examples=20, deadline=None)
@given(stamps=st.lists(in_range, min_size=2, max_size=50), r=st.randoms(use_true_random=False))
async def test_postgresql_orders_ids_like_timestamps(
    pool: asyncpg.Pool, stamps: list[datetime], r
) -> None:
    made = [(ids.new_id(ts, r.getrandbits(62)), ts) for ts in stamps]
    ordered = await pool.fetch(
        "SELECT id, ts FROM unnest($1::uuid[], $2::timestamptz[]) AS t(id, ts) ORDER BY id",
        [m[0] for m in made],
        [m[1] for m in made],
    )
    got = [row["ts"] for row in ordered]
    assert got == sorted(stamps)
    assert [row["id"].int for row in ordered] == sorted(m[0].int for m in made)
