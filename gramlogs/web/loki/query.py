"""Loki's query API: ``GET /loki/api/v1/query_range`` and ``GET /loki/api/v1/query``.

A log query answers ``streams`` (its lines grouped by their labels after the pipeline), a metric
query ``matrix`` (query_range) or ``vector`` (query), in Loki's JSON shapes, so that Grafana's
Loki data source reads them as Loki's. Times are taken as Loki takes them: integer nanoseconds
since the epoch (ten digits or fewer: seconds), float seconds, or RFC 3339.
"""

from __future__ import annotations

import math
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import msgspec
from msgspec import Meta
from starlette.requests import Request
from starlette.responses import Response

from gramlogs.core import ids
from gramlogs.core.errors import BadRequest
from gramlogs.core.keys import Permission
from gramlogs.storage.access import authenticate
from gramlogs.web.endpoint import GRAM_SECURITY, Endpoint, Ok, Operation
from gramlogs.web.loki import lines as lines_
from gramlogs.web.loki.auth import loki_credentials
from gramlogs.web.loki.logql import LogQuery, MetricExpr, RangeAggregation, parse
from gramlogs.web.loki.series import Series, Steps, evaluate
from gramlogs.web.params import Param, enum, first_values, integer, string
from gramlogs.web.state import app_state

__all__ = [
    "DEFAULT_LIMIT",
    "ENDPOINTS",
    "MAX_LIMIT",
    "MAX_POINTS",
    "parse_duration",
    "parse_time",
]

DEFAULT_LIMIT = 100
MAX_LIMIT = 5000
# Loki's limit on a query_range's points per series (its message is the same).
MAX_POINTS = 11_000
# Without a step, Loki takes one of (end - start) / 250, whole seconds, at least 1 s.
_STEP_DIVISOR = 250
_DEFAULT_RANGE_NS = 3600 * 10**9  # start defaults to an hour before end, as in Loki
_SECOND = 10**9
_CATEGORIZE = "categorize-labels"
_FLAGS_HEADER = "X-Loki-Response-Encoding-Flags"

# -- Parameters -------------------------------------------------------------------------------

_GO_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h|d|w|y)")
_UNITS = {
    "ns": 1,
    "us": 10**3,
    "µs": 10**3,
    "ms": 10**6,
    "s": _SECOND,
    "m": 60 * _SECOND,
    "h": 3600 * _SECOND,
    "d": 86_400 * _SECOND,
    "w": 7 * 86_400 * _SECOND,
    "y": 365 * 86_400 * _SECOND,
}
_MAX_NS = (ids.MAX_TIMESTAMP - ids.EPOCH).days * 86_400 * _SECOND


def parse_duration(name: str, value: str) -> int:
    """A step: float seconds or a duration (``30s``, ``1m30s``, ``1h``), in nanoseconds > 0."""
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        ns = _duration_ns(text)
    else:
        if not math.isfinite(seconds):
            raise BadRequest(f"invalid {name}: {text!r} is not a number of seconds") from None
        ns = round(seconds * _SECOND)
    if ns is None:
        raise BadRequest(f"invalid {name}: {text!r} is neither seconds nor a duration like 30s")
    if ns <= 0:
        raise BadRequest(
            "zero or negative query resolution step widths are not accepted. Try a positive integer"
        )
    return ns


def _duration_ns(text: str) -> int | None:
    at, total = 0, 0.0
    for m in _GO_DURATION.finditer(text):
        if m.start() != at:
            return None
        total += float(m.group(1)) * _UNITS[m.group(2)]
        at = m.end()
    return round(total) if at == len(text) and text else None


def parse_time(name: str, value: str) -> int:
    """A time as Loki takes it, in nanoseconds since the epoch."""
    text = value.strip()
    if "." in text:
        try:
            seconds = float(text)
        except ValueError:
            pass
        else:
            if math.isfinite(seconds):
                return _bounded(name, text, round(seconds * 1000) * 10**6)
    if re.fullmatch(r"-?\d+", text):
        number = int(text)
        # Loki's rule: ten digits or fewer are seconds, more are nanoseconds.
        return _bounded(name, text, number * _SECOND if len(text) <= 10 else number)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise BadRequest(
            f"invalid {name}: {text[:60]!r} is not a time (nanoseconds or seconds since the "
            "epoch, or RFC 3339)"
        ) from None
    if parsed.tzinfo is None:
        raise BadRequest(f"invalid {name}: {text[:60]!r} has no time zone")
    delta = parsed - ids.EPOCH
    return _bounded(
        name, text, (delta.days * 86_400 + delta.seconds) * _SECOND + delta.microseconds * 1000
    )


def _bounded(name: str, text: str, ns: int) -> int:
    if not 0 <= ns <= _MAX_NS:
        raise BadRequest(
            f"invalid {name}: {text[:60]!r} is outside 1970-01-01T00:00:00Z..2100-01-01T00:00:00Z"
        )
    return ns


