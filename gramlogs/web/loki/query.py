"""Loki's query API: ``GET /loki/api/v1/query_range`` and ``GET /loki/api/v1/query``.

A log query answers ``streams`` (its lines grouped by their labels after the pipeline), a metric
query ``matrix`` (query_range) or ``vector`` (query), in Loki's JSON shapes, so that Grafana's
Loki data source reads them as Loki's. Times, windows and steps are Loki's (window.py).
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated

import msgspec
from msgspec import Meta
from starlette.requests import Request
from starlette.responses import Response

from gramlogs.core.errors import BadRequest
from gramlogs.web.endpoint import Endpoint, Ok, Operation
from gramlogs.web.loki import lines as lines_
from gramlogs.web.loki import window
from gramlogs.web.loki.logql import LogQuery, MetricExpr, RangeAggregation, parse
from gramlogs.web.loki.reads import LOKI_SECURITY, TAG, loki_credentials, reader
from gramlogs.web.loki.series import Series, Steps, evaluate
from gramlogs.web.loki.window import (
    DEFAULT_SPAN_NS,
    MAX_POINTS,
    SECOND_NS,
    START,
    instant,
    parse_window,
    step,
    step_of,
    unix_seconds,
)
from gramlogs.web.params import Param, enum, first_values, integer, string

__all__ = ["DEFAULT_LIMIT", "ENDPOINTS", "MAX_LIMIT"]

DEFAULT_LIMIT = 100
MAX_LIMIT = 5000
_CATEGORIZE = "categorize-labels"
_FLAGS_HEADER = "X-Loki-Response-Encoding-Flags"

# -- Parameters -------------------------------------------------------------------------------

QUERY = Param(
    "query",
    "query",
    "The LogQL query (the subset docs/grafana.md lists); unparseable or unsupported: 400",
    {"type": "string"},
    lambda n, v: v,
    required=True,
    missing='query is required: a LogQL query such as {service_name="x"}',
)
END = instant(
    "end",
    "End of the window, exclusive for lines (a metric's last step may be at it): as start; "
    "default now",
)
TIME = instant("time", "The instant evaluated: as query_range's start; default now")
LIMIT = integer(
    "limit",
    f"Most lines a log query answers (1-{MAX_LIMIT}); ignored by metric queries",
    minimum=1,
    maximum=MAX_LIMIT,
    default=DEFAULT_LIMIT,
)
DIRECTION = enum(
    "direction",
    "Order of a log query's lines: newest first (backward) or oldest first (forward)",
    ("backward", "forward"),
    default="backward",
)
STEP = step(
    "A metric query's resolution: a duration (30s, 1m) or float seconds; default (end - "
    f"start) / 250 in whole seconds, at least 1 s; at most {MAX_POINTS} points"
)
INTERVAL = string("interval", "Accepted for Loki's clients and ignored")
FLAGS = string(
    _FLAGS_HEADER,
    f"{_CATEGORIZE}: each line's structured metadata and parsed labels apart from its "
    "stream's labels, as Loki answers it",
    "header",
)

# -- Responses --------------------------------------------------------------------------------


class Summary(msgspec.Struct):
    """What the query read"""

    execTime: float
    totalLinesProcessed: int
    totalBytesProcessed: int
    linesProcessedPerSecond: int
    bytesProcessedPerSecond: int


class Stats(msgspec.Struct):
    """Loki's query statistics, their summary only"""

    summary: Summary


class Categories(msgspec.Struct, omit_defaults=True):
    """With categorize-labels: the labels of a line that are not its stream's"""

    structuredMetadata: dict[str, str] | msgspec.UnsetType = msgspec.UNSET
    parsed: dict[str, str] | msgspec.UnsetType = msgspec.UNSET


class Stream(msgspec.Struct):
    """The lines of one label set"""

    stream: dict[str, str]
    values: Annotated[
        list[list[str | Categories]],
        Meta(description='["<ns>", "<line>"], or with categorize-labels ["<ns>", "<line>", {…}]'),
    ]


class StreamsData(msgspec.Struct, tag_field="resultType", tag="streams", omit_defaults=True):
    result: list[Stream]
    stats: Stats
    encodingFlags: list[str] | msgspec.UnsetType = msgspec.UNSET


