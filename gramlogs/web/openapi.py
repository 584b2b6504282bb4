"""The OpenAPI 3 document of gramlogs, served at ``GET /openapi.json``.

For ``listToolExecutionLogs`` it follows Gram's published operation (the Goa design of Gram's
``logs`` service and the OpenAPI 3.0.3 Goa generates from it): the same operationId, parameter
names, types, formats, enums, defaults and bounds, the same schema names
(``ListToolExecutionLogsResult``, ``ToolExecutionLog``, ``PaginationResponse``, ``Error``) with
the same required fields, and the same security scheme names. What gramlogs adds is marked
``x-gramlogs-extension: true``; docs/openapi.md ("How it compares with Gram's") lists every
difference and why.

Every response the server can give is described, errors included: each error status names the
Goa error ``name``s it can carry (taken from the class tree in ``errors.py``, so the two cannot
drift apart) and the headers it always has (``X-Request-Id``, ``Cache-Control: no-store``,
``Vary`` and ``X-Content-Type-Options`` on every response (web/headers.py), ``Retry-After`` on
429 and 503, ``Allow`` on 405). Unknown routes (404) and known routes with a method they do not
have (405) belong to no operation; they are in ``components.responses``, listed under the
document's ``x-gramlogs-any-route``.

The schemas of the bodies that msgspec encodes and decodes are generated from the Structs
themselves (:data:`WIRE_STRUCTS`, :func:`struct_schemas`), so a field added to one is in the
document at once; descriptions, formats and examples are ``msgspec.Meta`` on the Structs' fields.

The dict is built once at import and encoded once; :func:`endpoint` serves the bytes. To add an
endpoint, write a function that returns its path item and add one line to :func:`_paths`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from gramlogs import __version__
from gramlogs.core.config import Config
from gramlogs.core.errors import ErrorBody, GramlogsError
from gramlogs.web import body, export, gram, histogram, ingest, otlp, params, poly, tail
from gramlogs.web.headers import API_HEADERS

__all__ = ["DOCUMENT", "ERROR_RESPONSES", "WIRE_STRUCTS", "build", "endpoint", "struct_schemas"]

Json = dict[str, Any]

EXTENSION = "x-gramlogs-extension"
_UUID = {"type": "string", "format": "uuid"}
_DATE_TIME = {"type": "string", "format": "date-time"}
# PostgreSQL text cannot hold NUL, so every string stored or compared with stored text refuses
# it (400 invalid_format, naming the parameter or field).
NO_NUL = params.NO_NUL


def _text(**bounds: int) -> Json:
    return {"type": "string", "pattern": NO_NUL, **bounds}


# -- Schemas of the bodies msgspec encodes and decodes ----------------------------------------

# Every Struct that is a body on the wire, or part of one, with the name of its component in
# components.schemas (Gram's names for Gram's schemas). Their schemas are generated from the
# Structs (struct_schemas): a field added to a Struct is in the document at once.
WIRE_STRUCTS: dict[type[msgspec.Struct], str] = {
    # Gram dialect: the list response and the error body of every response
    gram.ListResult: "ListToolExecutionLogsResult",
    gram.LogEntry: "ToolExecutionLog",
    gram.Pagination: "PaginationResponse",
    ErrorBody: "Error",
    # Histogram (extension)
    histogram.HistogramResult: "HistogramResult",
    histogram.Bucket: "HistogramBucket",
    # Ingestion
    ingest.WireEntry: "IngestLogEntry",
    ingest.IngestResult: "IngestResult",
    # Poly dialect
    poly.PolyLogs: "PolyLogs",
    poly.PolyLog: "PolyLog",
    poly.Deleted: "PolyDeleted",
}
_SCHEMAS = "#/components/schemas/"
# JSON Schema keywords that OpenAPI 3.0 does not have and that _openapi_30 does not convert.
_UNSUPPORTED = {"prefixItems", "propertyNames", "contentEncoding", "$defs", "dependentRequired"}


def struct_schemas(structs: Mapping[type[msgspec.Struct], str]) -> Json:
    """components.schemas for ``structs`` (each Struct with its component's name): msgspec's
    JSON Schema, made OpenAPI 3.0.3. A Struct that one of them holds must be among them."""
    refs, generated = msgspec.json.schema_components(structs, ref_template=_SCHEMAS + "{name}")
    # msgspec names a component after its class; each Struct's own schema is a $ref to it.
    names = {
        ref["$ref"].removeprefix(_SCHEMAS): name
        for ref, name in zip(refs, structs.values(), strict=True)
    }
    if unnamed := sorted(set(generated) - set(names)):
        raise ValueError(f"Structs without a component name (add them to WIRE_STRUCTS): {unnamed}")
    types = {names[key]: schema.get("type") for key, schema in generated.items()}
    return {name: _openapi_30(generated[key], names, types) for key, name in names.items()}


def _openapi_30(schema: Json, names: Mapping[str, str], types: Mapping[str, Any]) -> Json:
    """A JSON Schema as msgspec writes it (2020-12) made an OpenAPI 3.0.3 Schema Object, with
    each $ref renamed by ``names``; ``types`` is each component's type."""
    out: Json = {}
    for key, value in schema.items():
        if key in _UNSUPPORTED:
            raise ValueError(f"OpenAPI 3.0 has no {key!r}: {schema}")
        if key == "properties":
            out[key] = {field: _openapi_30(s, names, types) for field, s in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            out[key] = _openapi_30(value, names, types)
        elif key in ("anyOf", "allOf", "oneOf"):
            out[key] = [_openapi_30(s, names, types) for s in value]
        elif key == "$ref":
            out[key] = _SCHEMAS + names[value.removeprefix(_SCHEMAS)]
        elif key == "description":
            # Docstrings are wrapped; CommonMark reads a single line break as a space anyway.
            out[key] = re.sub(r"(?<!\n)\n(?!\n)", " ", value)
        elif key == "examples":  # 3.0 has one example
            out["example"] = value[0]
        elif key == "const":
            out["enum"] = [value]
        elif key in ("exclusiveMinimum", "exclusiveMaximum"):  # a bound, 3.0 a flag
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
        elif (
            (key == "title" and value in names)
            or (key == "default" and value is None)
            or (key == "required" and not value)
        ):
            # A title that is the Python class's name. A null default: null means "not given",
            # which the field's description spells out. required: 3.0 wants one name or more.
            continue
        else:
            out[key] = value
    # T | None: 3.0 has no null type but nullable, which counts only beside a type.
    variants = out.get("anyOf", [])
    if {"type": "null"} in variants:
        others = [v for v in variants if v != {"type": "null"}]
        if len(others) != 1:
            raise ValueError(f"OpenAPI 3.0 cannot make this union nullable: {schema}")
        del out["anyOf"]
        (other,) = others
        if "$ref" in other:
            other = {"type": types[other["$ref"].removeprefix(_SCHEMAS)], **other}
        out = {**other, **out, "nullable": True}
    # 3.0 ignores a $ref's siblings (a description, nullable): the $ref goes into an allOf.
    if "$ref" in out and len(out) > 1:
        out = {"allOf": [{"$ref": out.pop("$ref")}], **out}
    return out


def _schema(struct: type[msgspec.Struct]) -> Json:
    return {"$ref": _SCHEMAS + WIRE_STRUCTS[struct]}


# Each error status: the name of its component in components.responses, and why it happens.
# The Goa error names come from errors.py.
ERROR_RESPONSES: dict[int, tuple[str, str]] = {
    400: (
        "BadRequest",
        "a parameter is malformed, out of range or contradictory (the message names it), or the "
        "request is not valid HTTP/1.1 (then the connection is closed)",
    ),
    401: ("Unauthorized", "the key is missing, unknown or revoked, or Gram-Project is missing"),
    403: (
        "Forbidden",
        "the key may not access this project, or its scope lacks the permission the route needs"
        " (read, write or delete)",
    ),
    404: ("NotFound", "no route has this path"),
    405: ("MethodNotAllowed", "the route has no such method; Allow lists those it has"),
    409: ("Conflict", "the batch holds lines of a function whose logs are disabled"),
    410: ("Gone", "the live tail's resume point is older than the tail journal keeps"),
    408: ("RequestTimeout", "the request's headers did not arrive in time; connection closed"),
    413: ("PayloadTooLarge", "the request body is too large"),
    414: ("UriTooLong", "the request target is too long; connection closed"),
    415: ("UnsupportedMediaType", "the request body's content type is not accepted"),
    422: (
        "UnprocessableContent",
        "the Idempotency-Key was first used with a different request (body, endpoint, content "
        "type or encoding)",
    ),
    429: (
        "TooManyRequests",
        "the key is over its rate limit, its live tails or its concurrent expensive reads "
        "(exports, histograms, keyword searches), or the client address is over its failed "
        "authentications; retry after Retry-After seconds",
    ),
    431: ("HeadersTooLarge", "the request headers are too large; connection closed"),
    500: ("Unexpected", "a bug in gramlogs; the message never shows internals"),
    503: (
        "Unavailable",
        "the database is unreachable, slow (timeout: true) or every connection is busy; "
        "retry after Retry-After seconds",
    ),
}
# Statuses any request may get, whatever its route: refused by the HTTP server before routing
# (400, 408, 414, 431), rate limited (429: every route, when the request carries a key), a bug.
_ANY_REQUEST = (400, 408, 414, 429, 431, 500)
# Statuses of requests that match no operation.
_ANY_ROUTE = (404, 405)


def _error_names() -> dict[int, list[str]]:
    names: dict[int, list[str]] = {}
    pending: list[type[GramlogsError]] = [GramlogsError]
    while pending:
        cls = pending.pop(0)
        if cls.name not in names.setdefault(cls.status, []):
            names[cls.status].append(cls.name)
        pending.extend(cls.__subclasses__())
    return names


def _ref(kind: str, name: str) -> Json:
    return {"$ref": f"#/components/{kind}/{name}"}


# What web/headers.py adds to every API response.
_EVERY_RESPONSE = ("X-Request-Id", *API_HEADERS)


def _error_response(status: int, names: list[str]) -> Json:
    headers = {name: _ref("headers", name) for name in _EVERY_RESPONSE}
    if status in (429, 503):
        headers["Retry-After"] = _ref("headers", "Retry-After")
    if status == 405:
        headers["Allow"] = _ref("headers", "Allow")
    return {
        # Goa's form ("bad_request: request is invalid"), with every name the status can carry.
        "description": f"{' | '.join(names)}: {ERROR_RESPONSES[status][1]}",
        "headers": headers,
        "content": {"application/json": {"schema": _schema(ErrorBody)}},
        "x-gramlogs-error-names": names,
    }


def _responses(ok: Json, *errors: int) -> Json:
    """An operation's responses: ``ok`` for 200, its own ``errors`` and those of any request."""
    statuses = sorted({*errors, *_ANY_REQUEST})
    return {
        "200": ok,
        **{str(s): _ref("responses", ERROR_RESPONSES[s][0]) for s in statuses},
    }


def _ok(description: str, content: Json, headers: Json | None = None) -> Json:
    return {
        "description": description,
        "headers": {
            **{name: _ref("headers", name) for name in _EVERY_RESPONSE},
            **(headers or {}),
        },
        "content": content,
    }


def _query(name: str, description: str, schema: Json, **extra: Any) -> Json:
    # Goa repeats the description in the schema and marks every query parameter allowEmptyValue;
    # gramlogs reads an empty value as "not given".
    return {
        "name": name,
        "in": "query",
        "description": description,
        "allowEmptyValue": True,
        "schema": {**schema, "description": description},
        **extra,
    }


# The write endpoints' Idempotency-Key (params.idempotency_key; docs/ingestion.md): a resend
# with the same key and request is answered as the first send was, with Idempotent-Replayed.
_IDEMPOTENCY_KEY: Json = {
    "name": params.IDEMPOTENCY_KEY,
    "in": "header",
    "required": False,
    "description": "Makes a resend safe: the same key with the same request (endpoint, content "
    "type, encoding and body) within GRAMLOGS_IDEMPOTENCY_HOURS (default 24) of the first store "
    "stores nothing and gets the first reply again, with Idempotent-Replayed: true; with another "
    "request, a 422. Scoped to the project. 1 to 255 printable ASCII characters (else 400).",
    "schema": {
        "type": "string",
        "minLength": 1,
        "maxLength": params.MAX_IDEMPOTENCY_KEY_LENGTH,
        "pattern": params.IDEMPOTENCY_KEY_PATTERN,
    },
    EXTENSION: True,
}
_REPLAYED: Json = {
    body.REPLAYED: {
        "description": "true when this is the recorded reply to an earlier request with the same "
        "Idempotency-Key (nothing was stored this time); absent otherwise.",
        "required": False,
        "schema": {"type": "string", "enum": ["true"]},
    }
}


def _header(name: str, description: str) -> Json:
    return {
        "name": name,
        "in": "header",
        "description": description,
        "allowEmptyValue": True,
        "schema": {"type": "string", "description": description},
    }


# -- Gram dialect ---------------------------------------------------------------------------


def _filters() -> list[Json]:
    """The equality filters of listToolExecutionLogs, which the live tail takes too."""
    return [
        _query("deployment_id", "Deployment ID filter (exact match)", _UUID),
        _query("function_id", "Function ID filter (exact match)", _UUID),
        _query("instance", "Instance filter (exact match)", _text()),
        _query(
            "level",
            "Log level filter",
            {"type": "string", "enum": list(gram.LEVELS)},
        ),
        _query(
            "source",
            "Log source filter. Gram's enum is stdout, stderr; gramlogs also takes "
            "server and function (the values Gram's documentation lists), see "
            "x-gramlogs-extension-values",
            {"type": "string", "enum": ["stdout", "stderr", "server", "function"]},
            **{"x-gramlogs-extension-values": ["server", "function"]},
        ),
    ]


def _keyword() -> Json:
    # Extension (gram.parse_filters, params.parse_text): docs/keyword-search.md.
    return _query(
        "keyword",
        "Case-insensitive substring of the message or the raw line; every character "
        f"is literal. At most {params.MAX_TEXT_LENGTH} characters (else 400 "
        "invalid_length)",
        _text(maxLength=params.MAX_TEXT_LENGTH),
        **{EXTENSION: True},
    )


def _list_tool_execution_logs() -> Json:
    return {
        "get": {
            "tags": ["logs"],
            "summary": "listToolExecutionLogs logs",
            "description": "List structured logs from tool executions.",
            "operationId": "listToolExecutionLogs",
            "parameters": [
                _query(
                    "ts_start",
                    "Start timestamp, inclusive (RFC 3339); default 1970-01-01T00:00:00Z",
                    _DATE_TIME,
                ),
                _query(
                    "ts_end",
                    "End timestamp, inclusive (RFC 3339); default 2100-01-01T00:00:00Z; "
                    "before ts_start is a 400 bad_request",
                    _DATE_TIME,
                ),
                *_filters(),
                _query(
                    "cursor",
                    "Cursor for pagination: a log id, a position that need not be a stored row",
                    _UUID,
                ),
                _query(
                    "per_page",
                    "Number of items per page (1-100)",
                    {
                        "type": "integer",
                        "format": "int64",
                        "minimum": 1,
                        "maximum": gram.MAX_PER_PAGE,
                        "default": gram.DEFAULT_PER_PAGE,
                    },
                ),
                _query(
                    "direction",
                    "Pagination direction: the rows after the cursor (next) or before it (prev)",
                    {"type": "string", "enum": list(gram.DIRECTIONS), "default": "next"},
                ),
                _query(
                    "sort",
                    "Sort order of timestamp, then id",
                    {"type": "string", "enum": list(gram.SORTS), "default": "desc"},
                ),
                _keyword(),
                _header("Gram-Key", "API Key header (a leading 'Bearer ' is tolerated)"),
                _header("Gram-Project", "project header (the project's slug)"),
            ],
            "responses": _responses(
                _ok(
                    "OK response.",
                    {"application/json": {"schema": _schema(gram.ListResult)}},
                ),
                400,
                401,
                403,
                503,
            ),
            "security": _GRAM_SECURITY,
            "x-speakeasy-name-override": "listToolExecutionLogs",
        }
    }


_GRAM_SECURITY_SCHEMES: Json = {
    "apikey_header_Gram-Key": {
        "type": "apiKey",
        "description": "key based auth.",
        "name": "Gram-Key",
        "in": "header",
    },
    "project_slug_header_Gram-Project": {
        "type": "apiKey",
        "description": "project slug header auth.",
        "name": "Gram-Project",
        "in": "header",
    },
}

_BEARER_SCHEME = "bearer_Authorization"
_SECURITY_SCHEMES: Json = {
    **_GRAM_SECURITY_SCHEMES,
    # The Poly dialect's (and OTLP exporters') way: Authorization: Bearer <key>, the same keys.
    _BEARER_SCHEME: {
        "type": "http",
        "scheme": "bearer",
        "description": "Authorization: Bearer <key>, the same API keys as Gram-Key.",
        EXTENSION: True,
    },
}
_GRAM_SECURITY: list[Json] = [
    {"apikey_header_Gram-Key": [], "project_slug_header_Gram-Project": []}
]

# -- Live tail (extension) ------------------------------------------------------------------


# One event of the stream, as SSE parsers hand it over (data lines joined).
_SSE_EVENT: Json = {
    "type": "object",
    "description": "An event: `message` (the default type) carries a line, `end` the reason "
    "the stream ends and the token to resume with. The first event has only an id (the start "
    "position) and is not dispatched by EventSource; it comes with `retry`.",
    "required": ["data", "event"],
    "properties": {
        "event": {"type": "string", "enum": ["message", "end"]},
        "data": {
            "type": "string",
            "description": "message: one LogEntry as JSON; end: "
            '{"reason": "slow" | "duration" | "shutdown" | "revoked", "resume": <token>}; '
            "revoked: the key was revoked while the stream was open (do not resume)",
        },
        "id": {"type": "string", "description": "The resume token after this event"},
        "retry": {"type": "integer", "description": "Milliseconds to wait before reconnecting"},
    },
}


def _tail() -> Json:
    return {
        "get": {
            "tags": ["logs"],
            "summary": "tail logs",
            "description": "New log lines as server-sent events, exactly once, in commit order "
            "(docs/tail.md). Each line is an event whose id is a resume token and whose data is "
            "one entry of listToolExecutionLogs' logs; comments every GRAMLOGS_TAIL_HEARTBEAT_S. "
            "The stream ends with an `end` event ({reason, resume}) when the client reads too "
            "slowly, after GRAMLOGS_TAIL_MAX_S, and at shutdown: resume with its id; and when "
            "its key is revoked (reason revoked, within GRAMLOGS_STREAM_KEY_CHECK_S).",
            "operationId": "tailLogs",
            "parameters": [
                *_filters(),
                _keyword(),
                _query(
                    "lines",
                    f"Send the newest N matching lines first (0-{tail.MAX_LINES}); ignored "
                    "when resuming",
                    {"type": "integer", "minimum": 0, "maximum": tail.MAX_LINES, "default": 0},
                ),
                _query(
                    "last_event_id",
                    "Resume after this token (an event's id); the Last-Event-ID header wins",
                    {"type": "string"},
                ),
                _header("Last-Event-ID", "Resume after this token (what EventSource sends)"),
                _header("Gram-Key", "API Key header (a leading 'Bearer ' is tolerated)"),
                _header("Gram-Project", "project header (the project's slug)"),
            ],
            "responses": _responses(
                _ok(
                    "The stream of events.",
                    {"text/event-stream": {"schema": _SSE_EVENT}},
                    {"X-Accel-Buffering": {"schema": {"type": "string", "enum": ["no"]}}},
                ),
                400,
                401,
                403,
                410,
                503,
            ),
            "security": _GRAM_SECURITY,
            EXTENSION: True,
        }
    }


# -- Export (extension) ------------------------------------------------------------------------


def _export() -> Json:
    # listToolExecutionLogs' parameters but per_page (the export pages by itself), plus limit.
    listed = _list_tool_execution_logs()["get"]["parameters"]
    most = Config().export_max_lines
    return {
        "get": {
            "tags": ["logs"],
            "summary": "export logs",
            "description": "The lines listToolExecutionLogs would page through, as NDJSON: one "
            "ToolExecutionLog per line, in sort order (from the cursor, in its direction), at most "
            "`limit` of them, streamed. Exactly `limit` lines means the export may have stopped "
            "at the cap (docs/gram-api.md, Export). An error after the first byte cuts the "
            "stream: the chunked body does not end.",
            "operationId": "exportToolExecutionLogs",
            "parameters": [
                *(p for p in listed if p["name"] != "per_page"),
                _query(
                    "limit",
                    f"Most lines to send: 1 to GRAMLOGS_EXPORT_MAX_LINES ({most} unless set); "
                    f"default {export.DEFAULT_LIMIT}, or that setting when it is lower",
                    {
                        "type": "integer",
                        "format": "int64",
                        "minimum": 1,
                        "maximum": most,
                        "default": export.DEFAULT_LIMIT,
                    },
                ),
            ],
            "responses": _responses(
                _ok(
                    "The lines, one ToolExecutionLog (JSON) per line.",
                    {export.MEDIA_TYPE: {"schema": _schema(gram.LogEntry)}},
                    {
                        "Content-Disposition": {
                            "description": 'attachment; filename="gramlogs-<project>-<UTC '
                            'time>.ndjson"',
                            "required": True,
                            "schema": {"type": "string"},
                        },
                        export.LIMIT_HEADER: {
                            "description": "The limit this export ran with",
                            "required": True,
                            "schema": {"type": "string", "pattern": "^[1-9][0-9]*$"},
                        },
                    },
                ),
                400,
                401,
                403,
                503,
            ),
            "security": _GRAM_SECURITY,
            EXTENSION: True,
        }
    }


# -- Histogram (extension) ------------------------------------------------------------------


def _histogram() -> Json:
    widths = ", ".join(map(str, histogram.WIDTHS))
    return {
        "get": {
            "tags": ["logs"],
            "summary": "histogram of logs",
            "description": "How many lines match the filters in each bucket of the window "
            "[ts_start, ts_end] (docs/histogram.md). The server picks the narrowest bucket "
            f"width of {widths} seconds that covers the window in at most `buckets` buckets, "
            "aligned to whole multiples of the width since the Unix epoch (UTC). Every bucket "
            "is listed, empty ones too, oldest first; the first and last may reach outside "
            "the window and count only the lines inside it. The counts are exact: they add up "
            "to the lines listToolExecutionLogs pages through for the same filters and window. "
            "With a keyword every line of the window is read (a 503 with timeout: true when "
            "that takes longer than GRAMLOGS_STATEMENT_TIMEOUT_MS).",
            "operationId": "histogramLogs",
            "parameters": [
                _query(
                    "ts_start",
                    "Start of the window, inclusive (RFC 3339), between 1970-01-01T00:00:00Z "
                    "and 2100-01-01T00:00:00Z; required (400 bad_request without it)",
                    _DATE_TIME,
                    required=True,
                ),
                _query(
                    "ts_end",
                    "End of the window, inclusive (RFC 3339), between 1970-01-01T00:00:00Z "
                    "and 2100-01-01T00:00:00Z; required; before ts_start is a 400 bad_request",
                    _DATE_TIME,
                    required=True,
                ),
                *_filters(),
                _keyword(),
                _query(
                    "buckets",
                    f"Most buckets wanted (1-{histogram.MAX_BUCKETS}); a window that needs more "
                    f"even {histogram.WIDTHS[-1] // 86_400} days wide is a 400 bad_request",
                    {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": histogram.MAX_BUCKETS,
                        "default": histogram.DEFAULT_BUCKETS,
                    },
                ),
                _header("Gram-Key", "API Key header (a leading 'Bearer ' is tolerated)"),
                _header("Gram-Project", "project header (the project's slug)"),
            ],
            "responses": _responses(
                _ok(
                    "The buckets.",
                    {"application/json": {"schema": _schema(histogram.HistogramResult)}},
                ),
                400,
                401,
                403,
                503,
            ),
            "security": _GRAM_SECURITY,
            EXTENSION: True,
        }
    }


# -- Ingestion (extension) ------------------------------------------------------------------
# POST /rpc/logs.ingest (ingest.py, batch.py, body.py) and POST /v1/logs (otlp.py). Both need
# a key that may write (scope ingest, admin or producer; a consumer key is a 403) and take the
# same bodies' encodings and size limit.


# body.read_body: gzip (x-gzip) or deflate (zlib), else a 415; a body that does not inflate
# is a 400. Said in the operations' descriptions rather than as a header parameter: a generator
# of requests would set the header on a body it does not compress.
_CONTENT_ENCODING = (
    " The body may be compressed (Content-Encoding: gzip, x-gzip or deflate, the zlib "
    "format; identity or none: as is); any other encoding is a 415, a body that does not "
    "inflate a 400. The limit GRAMLOGS_MAX_BODY_BYTES (default 8 MiB) holds on the wire and "
    "again inflated (413). The key is checked before the body is read. When the server's "
    "process holds GRAMLOGS_MAX_BODY_BYTES_IN_FLIGHT bytes of bodies being read, a 503 with "
    "Retry-After: 1."
)


_ENTRIES: Json = {
    "type": "array",
    "maxItems": ingest.MAX_ENTRIES,
    "description": f"At most GRAMLOGS_MAX_BATCH_ENTRIES (default {ingest.MAX_ENTRIES}) entries,"
    " counted before any is decoded (413 payload_too_large beyond)",
    "items": _schema(ingest.WireEntry),
}


def _ingest() -> Json:
    ndjson = {
        "schema": {
            **_ENTRIES,
            "description": "NDJSON: one entry (a JSON object) per line; blank lines are "
            "skipped and \\r\\n is fine. At most GRAMLOGS_MAX_BATCH_ENTRIES (default "
            f"{ingest.MAX_ENTRIES}) entries, counted before any is decoded (413 beyond)",
        }
    }
    return {
        "post": {
            "tags": ["ingest"],
            "summary": "ingest logs",
            "description": "Store a batch of log entries whole, or nothing: one bad entry "
            "rejects the batch (the 400 names the first 20 by index and field). A key that "
            "may write (scope ingest, admin or producer). Order of checks: headers (401), "
            "Idempotency-Key (400), content type and encoding (415), key (401/403), body size "
            "(413), bodies in flight (503), entries (413), body (400), a recorded "
            "Idempotency-Key (its reply again, or 422), functions whose logs are disabled (409)."
            + _CONTENT_ENCODING,
            "operationId": "ingestLogs",
            "parameters": [
                _header("Gram-Key", "API Key header (a leading 'Bearer ' is tolerated)"),
                _header("Gram-Project", "project header (the project's slug)"),
                _IDEMPOTENCY_KEY,
            ],
            "requestBody": {
                "required": True,
                "description": 'A JSON array of entries or an object {"logs": [...]}, or '
                "NDJSON. UTF-8 only (another charset is a 415).",
                "content": {
                    "application/json": {
                        "schema": {
                            "oneOf": [
                                _ENTRIES,
                                {
                                    "type": "object",
                                    "properties": {"logs": _ENTRIES},
                                    "required": ["logs"],
                                },
                            ]
                        }
                    },
                    **{kind: ndjson for kind in ingest.NDJSON_TYPES},
                },
            },
            "responses": _responses(
                _ok(
                    "The batch is committed (durable).",
                    {"application/json": {"schema": _schema(ingest.IngestResult)}},
                    _REPLAYED,
                ),
                400,
                401,
                403,
                409,
                413,
                415,
                422,
                503,
            ),
            "security": _GRAM_SECURITY,
            EXTENSION: True,
        }
    }


# OTLP/JSON, as far as otlp.py reads it (the protobuf JSON mapping of ExportLogsServiceRequest;
# snake_case names are read too, unknown fields ignored). Not the whole OTLP schema. The bounds
# and patterns are protobuf's JSON parser's: a value outside them is a 400 for the whole body.
_HEX = "^([0-9a-fA-F]{2})*$"
_BASE64 = "^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"
_KEY_VALUES: Json = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {"key": {"type": "string"}, "value": _ref("schemas", "OtlpAnyValue")},
    },
}
_ANY_VALUE: Json = {
    "type": "object",
    "nullable": True,
    "description": "OTLP AnyValue: one of its fields",
    "properties": {
        "stringValue": {"type": "string"},
        "boolValue": {"type": "boolean"},
        "intValue": {
            "oneOf": [
                {"type": "string", "pattern": "^-?[0-9]+$"},
                {"type": "integer", "minimum": -(2**63), "maximum": 2**63 - 1},
            ]
        },
        "doubleValue": {"type": "number"},
        "arrayValue": {
            "type": "object",
            "properties": {"values": {"type": "array", "items": _ref("schemas", "OtlpAnyValue")}},
        },
        "kvlistValue": {"type": "object", "properties": {"values": _KEY_VALUES}},
        "bytesValue": {"type": "string", "pattern": _BASE64, "description": "base64"},
    },
}
_UNIX_NANO: Json = {
    "oneOf": [
        {"type": "string", "pattern": "^[0-9]+$"},
        {"type": "integer", "minimum": 0, "maximum": 2**64 - 1},
    ]
}


