"""Per-request observation: a request id, one JSON access-log line, and the request metrics.

:class:`Observe` is an ASGI middleware wrapped around the whole router, so every route (those
added later, unknown paths and 405s included) gets a request id, a log line and its metrics
without code of its own. The request id is

- returned in the ``X-Request-Id`` header of every response,
- the ``id`` of the error body when the response is an error,
- the ``id`` field of the access-log line.

A WebSocket (Loki's live tail) is observed as its handshake's GET: its line is written when it
closes, with status 101 when it was accepted (else its refusal's) and the whole session's duration.

The access-log line is one JSON object on the ``gramlogs.access`` logger::

    {"ts": "2025-06-01T10:00:00.123Z", "id": "Qk3v…", "method": "GET",
     "route": "/rpc/logs.listToolExecutionLogs", "path": "/rpc/logs.listToolExecutionLogs",
     "status": 200, "duration_ms": 1.84, "project": "demo", "client": "127.0.0.1"}

``project`` is what the request named (the ``Gram-Project`` header), or what a handler put in
``scope[SCOPE_PROJECT]``; ``error`` is the error ``name`` when there was one. Headers, the query
string and keys are never logged.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

import msgspec
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gramlogs.core import metrics
from gramlogs.core.errors import (
    GramlogsError,
    MethodNotAllowed,
    NotFound,
    Unexpected,
    encode_error,
    new_request_id,
)

__all__ = [
    "SCOPE_ERROR",
    "SCOPE_PROJECT",
    "SCOPE_REQUEST_ID",
    "Observe",
    "error_response",
    "http_error",
    "plain_text_errors",
    "request_id",
]

SCOPE_REQUEST_ID = "gramlogs.request_id"
SCOPE_ERROR = "gramlogs.error"
SCOPE_PROJECT = "gramlogs.project"
# Logged when no response was started: the request was cancelled (shutdown) or the client left.
NO_RESPONSE = 499
# A WebSocket's handshake is a GET; its scope has no method.
_OBSERVED = frozenset({"http", "websocket"})
# Clients choose the method: any other token shares one label, so that series stay bounded.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

access_logger = logging.getLogger("gramlogs.access")
logger = logging.getLogger("gramlogs.app")


class AccessLine(msgspec.Struct, omit_defaults=True):
    ts: str
    id: str
    method: str
    route: str
    path: str
    status: int
    duration_ms: float
    project: str | None = None
    error: str | None = None
    client: str | None = None


_encoder = msgspec.json.Encoder()


def request_id(scope: Scope) -> str:
    """The id of the request ``scope`` belongs to (a fresh one outside :class:`Observe`)."""
    return scope.get(SCOPE_REQUEST_ID) or new_request_id()


def http_error(exc: BaseException) -> GramlogsError:
    """The error to answer ``exc`` with: itself, Starlette's 404/405, or a fixed 500.

    The one place exceptions become HTTP errors; the 500's message reveals nothing.
    """
    if isinstance(exc, GramlogsError):
        return exc
    if isinstance(exc, HTTPException):
        if exc.status_code == 405:
            error: GramlogsError = MethodNotAllowed("method not allowed on this route")
            error.headers = dict(exc.headers or {})
            return error
        if exc.status_code == 404:
            return NotFound("no such route")
        error = GramlogsError(str(exc.detail))
        error.status, error.name = exc.status_code, "bad_request"
        return error
    return Unexpected("an unexpected error occurred; the server log has the details")


# Loki's API answers errors as plain text (its clients show the body as the message).
_PLAIN_TEXT_PREFIX = "/loki/"


def plain_text_errors(path: str) -> bool:
    """Whether errors on ``path`` are answered as plain text (Loki's routes)."""
    return path.startswith(_PLAIN_TEXT_PREFIX)


def error_response(error: GramlogsError, error_id: str, path: str) -> tuple[bytes, bytes]:
    """The body of ``error`` and its content type: DESIGN.md's JSON shape, or on Loki's routes
    the message as plain text, as Loki gives it."""
    if plain_text_errors(path):
        return error.message.encode(), b"text/plain; charset=utf-8"
    return encode_error(error, error_id), b"application/json"


class Observe:
    def __init__(self, app: ASGIApp, *, access_log: bool = True) -> None:
        self.app = app
        self.access_log = access_log
        # prometheus-client's labels() takes a lock and builds a key; cache the children.
        self._counters: dict[tuple[str, str, int], Any] = {}
        self._histograms: dict[tuple[str, str], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in _OBSERVED:
            await self.app(scope, receive, send)
            return
        # A WebSocket's prefix: its denial response is "websocket.http.response.start".
        prefix = "websocket." if scope["type"] == "websocket" else ""
        started = time.perf_counter()
        rid = new_request_id()
        scope[SCOPE_REQUEST_ID] = rid
        id_header = (b"x-request-id", rid.encode())
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            kind = message["type"]
            if kind == prefix + "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), id_header]
            elif kind == "websocket.accept":
                # The line of a WebSocket is written when it closes: 101, and how long it lasted.
                status = 101
                message["headers"] = [*message.get("headers", ()), id_header]
            await send(message)

        metrics.IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            # What the router's handler did not answer: an unexpected exception, or an error
            # raised by a middleware inside this one (the rate limiter).
            error = http_error(exc)
            scope[SCOPE_ERROR] = error.name
            if error.fault:
                method = scope.get("method", "GET")
                logger.error("error id=%s %s %s", rid, method, scope["path"], exc_info=exc)
            if status:
                raise  # the response had begun; the server closes the connection
            if prefix and "websocket.http.response" not in scope.get("extensions", {}):
                await send({"type": "websocket.close", "code": 1011, "reason": ""})
                return
            body, content_type = error_response(error, rid, scope["path"])
            headers = [(b"content-type", content_type)]
            headers += [(k.lower().encode(), v.encode()) for k, v in (error.headers or {}).items()]
            await send_with_id(
                {"type": prefix + "http.response.start", "status": error.status, "headers": headers}
            )
            await send_with_id({"type": prefix + "http.response.body", "body": body})
        finally:
            metrics.IN_FLIGHT.dec()
            self._record(scope, status or NO_RESPONSE, time.perf_counter() - started)

    def _record(self, scope: Scope, status: int, seconds: float) -> None:
        route_obj = scope.get("route")
        route = route_obj.path if route_obj is not None else metrics.UNMATCHED_ROUTE
        method = scope.get("method", "GET")
        method = method if method in _METHODS else "other"
        counter = self._counters.get((route, method, status))
        if counter is None:
            counter = metrics.REQUESTS.labels(route, method, str(status))
            self._counters[(route, method, status)] = counter
        counter.inc()
        histogram = self._histograms.get((route, method))
        if histogram is None:
            histogram = metrics.LATENCY.labels(route, method)
            self._histograms[(route, method)] = histogram
        histogram.observe(seconds)
        if self.access_log and access_logger.isEnabledFor(logging.INFO):
            access_logger.info(self._line(scope, route, status, seconds))

    @staticmethod
    def _line(scope: Scope, route: str, status: int, seconds: float) -> str:
        project = scope.get(SCOPE_PROJECT)
        if project is None:
            for name, value in scope["headers"]:
                if name == b"gram-project":
                    project = value.decode("latin-1")[:100]
                    break
        client = scope.get("client")
        line = AccessLine(
            ts=datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            id=scope[SCOPE_REQUEST_ID],
            method=scope.get("method", "GET")[:20],
            route=route,
            path=scope["path"][:200],
            status=status,
            duration_ms=round(seconds * 1000, 3),
            project=project,
            error=scope.get(SCOPE_ERROR),
            client=client[0] if client else None,
        )
        return _encoder.encode(line).decode()
