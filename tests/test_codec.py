"""Sealed blocks decode to exactly the rows they were made of, and answer filters as SQL would.

Hypothesis draws a block's shape (how many lines, how many distinct instances, deployments and
executions, whether timestamps match their ids, the granule) and pools of text; a seeded
random.Random then spreads them over up to ~3000 rows, which hypothesis alone would draw slowly.
"""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gramlogs.core import ids
from gramlogs.storage import codec, trigrams
from gramlogs.storage.pages import COLUMNS, EQUALITY_FILTERS

MAX_ID = (1 << 128) - 1
PROJECT = uuid.UUID("0b9f4a52-95c1-4d6f-9a43-0e3c8b3f6a01")
FUNCTION = uuid.UUID("5d0c2f1e-7a44-4b9e-8c1d-2f6e9a0b7c12")

texts = st.text(max_size=60)  # any code point but surrogates: non-ASCII included
any_time = st.datetimes(timezones=st.just(UTC))
sizes = st.one_of(
    st.integers(1, 40),
    st.sampled_from([codec.GRANULE_ROWS - 1, codec.GRANULE_ROWS, codec.GRANULE_ROWS + 1]),
    st.integers(40, 3000),
)


@st.composite
def blocks(draw: st.DrawFn) -> tuple[list[tuple[object, ...]], int]:
    """Rows of one project and function in id order, and the granule to encode them with."""
    n = draw(sizes)
    rng = random.Random(draw(st.integers(0, 2**32)))
    granule = draw(st.sampled_from([codec.GRANULE_ROWS, 1, 7, 64]))
    instances = draw(st.lists(texts, min_size=1, max_size=5))
    deployments = [uuid.UUID(int=rng.getrandbits(128)) for _ in range(draw(st.integers(1, 4)))]
    executions = draw(st.lists(st.one_of(st.none(), texts), min_size=1, max_size=6))
    raws = draw(st.lists(texts, min_size=1, max_size=8))
    messages = draw(st.lists(st.one_of(st.none(), texts), min_size=1, max_size=8))
    attributes = [
        json.dumps(a, ensure_ascii=False)
        for a in draw(st.lists(st.dictionaries(texts, st.integers() | texts), min_size=1))
    ]
    matching = draw(st.booleans())  # timestamps those of their ids, as ingestion makes them
    if matching:
        start = draw(st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2099, 1, 1)))
        stamps = sorted(
            start.replace(tzinfo=UTC) + timedelta(microseconds=rng.randrange(10**10))
            for _ in range(n)
        )
        keyed = sorted((ids.new_id(t, rng.getrandbits(62)).int, t) for t in stamps)
        row_ids = [k for k, _ in keyed]
        times = [t for _, t in keyed]
    else:
        extremes = draw(st.lists(st.sampled_from([0, 1, MAX_ID - 1, MAX_ID]), unique=True))
        row_ids = sorted({*extremes, *(rng.getrandbits(128) for _ in range(n))})[:n]
        times = [draw(any_time) if i < 3 else _random_time(rng) for i in range(len(row_ids))]
    rows: list[tuple[object, ...]] = [
        (
            uuid.UUID(int=i),
            t,
            rng.choice(instances),
            rng.choice(codec.LEVELS),
            rng.choice(codec.SOURCES),
            rng.choice(raws),
            rng.choice(messages),
            rng.choice(attributes),
            PROJECT,
            rng.choice(deployments),
            FUNCTION,
            rng.choice(executions),
        )
        for i, t in zip(row_ids, times, strict=True)
    ]
    return rows, granule


def _random_time(rng: random.Random) -> datetime:
    return datetime(1, 1, 1, tzinfo=UTC) + timedelta(
        microseconds=rng.randrange(315537897600 * 10**6)
    )


def _decoded(rows, granule):
    sealed = codec.encode(rows, granule=granule)
    keys = codec.decode_keys(sealed.keys, sealed.function_id)
    return sealed, keys


