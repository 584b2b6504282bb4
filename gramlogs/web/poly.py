"""The Poly dialect: PolyAPI's Logs API for server functions, over the same store.

``GET|DELETE /functions/server/{id}/logs`` serves a function's execution logs (the lines the
function itself emitted: sources ``function``, ``stdout`` and ``stderr``);
``/functions/server/{id}/system-logs`` adds the ``server`` (platform, container) lines.
Choices the PolyAPI documentation leaves open are written down in docs/poly-api.md.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import msgspec
from msgspec import Meta
from starlette.requests import Request
from starlette.responses import Response

from gramlogs.core import ids
from gramlogs.core.errors import BadRequest, NotFound, Unauthorized
from gramlogs.core.keys import Permission
from gramlogs.storage import functions
from gramlogs.storage.access import identify
from gramlogs.storage.pages import LogFilter, PageRequest, StoredRow, fetch_page
from gramlogs.web import rendering
from gramlogs.web.endpoint import BEARER_SECURITY, Endpoint, Ok, Operation
from gramlogs.web.params import (
    MAX_TEXT_LENGTH,
    Param,
    first_values,
    integer,
    presented_key,
    text,
    uuid_param,
)
from gramlogs.web.reading import LEVELS
from gramlogs.web.state import app_state

__all__ = [
    "DEFAULT_LIMIT",
    "ENDPOINTS",
    "EXECUTION_SOURCES",
    "MAX_LIMIT",
    "PolyQuery",
    "execution_logs",
    "parse_poly_query",
    "system_logs",
]

# A function's own output: what it logged, and its raw stdout/stderr streams. `server` lines
# come from the platform around it and belong to the system logs only.
EXECUTION_SOURCES = ("function", "stdout", "stderr")
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000

_ID = uuid_param(
    "id",
    "The server function's id (400 invalid_format when not a uuid)",
    "path",
    required=True,
    goa=False,
)
_KEYWORD = text(
    "keyword",
    "Case-insensitive substring of the message or the raw line (literal); at most "
    f"{MAX_TEXT_LENGTH} characters (400 invalid_length)",
    most=MAX_TEXT_LENGTH,
)
_LAST_HOURS = integer(
    "lastHours",
    "Only lines from this many hours ago onwards; with lastDays, the longer window. Default: "
    "all time",
    minimum=1,
)
_LAST_DAYS = integer(
    "lastDays",
    "Only lines from this many days ago onwards; with lastHours, the longer window. Default: "
    "all time",
    minimum=1,
)
_LIMIT = integer(
    "limit",
    f"The newest limit lines (1-{MAX_LIMIT})",
    minimum=1,
    maximum=MAX_LIMIT,
    default=DEFAULT_LIMIT,
)
_EXECUTION_ID = text(
    "executionId",
    f"Exact match on the execution id; at most {MAX_TEXT_LENGTH} characters",
    most=MAX_TEXT_LENGTH,
)
_QUERY: tuple[Param[Any], ...] = (_KEYWORD, _LAST_HOURS, _LAST_DAYS, _LIMIT, _EXECUTION_ID)
# The query parameters a GET takes; a DELETE refuses them rather than ignore a filter that
# the caller may believe narrows what is deleted.
PARAMS = tuple(param.name for param in _QUERY)


_LEVELS = {"enum": [level.upper() for level in LEVELS]}


# Only encoded: forbid_unknown_fields and ge=0 check nothing, they say so in /openapi.json.
# The schema of an entry. Bodies are encoded from rendering.poly_entries: values that encode
# alike and cost less to make, one a row.
class PolyLog(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    timestamp: Annotated[
        datetime,
        Meta(description="UTC, Z, to the microsecond", extra_json_schema={"format": "date-time"}),
    ]
    value: Annotated[
        str, Meta(description="The message, or the raw line when the message is null or empty")
    ]
    level: Annotated[str, Meta(extra_json_schema=_LEVELS)]
    # "" when the line belongs to no execution (server lines, mostly): Poly documents a string.
    execution_id: Annotated[str, Meta(description='"" when the line belongs to no execution')]


class PolyLogs(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    """A function's logs, newest first; none while its logs are disabled"""

    logs_enabled: bool
    logs: list[PolyLog]


class Deleted(msgspec.Struct, forbid_unknown_fields=True):
    deleted: Annotated[int, Meta(ge=0)]


_encoder = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class PolyQuery:
    """A validated GET query string."""

    keyword: str | None
    hours: int | None  # the window: the last ``hours`` hours; None: all time
    limit: int
    execution_id: str | None

    def page_request(
        self, project_id: uuid.UUID, function_id: uuid.UUID, *, system: bool, now: datetime
    ) -> PageRequest:
        lo = 0
        if self.hours is not None:
            lo = ids.lowest_id(window_start(now, self.hours)).int
        equals: dict[str, object] = {"function_id": function_id}
        if self.execution_id is not None:
            equals["execution_id"] = self.execution_id
        return PageRequest(
            filter=LogFilter(
                project_id=project_id,
                lo=lo,
                equals=equals,
                sources=() if system else EXECUTION_SOURCES,
                keyword=self.keyword,
            ),
            per_page=self.limit,
        )


def _now() -> datetime:
    # Where the lastHours/lastDays windows end; a seam of its own so that tests fix the clock.
    return datetime.now(UTC)


