"""The Gram dialect: ``GET /rpc/logs.listToolExecutionLogs``, wire-compatible with Gram.

Gram's generated SDK rejects ``null`` in every field, so absent values are absent keys.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, TypeAlias, TypeVar

import msgspec
from msgspec import Meta
from starlette.requests import Request
from starlette.responses import Response

from gramlogs.core.errors import BadRequest
from gramlogs.core.keys import Permission
from gramlogs.storage.access import authenticate
from gramlogs.storage.pages import Page, PageRequest, fetch_page
from gramlogs.web import rendering
from gramlogs.web.endpoint import GRAM_SECURITY, Endpoint, Ok, Operation
from gramlogs.web.params import (
    GRAM_KEY,
    GRAM_PROJECT,
    Param,
    enum,
    first_values,
    gram_credentials,
    integer,
    uuid_param,
)
from gramlogs.web.reading import (
    FILTERS,
    KEYWORD,
    WINDOW,
    LogEntry,
    Selection,
    parse_selection,
)
from gramlogs.web.state import app_state

__all__ = [
    "ENDPOINT",
    "LIST_PARAMS",
    "ListQuery",
    "ListResult",
    "list_tool_execution_logs",
    "parse_list_query",
]

SORTS = ("asc", "desc")
DIRECTIONS = ("next", "prev")
DEFAULT_PER_PAGE = 20
MAX_PER_PAGE = 100

CURSOR = uuid_param(
    "cursor", "Cursor for pagination: a log id, a position that need not be a stored row"
)
PER_PAGE = integer(
    "per_page",
    f"Number of items per page (1-{MAX_PER_PAGE})",
    minimum=1,
    maximum=MAX_PER_PAGE,
    default=DEFAULT_PER_PAGE,
    int64=True,
)
DIRECTION = enum(
    "direction",
    "Pagination direction: the rows after the cursor (next) or before it (prev)",
    DIRECTIONS,
    default="next",
)
SORT = enum("sort", "Sort order of timestamp, then id", SORTS, default="desc")
# Gram's order, the keyword (an extension) and the headers last.
LIST_PARAMS: tuple[Param[Any], ...] = (
    *WINDOW,
    *FILTERS,
    CURSOR,
    PER_PAGE,
    DIRECTION,
    SORT,
    KEYWORD,
    GRAM_KEY,
    GRAM_PROJECT,
)


# What /openapi.json says of each field: openapi.py generates the schemas from these Structs.
_T = TypeVar("_T")
# A field that Gram's schema does not require though gramlogs always writes it: UNSET is its
# default (render never leaves it so), which keeps it optional in /openapi.json, as in Gram's.
GramOptional: TypeAlias = _T | msgspec.UnsetType
_EXTENSION = {"x-gramlogs-extension": True}  # not in Gram's schema


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

    selection: Selection
    cursor: uuid.UUID | None
    per_page: int
    ascending: bool
    forward: bool

    @property
    def keyword(self) -> str | None:
        return self.selection.keyword

    def page_request(self, project_id: uuid.UUID) -> PageRequest:
        return PageRequest(
            filter=self.selection.log_filter(project_id),
            per_page=self.per_page,
            ascending=self.ascending,
            forward=self.forward,
            cursor=self.cursor,
        )


def parse_list_query(params: Mapping[str, str]) -> ListQuery:
    """Validate the query string as Gram's Goa service does; errors name the parameter."""
    selection = parse_selection(params, WINDOW)
    cursor = CURSOR.get(params)
    per_page = PER_PAGE.value(params)
    sort = SORT.value(params)
    direction = DIRECTION.value(params)
    assert selection.window is not None  # WINDOW's ends have defaults
    ts_start, ts_end = selection.window
    if ts_start > ts_end:
        raise BadRequest(
            f"ts_start ({ts_start.isoformat()}) must not be after ts_end ({ts_end.isoformat()})"
        )
    return ListQuery(
        selection=selection,
        cursor=cursor,
        per_page=per_page,
        ascending=sort == "asc",
        forward=direction == "next",
    )


def render(page: Page, query: ListQuery) -> bytes:
    """The response body: the page's entries, rendered (rendering.py), and its pagination."""
    rows = page.rows
    # Walk order: the last row walked is the last in sort order going next, the first going prev.
    first, last = (0, -1) if query.forward else (-1, 0)
    pagination = Pagination(
        per_page=query.per_page,
        has_next_page=page.has_more,
        next_page_cursor=rows[last][0] if page.has_more else msgspec.UNSET,
        has_prev_page=page.has_back,
        prev_page_cursor=rows[first][0] if rows else _just_past(query),
    )
    # Not LogEntry Structs: values that encode alike (rendering.py), in the body's one call.
    return _encoder.encode(ListResult(logs=rendering.entries(rows), pagination=pagination))


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
        principal = await authenticate(
            conn, key, Permission.READ, project_slug=slug, cache=state.keys
        )
        # A keyword may scan the whole range (web/expensive.py).
        with state.expensive.hold(principal.key_id, expensive=query.keyword is not None):
            async with db.read_connection(conn) as reader:
                page = await fetch_page(reader, query.page_request(principal.project_id))
    return Response(render(page, query), media_type="application/json")


ENDPOINT = Endpoint(
    "/rpc/logs.listToolExecutionLogs",
    list_tool_execution_logs,
    (
        Operation(
            "GET",
            "listToolExecutionLogs",
            "logs",
            "listToolExecutionLogs logs",
            "List structured logs from tool executions.",
            Ok("OK response.", {"application/json": ListResult}),
            LIST_PARAMS,
            security=GRAM_SECURITY,
            extension=False,
            extra={"x-speakeasy-name-override": "listToolExecutionLogs"},
        ),
    ),
)
