"""Loki's label browser: ``labels``, ``label/{name}/values``, ``series``; and what Grafana
asks besides (``status/buildinfo``, ``patterns``).

The column labels' values come from the columns (storage.column_values: the window's rows and
sealed blocks, bounded); the other labels' (``service_name``, pushed labels) from the newest
lines of the window (sample.py). A ``query`` whose selector needs a check line by line (a
regex, ``!=``, a label with no column, a line filter) is answered from the sample alone.
"""

from __future__ import annotations

import uuid
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response

from gramlogs.core.errors import BadRequest, PayloadTooLarge
from gramlogs.storage.column_values import ColumnValues, column_values
from gramlogs.storage.database import Connection
from gramlogs.web.endpoint import Body, Endpoint, Ok, Operation
from gramlogs.web.loki.labels import COLUMN_LABELS, stream_labels
from gramlogs.web.loki.logql import LogQuery
from gramlogs.web.loki.reads import (
    LOKI_SECURITY,
    QUERY,
    TAG,
    json_reply,
    loki_credentials,
    query_of,
    reader,
    success,
)
from gramlogs.web.loki.sample import log_query, sample_lines, selection_of
from gramlogs.web.loki.selection import Selection
from gramlogs.web.loki.window import END, START, Window, parse_window
from gramlogs.web.params import Json, Param, first_values, string, text

__all__ = ["BUILD_INFO", "ENDPOINTS", "LOKI_VERSION"]

# The Loki version gramlogs answers as: Grafana enables features by it (Logs Drilldown wants
# 3.x: structured metadata, detected fields, volume), and gramlogs serves the 3.x API they use.
LOKI_VERSION = "3.4.0"
BUILD_INFO = {
    "version": LOKI_VERSION,
    "revision": "gramlogs",
    "branch": "gramlogs",
    "buildUser": "gramlogs",
    "buildDate": "",
    "goVersion": "",
}
# A form body of series (match[] selectors, start, end) larger than this is a 413.
_MAX_FORM_BYTES = 64 * 1024
# The label's column in storage.column_values.ColumnValues, for labels that are columns.
_COLUMN_OF = {
    "level": "level",
    "detected_level": "level",
    "source": "source",
    "instance": "instance",
    "function_id": "function_id",
    "deployment_id": "deployment_id",
}
_STRINGS: Json = {"type": "array", "items": {"type": "string"}}
_NAME = Param(
    "name",
    "path",
    "The label's name",
    {"type": "string", "pattern": "^[^\\u0000]+$"},
    lambda name, value: value,
    goa=False,
)
_MATCH = text(
    "match[]",
    "A stream selector (repeated: the union of their series); at least one",
    most=4096,
)


def _envelope(data: Json) -> Json:
    return {
        "type": "object",
        "required": ["status", "data"],
        "properties": {"status": {"type": "string", "enum": ["success"]}, "data": data},
    }


def _by_columns(selection: Selection) -> bool:
    """Whether the columns alone decide which lines ``selection`` holds."""
    return not selection.label_checks and not selection.line_checks


async def _column_values(conn: Connection, selection: Selection) -> ColumnValues | None:
    if selection.empty or not _by_columns(selection):
        return None
    return await column_values(conn, selection.filter)


async def label_names(
    conn: Connection, project_id: uuid.UUID, window: Window, query: LogQuery | None
) -> list[str]:
    """The window's label names: the column labels when it has a line, and the pushed labels
    of its newest lines."""
    selection = selection_of(query, project_id, window)
    columns = await _column_values(conn, selection)
    sample = await sample_lines(conn, selection)
    names: set[str] = set()
    if (columns is not None and not columns.empty) or sample.rows:
        names.update(COLUMN_LABELS)
    for row in sample.rows:
        names.update(stream_labels(row))
    return sorted(names)