def window_start(now: datetime, hours: int) -> datetime:
    """``now`` minus ``hours``; a window reaching before 1970 covers every line."""
    if hours >= (now - ids.MIN_TIMESTAMP) / timedelta(hours=1):
        return ids.MIN_TIMESTAMP
    return now - timedelta(hours=hours)


def parse_poly_query(params: Mapping[str, str]) -> PolyQuery:
    """Validate a GET's query string; empty values were already dropped (Poly ignores them)."""
    keyword = _KEYWORD.get(params)
    hours = _LAST_HOURS.get(params)
    days = _LAST_DAYS.get(params)
    limit = _LIMIT.value(params)
    execution_id = _EXECUTION_ID.get(params)
    # Both windows given: the longer one, so that no line either asked for is left out.
    if days is not None:
        hours = max(hours or 0, days * 24)
    return PolyQuery(keyword=keyword, hours=hours, limit=limit, execution_id=execution_id)


def render(logs_enabled: bool, rows: Sequence[StoredRow]) -> bytes:
    """The response body of a GET: the rows rendered (rendering.py) in PolyLogs."""
    # Not PolyLog Structs: values that encode alike (rendering.py), in the body's one call.
    logs = rendering.poly_entries(rows)
    return _encoder.encode(PolyLogs(logs_enabled=logs_enabled, logs=logs))


def _function_id(request: Request) -> uuid.UUID:
    return _ID.value(request.path_params)


async def _serve(request: Request, *, system: bool) -> Response:
    key = presented_key(request.scope)
    if key is None:
        raise Unauthorized("missing Authorization header (Bearer <key>)")
    function_id = _function_id(request)
    params = first_values(request)
    if request.method == "DELETE":
        for name in PARAMS:
            if name in params:
                raise BadRequest(
                    f"{name} is not accepted by DELETE: it removes all of the function's "
                    f"{'system' if system else 'execution'} logs"
                )
        query = None
    else:
        query = parse_poly_query(params)
    state = app_state(request)
    async with state.db.connection() as conn:
        holder = await identify(conn, key, cache=state.keys)
        # Before any lookup: a key that may not read or delete learns nothing of which
        # functions exist.
        holder.require(Permission.READ if query is not None else Permission.DELETE)
        function = await functions.find_function(
            conn, holder.organization_id, function_id, project_id=holder.bound_project_id
        )
        if function is None:
            raise NotFound(f"no server function {str(function_id)!r}")
        if query is None:
            deleted = await functions.delete_logs(
                conn,
                function.project_id,
                function.id,
                sources=() if system else EXECUTION_SOURCES,
            )
            return Response(_encoder.encode(Deleted(deleted)), media_type="application/json")
        rows: Sequence[StoredRow] = []
        if function.logs_enabled:
            req = query.page_request(function.project_id, function.id, system=system, now=_now())
            # A keyword may scan the whole range (web/expensive.py).
            expensive = query.keyword is not None
            with app_state(request).expensive.hold(holder.key_id, expensive=expensive):
                rows = (await fetch_page(conn, req)).rows
    return Response(render(function.logs_enabled, rows), media_type="application/json")


async def execution_logs(request: Request) -> Response:
    """``GET|DELETE /functions/server/{id}/logs``."""
    return await _serve(request, system=False)


async def system_logs(request: Request) -> Response:
    """``GET|DELETE /functions/server/{id}/system-logs``."""
    return await _serve(request, system=True)


# -- Declarations -----------------------------------------------------------------------------
# docs/poly-api.md. Authorization: Bearer only; the function is found among the projects the
# key may read (404 otherwise, whether or not it exists elsewhere).


def _endpoint(system: bool) -> Endpoint:
    which = "system" if system else "execution"
    lines = (
        "every line of the function (sources function, stdout, stderr and server)"
        if system
        else "the lines the function itself emitted (sources function, stdout, stderr)"
    )
    name = "SystemLogs" if system else "FunctionLogs"
    get = Operation(
        "GET",
        f"get{name}",
        "poly",
        f"get {which} logs",
        f"PolyAPI: {lines}, newest first. A key that may read (scope consumer, admin or "
        "producer; 403 otherwise, before the function is looked up). Empty values are ignored; "
        "a repeated parameter takes its first value.",
        Ok("The logs.", {"application/json": PolyLogs}),
        _QUERY,
        raises=(NotFound,),
        security=BEARER_SECURITY,
    )
    delete = Operation(
        "DELETE",
        f"delete{name}",
        "poly",
        f"delete {which} logs",
        f"PolyAPI: remove {lines}, all or nothing. A key that may delete (scope admin or "
        f"producer; 403 otherwise, before the function is looked up). No query parameters: "
        f"{', '.join(PARAMS[:-1])} or {PARAMS[-1]} is a 400 rather than ignored.",
        Ok("How many lines were removed.", {"application/json": Deleted}),
        raises=(NotFound,),
        security=BEARER_SECURITY,
    )
    path = "/functions/server/{id}/" + ("system-logs" if system else "logs")
    return Endpoint(
        path, system_logs if system else execution_logs, (get, delete), path_params=(_ID,)
    )


ENDPOINTS = (_endpoint(system=False), _endpoint(system=True))
