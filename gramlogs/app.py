"""The ASGI application: routes, the lifespan that owns the pool, and the one error handler."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

import msgspec
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gramlogs import gram, poly
from gramlogs.config import Config
from gramlogs.database import Database, resolve_url
from gramlogs.errors import (
    GramlogsError,
    MethodNotAllowed,
    NotFound,
    Unexpected,
    error_body,
    new_error_id,
)
from gramlogs.state import AppState

__all__ = ["create_app"]

logger = logging.getLogger("gramlogs.app")
_encoder = msgspec.json.Encoder()


def _as_gramlogs_error(exc: Exception) -> GramlogsError:
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


async def _on_error(request: Request, exc: Exception) -> Response:
    error = _as_gramlogs_error(exc)
    error_id = new_error_id()
    if error.fault:
        logger.error("error id=%s %s %s", error_id, request.method, request.url.path, exc_info=exc)
    else:
        logger.info(
            "error id=%s status=%d name=%s %s %s",
            error_id,
            error.status,
            error.name,
            request.method,
            request.url.path,
        )
    return Response(
        _encoder.encode(error_body(error, error_id)),
        status_code=error.status,
        headers=error.headers,
        media_type="application/json",
    )


def create_app(config: Config | None = None) -> Starlette:
    """The application; with no ``config``, settings come from ``GRAMLOGS_*`` variables."""
    config = config or Config.load()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        db = await Database.open(resolve_url(config), config)
        app.state.gramlogs = AppState(config=config, db=db)
        try:
            yield
        finally:
            await db.close()

    routes = [
        Route(
            "/rpc/logs.listToolExecutionLogs",
            gram.list_tool_execution_logs,
            methods=["GET"],
        ),
        Route("/functions/server/{id}/logs", poly.execution_logs, methods=["GET", "DELETE"]),
        Route("/functions/server/{id}/system-logs", poly.system_logs, methods=["GET", "DELETE"]),
    ]
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            GramlogsError: _on_error,
            HTTPException: _on_error,
            Exception: _on_error,
        },
    )
