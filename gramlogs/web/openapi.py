"""The OpenAPI 3 document of gramlogs, served at ``GET /openapi.json``, generated from what
the endpoints declare.

To add an endpoint: declare its ``Endpoint`` (web/endpoint.py) beside its handler, its
parameters being the :class:`~gramlogs.web.params.Param` declarations its handler parses
with, and add it to ``api.ENDPOINTS``, the one list that app.py routes and :func:`build`
documents (tests/test_openapi.py fails on a route missing from the document, or the
reverse). A body that is a msgspec Struct goes into :data:`WIRE_STRUCTS` (its schema is
generated from it). An operation's error statuses are those of the errors it raises, of a
key when it has security, and of any request. docs/contributing.md, "Adding an endpoint", says more.

``listToolExecutionLogs`` follows Gram's published operation (the OpenAPI 3.0.3 Goa generates
from the Goa design of Gram's ``logs`` service): the same operationId, parameters, schema names
and required fields, and security scheme names. What gramlogs adds is marked
``x-gramlogs-extension: true``; docs/openapi.md ("How it compares with Gram's") lists every
difference and why.

Every response is described: each error status with the Goa error names it can carry
(from the class tree in ``errors.py``) and the headers it always has (``X-Request-Id`` and
web/headers.py's on every response, ``Retry-After`` on 429 and 503, ``Allow`` on 405). Unknown
routes (404) and known routes with a method they lack (405) belong to no operation; they are
under the document's ``x-gramlogs-any-route``. Built once at import and encoded once
(:data:`BODY`, which ops.py serves).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from gramlogs import __version__
from gramlogs.core.errors import ErrorBody, GramlogsError
from gramlogs.web import gram, histogram, ingest, otlp, poly
from gramlogs.web.api import ENDPOINTS
from gramlogs.web.endpoint import SECURITY_SCHEMES, Endpoint, Ok, Operation, Schema
from gramlogs.web.headers import API_HEADERS
from gramlogs.web.loki import query as loki_query
from gramlogs.web.observe import plain_text_errors
from gramlogs.web.params import EXTENSION, NO_NUL, Json, Param
from gramlogs.web.reading import LogEntry
from gramlogs.web.schemas import SCHEMAS, struct_schemas

__all__ = [
    "BODY",
    "DOCUMENT",
    "ERROR_RESPONSES",
    "EXTENSION",
    "NO_NUL",
    "WIRE_STRUCTS",
    "build",
    "struct_schemas",
]

# -- Schemas of the bodies msgspec encodes and decodes ----------------------------------------

# Every Struct that is a body on the wire, or part of one, with the name of its component in
# components.schemas (Gram's names for Gram's schemas). Their schemas are generated from the
# Structs (struct_schemas): a field added to a Struct is in the document at once.
WIRE_STRUCTS: dict[type[msgspec.Struct], str] = {
    # Gram dialect: the list response and the error body of every response
    gram.ListResult: "ListToolExecutionLogsResult",
    LogEntry: "ToolExecutionLog",
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
    # Loki's query API (Loki's names)
    loki_query.QueryResponse: "LokiQueryResponse",
    loki_query.StreamsData: "LokiStreamsData",
    loki_query.MatrixData: "LokiMatrixData",
    loki_query.VectorData: "LokiVectorData",
    loki_query.Stream: "LokiStream",
    loki_query.Categories: "LokiEntryCategories",
    loki_query.MatrixSeries: "LokiMatrixSeries",
    loki_query.Sample: "LokiSample",
    loki_query.Stats: "LokiStats",
    loki_query.Summary: "LokiStatsSummary",
}


def _schema(struct: type[msgspec.Struct]) -> Json:
    return {"$ref": SCHEMAS + WIRE_STRUCTS[struct]}


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


# Loki's routes answer errors as plain text, the message alone (observe.error_response): their
# error responses are these components, named with this prefix.
PLAIN_PREFIX = "Loki"


def _plain_response(response: Json) -> Json:
    return {**response, "content": {"text/plain": {"schema": {"type": "string"}}}}


def _responses(ok: Ok, statuses: set[int], plain: bool = False) -> Json:
    """An operation's responses: ``ok`` for 200, its own errors and those of any request
    (``plain``: as plain text, on Loki's routes)."""
    prefix = PLAIN_PREFIX if plain else ""
    every = {name: _ref("headers", name) for name in _EVERY_RESPONSE}
    success: Json = {"description": ok.description, "headers": {**every, **ok.headers}}
    if ok.content:
        success["content"] = _content(ok.content)
    return {
        str(ok.status): success,
        **{
            str(s): _ref("responses", prefix + ERROR_RESPONSES[s][0])
            for s in sorted(statuses | set(_ANY_REQUEST))
        },
    }


def _resolve(schema: Any) -> Any:
    """``schema`` with each Struct class in it replaced by the $ref of its component."""
    if isinstance(schema, type) and issubclass(schema, msgspec.Struct):
        return _schema(schema)
    if isinstance(schema, dict):
        return {key: _resolve(value) for key, value in schema.items()}
    if isinstance(schema, list):
        return [_resolve(value) for value in schema]
    return schema


def _content(content: Mapping[str, Schema]) -> Json:
    return {media_type: {"schema": _resolve(schema)} for media_type, schema in content.items()}


def _parameter(param: Param[Any]) -> Json:
    if not param.goa:
        required = param.required or param.where == "path"
        return {
            "name": param.name,
            "in": param.where,
            "required": required,
            "description": param.description,
            "schema": param.schema,
            **param.extra,
        }
    # Goa repeats the description in the schema and marks every parameter allowEmptyValue;
    # gramlogs reads an empty value as "not given".
    out: Json = {
        "name": param.name,
        "in": param.where,
        "description": param.description,
        "allowEmptyValue": True,
        "schema": {**param.schema, "description": param.description},
        **param.extra,
    }
    if param.required:
        out["required"] = True
    return out


def _operation(op: Operation, plain: bool = False) -> Json:
    out: Json = {
        "tags": [op.tag],
        "summary": op.summary,
        "description": op.description,
        "operationId": op.operation_id,
        "responses": _responses(op.ok, op.statuses, plain),
        "security": list(op.security),
        **op.extra,
    }
    if op.params:
        out["parameters"] = [_parameter(p) for p in op.params]
    if op.body is not None:
        out["requestBody"] = {"required": True, "content": _content(op.body.content)}
        if op.body.description is not None:
            out["requestBody"]["description"] = op.body.description
    if op.extension:
        out[EXTENSION] = True
    return out


def _path_item(endpoint: Endpoint) -> Json:
    plain = plain_text_errors(endpoint.path)
    item: Json = {op.method.lower(): _operation(op, plain) for op in endpoint.operations}
    if endpoint.path_params:
        item["parameters"] = [_parameter(p) for p in endpoint.path_params]
    return item


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


def build(endpoints: Sequence[Endpoint] = ENDPOINTS) -> Json:
    """The whole document of ``endpoints``, as a fresh dict."""
    names = _error_names()
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "gramlogs",
            "version": __version__,
            "description": "A log query server speaking Gram's Logs API "
            "(listToolExecutionLogs) over PostgreSQL. Every response carries X-Request-Id; every "
            "error is Goa's Error shape (plain text on Loki's routes, /loki/, as Loki's). Parts "
            "that Gram's API does not have are marked "
            f"{EXTENSION}: true.",
        },
        "tags": [
            {"name": "logs", "description": "Log lines of tool executions (Gram dialect)."},
            {
                "name": "ingest",
                "description": "Writing logs: JSON/NDJSON batches, OTLP and Loki's push.",
            },
            {"name": "poly", "description": "PolyAPI's Logs API for server functions."},
            {
                "name": "loki",
                "description": "Loki's query API, for Grafana's Loki data source.",
            },
            {"name": "ops", "description": "Health, readiness, metrics and this document."},
            {"name": "loki", "description": "Loki's HTTP API (Grafana); errors as plain text."},
        ],
        "paths": {e.path: _path_item(e) for e in endpoints},
        "components": {
            "schemas": {**struct_schemas(WIRE_STRUCTS), **_OTLP_SCHEMAS},
            "responses": {
                component: _error_response(status, names[status])
                for status, (component, _) in sorted(ERROR_RESPONSES.items())
            }
            | {
                PLAIN_PREFIX + component: _plain_response(_error_response(status, names[status]))
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
            "securitySchemes": SECURITY_SCHEMES,
        },
        "x-gramlogs-any-route": {
            str(status): _ref("responses", ERROR_RESPONSES[status][0]) for status in _ANY_ROUTE
        },
    }


DOCUMENT: Json = build()
BODY = msgspec.json.encode(DOCUMENT)
