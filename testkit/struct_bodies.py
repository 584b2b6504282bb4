"""The read endpoints' bodies as the schema Structs encode them: one ``LogEntry`` or ``PolyLog``
made per row, then encoded. This was the server's path before gramlogs/web/rendering.py; it
stays as the reference the renderer must equal byte for byte (tests/test_rendering.py) and the
baseline it is measured against (benchmarks/render.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from gramlogs.storage.journal import Position
from gramlogs.storage.pages import Page, StoredRow
from gramlogs.web.gram import ListQuery, ListResult, Pagination, _just_past
from gramlogs.web.poly import PolyLog, PolyLogs
from gramlogs.web.reading import LogEntry
from gramlogs.web.tail import encode_token

__all__ = ["entry", "export_lines", "gram_body", "poly_body", "tail_frame"]

_encoder = msgspec.json.Encoder()


def entry(row: StoredRow) -> LogEntry:
    """The entry of a row in pages.COLUMNS order."""
    return LogEntry(
        id=row[0],
        timestamp=row[1],
        instance=row[2],
        level=row[3],
        source=row[4],
        raw_log=row[5],
        message=msgspec.UNSET if row[6] is None else row[6],
        attributes=row[7],
        project_id=row[8],
        deployment_id=row[9],
        function_id=row[10],
    )


def gram_body(page: Page, query: ListQuery) -> bytes:
    """listToolExecutionLogs' body."""
    logs = [entry(row) for row in page.rows]
    walked = logs if query.forward else logs[::-1]
    pagination = Pagination(
        per_page=query.per_page,
        has_next_page=page.has_more,
        next_page_cursor=walked[-1].id if page.has_more else msgspec.UNSET,
        has_prev_page=page.has_back,
        prev_page_cursor=walked[0].id if walked else _just_past(query),
    )
    return _encoder.encode(ListResult(logs=logs, pagination=pagination))


def poly_body(logs_enabled: bool, rows: Sequence[Any]) -> bytes:
    """A Poly GET's body (rows answer ``row["name"]``: a Record, a SealedRow)."""
    logs = [
        PolyLog(
            timestamp=row["timestamp"],
            value=row["message"] or row["raw_log"],
            level=row["level"].upper(),
            execution_id=row["execution_id"] or "",
        )
        for row in rows
    ]
    return _encoder.encode(PolyLogs(logs_enabled=logs_enabled, logs=logs))


def tail_frame(row: StoredRow, position: Position) -> bytes:
    """A line's event in a tail."""
    token = encode_token(row[8], position).encode()
    return b"id: " + token + b"\ndata: " + _encoder.encode(entry(row)) + b"\n\n"


def export_lines(rows: Sequence[StoredRow]) -> bytes:
    """A page of an export."""
    return _encoder.encode_lines([entry(row) for row in rows])