def _proto3_nulls(schema: Any) -> Any:
    """``schema`` with every property (and array) nullable, as protobuf's JSON parser reads
    null as the field's default; array items stay non-null (a null item is a 400)."""
    if isinstance(schema, list):
        return [_proto3_nulls(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _proto3_nulls(v) for k, v in schema.items()}
    for prop in out.get("properties", {}).values():
        # In a oneOf, one branch only: null matching two would match none.
        target = prop["oneOf"][0] if "oneOf" in prop else prop
        if "type" in target:
            target["nullable"] = True
    return out


_OTLP_SCHEMAS: Json = {
    # What protobuf's JSON parser reads (null for any field, the OtlpAnyValue included).
    **_proto3_nulls(
        {
            "OtlpAnyValue": _ANY_VALUE,
            "ExportLogsServiceRequest": {
                "type": "object",
                "description": "OTLP/JSON ExportLogsServiceRequest, as far as gramlogs reads it "
                "(docs/ingestion.md, Mapping). Resource or record attributes "
                f"{otlp.FUNCTION_ID} and {otlp.DEPLOYMENT_ID} (uuid strings) are required per "
                f"record; {otlp.EXECUTION_ID}, {otlp.SOURCE} and, on the resource, {otlp.INSTANCE} "
                "are read too.",
                "properties": {
                    "resourceLogs": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "resource": {
                                    "type": "object",
                                    "properties": {"attributes": _KEY_VALUES},
                                },
                                "scopeLogs": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "properties": {
                                            "logRecords": {
                                                "type": "array",
                                                "items": _ref("schemas", "OtlpLogRecord"),
                                            }
                                        },
                                    },
                                },
                            },
                        },
                    }
                },
            },
            "OtlpLogRecord": {
                "type": "object",
                "description": "OTLP LogRecord: the fields gramlogs reads",
                "properties": {
                    "timeUnixNano": {**_UNIX_NANO, "description": "uint64 nanoseconds; 0: unknown"},
                    "observedTimeUnixNano": {
                        **_UNIX_NANO,
                        "description": "used when timeUnixNano is 0",
                    },
                    "severityNumber": {
                        "type": "integer",
                        "minimum": -(2**31),
                        "maximum": 2**31 - 1,
                        "description": "1-8 debug, 9-12 info, 13-16 warn, 17-24 error",
                    },
                    "severityText": {
                        "type": "string",
                        "description": "read when severityNumber is 0",
                    },
                    "body": _ref("schemas", "OtlpAnyValue"),
                    "attributes": _KEY_VALUES,
                    "traceId": {"type": "string", "pattern": _HEX, "description": "hex"},
                    "spanId": {"type": "string", "pattern": _HEX, "description": "hex"},
                },
            },
        }
    ),
    "ExportLogsServiceResponse": {
        "type": "object",
        "description": "OTLP/JSON ExportLogsServiceResponse: {} when every record was stored",
        "properties": {
            "partialSuccess": {
                "type": "object",
                "properties": {
                    "rejectedLogRecords": {
                        "type": "string",
                        "pattern": "^[0-9]+$",
                        "description": "int64, written as a string by the JSON mapping",
                    },
                    "errorMessage": {
                        "type": "string",
                        "description": "names up to 20 rejected records by position",
                    },
                },
                "additionalProperties": False,
            }
        },
        "additionalProperties": False,
    },
}


