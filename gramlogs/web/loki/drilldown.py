"""What Grafana's Logs Drilldown asks of Loki besides queries: ``index/stats``,
``index/volume``, ``index/volume_range``, ``detected_labels``, ``detected_fields`` and
``detected_field/{name}/values``.

Entries (lines) are counted exactly where the selector is decided by the columns
(storage.histogram.count_ranges over the rows and sealed blocks); a selector that needs a
check line by line (a regex, a label with no column, a line filter) is counted from the newest
lines (sample.py): exactly when the sample reached the window's oldest line, else as the
indexed count times the share of the sample that matched.

**Volume** is Loki's: bytes of log lines. gramlogs keeps no byte counts, so a volume is an
estimate: the group's lines (as above) times the mean size in bytes (UTF-8) of the group's
sampled lines, a group's share of a bucket taken from the sampled lines in it (from the whole
sample when none fell there). ``bytes`` of index/stats is the same estimate; its ``chunks``
are its streams (gramlogs stores no chunks).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from starlette.requests import Request
from starlette.responses import Response

from gramlogs.core import ids
from gramlogs.storage import histogram
from gramlogs.storage.database import Connection
from gramlogs.storage.rows import StoredRow
from gramlogs.web.endpoint import Endpoint, Ok, Operation
from gramlogs.web.loki.browse import every_label_values
from gramlogs.web.loki.fields import field_type, line_fields
from gramlogs.web.loki.labels import stream_labels
from gramlogs.web.loki.logql import LogQuery
from gramlogs.web.loki.reads import (
    LOKI_SECURITY,
    QUERY,
    TAG,
    json_reply,
    loki_credentials,
    query_of,
    reader,
    required_query,
    success,
)
from gramlogs.web.loki.sample import SAMPLE_LINES, Sample, sample_lines, selection_of
from gramlogs.web.loki.selection import Selection
from gramlogs.web.loki.window import (
    END,
    START,
    Window,
    parse_window,
    step,
    step_of,
    unix_seconds,
)
from gramlogs.web.params import Json, Param, enum, first_values, integer, text

__all__ = ["ENDPOINTS"]

_REQUIRED_QUERY = text(
    "query",
    'A LogQL stream selector, e.g. {service_name=~".+"}; required',
    most=4096,
    required=True,
    missing="query is required: a stream selector",
)
_LIMIT = integer("limit", "Most series answered, the largest first", minimum=1, default=100)
_TARGETS = text(
    "targetLabels",
    "Labels to aggregate by, comma-separated; default: the labels the selector names",
    most=4096,
)
_AGGREGATE = enum(
    "aggregateBy",
    "series: one series per set of the target labels' values; labels: one per label value",
    ("series", "labels"),
    default="series",
)
_STEP = step("Width of a point: a duration (1m, 30s) or seconds; default range/250")
_LINE_LIMIT = integer(
    "line_limit",
    f"Newest lines sampled for fields (at most {5 * SAMPLE_LINES})",
    minimum=1,
    maximum=5 * SAMPLE_LINES,
    default=SAMPLE_LINES,
)
_FIELD_LIMIT = integer("limit", "Most fields or values answered", minimum=1, default=1000)
_NAME = Param(
    "name",
    "path",
    "The field's name",
    {"type": "string", "pattern": "^[^\\u0000]+$"},
    lambda name, value: value,
    goa=False,
)


def _size(row: StoredRow) -> int:
    return len(row[5].encode())


@dataclass(frozen=True, slots=True)
class _Counted:
    """The selection's lines in the window and in each range of it, and the sample they were
    estimated from."""

    entries: int
    ranges: list[int]  # lines per range (the indexed counts times ratio, or sampled exactly)
    sample: Sample
    ratio: float  # of an indexed count, the share that matches
    exact: bool  # the sample is the window's whole selection


async def _count(conn: Connection, selection: Selection, edges: Sequence[int] = ()) -> _Counted:
    """The selection's lines in the ranges ``edges`` cut the window into (histogram.py's)."""
    if selection.empty:
        return _Counted(0, [0] * (len(edges) + 1), Sample([], 0, True), 0.0, True)
    indexed = await histogram.count_ranges(conn, selection.filter, edges)
    sample = await sample_lines(conn, selection)
    if not selection.label_checks and not selection.line_checks:
        return _Counted(sum(indexed), indexed, sample, 1.0, False)
    if sample.complete:
        return _Counted(len(sample.rows), [], sample, 0.0, True)
    ratio = len(sample.rows) / sample.read if sample.read else 0.0
    ranges = [round(n * ratio) for n in indexed]
    return _Counted(round(sum(indexed) * ratio), ranges, sample, ratio, False)


def _ns(row: StoredRow) -> int:
    micros: int = (row[1] - ids.EPOCH) // timedelta(microseconds=1)
    return micros * 1000


def _mean_bytes(rows: Sequence[StoredRow]) -> float:
    return sum(map(_size, rows)) / len(rows) if rows else 0.0


async def index_stats(
    conn: Connection, project_id: uuid.UUID, window: Window, query: LogQuery
) -> dict[str, int]:
    counted = await _count(conn, selection_of(query, project_id, window))
    streams = len({tuple(sorted(stream_labels(r).items())) for r in counted.sample.rows})
    size = round(counted.entries * _mean_bytes(counted.sample.rows))
    return {"streams": streams, "chunks": streams, "entries": counted.entries, "bytes": size}


async def stats(request: Request) -> Response:
    credentials = loki_credentials(request)
    params = first_values(request)
    window = parse_window(params)
    query = required_query(_REQUIRED_QUERY, params)
    async with reader(request, credentials, expensive=True) as (project_id, conn):
        return json_reply(await index_stats(conn, project_id, window, query))


# -- Volume ---------------------------------------------------------------------------------

Group = tuple[tuple[str, str], ...]


def _grouper(query: LogQuery, targets: str | None, by: str) -> Callable[[StoredRow], list[Group]]:
    names = [t.strip() for t in targets.split(",") if t.strip()] if targets else []
    if not names:
        names = list(dict.fromkeys(m.label for m in query.matchers))

    def groups(row: StoredRow) -> list[Group]:
        labels = stream_labels(row)
        held = [(n, labels[n]) for n in names if n in labels]
        if by == "labels":
            return [(pair,) for pair in held]
        return [tuple(held)] if held else []

    return groups


def _shares(
    rows: Iterable[StoredRow], groups: Callable[[StoredRow], list[Group]]
) -> dict[Group, float]:
    """Each group's bytes per line of ``rows``: a line's size counts for each of its groups."""
    rows = list(rows)
    found: dict[Group, int] = defaultdict(int)
    for row in rows:
        for group in groups(row):
            found[group] += _size(row)
    return {group: size / len(rows) for group, size in found.items()} if rows else {}


def _metric(group: Group) -> dict[str, str]:
    return dict(group)


def _volume_params(params: dict[str, str]) -> tuple[Window, LogQuery, str | None, str, int]:
    window = parse_window(params)
    query = required_query(_REQUIRED_QUERY, params)
    return window, query, _TARGETS.get(params), _AGGREGATE.value(params), _LIMIT.value(params)


async def volume(request: Request) -> Response:
    credentials = loki_credentials(request)
    params = first_values(request)
    window, query, targets, by, limit = _volume_params(params)
    groups = _grouper(query, targets, by)
    async with reader(request, credentials, expensive=True) as (project_id, conn):
        counted = await _count(conn, selection_of(query, project_id, window))
    per_line = _shares(counted.sample.rows, groups)
    sized = sorted(
        ((round(counted.entries * b), g) for g, b in per_line.items()), key=lambda x: (-x[0], x[1])
    )
    result = [
        {"metric": _metric(g), "value": [unix_seconds(window.end_ns), str(n)]}
        for n, g in sized[:limit]
        if n > 0
    ]
    return success({"resultType": "vector", "result": result})


async def volume_range(request: Request) -> Response:
    credentials = loki_credentials(request)
    params = first_values(request)
    window, query, targets, by, limit = _volume_params(params)
    step_ns = step_of(window, _STEP.get(params))
    points = (window.end_ns - window.start_ns) // step_ns + 1
    starts = [window.start_ns + k * step_ns for k in range(points)]
    groups = _grouper(query, targets, by)
    edges = [Window(s, s).id_range()[0] for s in starts[1:]]
    async with reader(request, credentials, expensive=True) as (project_id, conn):
        counted = await _count(conn, selection_of(query, project_id, window), edges)
    rows_in: list[list[StoredRow]] = [[] for _ in range(points)]
    for row in counted.sample.rows:
        k = (_ns(row) - window.start_ns) // step_ns
        if 0 <= k < points:
            rows_in[k].append(row)
    overall = _shares(counted.sample.rows, groups)
    series: dict[Group, list[list[object]]] = defaultdict(list)
    for k, start in enumerate(starts):
        entries = len(rows_in[k]) if counted.exact else counted.ranges[k]
        if not entries:
            continue
        shares = _shares(rows_in[k], groups) or overall
        for group, per_line in shares.items():
            n = round(entries * per_line)
            if n > 0:
                series[group].append([unix_seconds(start), str(n)])
    totals = {g: sum(int(str(v[1])) for v in values) for g, values in series.items()}
    ordered = sorted(series, key=lambda g: (-totals[g], g))
    result = [{"metric": _metric(g), "values": series[g]} for g in ordered[:limit]]
    return success({"resultType": "matrix", "result": result})


# -- Detected labels and fields -----------------------------------------------------------------


async def detected_labels(request: Request) -> Response:
    credentials = loki_credentials(request)
    params = first_values(request)
    window = parse_window(params)
    query = query_of(QUERY, params)
    async with reader(request, credentials) as (project_id, conn):
        found = await every_label_values(conn, project_id, window, query)
    labels = [{"label": name, "cardinality": len(v)} for name, v in found.items()]
    return json_reply({"detectedLabels": labels})


def _fields(rows: Iterable[StoredRow]) -> dict[str, tuple[set[str], set[str]]]:
    """Each field's values and the parsers that found it."""
    found: dict[str, tuple[set[str], set[str]]] = {}
    for row in rows:
        for name, (value, parser) in line_fields(row).items():
            seen, parsers = found.setdefault(name, (set(), set()))
            seen.add(value)
            if parser is not None:
                parsers.add(parser)
    return found


