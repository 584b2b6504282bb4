"""Stored lines as every read endpoint encodes them: one msgspec call per body or tail event.

listToolExecutionLogs, the export and the tail send a line as a ``LogEntry``
(:mod:`gramlogs.web.reading`), Poly's pages as a ``PolyLog`` (:mod:`gramlogs.web.poly`). Those
Structs stay the schema (``/openapi.json`` is generated from them), but making one a row cost
more than the rest: ``LogEntry`` is keyword-only, and a sealed block's row
(``codec.SealedRow``) runs Python for each ``row[i]``. Here a row becomes a Struct of the
schema's own fields, names and order, built from positional values (a SealedRow unpacked in C,
a Record indexed in C) and untracked by the garbage collector: msgspec writes it byte for byte
as it writes the schema's Struct (tests/test_rendering.py compares them over random rows).
Writing the JSON by hand around msgspec's string escaping measured slower: msgspec writes a
Struct's keys from bytes encoded once. ``python -m benchmarks.render`` measures both paths.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from gramlogs.storage.codec import SealedRow
from gramlogs.storage.rows import StoredRow
from gramlogs.web.reading import LogEntry

__all__ = ["entries", "entry", "entry_lines", "poly_entries"]

_encoder = msgspec.json.Encoder()
_UNSET = msgspec.UNSET


def _positional(schema: type[msgspec.Struct]) -> Any:
    """A Struct that msgspec encodes as it encodes ``schema`` (the same fields, names and order)
    but that is built from positional values; untracked by the collector: its values (str,
    datetime, uuid) hold no cycle."""
    fields = msgspec.structs.fields(schema)
    return msgspec.defstruct(
        f"_Positional{schema.__name__}",
        [f.name for f in fields],
        rename={f.name: f.encode_name for f in fields},
        gc=False,
    )


_Entry = _positional(LogEntry)


class _PolyLine(msgspec.Struct, rename="camel", gc=False):
    """poly.PolyLog's fields, names and order (a test holds them equal), built positionally.
    Declared here, not made from PolyLog: poly.py imports this module."""

    timestamp: Any
    value: Any
    level: Any
    execution_id: Any


def _entry(row: StoredRow) -> Any:
    if type(row) is SealedRow:
        # A tuple: unpacked in C, where its row[i] runs Python (to answer row["name"] too).
        i, ts, inst, level, source, raw, msg, attrs, p, d, f, _ = row
        # An absent message is an absent key: UNSET is never encoded.
        msg = _UNSET if msg is None else msg
        return _Entry(i, ts, inst, level, source, raw, msg, attrs, p, d, f)
    # An asyncpg Record, perhaps with more columns than COLUMNS: its row[i] is C.
    msg = row[6]
    return _Entry(row[0], row[1], row[2], row[3], row[4], row[5], _UNSET if msg is None else msg,
                  row[7], row[8], row[9], row[10])  # fmt: skip


def _poly_line(row: StoredRow) -> _PolyLine:
    # An empty message is no message: the raw line says more.
    if type(row) is SealedRow:
        _, ts, _, level, _, raw, msg, _, _, _, _, execution = row
        return _PolyLine(ts, msg or raw, level.upper(), execution or "")
    return _PolyLine(row[1], row[6] or row[5], row[3].upper(), row[11] or "")


def entry(row: StoredRow) -> bytes:
    """One line as a ``LogEntry`` (JSON): a tail's event."""
    return _encoder.encode(_entry(row))


def entries(rows: Sequence[StoredRow]) -> list[Any]:
    """The lines as values that encode as ``LogEntry`` does: listToolExecutionLogs' ``logs``,
    encoded with the rest of the body in one call (embedding their JSON as ``msgspec.Raw``
    would copy it once more: ~4% of a page of 100)."""
    return [_entry(row) for row in rows]


def entry_lines(rows: Sequence[StoredRow]) -> bytes:
    """The lines as NDJSON, one ``LogEntry`` a line: the export's."""
    return _encoder.encode_lines([_entry(row) for row in rows])


def poly_entries(rows: Sequence[StoredRow]) -> list[Any]:
    """The lines as values that encode as ``PolyLog`` does (the level upper-case, the message,
    the execution id or ""): Poly's ``logs``, encoded with the rest of the body."""
    return [_poly_line(row) for row in rows]