def _otlp() -> Json:
    binary = {"schema": {"type": "string", "format": "binary"}}
    return {
        "post": {
            "tags": ["ingest"],
            "summary": "export logs (OTLP/HTTP)",
            "description": "OTLP/HTTP logs: an ExportLogsServiceRequest in protobuf or JSON. "
            "Records that cannot be stored are counted in partialSuccess and the others "
            "stored (200); when no record is valid, or the body does not decode, a 400. At most "
            f"GRAMLOGS_MAX_BATCH_ENTRIES (default {ingest.MAX_ENTRIES}) log records, counted "
            "before any is decoded (413 payload_too_large beyond). A "
            "key that may write (scope ingest, admin or producer), in Gram-Key or "
            "Authorization: Bearer, with Gram-Project." + _CONTENT_ENCODING,
            "operationId": "exportLogs",
            "parameters": [
                _header(
                    "Gram-Key",
                    "API Key header (a leading 'Bearer ' is tolerated); or send "
                    "Authorization: Bearer <key>",
                ),
                _header("Gram-Project", "project header (the project's slug)"),
                _IDEMPOTENCY_KEY,
            ],
            "requestBody": {
                "required": True,
                "content": {
                    otlp.PROTOBUF: binary,
                    "application/protobuf": binary,
                    otlp.JSON: {"schema": _ref("schemas", "ExportLogsServiceRequest")},
                },
            },
            "responses": _responses(
                _ok(
                    "ExportLogsServiceResponse, in the request's encoding (protobuf for "
                    "either protobuf type).",
                    {
                        otlp.JSON: {"schema": _ref("schemas", "ExportLogsServiceResponse")},
                        otlp.PROTOBUF: binary,
                    },
                    _REPLAYED,
                ),
                400,
                401,
                403,
                413,
                415,
                422,
                503,
            ),
            "security": [
                *_GRAM_SECURITY,
                {_BEARER_SCHEME: [], "project_slug_header_Gram-Project": []},
            ],
            EXTENSION: True,
        }
    }