async def _sampled_fields(
    request: Request, credentials: tuple[str, str], params: dict[str, str]
) -> dict[str, tuple[set[str], set[str]]]:
    window = parse_window(params)
    query = query_of(QUERY, params)
    most = _LINE_LIMIT.value(params)
    async with reader(request, credentials) as (project_id, conn):
        sample = await sample_lines(conn, selection_of(query, project_id, window), most)
    return _fields(sample.rows)


async def detected_fields(request: Request) -> Response:
    credentials = loki_credentials(request)
    params = first_values(request)
    limit = _FIELD_LIMIT.value(params)
    found = await _sampled_fields(request, credentials, params)
    fields = [
        {
            "label": name,
            "type": field_type(seen),
            "cardinality": len(seen),
            "parsers": sorted(parsers),
        }
        for name, (seen, parsers) in sorted(found.items())[:limit]
    ]
    return json_reply({"fields": fields, "limit": limit})


async def detected_field_values(request: Request) -> Response:
    credentials = loki_credentials(request)
    name = _NAME.value(request.path_params)
    params = first_values(request)
    limit = _FIELD_LIMIT.value(params)
    found = await _sampled_fields(request, credentials, params)
    seen = found.get(name, (set(), set()))[0]
    return json_reply({"values": sorted(seen)[:limit]})


