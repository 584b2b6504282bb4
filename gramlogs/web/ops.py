"""Operability endpoints: ``/healthz``, ``/readyz``, ``/metrics`` and ``/openapi.json``; no key,
no tenant data.

- ``/healthz``: the process answers (no database query), for liveness probes.
- ``/readyz``: the database answers ``SELECT 1`` within the acquire and statement limits; a 503
  ``unavailable`` (``temporary: true``, ``Retry-After``) otherwise, for readiness probes.
- ``/metrics``: Prometheus text; aggregate counts only (routes, statuses, pool), no keys or rows.
- ``/openapi.json``: the API document (web/openapi.py).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from gramlogs.core import metrics
from gramlogs.core.errors import GramlogsError, Unavailable
from gramlogs.web.endpoint import Endpoint, Handler, Ok, Operation
from gramlogs.web.params import Json
from gramlogs.web.state import app_state

__all__ = ["ENDPOINTS", "healthz", "metrics_endpoint", "openapi_json", "readyz"]

_OK = b'{"status":"ok"}'
_READY = b'{"status":"ready"}'


async def healthz(request: Request) -> Response:
    return Response(_OK, media_type="application/json")


async def readyz(request: Request) -> Response:
    await app_state(request).db.ping()
    return Response(_READY, media_type="application/json")


async def metrics_endpoint(request: Request) -> Response:
    body, content_type = metrics.render(request.headers.get("accept", ""))
    return Response(body, headers={"Content-Type": content_type})


async def openapi_json(request: Request) -> Response:
    # Imported here: the document is built from the list of endpoints (web/api.py), which
    # holds this one.
    from gramlogs.web import openapi

    return Response(openapi.BODY, media_type="application/json")


# -- Declarations -----------------------------------------------------------------------------


def _status(value: str) -> Json:
    return {
        "type": "object",
        "properties": {"status": {"type": "string", "enum": [value]}},
        "required": ["status"],
        "additionalProperties": False,
    }


def _ops(
    path: str, handler: Handler, description: str, ok: Ok, *raises: type[GramlogsError]
) -> Endpoint:
    name = path.removeprefix("/").removesuffix(".json")
    operation = Operation("GET", name, "ops", name, description, ok, raises=raises)
    return Endpoint(path, handler, (operation,))


_TEXT = {"type": "string"}
ENDPOINTS = (
    _ops(
        "/healthz",
        healthz,
        "Liveness: the process answers (no database query). No key.",
        Ok("The process is alive.", {"application/json": _status("ok")}),
    ),
    _ops(
        "/readyz",
        readyz,
        "Readiness: the database answers SELECT 1 within the acquire and statement limits, "
        "else a 503. No key.",
        Ok("The database answers.", {"application/json": _status("ready")}),
        Unavailable,
    ),
    _ops(
        "/metrics",
        metrics_endpoint,
        "Prometheus metrics: the text format, or OpenMetrics when Accept asks for it. No key; "
        "aggregate counts only.",
        Ok("The exposition.", {"text/plain": _TEXT, "application/openmetrics-text": _TEXT}),
    ),
    _ops(
        "/openapi.json",
        openapi_json,
        "This document (OpenAPI 3.0.3). No key.",
        Ok("The document.", {"application/json": {"type": "object"}}),
    ),
)