# -- Poly dialect (extension) ---------------------------------------------------------------
# poly.py; docs/poly-api.md. Authorization: Bearer only; the function is found among
# the projects the key may read (404 otherwise, whether or not it exists elsewhere).


def _poly(system: bool) -> Json:
    which = "system" if system else "execution"
    lines = (
        "every line of the function (sources function, stdout, stderr and server)"
        if system
        else "the lines the function itself emitted (sources function, stdout, stderr)"
    )
    name = "SystemLogs" if system else "FunctionLogs"
    text = params.MAX_TEXT_LENGTH
    security: list[Json] = [{_BEARER_SCHEME: []}]
    return {
        "parameters": [
            {
                "name": "id",
                "in": "path",
                "required": True,
                "description": "The server function's id (400 invalid_format when not a uuid)",
                "schema": _UUID,
            }
        ],
        "get": {
            "tags": ["poly"],
            "summary": f"get {which} logs",
            "description": f"PolyAPI: {lines}, newest first. A key that may read (scope consumer, "
            "admin or producer; 403 otherwise, before the function is looked up). Empty values are "
            "ignored; a repeated parameter takes its first value.",
            "operationId": f"get{name}",
            "parameters": [
                _query(
                    "keyword",
                    "Case-insensitive substring of the message or the raw line (literal); at "
                    f"most {text} characters (400 invalid_length)",
                    _text(maxLength=text),
                ),
                _query(
                    "lastHours",
                    "Only lines from this many hours ago onwards; with lastDays, the longer "
                    "window. Default: all time",
                    {"type": "integer", "minimum": 1},
                ),
                _query(
                    "lastDays",
                    "Only lines from this many days ago onwards; with lastHours, the longer "
                    "window. Default: all time",
                    {"type": "integer", "minimum": 1},
                ),
                _query(
                    "limit",
                    f"The newest limit lines (1-{poly.MAX_LIMIT})",
                    {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": poly.MAX_LIMIT,
                        "default": poly.DEFAULT_LIMIT,
                    },
                ),
                _query(
                    "executionId",
                    f"Exact match on the execution id; at most {text} characters",
                    _text(maxLength=text),
                ),
            ],
            "responses": _responses(
                _ok("The logs.", {"application/json": {"schema": _schema(poly.PolyLogs)}}),
                400,
                401,
                403,
                404,
                503,
            ),
            "security": security,
            EXTENSION: True,
        },
        "delete": {
            "tags": ["poly"],
            "summary": f"delete {which} logs",
            "description": f"PolyAPI: remove {lines}, all or nothing. A key that may delete "
            "(scope admin or producer; 403 otherwise, before the function is looked up). No "
            "query parameters: keyword, lastHours, lastDays, limit or "
            "executionId is a 400 rather than ignored.",
            "operationId": f"delete{name}",
            "responses": _responses(
                _ok(
                    "How many lines were removed.",
                    {"application/json": {"schema": _schema(poly.Deleted)}},
                ),
                400,
                401,
                403,
                404,
                503,
            ),
            "security": security,
            EXTENSION: True,
        },
    }


