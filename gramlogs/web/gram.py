"""The Gram dialect: ``GET /rpc/logs.listToolExecutionLogs``, wire-compatible with Gram.

Gram's generated SDK rejects ``null`` in every field, so absent values are absent keys.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, TypeAlias, TypeVar

import msgspec
from msgspec import Meta
from starlette.requests import Request
from starlette.responses import Response

from gramlogs.core import ids
from gramlogs.core.errors import BadRequest
from gramlogs.core.keys import Permission
from gramlogs.storage.access import authenticate
from gramlogs.storage.pages import LogFilter, Page, PageRequest, StoredRow, fetch_page
from gramlogs.web.params import (
    first_values,
    gram_credentials,
    parse_enum,
    parse_int,
    parse_text,
    parse_timestamp,
    parse_uuid,
)
from gramlogs.web.state import app_state

__all__ = [
    "ListQuery",
    "LogEntry",
    "entry",
    "id_bounds",
    "list_tool_execution_logs",
    "parse_filters",
    "parse_list_query",
]

LEVELS = ("debug", "info", "warn", "error")
SOURCES = ("server", "function", "stdout", "stderr")
SORTS = ("asc", "desc")
DIRECTIONS = ("next", "prev")
DEFAULT_PER_PAGE = 20
MAX_PER_PAGE = 100


# What /openapi.json says of each field: openapi.py generates the schemas from these Structs.
_T = TypeVar("_T")
# A field that Gram's schema does not require though gramlogs always writes it: UNSET is its
# default (render never leaves it so), which keeps it optional in /openapi.json, as in Gram's.
GramOptional: TypeAlias = _T | msgspec.UnsetType
_DATE_TIME = {"format": "date-time"}
_EXTENSION = {"x-gramlogs-extension": True}  # not in Gram's schema


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
    attributes: GramOptional[Annotated[str, Meta(description="JSON-encoded log attributes")]] = (
        msgspec.UNSET
    )
    project_id: Annotated[uuid.UUID, Meta(description="Project UUID")]
    deployment_id: Annotated[uuid.UUID, Meta(description="Deployment UUID")]
    function_id: Annotated[uuid.UUID, Meta(description="Function UUID")]


class Pagination(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Pagination metadata for list responses"""

    per_page: GramOptional[
        Annotated[
            int, Meta(description="Number of items per page", extra_json_schema={"format": "int64"})
        ]
    ] = msgspec.UNSET
    has_next_page: GramOptional[
        Annotated[bool, Meta(description="Whether there is a next page")]
    ] = msgspec.UNSET
    next_page_cursor: (
        Annotated[
            uuid.UUID,
            Meta(
                description="Cursor for next page, in the requested direction; absent when "
                "there is none"
            ),
        ]
        | msgspec.UnsetType
    ) = msgspec.UNSET
    # Extension: turn around from this page (see docs/gram-api.md, "Paging").
    has_prev_page: GramOptional[
        Annotated[
            bool,
            Meta(
                description="Whether there are rows on the other side of this page",
                extra_json_schema=_EXTENSION,
            ),
        ]
    ] = msgspec.UNSET
    prev_page_cursor: (
        Annotated[
            uuid.UUID,
            Meta(
                description="Cursor that turns around: sent with the opposite direction, it "
                "gives the rows on the other side of this page",
                extra_json_schema=_EXTENSION,
            ),
        ]
        | msgspec.UnsetType
    ) = msgspec.UNSET


class ListResult(msgspec.Struct):
    """Result of listing tool execution logs"""

    logs: GramOptional[
        Annotated[list[LogEntry], Meta(description="List of tool execution logs")]
    ] = msgspec.UNSET
    pagination: GramOptional[Pagination] = msgspec.UNSET


_encoder = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class ListQuery:
    """A validated listToolExecutionLogs request, before the project is known."""

    ts_start: datetime
    ts_end: datetime
    equals: dict[str, object]
    keyword: str | None
    cursor: uuid.UUID | None
    per_page: int
    ascending: bool
    forward: bool

    def page_request(self, project_id: uuid.UUID) -> PageRequest:
        lo, hi = id_bounds(self.ts_start, self.ts_end)
        return PageRequest(
            filter=LogFilter(
                project_id=project_id, lo=lo, hi=hi, equals=self.equals, keyword=self.keyword
            ),
            per_page=self.per_page,
            ascending=self.ascending,
            forward=self.forward,
            cursor=self.cursor,
        )