@given(blocks())
def test_a_block_decodes_to_the_rows_it_was_made_of(block):
    rows, granule = block
    sealed, keys = _decoded(rows, granule)
    out = codec.decode_rows(PROJECT, FUNCTION, keys, sealed.texts, range(len(rows)))
    assert [tuple(r) for r in out] == rows
    for got, want in zip(out, rows, strict=True):
        # The id is asyncpg's UUID, as a row read from logs holds: a uuid.UUID.
        assert all(isinstance(g, type(w)) for g, w in zip(got, want, strict=True))
        assert got[1].tzinfo is UTC
    assert keys.lines == len(rows)
    assert [keys.id(i) for i in range(len(rows))] == [r[0] for r in rows]
    assert len(sealed.texts) == -(-len(rows) // granule)


@given(blocks(), st.data())
def test_any_positions_decode_alone(block, data):
    rows, granule = block
    sealed, keys = _decoded(rows, granule)
    positions = sorted(data.draw(st.sets(st.integers(0, len(rows) - 1), max_size=30)))
    out = codec.decode_rows(PROJECT, FUNCTION, keys, sealed.texts, positions)
    assert [tuple(r) for r in out] == [rows[p] for p in positions]


@given(blocks())
def test_postings_say_what_the_block_holds(block):
    rows, granule = block
    sealed = codec.encode(rows, granule=granule)
    assert (sealed.project_id, sealed.function_id) == (PROJECT, FUNCTION)
    assert (sealed.lo, sealed.hi, sealed.lines) == (rows[0][0], rows[-1][0], len(rows))
    assert sealed.levels == [sum(r[3] == v for r in rows) for v in codec.LEVELS]
    assert sealed.sources == [sum(r[4] == v for r in rows) for v in codec.SOURCES]
    assert sealed.instances == sorted({r[2] for r in rows})
    assert sealed.deployments == sorted({r[9] for r in rows})
    assert sealed.executions == sorted({r[11] for r in rows} - {None})
    assert sealed.grams == trigrams.block_codes([trigrams.text_of(r[6], r[5]) for r in rows])


def _value(column: str, rows, rng: random.Random) -> object:
    """A value to filter ``column`` on: mostly one the block holds, sometimes one it does not."""
    index = COLUMNS.index(column)
    choice = rng.random()
    if choice < 0.1:
        return None
    if choice < 0.25:
        return uuid.uuid4() if column.endswith("_id") and column != "execution_id" else "absent"
    value = rng.choice(rows)[index]
    if isinstance(value, uuid.UUID) and rng.random() < 0.5:
        return str(value)  # uuids may come as text
    return value


def _equal(a: object, b: object) -> bool:
    if b is None or a is None:
        return False  # NULL equals nothing, as in SQL
    if isinstance(a, uuid.UUID):
        return a == uuid.UUID(str(b))
    return a == b


@given(blocks(), st.integers(0, 2**32))
def test_matching_is_a_plain_filter(block, seed):
    rows, granule = block
    _, keys = _decoded(rows, granule)
    rng = random.Random(seed)
    for _ in range(20):
        columns = rng.sample(EQUALITY_FILTERS, rng.randrange(0, 4))
        equals = {c: _value(c, rows, rng) for c in columns}
        sources = rng.sample(codec.SOURCES, rng.randrange(0, 3))
        a = rng.randrange(len(rows) + 1)
        positions = range(a, rng.randrange(a, len(rows) + 1))
        expected = [
            p
            for p in positions
            if all(_equal(rows[p][COLUMNS.index(c)], v) for c, v in equals.items())
            and (not sources or rows[p][4] in sources)
        ]
        assert keys.matching(positions, equals, sources) == expected, (equals, sources)


@given(blocks(), st.integers(0, 2**32))
def test_span_is_the_positions_in_an_id_range(block, seed):
    rows, granule = block
    _, keys = _decoded(rows, granule)
    rng = random.Random(seed)
    near = [r[0].int + d for r in rng.sample(rows, min(len(rows), 5)) for d in (-1, 0, 1)]
    bounds = [-5, 0, MAX_ID, MAX_ID + 1, rng.getrandbits(128), *near]
    for _ in range(20):
        lo, hi = rng.choice(bounds), rng.choice(bounds)
        span = keys.span(lo, hi)
        assert span.step == 1 and list(span) == [
            p for p, r in enumerate(rows) if lo <= r[0].int <= hi
        ]
    for value in near:
        assert keys.has_id(value) == any(r[0].int == value for r in rows)


def test_span_steps_over_ids_that_share_their_first_64_bits():
    # One millisecond and the same random bits above the last 64: only the low words differ.
    rows = [_row(i) for i in range(0, 400, 7)]
    line_ids = [cast(uuid.UUID, r[0]).int for r in rows]
    assert len({i >> 64 for i in line_ids}) == 1
    _, keys = _decoded(rows, 16)
    for line_id in line_ids:
        for lo in (line_id - 1, line_id, line_id + 1):
            for hi in (lo, lo + 8, MAX_ID):
                assert list(keys.span(lo, hi)) == [
                    p for p, i in enumerate(line_ids) if lo <= i <= hi
                ]


def _row(i: int, **changes: object) -> tuple[object, ...]:
    values = {
        "id": uuid.UUID(int=ids.new_id(datetime(2025, 6, 1, tzinfo=UTC), i).int),
        "timestamp": datetime(2025, 6, 1, tzinfo=UTC),
        "instance": "a",
        "level": "info",
        "source": "function",
        "raw_log": "line",
        "message": None,
        "attributes": "{}",
        "project_id": PROJECT,
        "deployment_id": PROJECT,
        "function_id": FUNCTION,
        "execution_id": None,
    } | changes
    return tuple(values[c] for c in COLUMNS)


@pytest.mark.parametrize(
    ("rows", "reason"),
    [
        ([], "1 to 65536 lines"),
        ([_row(2), _row(1)], "distinct and ascending"),
        ([_row(1), _row(1)], "distinct and ascending"),
        ([_row(1), _row(2, project_id=FUNCTION)], "one project and one function"),
        ([_row(1), _row(2, function_id=PROJECT)], "one project and one function"),
        ([_row(1, level="fatal")], "unknown level or source 'fatal'"),
        ([_row(1, source="kernel")], "unknown level or source 'kernel'"),
    ],
)
def test_encode_refuses_what_is_not_one_block(rows, reason):
    with pytest.raises(ValueError, match=reason):
        codec.encode(rows)


def test_too_many_lines_are_refused():
    with pytest.raises(ValueError, match="1 to 65536 lines"):
        codec.encode([_row(1)] * (codec.MAX_LINES + 1))


def test_a_sealed_row_answers_by_name_as_a_record_does():
    row = _row(7, message="hello", execution_id="ex-1")
    sealed = codec.encode([row])
    keys = codec.decode_keys(sealed.keys, FUNCTION)
    (out,) = codec.decode_rows(PROJECT, FUNCTION, keys, sealed.texts, [0])
    assert out == row and isinstance(out, tuple)
    assert out["timestamp"] == out[1] == datetime(2025, 6, 1, tzinfo=UTC)
    assert out["id"] == out.get("id") == row[0]
    assert out["message"] == "hello" and out["execution_id"] == "ex-1"
    assert out.get("nothing") is None and out.get("nothing", 5) == 5
    assert out[-1] == "ex-1" and out[2:4] == ("a", "info")
    with pytest.raises(KeyError):
        out["nothing"]


def test_matching_another_function_finds_nothing():
    sealed = codec.encode([_row(1), _row(2)])
    keys = codec.decode_keys(sealed.keys, FUNCTION)
    assert keys.matching(range(2), {"function_id": str(FUNCTION)}, []) == [0, 1]
    assert keys.matching(range(2), {"function_id": PROJECT}, []) == []
    assert keys.matching(range(2), {}, ["server"]) == []


@given(blocks(), st.integers(1, 4), st.integers(0, 2**32))
def test_merged_blocks_hold_their_lines_as_one_block_of_them_would(block, parts, seed):
    rows, granule = block
    # The lines dealt to up to four blocks at random: their id ranges overlap.
    rng = random.Random(seed)
    dealt: list[list[tuple[object, ...]]] = [[] for _ in range(parts)]
    for row in rows:
        dealt[rng.randrange(parts)].append(row)
    made = [codec.encode(d, granule=granule) for d in dealt if d]
    merged = codec.merge(PROJECT, FUNCTION, [(b.keys, b.texts, b.grams) for b in made])
    whole = codec.encode(rows)
    keys = codec.decode_keys(merged.keys, FUNCTION)
    out = codec.decode_rows(PROJECT, FUNCTION, keys, merged.texts, range(len(rows)))
    assert [tuple(r) for r in out] == rows
    assert keys.granule == codec.GRANULE_ROWS
    postings = ("lo", "hi", "lines", "levels", "sources", "instances", "deployments")
    for name in (*postings, "executions", "grams"):
        assert getattr(merged, name) == getattr(whole, name), name


@given(blocks(), st.integers(0, 2**32))
def test_has_ids_is_membership(block, seed):
    rows, granule = block
    _, keys = _decoded(rows, granule)
    rng = random.Random(seed)
    present = [r[0] for r in rows]
    asked = rng.sample(present, min(len(present), 30)) + [
        uuid.UUID(int=rng.getrandbits(128)) for _ in range(30)
    ]
    held = set(present)
    for spelled in (asked, [str(i) for i in asked], [i.hex for i in asked]):
        high, low = codec.id_words(spelled)
        assert keys.has_ids(high, low).tolist() == [i in held for i in asked]