# [<unix seconds>, "<value>"] (a list: OpenAPI 3.0 has no tuples).
_Point = Annotated[
    list[float | str],
    Meta(min_length=2, max_length=2, description='[<unix seconds>, "<value>"]'),
]


class MatrixSeries(msgspec.Struct):
    metric: dict[str, str]
    values: list[_Point]


class MatrixData(msgspec.Struct, tag_field="resultType", tag="matrix"):
    result: list[MatrixSeries]
    stats: Stats


class Sample(msgspec.Struct):
    metric: dict[str, str]
    value: _Point


class VectorData(msgspec.Struct, tag_field="resultType", tag="vector"):
    result: list[Sample]
    stats: Stats


class QueryResponse(msgspec.Struct, omit_defaults=True):
    """Loki's answer to a query"""

    status: str
    data: StreamsData | MatrixData | VectorData
    warnings: list[str] | msgspec.UnsetType = msgspec.UNSET


_encoder = msgspec.json.Encoder()

# -- Requests ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LokiQuery:
    """A validated query or query_range request, before the project is known."""

    query: LogQuery | MetricExpr
    start_ns: int
    end_ns: int
    step_ns: int
    limit: int
    forward: bool
    categorize: bool
    instant: bool


def _categorize(request: Request) -> bool:
    flags = request.headers.get(_FLAGS_HEADER.lower(), "")
    return _CATEGORIZE in (f.strip() for f in flags.split(","))


def _common(params: Mapping[str, str]) -> tuple[LogQuery | MetricExpr, int, bool]:
    text = QUERY.value(params)
    limit = LIMIT.value(params)
    forward = DIRECTION.value(params) == "forward"
    INTERVAL.get(params)
    return parse(text), limit, forward


def parse_range(params: Mapping[str, str], categorize: bool) -> LokiQuery:
    query, limit, forward = _common(params)
    w = parse_window(params, START, END)
    step_ns = step_of(w, STEP.get(params))
    return LokiQuery(query, w.start_ns, w.end_ns, step_ns, limit, forward, categorize, False)


def parse_at(params: Mapping[str, str], categorize: bool) -> LokiQuery:
    query, limit, forward = _common(params)
    at = TIME.get(params)
    t = window.now_ns() if at is None else at
    return LokiQuery(query, t, t, SECOND_NS, limit, forward, categorize, True)


# -- Answers ----------------------------------------------------------------------------------


def _stats(examined: int, size: int, seconds: float) -> Stats:
    rate = seconds if seconds > 0 else 1e-9
    return Stats(
        Summary(
            execTime=seconds,
            totalLinesProcessed=examined,
            totalBytesProcessed=size,
            linesProcessedPerSecond=int(examined / rate),
            bytesProcessedPerSecond=int(size / rate),
        )
    )


def streams(found: lines_.Found, categorize: bool) -> list[Stream]:
    """The lines grouped by label set, each stream's lines in the order found."""
    grouped: dict[tuple[tuple[str, str], ...], Stream] = {}
    for line in found.lines:
        labels = line.stream if categorize else line.labels
        key = tuple(sorted(labels.items()))
        stream = grouped.get(key)
        if stream is None:
            stream = grouped[key] = Stream(stream=dict(key), values=[])
        entry: list[str | Categories] = [str(line.ns), line.text]
        if categorize and (line.metadata or line.parsed):
            entry.append(
                Categories(
                    structuredMetadata=line.metadata or msgspec.UNSET,
                    parsed=line.parsed or msgspec.UNSET,
                )
            )
        stream.values.append(entry)
    return list(grouped.values())