# -- Declarations ---------------------------------------------------------------------------

_WINDOW = (START, END)
_POINT: Json = {
    "type": "array",
    "minItems": 2,
    "maxItems": 2,
    "items": {"oneOf": [{"type": "number"}, {"type": "string"}]},
}
_LABELS: Json = {"type": "object", "additionalProperties": {"type": "string"}}


def _data(result_type: str, sample: Json) -> Json:
    return {
        "type": "object",
        "required": ["status", "data"],
        "properties": {
            "status": {"type": "string", "enum": ["success"]},
            "data": {
                "type": "object",
                "required": ["resultType", "result"],
                "properties": {
                    "resultType": {"type": "string", "enum": [result_type]},
                    "result": {"type": "array", "items": sample},
                },
            },
        },
    }


def _integers(*names: str) -> Json:
    return {
        "type": "object",
        "required": list(names),
        "properties": {n: {"type": "integer", "minimum": 0} for n in names},
    }


def _op(op_id: str, summary: str, description: str, ok: Ok, params: tuple[Param, ...]) -> Operation:  # type: ignore[type-arg]
    return Operation("GET", op_id, TAG, summary, description, ok, params, security=LOKI_SECURITY)


_VOLUME_PARAMS = (_REQUIRED_QUERY, *_WINDOW, _LIMIT, _TARGETS, _AGGREGATE)
_VOLUME_DOC = (
    " Volume is bytes of lines, estimated: the group's lines times the mean size of its newest "
    "sampled lines (gramlogs keeps no byte counts)."
)

ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "/loki/api/v1/index/stats",
        stats,
        (
            _op(
                "lokiIndexStats",
                "Loki index statistics",
                "How many lines (entries, exact when the selector is decided by the columns) and "
                "bytes (estimated from the newest lines' sizes) the selector holds in the "
                "window; streams are the distinct label sets of its newest 1,000 lines, chunks "
                "the same number (gramlogs stores no chunks).",
                Ok(
                    "The statistics.",
                    {"application/json": _integers("streams", "chunks", "entries", "bytes")},
                ),
                (_REQUIRED_QUERY, *_WINDOW),
            ),
        ),
    ),
    Endpoint(
        "/loki/api/v1/index/volume",
        volume,
        (
            _op(
                "lokiIndexVolume",
                "Loki log volume",
                "The window's volume by the target labels, largest first." + _VOLUME_DOC,
                Ok(
                    "A vector.",
                    {
                        "application/json": _data(
                            "vector",
                            {
                                "type": "object",
                                "required": ["metric", "value"],
                                "properties": {"metric": _LABELS, "value": _POINT},
                            },
                        )
                    },
                ),
                _VOLUME_PARAMS,
            ),
        ),
    ),
    Endpoint(
        "/loki/api/v1/index/volume_range",
        volume_range,
        (
            _op(
                "lokiIndexVolumeRange",
                "Loki log volume over time",
                "The volume by the target labels in each step of the window (points at start, "
                "start + step, …; each counts the lines of [t, t + step))." + _VOLUME_DOC,
                Ok(
                    "A matrix.",
                    {
                        "application/json": _data(
                            "matrix",
                            {
                                "type": "object",
                                "required": ["metric", "values"],
                                "properties": {
                                    "metric": _LABELS,
                                    "values": {"type": "array", "items": _POINT},
                                },
                            },
                        )
                    },
                ),
                (*_VOLUME_PARAMS, _STEP),
            ),
        ),
    ),
    Endpoint(
        "/loki/api/v1/detected_labels",
        detected_labels,
        (
            _op(
                "lokiDetectedLabels",
                "Loki detected labels",
                "Each label of the window's lines with its number of distinct values (as "
                "label values counts them).",
                Ok(
                    "The labels.",
                    {
                        "application/json": {
                            "type": "object",
                            "required": ["detectedLabels"],
                            "properties": {
                                "detectedLabels": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "required": ["label", "cardinality"],
                                        "properties": {
                                            "label": {"type": "string"},
                                            "cardinality": {"type": "integer", "minimum": 1},
                                        },
                                    },
                                }
                            },
                        }
                    },
                ),
                (*_WINDOW, QUERY),
            ),
        ),
    ),
    Endpoint(
        "/loki/api/v1/detected_fields",
        detected_fields,
        (
            _op(
                "lokiDetectedFields",
                "Loki detected fields",
                "The fields of the newest line_limit lines: structured metadata (parsers []) "
                "and the keys of JSON or logfmt lines, each with its type and its number of "
                "distinct values.",
                Ok(
                    "The fields.",
                    {
                        "application/json": {
                            "type": "object",
                            "required": ["fields", "limit"],
                            "properties": {
                                "fields": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "required": ["label", "type", "cardinality", "parsers"],
                                        "properties": {
                                            "label": {"type": "string"},
                                            "type": {
                                                "type": "string",
                                                "enum": [
                                                    "string",
                                                    "int",
                                                    "float",
                                                    "boolean",
                                                    "duration",
                                                    "bytes",
                                                ],
                                            },
                                            "cardinality": {"type": "integer", "minimum": 1},
                                            "parsers": {
                                                "type": "array",
                                                "items": {"type": "string"},
                                            },
                                        },
                                    },
                                },
                                "limit": {"type": "integer"},
                            },
                        }
                    },
                ),
                (*_WINDOW, QUERY, _LINE_LIMIT, _FIELD_LIMIT),
            ),
        ),
    ),
    Endpoint(
        "/loki/api/v1/detected_field/{name}/values",
        detected_field_values,
        (
            _op(
                "lokiDetectedFieldValues",
                "Loki detected field values",
                "The distinct values of one detected field in the newest line_limit lines.",
                Ok(
                    "The values, sorted.",
                    {
                        "application/json": {
                            "type": "object",
                            "required": ["values"],
                            "properties": {
                                "values": {"type": "array", "items": {"type": "string"}}
                            },
                        }
                    },
                ),
                (*_WINDOW, QUERY, _LINE_LIMIT, _FIELD_LIMIT),
            ),
        ),
        path_params=(_NAME,),
    ),
)