_TIME_SCHEMA: dict[str, Any] = {"type": "string"}
QUERY = Param(
    "query",
    "query",
    "The LogQL query (the subset docs/grafana.md lists); unparseable or unsupported: 400",
    {"type": "string"},
    lambda n, v: v,
    required=True,
    missing='query is required: a LogQL query such as {service_name="x"}',
)
START = Param(
    "start",
    "query",
    "Start of the window, inclusive: nanoseconds since the epoch (ten digits or fewer: seconds), "
    "float seconds, or RFC 3339; default an hour before end",
    _TIME_SCHEMA,
    parse_time,
)
END = Param(
    "end",
    "query",
    "End of the window, exclusive for lines (a metric's last step may be at it): as start; "
    "default now",
    _TIME_SCHEMA,
    parse_time,
)
TIME = Param(
    "time",
    "query",
    "The instant evaluated: as query_range's start; default now",
    _TIME_SCHEMA,
    parse_time,
)
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
STEP = Param(
    "step",
    "query",
    "A metric query's resolution: a duration (30s, 1m) or float seconds; default (end - "
    f"start) / {_STEP_DIVISOR} in whole seconds, at least 1 s; at most {MAX_POINTS} points",
    {"type": "string"},
    parse_duration,
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


def parse_range(params: Mapping[str, str], categorize: bool, now_ns: int) -> LokiQuery:
    query, limit, forward = _common(params)
    end = END.get(params)
    end_ns = now_ns if end is None else end
    start = START.get(params)
    start_ns = end_ns - _DEFAULT_RANGE_NS if start is None else start
    if start_ns > end_ns:
        raise BadRequest("end timestamp must not be before or equal to start time")
    step = STEP.get(params)
    step_ns = _default_step(start_ns, end_ns) if step is None else step
    if (end_ns - start_ns) // step_ns + 1 > MAX_POINTS:
        raise BadRequest(
            f"exceeded maximum resolution of {MAX_POINTS:,} points per timeseries. Try "
            "increasing the value of the step parameter"
        )
    return LokiQuery(query, max(start_ns, 0), end_ns, step_ns, limit, forward, categorize, False)


def parse_instant(params: Mapping[str, str], categorize: bool, now_ns: int) -> LokiQuery:
    query, limit, forward = _common(params)
    at = TIME.get(params)
    t = now_ns if at is None else at
    return LokiQuery(query, t, t, _SECOND, limit, forward, categorize, True)


def _default_step(start_ns: int, end_ns: int) -> int:
    return max((end_ns - start_ns) // _SECOND // _STEP_DIVISOR, 1) * _SECOND


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


def _seconds(ns: int) -> float:
    return round(ns / _SECOND, 3)


def matrix(series: Series, steps: Steps) -> list[MatrixSeries]:
    times = steps.times
    out = []
    for key in sorted(series):
        points: list[list[float | str]] = [
            [_seconds(t), format_value(v)]
            for t, v in zip(times, series[key], strict=True)
            if v is not None
        ]
        if points:
            out.append(MatrixSeries(metric=dict(key), values=points))
    return out


def vector(series: Series, at_ns: int) -> list[Sample]:
    return [
        Sample(metric=dict(key), value=[_seconds(at_ns), format_value(values[0])])
        for key, values in sorted(series.items())
        if values and values[0] is not None
    ]


async def _log_answer(reader: lines_.Reader, q: LokiQuery, project_id: uuid.UUID) -> QueryResponse:
    started = time.perf_counter()
    assert isinstance(q.query, LogQuery)
    start, end = q.start_ns, q.end_ns
    if q.instant:
        start, end = end - _DEFAULT_RANGE_NS, end + 1
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


async def _answer(request: Request, q: LokiQuery, key: str, slug: str) -> Response:
    state = app_state(request)
    db = state.db
    # As listToolExecutionLogs: the key on the primary, the read on a replica when there is one.
    async with db.connection() as conn:
        principal = await authenticate(conn, key, Permission.READ, project_slug=slug)
        if isinstance(q.query, LogQuery):
            scans = lines_.plan(q.query, principal.project_id, 0, 1).scans
        else:
            scans = _reads_lines(q.query)  # a metric counts or reads a whole window
        with state.expensive.hold(principal.key_id, expensive=scans):
            async with db.read_connection(conn) as reader:
                if isinstance(q.query, LogQuery):
                    body = await _log_answer(reader, q, principal.project_id)
                else:
                    body = await _metric_answer(reader, q, principal.project_id)
    return Response(_encoder.encode(body), media_type="application/json")


async def query_range(request: Request) -> Response:
    key, slug = loki_credentials(request)
    q = parse_range(first_values(request), _categorize(request), time.time_ns())
    return await _answer(request, q, key, slug)


async def query_instant(request: Request) -> Response:
    key, slug = loki_credentials(request)
    q = parse_instant(first_values(request), _categorize(request), time.time_ns())
    return await _answer(request, q, key, slug)


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
                "loki",
                "Loki query_range",
                "A LogQL query over a window, as Loki answers it: a log query's lines "
                "(streams, at most limit, in direction's order) or a metric query's series at "
                "each step (matrix). Errors are plain text." + _AUTH,
                _OK,
                (QUERY, START, END, LIMIT, DIRECTION, STEP, INTERVAL, FLAGS),
                raises=(BadRequest,),
                security=GRAM_SECURITY,
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
                "loki",
                "Loki query",
                "A LogQL query at one instant, as Loki answers it: a metric query's value "
                "(vector), or a log query's lines of the hour before time (streams). Errors "
                "are plain text." + _AUTH,
                _OK,
                (QUERY, TIME, LIMIT, DIRECTION, FLAGS),
                raises=(BadRequest,),
                security=GRAM_SECURITY,
            ),
        ),
    ),
)