def format_value(value: float) -> str:
    """A sample's value as Loki writes it (Go's shortest 'f' form: 2, 0.5, NaN, +Inf)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return repr(value)


def matrix(series: Series, steps: Steps) -> list[MatrixSeries]:
    times = steps.times
    out = []
    for key in sorted(series):
        points: list[list[float | str]] = [
            [unix_seconds(t), format_value(v)]
            for t, v in zip(times, series[key], strict=True)
            if v is not None
        ]
        if points:
            out.append(MatrixSeries(metric=dict(key), values=points))
    return out


def vector(series: Series, at_ns: int) -> list[Sample]:
    return [
        Sample(metric=dict(key), value=[unix_seconds(at_ns), format_value(values[0])])
        for key, values in sorted(series.items())
        if values and values[0] is not None
    ]


async def _log_answer(reader: lines_.Reader, q: LokiQuery, project_id: uuid.UUID) -> QueryResponse:
    started = time.perf_counter()
    assert isinstance(q.query, LogQuery)
    start, end = q.start_ns, q.end_ns
    if q.instant:
        start, end = end - DEFAULT_SPAN_NS, end + 1
    p = lines_.plan(q.query, project_id, max(start, 0), end)
    found = await lines_.read_lines(reader, p, limit=q.limit, forward=q.forward)
    data = StreamsData(
        result=streams(found, q.categorize),
        stats=_stats(
            found.examined, sum(x.size for x in found.lines), time.perf_counter() - started
        ),
        encodingFlags=[_CATEGORIZE] if q.categorize else msgspec.UNSET,
    )
    warnings = [lines_.truncation_warning(found.examined)] if found.truncated else msgspec.UNSET
    return QueryResponse(status="success", data=data, warnings=warnings)


async def _metric_answer(
    reader: lines_.Reader, q: LokiQuery, project_id: uuid.UUID
) -> QueryResponse:
    started = time.perf_counter()
    assert not isinstance(q.query, LogQuery)
    steps = Steps(q.start_ns, q.end_ns, q.step_ns)
    series, warnings = await evaluate(reader, q.query, project_id, steps)
    stats = _stats(0, 0, time.perf_counter() - started)
    data: MatrixData | VectorData
    if q.instant:
        data = VectorData(result=vector(series, q.end_ns), stats=stats)
    else:
        data = MatrixData(result=matrix(series, steps), stats=stats)
    return QueryResponse(status="success", data=data, warnings=warnings or msgspec.UNSET)


def _reads_lines(expr: LogQuery | MetricExpr) -> bool:
    """Whether a metric expression reads the store at all (``vector(1)+vector(1)`` does not)."""
    if isinstance(expr, LogQuery | RangeAggregation):
        return True
    for part in ("inner", "left", "right"):
        child = getattr(expr, part, None)
        if child is not None and _reads_lines(child):
            return True
    return False


async def _answer(request: Request, q: LokiQuery, credentials: tuple[str, str]) -> Response:
    # A metric query that reads counts or reads a whole window.
    query = q.query
    scans = lines_.scans(query) if isinstance(query, LogQuery) else _reads_lines(query)
    async with reader(request, credentials, expensive=scans) as (project_id, conn):
        if isinstance(q.query, LogQuery):
            body = await _log_answer(conn, q, project_id)
        else:
            body = await _metric_answer(conn, q, project_id)
    return Response(_encoder.encode(body), media_type="application/json")


async def query_range(request: Request) -> Response:
    credentials = loki_credentials(request)
    q = parse_range(first_values(request), _categorize(request))
    return await _answer(request, q, credentials)


async def query_instant(request: Request) -> Response:
    credentials = loki_credentials(request)
    q = parse_at(first_values(request), _categorize(request))
    return await _answer(request, q, credentials)


_OK = Ok("Loki's answer: streams, matrix or vector", {"application/json": QueryResponse})
_AUTH = (
    " The key and project come as Gram-Key and Gram-Project, as basic auth (user: the "
    "project's slug, password: the key), or as a Bearer token with X-Scope-OrgID."
)
ENDPOINTS = (
    Endpoint(
        "/loki/api/v1/query_range",
        query_range,
        (
            Operation(
                "GET",
                "lokiQueryRange",
                TAG,
                "Loki query_range",
                "A LogQL query over a window, as Loki answers it: a log query's lines "
                "(streams, at most limit, in direction's order) or a metric query's series at "
                "each step (matrix). Errors are plain text." + _AUTH,
                _OK,
                (QUERY, START, END, LIMIT, DIRECTION, STEP, INTERVAL, FLAGS),
                raises=(BadRequest,),
                security=LOKI_SECURITY,
            ),
        ),
    ),
    Endpoint(
        "/loki/api/v1/query",
        query_instant,
        (
            Operation(
                "GET",
                "lokiQuery",
                TAG,
                "Loki query",
                "A LogQL query at one instant, as Loki answers it: a metric query's value "
                "(vector), or a log query's lines of the hour before time (streams). Errors "
                "are plain text." + _AUTH,
                _OK,
                (QUERY, TIME, LIMIT, DIRECTION, FLAGS),
                raises=(BadRequest,),
                security=LOKI_SECURITY,
            ),
        ),
    ),
)