async def label_values(
    conn: Connection,
    project_id: uuid.UUID,
    window: Window,
    query: LogQuery | None,
    name: str,
) -> list[str]:
    """The values of label ``name`` in the window: from the columns when it is one and the
    selector needs no line checked, else from the newest lines."""
    selection = selection_of(query, project_id, window)
    if name in _COLUMN_OF:
        columns = await _column_values(conn, selection)
        if columns is not None:
            return sorted(str(v) for v in getattr(columns, _COLUMN_OF[name]))
    sample = await sample_lines(conn, selection)
    found = {stream_labels(row).get(name, "") for row in sample.rows}
    found.discard("")
    return sorted(found)


async def every_label_values(
    conn: Connection, project_id: uuid.UUID, window: Window, query: LogQuery | None
) -> dict[str, list[str]]:
    """Every label's values in the window, as :func:`label_values` finds each, from one read
    of the columns and one sample."""
    selection = selection_of(query, project_id, window)
    columns = await _column_values(conn, selection)
    sample = await sample_lines(conn, selection)
    found: dict[str, set[str]] = {}
    for row in sample.rows:
        for name, value in stream_labels(row).items():
            if value:
                found.setdefault(name, set()).add(value)
    if columns is not None:
        for name, column in _COLUMN_OF.items():
            found[name] = {str(v) for v in getattr(columns, column)}
    return {name: sorted(v) for name, v in sorted(found.items()) if v}


async def labels(request: Request) -> Response:
    credentials = loki_credentials(request)
    params = first_values(request)
    window = parse_window(params)
    query = query_of(QUERY, params)
    async with reader(request, credentials) as (project_id, conn):
        return success(await label_names(conn, project_id, window, query))


async def values(request: Request) -> Response:
    credentials = loki_credentials(request)
    name = _NAME.value(request.path_params)
    params = first_values(request)
    window = parse_window(params)
    query = query_of(QUERY, params)
    async with reader(request, credentials) as (project_id, conn):
        return success(await label_values(conn, project_id, window, query, name))


