"""What the read endpoints share: the window, the filters, and the entry of a line.

listToolExecutionLogs, the export, the live tail and the histogram select lines alike (equality
filters and a keyword, within a window of timestamps) and send each line as a
``ToolExecutionLog``. Their parameters are declared here once (:data:`FILTERS`,
:data:`KEYWORD`, :data:`WINDOW`) and :func:`parse_selection` is the one path from a request's
parameters to a :class:`~gramlogs.storage.pages.LogFilter`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from gramlogs.core import ids
from gramlogs.core.errors import InvalidRange
from gramlogs.storage.pages import LogFilter
from gramlogs.web.params import (
    EXTENSION,
    MAX_TEXT_LENGTH,
    Param,
    enum,
    parse_timestamp,
    text,
    timestamp,
    uuid_param,
)

__all__ = [
    "FILTERS",
    "KEYWORD",
    "LEVELS",
    "SOURCES",
    "WINDOW",
    "LogEntry",
    "Selection",
    "id_bounds",
    "iso",
    "parse_selection",
    "window_end",
]

LEVELS = ("debug", "info", "warn", "error")
SOURCES = ("server", "function", "stdout", "stderr")
_GRAM_SOURCES = ("stdout", "stderr")  # Gram's enum; the others are the values its docs list
_MORE_SOURCES = tuple(s for s in SOURCES if s not in _GRAM_SOURCES)
_DATE_TIME = {"format": "date-time"}


# The schema (/openapi.json) of an entry. Bodies are encoded from rendering.py's values that
# encode alike and cost less to make, one a row.
class LogEntry(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Structured log entry from a tool execution"""

    id: Annotated[uuid.UUID, Meta(description="Log entry ID (a UUIDv7 that is its position)")]
    timestamp: Annotated[
        datetime,
        Meta(description="Timestamp of the log entry (UTC, Z)", extra_json_schema=_DATE_TIME),
    ]
    instance: Annotated[str, Meta(description="Instance identifier")]
    level: Annotated[str, Meta(description="Log level")]
    source: Annotated[str, Meta(description="Log source")]
    raw_log: Annotated[str, Meta(description="Raw log message")]
    message: (
        Annotated[
            str, Meta(description="Parsed log message; absent (never null) when there is none")
        ]
        | msgspec.UnsetType
    ) = msgspec.UNSET
    # Gram's schema does not require it though gramlogs always writes it: UNSET keeps it
    # optional in /openapi.json, as in Gram's.
    attributes: (
        Annotated[str, Meta(description="JSON-encoded log attributes")] | msgspec.UnsetType
    ) = msgspec.UNSET
    project_id: Annotated[uuid.UUID, Meta(description="Project UUID")]
    deployment_id: Annotated[uuid.UUID, Meta(description="Deployment UUID")]
    function_id: Annotated[uuid.UUID, Meta(description="Function UUID")]


# -- Parameters -------------------------------------------------------------------------------

# The equality filters of listToolExecutionLogs, which the tail, export and histogram take too.
FILTERS: tuple[Param[Any], ...] = (
    uuid_param("deployment_id", "Deployment ID filter (exact match)"),
    uuid_param("function_id", "Function ID filter (exact match)"),
    text("instance", "Instance filter (exact match)"),
    enum("level", "Log level filter", LEVELS),
    enum(
        "source",
        "Log source filter. Gram's enum is stdout, stderr; gramlogs also takes server and "
        "function (the values Gram's documentation lists), see x-gramlogs-extension-values",
        SOURCES,
        listed=(*_GRAM_SOURCES, *_MORE_SOURCES),
        extra={"x-gramlogs-extension-values": list(_MORE_SOURCES)},
    ),
)
# An extension, unknown to Gram's clients and harmless to them (docs/keyword-search.md).
KEYWORD = text(
    "keyword",
    "Case-insensitive substring of the message or the raw line; every character is literal. "
    f"At most {MAX_TEXT_LENGTH} characters (else 400 invalid_length)",
    most=MAX_TEXT_LENGTH,
    extra={EXTENSION: True},
)
# listToolExecutionLogs' window (and the export's): both ends optional.
WINDOW = (
    timestamp(
        "ts_start",
        "Start timestamp, inclusive (RFC 3339); default 1970-01-01T00:00:00Z",
        default=ids.MIN_TIMESTAMP,
    ),
    timestamp(
        "ts_end",
        "End timestamp, inclusive (RFC 3339); default 2100-01-01T00:00:00Z; before ts_start is "
        "a 400 bad_request",
        default=ids.MAX_TIMESTAMP,
    ),
)


def _within_ids(name: str, value: str) -> datetime:
    ts = parse_timestamp(name, value)
    # No line is stamped outside the range ids can hold (ingestion refuses it), and keeping a
    # window in it keeps every bucket's edges representable.
    if not ids.MIN_TIMESTAMP <= ts <= ids.MAX_TIMESTAMP:
        raise InvalidRange(
            f"{name} must be between {iso(ids.MIN_TIMESTAMP)} and {iso(ids.MAX_TIMESTAMP)}"
            f" but got value {iso(ts)}"
        )
    return ts


def window_end(name: str, description: str, *, missing: str) -> Param[datetime]:
    """An end of a window that is required and within the range of ids (the histogram's)."""
    return timestamp(name, description, _within_ids, required=True, missing=missing)


def iso(ts: datetime) -> str:
    """``ts`` (UTC) as RFC 3339 with a Z."""
    return ts.isoformat().replace("+00:00", "Z")


# -- Parsing ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Selection:
    """Which lines a read request selects, before the project is known."""

    equals: dict[str, object]
    keyword: str | None
    window: tuple[datetime, datetime] | None = None  # inclusive; None: all time

    def log_filter(self, project_id: uuid.UUID) -> LogFilter:
        if self.window is None:
            return LogFilter(project_id=project_id, equals=self.equals, keyword=self.keyword)
        lo, hi = id_bounds(*self.window)
        return LogFilter(
            project_id=project_id, lo=lo, hi=hi, equals=self.equals, keyword=self.keyword
        )


def parse_selection(
    params: Mapping[str, str], window: tuple[Param[datetime], Param[datetime]] | None = None
) -> Selection:
    """The window (when the endpoint has one), then the filters, then the keyword: the first
    bad one is the 400, naming it. Whether the window's ends are in order is the endpoint's to
    check, after its own parameters."""
    span = None if window is None else (window[0].value(params), window[1].value(params))
    equals: dict[str, object] = {}
    for param in FILTERS:
        if (value := param.get(params)) is not None:
            equals[param.name] = value
    return Selection(equals=equals, keyword=KEYWORD.get(params), window=span)


def id_bounds(ts_start: datetime, ts_end: datetime) -> tuple[int, int]:
    """The inclusive id range of the window ``[ts_start, ts_end]`` (empty: ``(1, 0)``)."""
    # Outside the id range there are no rows, so clamping a window changes no answer.
    start = max(ts_start, ids.MIN_TIMESTAMP)
    end = min(ts_end, ids.MAX_TIMESTAMP)
    if start > end:
        return 1, 0
    return ids.lowest_id(start).int, ids.highest_id(end).int
