"""The ASGI application: routes, the lifespan that owns the pool, and the error handler.

Middleware, outermost first: :class:`~gramlogs.web.headers.ResponseHeaders` (the headers every
response carries), :class:`~gramlogs.web.observe.Observe` (request id, access log, metrics;
renders errors that escape the router), then :class:`~gramlogs.web.ratelimit.RateLimit` when
``rate_limit`` or ``auth_failures_per_minute`` is set, then Starlette's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response

from gramlogs.core.config import Config
from gramlogs.core.errors import GramlogsError
from gramlogs.live.watchers import Watchers
from gramlogs.local.servers import resolve_url
from gramlogs.storage import maintenance
from gramlogs.storage.access import KeyCache
from gramlogs.storage.database import Database
from gramlogs.web import viewer
from gramlogs.web.api import ENDPOINTS
from gramlogs.web.body import BodyBudget
from gramlogs.web.expensive import ExpensiveReads
from gramlogs.web.headers import ResponseHeaders
from gramlogs.web.loki import tail as loki_tail
from gramlogs.web.observe import SCOPE_ERROR, Observe, error_response, http_error, request_id
from gramlogs.web.ratelimit import RateLimit
from gramlogs.web.state import AppState

__all__ = ["create_app"]

logger = logging.getLogger("gramlogs.app")


async def _on_error(request: Request, exc: Exception) -> Response:
    # Errors a handler raises on purpose, and Starlette's 404/405. Anything else propagates to
    # Observe, the one place that renders (and logs, once) a 500.
    error = http_error(exc)
    error_id = request_id(request.scope)
    request.scope[SCOPE_ERROR] = error.name
    if error.fault:
        logger.error("error id=%s %s %s", error_id, request.method, request.url.path, exc_info=exc)
    # Other errors are in the access-log line of the request (observe.py), id and name included.
    body, content_type = error_response(error, error_id, request.url.path)
    return Response(
        body, status_code=error.status, headers=error.headers, media_type=content_type.decode()
    )


def create_app(config: Config | None = None) -> Starlette:
    """The application; with no ``config``, settings come from ``GRAMLOGS_*`` variables."""
    config = config or Config.load()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        url = resolve_url(config)
        db = await Database.open(url, config)
        watchers = Watchers(db, config)
        app.state.gramlogs = AppState(
            config=config,
            db=db,
            watchers=watchers,
            bodies=BodyBudget(config.max_body_bytes_in_flight),
            expensive=ExpensiveReads(config.expensive_reads_per_key),
            keys=KeyCache(config.key_cache_s),
        )
        upkeep = [asyncio.create_task(maintenance.run_forever(url, config))]
        if config.seal_interval_s:
            upkeep.append(asyncio.create_task(maintenance.seal_forever(url, config)))
        try:
            yield
        finally:
            await watchers.close()
            for task in upkeep:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await db.close()
            logger.info("database pool closed")

    # Loki's live tail is a WebSocket: /openapi.json has no such operation (docs/tail.md).
    routes = [*(endpoint.route() for endpoint in ENDPOINTS), *viewer.ROUTES, loki_tail.ROUTE]
    middleware = [
        Middleware(ResponseHeaders),
        Middleware(Observe, access_log=config.access_log),
    ]
    if config.rate_limit > 0 or config.auth_failures_per_minute > 0:
        burst = config.rate_limit_burst or max(1, round(2 * config.rate_limit))
        middleware.append(
            Middleware(
                RateLimit,
                rate=config.rate_limit,
                burst=burst,
                failures_per_minute=config.auth_failures_per_minute,
            )
        )
    return Starlette(
        routes=routes,
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers={
            GramlogsError: _on_error,
            HTTPException: _on_error,
        },
    )
