"""The OpenAPI 3 document of gramlogs, served at ``GET /openapi.json``.

For ``listToolExecutionLogs`` it follows Gram's published operation (the Goa design of Gram's
``logs`` service and the OpenAPI 3.0.3 Goa generates from it): the same operationId, parameter
names, types, formats, enums, defaults and bounds, the same schema names
(``ListToolExecutionLogsResult``, ``ToolExecutionLog``, ``PaginationResponse``, ``Error``) with
the same required fields, and the same security scheme names. What gramlogs adds is marked
``x-gramlogs-extension: true``; README ("The OpenAPI document") lists every difference and why.

Every response the server can give is described, errors included: each error status names the
Goa error ``name``s it can carry (taken from the class tree in ``errors.py``, so the two cannot
drift apart) and the headers it always has (``X-Request-Id`` on every response, ``Retry-After`` on
429 and 503, ``Allow`` on 405). Unknown routes (404) and known routes with a method they do not
have (405) belong to no operation; they are in ``components.responses``, listed under the
document's ``x-gramlogs-any-route``.

The dict is built once at import and encoded once; :func:`endpoint` serves the bytes. To add an
endpoint, write a function that returns its path item and add one line to :func:`_paths`.
"""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from gramlogs import __version__, gram
from gramlogs.errors import GramlogsError

__all__ = ["DOCUMENT", "ERROR_RESPONSES", "build", "endpoint"]

Json = dict[str, Any]

EXTENSION = "x-gramlogs-extension"
_ERROR = {"$ref": "#/components/schemas/Error"}
_UUID = {"type": "string", "format": "uuid"}
_DATE_TIME = {"type": "string", "format": "date-time"}

# Each error status: the name of its component in components.responses, and why it happens.
# The Goa error names come from errors.py.
ERROR_RESPONSES: dict[int, tuple[str, str]] = {
    400: (
        "BadRequest",
        "a parameter is malformed, out of range or contradictory (the message names it), or the "
        "request is not valid HTTP/1.1 (then the connection is closed)",
    ),
    401: ("Unauthorized", "the key is missing, unknown or revoked, or Gram-Project is missing"),
    403: ("Forbidden", "the key may not read this project, or its scope is too small"),
    404: ("NotFound", "no route has this path"),
    405: ("MethodNotAllowed", "the route has no such method; Allow lists those it has"),
    409: ("Conflict", "the batch holds lines of a function whose logs are disabled"),
    408: ("RequestTimeout", "the request's headers did not arrive in time; connection closed"),
    413: ("PayloadTooLarge", "the request body is too large"),
    414: ("UriTooLong", "the request target is too long; connection closed"),
    415: ("UnsupportedMediaType", "the request body's content type is not accepted"),
    429: ("TooManyRequests", "the key is over its rate limit; retry after Retry-After seconds"),
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


def _error_response(status: int, names: list[str]) -> Json:
    headers = {"X-Request-Id": _ref("headers", "X-Request-Id")}
    if status in (429, 503):
        headers["Retry-After"] = _ref("headers", "Retry-After")
    if status == 405:
        headers["Allow"] = _ref("headers", "Allow")
    return {
        # Goa's form ("bad_request: request is invalid"), with every name the status can carry.
        "description": f"{' | '.join(names)}: {ERROR_RESPONSES[status][1]}",
        "headers": headers,
        "content": {"application/json": {"schema": _ERROR}},
        "x-gramlogs-error-names": names,
    }


def _responses(ok: Json, *errors: int) -> Json:
    """An operation's responses: ``ok`` for 200, its own ``errors`` and those of any request."""
    statuses = sorted({*errors, *_ANY_REQUEST})
    return {
        "200": ok,
        **{str(s): _ref("responses", ERROR_RESPONSES[s][0]) for s in statuses},
    }


def _ok(description: str, content: Json) -> Json:
    return {
        "description": description,
        "headers": {"X-Request-Id": _ref("headers", "X-Request-Id")},
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


def _header(name: str, description: str) -> Json:
    return {
        "name": name,
        "in": "header",
        "description": description,
        "allowEmptyValue": True,
        "schema": {"type": "string", "description": description},
    }


# -- Gram dialect ---------------------------------------------------------------------------


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
                _query("deployment_id", "Deployment ID filter (exact match)", _UUID),
                _query("function_id", "Function ID filter (exact match)", _UUID),
                _query("instance", "Instance filter (exact match)", {"type": "string"}),
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
                # Coming: the keyword extension parameter (marked x-gramlogs-extension).
                _header("Gram-Key", "API Key header (a leading 'Bearer ' is tolerated)"),
                _header("Gram-Project", "project header (the project's slug)"),
            ],
            "responses": _responses(
                _ok(
                    "OK response.",
                    {
                        "application/json": {
                            "schema": _ref("schemas", "ListToolExecutionLogsResult")
                        }
                    },
                ),
                400,
                401,
                403,
                503,
            ),
            "security": [{"apikey_header_Gram-Key": [], "project_slug_header_Gram-Project": []}],
            "x-speakeasy-name-override": "listToolExecutionLogs",
        }
    }


