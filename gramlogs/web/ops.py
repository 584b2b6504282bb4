"""Operability endpoints: ``/healthz``, ``/readyz`` and ``/metrics``; no key, no tenant data.

- ``/healthz``: the process answers (no database query), for liveness probes.
- ``/readyz``: the database answers ``SELECT 1`` within the acquire and statement limits; a 503
  ``unavailable`` (``temporary: true``, ``Retry-After``) otherwise, for readiness probes.
- ``/metrics``: Prometheus text; aggregate counts only (routes, statuses, pool), no keys or rows.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from gramlogs.core import metrics
from gramlogs.web.state import app_state

__all__ = ["healthz", "metrics_endpoint", "readyz"]

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