def _pairs(raw: bytes, where: str) -> list[tuple[str, str]]:
    try:
        pairs = parse_qsl(raw.decode("utf-8"), errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise BadRequest(f"the {where} must be URL-encoded UTF-8 text") from None
    if any("\x00" in k or "\x00" in v for k, v in pairs):
        raise BadRequest(f"the {where} must not hold NUL characters")
    return pairs


async def _form(request: Request) -> bytes:
    if request.method != "POST":
        return b""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_FORM_BYTES:
            raise PayloadTooLarge(f"the form body is larger than {_MAX_FORM_BYTES} bytes")
    return body


async def series_sets(
    conn: Connection, project_id: uuid.UUID, window: Window, queries: list[LogQuery]
) -> list[dict[str, str]]:
    """The distinct stream label sets of each selector's newest lines (sample.SAMPLE_LINES
    a selector), together; sorted by their labels."""
    found: set[tuple[tuple[str, str], ...]] = set()
    for query in queries:
        sample = await sample_lines(conn, selection_of(query, project_id, window))
        found.update(tuple(sorted(stream_labels(row).items())) for row in sample.rows)
    return [dict(labels) for labels in sorted(found)]


async def series(request: Request) -> Response:
    credentials = loki_credentials(request)
    pairs = _pairs(request.scope["query_string"], "query string")
    pairs += _pairs(await _form(request), "form body")
    params: dict[str, str] = {}
    for key, value in pairs:
        if value != "":
            params.setdefault(key, value)
    selectors = [v for k, v in pairs if k == _MATCH.name and v != ""]
    if not selectors:
        raise BadRequest("match[] is required: at least one stream selector")
    queries = [log_query(_MATCH.name, _MATCH.parse(_MATCH.name, s)) for s in selectors]
    window = parse_window(params)
    async with reader(request, credentials) as (project_id, conn):
        return success(await series_sets(conn, project_id, window, queries))


async def patterns(request: Request) -> Response:
    credentials = loki_credentials(request)
    params = first_values(request)
    parse_window(params)
    query_of(QUERY, params)
    async with reader(request, credentials):
        return success([])


async def buildinfo(request: Request) -> Response:
    return json_reply(BUILD_INFO)


_WINDOW = (START, END)
_LABELS_OK = Ok("The label names, sorted.", {"application/json": _envelope(_STRINGS)})
_SERIES_OK = Ok(
    "The stream label sets.",
    {
        "application/json": _envelope(
            {
                "type": "array",
                "items": {"type": "object", "additionalProperties": {"type": "string"}},
            }
        )
    },
)
_SERIES_DOC = (
    "The distinct label sets of the streams each match[] selector holds in the window: learnt "
    "from the newest 1,000 lines each selector's indexed part passes (a sample, so a series "
    "seen only in older lines of a busy window is left out)."
)
_FORM: Json = {
    "type": "object",
    "properties": {
        "match[]": {"type": "array", "items": {"type": "string", "pattern": "^[^\\u0000]*$"}},
        "start": {"type": "string"},
        "end": {"type": "string"},
    },
}
_GET = "GET"

ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "/loki/api/v1/labels",
        labels,
        (
            Operation(
                _GET,
                "lokiLabels",
                TAG,
                "Loki label names",
                "The label names of the window's lines (Loki's labels): the column labels when "
                "the window (narrowed by query) has a line, and the pushed labels of its newest "
                "1,000 lines.",
                _LABELS_OK,
                (*_WINDOW, QUERY),
                security=LOKI_SECURITY,
            ),
        ),
    ),
    Endpoint(
        "/loki/api/v1/label/{name}/values",
        values,
        (
            Operation(
                _GET,
                "lokiLabelValues",
                TAG,
                "Loki label values",
                "The values of one label in the window, sorted: a column label's from the "
                "window's rows and sealed blocks, any other's (service_name, pushed labels) "
                "from its newest 1,000 lines. query narrows them.",
                Ok("The values, sorted.", {"application/json": _envelope(_STRINGS)}),
                (*_WINDOW, QUERY),
                security=LOKI_SECURITY,
            ),
        ),
        path_params=(_NAME,),
    ),
    Endpoint(
        "/loki/api/v1/series",
        series,
        (
            Operation(
                _GET,
                "lokiSeries",
                TAG,
                "Loki series",
                _SERIES_DOC,
                _SERIES_OK,
                (_MATCH, *_WINDOW),
                security=LOKI_SECURITY,
            ),
            Operation(
                "POST",
                "lokiSeriesForm",
                TAG,
                "Loki series (form)",
                _SERIES_DOC + " The parameters may come as a form body, as Loki allows.",
                _SERIES_OK,
                (_MATCH, *_WINDOW),
                security=LOKI_SECURITY,
                body=Body({"application/x-www-form-urlencoded": _FORM}),
            ),
        ),
    ),
    Endpoint(
        "/loki/api/v1/patterns",
        patterns,
        (
            Operation(
                _GET,
                "lokiPatterns",
                TAG,
                "Loki patterns",
                "Log patterns (Logs Drilldown): gramlogs detects none, so always an empty list.",
                Ok("No patterns.", {"application/json": _envelope({"type": "array"})}),
                (*_WINDOW, QUERY, string("step", "Ignored")),
                security=LOKI_SECURITY,
            ),
        ),
    ),
    Endpoint(
        "/loki/api/v1/status/buildinfo",
        buildinfo,
        (
            Operation(
                _GET,
                "lokiBuildInfo",
                TAG,
                "Loki build information",
                f"The Loki version gramlogs answers as, {LOKI_VERSION}: Grafana enables its "
                "Loki 3.x features (Logs Drilldown) by it.",
                Ok(
                    "The build information.",
                    {
                        "application/json": {
                            "type": "object",
                            "required": list(BUILD_INFO),
                            "properties": {k: {"type": "string"} for k in BUILD_INFO},
                        }
                    },
                ),
            ),
        ),
    ),
)