_GRAM_SCHEMAS: Json = {
    "ListToolExecutionLogsResult": {
        "type": "object",
        "description": "Result of listing tool execution logs",
        "properties": {
            "logs": {
                "type": "array",
                "description": "List of tool execution logs",
                "items": _ref("schemas", "ToolExecutionLog"),
            },
            "pagination": _ref("schemas", "PaginationResponse"),
        },
    },
    "ToolExecutionLog": {
        "type": "object",
        "description": "Structured log entry from a tool execution",
        "properties": {
            "id": {**_UUID, "description": "Log entry ID (a UUIDv7 that is its position)"},
            "timestamp": {**_DATE_TIME, "description": "Timestamp of the log entry (UTC, Z)"},
            "instance": {"type": "string", "description": "Instance identifier"},
            "level": {"type": "string", "description": "Log level"},
            "source": {"type": "string", "description": "Log source"},
            "raw_log": {"type": "string", "description": "Raw log message"},
            "message": {
                "type": "string",
                "description": "Parsed log message; absent (never null) when there is none",
            },
            "attributes": {"type": "string", "description": "JSON-encoded log attributes"},
            "project_id": {**_UUID, "description": "Project UUID"},
            "deployment_id": {**_UUID, "description": "Deployment UUID"},
            "function_id": {**_UUID, "description": "Function UUID"},
        },
        "required": [
            "id",
            "timestamp",
            "instance",
            "level",
            "source",
            "raw_log",
            "project_id",
            "deployment_id",
            "function_id",
        ],
    },
    "PaginationResponse": {
        "type": "object",
        "description": "Pagination metadata for list responses",
        "properties": {
            "per_page": {
                "type": "integer",
                "format": "int64",
                "description": "Number of items per page",
            },
            "has_next_page": {"type": "boolean", "description": "Whether there is a next page"},
            "next_page_cursor": {
                **_UUID,
                "description": "Cursor for next page, in the requested direction; absent "
                "when there is none",
            },
            "has_prev_page": {
                "type": "boolean",
                "description": "Whether there are rows on the other side of this page",
                EXTENSION: True,
            },
            "prev_page_cursor": {
                **_UUID,
                "description": "Cursor that turns around: sent with the opposite direction, it "
                "gives the rows on the other side of this page",
                EXTENSION: True,
            },
        },
    },
    "Error": {
        "type": "object",
        "description": "Goa's ServiceError, the body of every error response",
        "properties": {
            "fault": {"type": "boolean", "description": "Is the error a server-side fault?"},
            "id": {
                "type": "string",
                "description": "ID is a unique identifier for this particular occurrence of the "
                "problem (also the X-Request-Id header and the access-log line's id).",
                "example": "8KEwa3vdiwW-",
            },
            "message": {
                "type": "string",
                "description": "Message is a human-readable explanation specific to this "
                "occurrence of the problem.",
                "example": "per_page must be lesser or equal than 100 but got value 101",
            },
            "name": {
                "type": "string",
                "description": "Name is the name of this class of errors.",
                "example": "invalid_range",
            },
            "temporary": {"type": "boolean", "description": "Is the error temporary?"},
            "timeout": {"type": "boolean", "description": "Is the error a timeout?"},
        },
        "required": ["name", "id", "message", "temporary", "timeout", "fault"],
    },
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
        # Coming, one block each: POST /rpc/logs.ingest, POST /v1/logs (OTLP/HTTP), and the Poly
        # dialect's GET|DELETE /functions/server/{id}/logs and /system-logs.
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
            {"name": "ops", "description": "Health, readiness, metrics and this document."},
        ],
        "paths": _paths(),
        "components": {
            "schemas": _GRAM_SCHEMAS,
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
            },
            "securitySchemes": _GRAM_SECURITY_SCHEMES,
        },
        "x-gramlogs-any-route": {
            str(status): _ref("responses", ERROR_RESPONSES[status][0]) for status in _ANY_ROUTE
        },
    }


DOCUMENT: Json = build()
_BODY = msgspec.json.encode(DOCUMENT)


async def endpoint(request: Request) -> Response:
    return Response(_BODY, media_type="application/json")