# -- Operability ----------------------------------------------------------------------------


def _status_body(value: str) -> Json:
    return {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {"status": {"type": "string", "enum": [value]}},
                "required": ["status"],
                "additionalProperties": False,
            }
        }
    }


def _ops(summary: str, description: str, ok: Json, *errors: int) -> Json:
    return {
        "get": {
            "tags": ["ops"],
            "summary": summary,
            "description": description,
            "operationId": summary,
            "responses": _responses(ok, *errors),
            "security": [],
            EXTENSION: True,
        }
    }


def _healthz() -> Json:
    return _ops(
        "healthz",
        "Liveness: the process answers (no database query). No key.",
        _ok("The process is alive.", _status_body("ok")),
    )


def _readyz() -> Json:
    return _ops(
        "readyz",
        "Readiness: the database answers SELECT 1 within the acquire and statement limits, else "
        "a 503. No key.",
        _ok("The database answers.", _status_body("ready")),
        503,
    )


def _metrics() -> Json:
    text = {"schema": {"type": "string"}}
    return _ops(
        "metrics",
        "Prometheus metrics: the text format, or OpenMetrics when Accept asks for it. No key; "
        "aggregate counts only.",
        _ok(
            "The exposition.",
            {"text/plain": text, "application/openmetrics-text": text},
        ),
    )