def id_bounds(ts_start: datetime, ts_end: datetime) -> tuple[int, int]:
    """The inclusive id range of the window ``[ts_start, ts_end]`` (empty: ``(1, 0)``)."""
    # Outside the id range there are no rows, so clamping a window changes no answer.
    start = max(ts_start, ids.MIN_TIMESTAMP)
    end = min(ts_end, ids.MAX_TIMESTAMP)
    if start > end:
        return 1, 0
    return ids.lowest_id(start).int, ids.highest_id(end).int


def parse_filters(params: Mapping[str, str]) -> tuple[dict[str, object], str | None]:
    """The filters of a listToolExecutionLogs request (the live tail's too): the columns to
    match exactly, and the keyword."""
    get = params.get
    equals: dict[str, object] = {}
    for name in ("deployment_id", "function_id"):
        if (v := get(name)) is not None:
            equals[name] = parse_uuid(name, v)
    if (v := get("instance")) is not None:
        equals["instance"] = v
    if (v := get("level")) is not None:
        equals["level"] = parse_enum("level", v, LEVELS)
    if (v := get("source")) is not None:
        equals["source"] = parse_enum("source", v, SOURCES)
    # Extension: unknown to Gram's clients, harmless to them (see docs/keyword-search.md).
    keyword = parse_text("keyword", v) if (v := get("keyword")) is not None else None
    return equals, keyword


def parse_list_query(params: Mapping[str, str]) -> ListQuery:
    """Validate the query string as Gram's Goa service does; errors name the parameter."""
    get = params.get
    ts_start = parse_timestamp("ts_start", v) if (v := get("ts_start")) else ids.MIN_TIMESTAMP
    ts_end = parse_timestamp("ts_end", v) if (v := get("ts_end")) else ids.MAX_TIMESTAMP
    equals, keyword = parse_filters(params)
    cursor = parse_uuid("cursor", v) if (v := get("cursor")) is not None else None
    per_page = DEFAULT_PER_PAGE
    if (v := get("per_page")) is not None:
        per_page = parse_int("per_page", v, 1, MAX_PER_PAGE)
    sort = parse_enum("sort", get("sort", "desc"), SORTS)
    direction = parse_enum("direction", get("direction", "next"), DIRECTIONS)
    if ts_start > ts_end:
        raise BadRequest(
            f"ts_start ({ts_start.isoformat()}) must not be after ts_end ({ts_end.isoformat()})"
        )
    return ListQuery(
        ts_start=ts_start,
        ts_end=ts_end,
        equals=equals,
        keyword=keyword,
        cursor=cursor,
        per_page=per_page,
        ascending=sort == "asc",
        forward=direction == "next",
    )


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


def render(page: Page, query: ListQuery) -> ListResult:
    logs = [entry(row) for row in page.rows]
    # Walk order: the last row walked is the last in sort order going next, the first going prev.
    walked = logs if query.forward else logs[::-1]
    pagination = Pagination(
        per_page=query.per_page,
        has_next_page=page.has_more,
        next_page_cursor=walked[-1].id if page.has_more else msgspec.UNSET,
        has_prev_page=page.has_back,
        prev_page_cursor=walked[0].id if walked else _just_past(query),
    )
    return ListResult(logs=logs, pagination=pagination)


def _just_past(query: ListQuery) -> uuid.UUID | msgspec.UnsetType:
    """On an empty page, the position just past the cursor: turning around from it includes
    the cursor's own row, which is on the other side of this (empty) page."""
    if query.cursor is None:
        return msgspec.UNSET
    step = 1 if query.ascending == query.forward else -1
    return uuid.UUID(int=min(max(query.cursor.int + step, 0), (1 << 128) - 1))


async def list_tool_execution_logs(request: Request) -> Response:
    key, slug = gram_credentials(request)
    query = parse_list_query(first_values(request))
    state = app_state(request)
    db = state.db
    # Keys are checked on the primary, so a revocation holds at once even on a lagging replica.
    async with db.connection() as conn:
        principal = await authenticate(conn, key, Permission.READ, project_slug=slug)
        # A keyword may scan the whole range (web/expensive.py).
        with state.expensive.hold(principal.key_id, expensive=query.keyword is not None):
            async with db.read_connection(conn) as reader:
                page = await fetch_page(reader, query.page_request(principal.project_id))
    return Response(_encoder.encode(render(page, query)), media_type="application/json")
