"""The renderer writes the bytes the schema Structs wrote: every read endpoint's body, byte for
byte, over random rows (testkit/struct_bodies.py is the Struct path it replaced).

Rows come as the server gets them: asyncpg Records (asyncpg's uuid type) and sealed lines
(codec.SealedRow, uuid.UUID), with text holding control characters, quotes, backslashes,
non-ASCII and astral characters (no lone surrogate: neither PostgreSQL nor a sealed block
holds one), messages null or not, timestamps with and without microseconds.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec
from asyncpg.pgproto.pgproto import UUID as PgUUID

# Records are only made by asyncpg's protocol; this is the constructor its own tests use.
from asyncpg.protocol.protocol import _create_record  # type: ignore[attr-defined]
from hypothesis import given
from hypothesis import strategies as st

from gramlogs.storage.codec import SealedRow
from gramlogs.storage.journal import Position
from gramlogs.storage.pages import Page
from gramlogs.storage.rows import COLUMNS
from gramlogs.web import gram, poly, rendering, tail
from gramlogs.web.gram import ListQuery
from gramlogs.web.reading import LogEntry, Selection
from testkit import struct_bodies

# What JSON escapes, and what it does not but might trip a hand-written encoder.
_TRICKY = '"\\/\x00\x01\x08\t\n\x0c\r\x1b\x1f\x7f\x80\x9f\xa0é\u2028\u2029\ufeff\uffff😀'
_chars = st.one_of(st.characters(exclude_categories=["Cs"]), st.sampled_from(_TRICKY))
texts = st.text(_chars, max_size=30)
_instants = st.datetimes(datetime(1970, 1, 1), datetime(2100, 1, 1), timezones=st.just(UTC))
timestamps = st.one_of(_instants, _instants.map(lambda t: t.replace(microsecond=0)))
_INDEX = {name: i for i, name in enumerate(COLUMNS)}


@st.composite
def rows(draw: st.DrawFn) -> Any:
    values = (
        draw(st.uuids()),
        draw(timestamps),
        draw(texts),  # instance
        draw(st.one_of(st.sampled_from(["debug", "info", "warn", "error"]), texts)),  # level
        draw(st.one_of(st.sampled_from(["function", "server", "stdout", "stderr"]), texts)),
        draw(texts),  # raw_log
        draw(st.one_of(st.none(), texts)),  # message
        draw(texts),  # attributes, as PostgreSQL prints the jsonb (any text to the renderer)
        draw(st.uuids()),
        draw(st.uuids()),
        draw(st.uuids()),
        draw(st.one_of(st.none(), texts)),  # execution_id
    )
    # A page's statement may select more after the columns (has_back, matched, read).
    more = draw(st.sampled_from([(), (True,), (True, 1)]))
    return _as(draw(st.sampled_from(["record", "sealed"])), values, more)


def _as(kind: str, values: tuple[Any, ...], more: tuple[Any, ...] = ()) -> Any:
    if kind == "sealed":
        return tuple.__new__(SealedRow, values)
    as_read = tuple(PgUUID(v.bytes) if isinstance(v, uuid.UUID) else v for v in values)
    names = _INDEX | {f"more{i}": len(values) + i for i in range(len(more))}
    return _create_record(names, as_read + more)


pages = st.lists(rows(), max_size=8)


def test_rows_unpack_as_the_entry_schema_is_ordered() -> None:
    # rendering unpacks a row's first twelve columns: LogEntry's fields in order, execution_id.
    assert len(COLUMNS) == 12 and COLUMNS[11] == "execution_id"
    assert [f.name for f in msgspec.structs.fields(LogEntry)] == list(COLUMNS[:11])
    schema = [(f.name, f.encode_name) for f in msgspec.structs.fields(poly.PolyLog)]
    line = [(f.name, f.encode_name) for f in msgspec.structs.fields(rendering._PolyLine)]
    assert line == schema


@given(
    page=pages,
    has_more=st.booleans(),
    has_back=st.booleans(),
    forward=st.booleans(),
    ascending=st.booleans(),
    cursor=st.one_of(st.none(), st.uuids()),
    per_page=st.integers(1, 100),
)
def test_gram_body_is_the_structs_bytes(
    page: list[Any],
    has_more: bool,
    has_back: bool,
    forward: bool,
    ascending: bool,
    cursor: uuid.UUID | None,
    per_page: int,
) -> None:
    query = ListQuery(
        selection=Selection(equals={}, keyword=None),
        cursor=cursor,
        per_page=per_page,
        ascending=ascending,
        forward=forward,
    )
    read = Page(rows=page, has_more=has_more and bool(page), has_back=has_back)
    assert gram.render(read, query) == struct_bodies.gram_body(read, query)


@given(page=pages, logs_enabled=st.booleans())
def test_poly_body_is_the_structs_bytes(page: list[Any], logs_enabled: bool) -> None:
    assert poly.render(logs_enabled, page) == struct_bodies.poly_body(logs_enabled, page)


@given(row=rows(), seq=st.integers(0, 2**63 - 1), after=st.integers(0, 2**128 - 1))
def test_tail_frame_is_the_structs_bytes(row: Any, seq: int, after: int) -> None:
    position = Position(seq, after)
    assert tail.frame_line(row, position) == struct_bodies.tail_frame(row, position)


@given(page=pages)
def test_export_lines_are_the_structs_bytes(page: list[Any]) -> None:
    assert rendering.entry_lines(page) == struct_bodies.export_lines(page)


def test_an_absent_message_is_an_absent_key() -> None:
    ts = datetime(2025, 12, 15, 10, 30, 0, 123456, tzinfo=UTC)
    ids = [uuid.UUID(int=i) for i in range(4)]
    values = (ids[0], ts, "i", "info", "function", "raw", None, "{}", *ids[1:], None)
    line = rendering.entry(_as("record", values))
    assert line == (
        b'{"id":"00000000-0000-0000-0000-000000000000","timestamp":"2025-12-15T10:30:00.123456Z",'
        b'"instance":"i","level":"info","source":"function","raw_log":"raw","attributes":"{}",'
        b'"project_id":"00000000-0000-0000-0000-000000000001",'
        b'"deployment_id":"00000000-0000-0000-0000-000000000002",'
        b'"function_id":"00000000-0000-0000-0000-000000000003"}'
    )
    assert rendering.entry_lines([_as("sealed", values)]) == line + b"\n"


async def test_rows_read_from_postgresql_render_as_the_structs_do(pool: asyncpg.Pool) -> None:
    # Records as asyncpg decodes them (its uuid, timestamptz in UTC, jsonb as PostgreSQL
    # prints it), not as the properties build them. PostgreSQL's text holds no NUL.
    rng = random.Random(7)
    alphabet = _TRICKY.replace("\x00", "") + "abc xyz"
    n = 40

    def text() -> str:
        return "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 20)))

    def ids() -> list[uuid.UUID]:
        return [uuid.UUID(int=rng.getrandbits(128)) for _ in range(n)]

    stamps = [
        datetime.fromtimestamp(rng.randrange(0, 4_102_444_800), UTC).replace(
            microsecond=rng.choice([0, rng.randrange(1_000_000)])
        )
        for _ in range(n)
    ]
    messages = [None if rng.random() < 0.3 else text() for _ in range(n)]
    attributes = [msgspec.json.encode({text(): text()}).decode() for _ in range(n)]
    names = ", ".join(f'"{c}"' for c in COLUMNS)
    read = await pool.fetch(
        "SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::text[], $4::text[], $5::text[],"
        " $6::text[], $7::text[], $8::jsonb[], $9::uuid[], $10::uuid[], $11::uuid[], $12::text[])"
        f" AS t({names})",
        ids(),
        stamps,
        [text() for _ in range(n)],
        ["info"] * n,
        ["function"] * n,
        [text() for _ in range(n)],
        messages,
        attributes,
        ids(),
        ids(),
        ids(),
        [None if rng.random() < 0.5 else text() for _ in range(n)],
    )
    assert len(read) == n and isinstance(read[0]["id"], PgUUID)
    assert rendering.entry_lines(read) == struct_bodies.export_lines(read)
    assert poly.render(True, read) == struct_bodies.poly_body(True, read)