def _openapi() -> Json:
    return _ops(
        "openapi",
        "This document (OpenAPI 3.0.3). No key.",
        _ok("The document.", {"application/json": {"schema": {"type": "object"}}}),
    )


def _paths() -> Json:
    return {
        # Gram dialect
        "/rpc/logs.listToolExecutionLogs": _list_tool_execution_logs(),
        "/rpc/logs.tail": _tail(),
        "/rpc/logs.export": _export(),
        "/rpc/logs.histogram": _histogram(),
        # Ingestion
        "/rpc/logs.ingest": _ingest(),
        "/v1/logs": _otlp(),
        # Poly dialect
        "/functions/server/{id}/logs": _poly(system=False),
        "/functions/server/{id}/system-logs": _poly(system=True),
        # Operability
        "/healthz": _healthz(),
        "/readyz": _readyz(),
        "/metrics": _metrics(),
        "/openapi.json": _openapi(),
    }


def build() -> Json:
    """The whole document, as a fresh dict."""
    names = _error_names()
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "gramlogs",
            "version": __version__,
            "description": "A log query server speaking Gram's Logs API "
            "(listToolExecutionLogs) over PostgreSQL. Every response carries X-Request-Id; every "
            "error is Goa's Error shape. Parts that Gram's API does not have are marked "
            f"{EXTENSION}: true.",
        },
        "tags": [
            {"name": "logs", "description": "Log lines of tool executions (Gram dialect)."},
            {"name": "ingest", "description": "Writing logs: JSON/NDJSON batches and OTLP."},
            {"name": "poly", "description": "PolyAPI's Logs API for server functions."},
            {"name": "ops", "description": "Health, readiness, metrics and this document."},
        ],
        "paths": _paths(),
        "components": {
            "schemas": {**struct_schemas(WIRE_STRUCTS), **_OTLP_SCHEMAS},
            "responses": {
                component: _error_response(status, names[status])
                for status, (component, _) in sorted(ERROR_RESPONSES.items())
            },
            "headers": {
                "X-Request-Id": {
                    "description": "The request's id: the error body's id and the access-log "
                    "line's id. Made by the server (72 random bits); a client's is ignored.",
                    "required": True,
                    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{12}$"},
                },
                "Retry-After": {
                    "description": "Seconds to wait before retrying.",
                    "required": True,
                    "schema": {"type": "string", "pattern": "^[1-9][0-9]*$"},
                },
                "Allow": {
                    "description": "The methods the route has.",
                    "required": True,
                    "schema": {"type": "string"},
                },
                "Cache-Control": {
                    "description": "no-store: a response depends on the key that asked, so no "
                    "cache may keep it.",
                    "required": True,
                    "schema": {"type": "string", "enum": ["no-store"]},
                },
                "Vary": {
                    "description": "The headers a response depends on, for a cache that ignores "
                    "no-store: one keyed on the URL alone must not serve one tenant's logs to "
                    "another.",
                    "required": True,
                    "schema": {"type": "string", "enum": [API_HEADERS["Vary"]]},
                },
                "X-Content-Type-Options": {
                    "description": "nosniff: a browser takes the Content-Type as sent.",
                    "required": True,
                    "schema": {"type": "string", "enum": ["nosniff"]},
                },
            },
            "securitySchemes": _SECURITY_SCHEMES,
        },
        "x-gramlogs-any-route": {
            str(status): _ref("responses", ERROR_RESPONSES[status][0]) for status in _ANY_ROUTE
        },
    }


DOCUMENT: Json = build()
_BODY = msgspec.json.encode(DOCUMENT)


async def endpoint(request: Request) -> Response:
    return Response(_BODY, media_type="application/json")
