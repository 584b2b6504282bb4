"""What every Loki read shares (the query API, the label browser, Logs Drilldown): who asks
(auth.py) and over which connection, the security they declare; and for the label browser and
Drilldown, the ``query`` parameter and a JSON reply. The live tail reads on the primary itself
(tail.py: its backlog must hold every line committed before its journal head).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from gramlogs.core.keys import Permission
from gramlogs.storage.access import authenticate
from gramlogs.storage.database import Connection
from gramlogs.web.endpoint import BEARER_SECURITY, GRAM_SECURITY
from gramlogs.web.loki.auth import loki_credentials
from gramlogs.web.loki.logql import LogQuery
from gramlogs.web.loki.sample import log_query
from gramlogs.web.params import Json, Param, text
from gramlogs.web.state import app_state

__all__ = [
    "LOKI_SECURITY",
    "QUERY",
    "TAG",
    "json_reply",
    "loki_credentials",
    "query_of",
    "reader",
    "required_query",
    "success",
]

TAG = "loki"
# Basic auth (slug and key) is read too (auth.py); OpenAPI 3.0 lists the headers a generator
# can send.
LOKI_SECURITY: tuple[Json, ...] = (*GRAM_SECURITY, *BEARER_SECURITY)
QUERY = text(
    "query",
    'A LogQL stream selector, optionally with line filters, e.g. {level="error"} |= "x"',
    most=4096,
)

_encoder = msgspec.json.Encoder()


def query_of(param: Param[str], params: dict[str, str]) -> LogQuery | None:
    """The log query of ``param`` when it was sent."""
    value = param.get(params)
    return None if value is None else log_query(param.name, value)


def required_query(param: Param[str], params: dict[str, str]) -> LogQuery:
    """The log query of a required ``param`` (a 400 without it)."""
    return log_query(param.name, param.value(params))


@asynccontextmanager
async def reader(
    request: Request, credentials: tuple[str, str], *, expensive: bool = False
) -> AsyncIterator[tuple[uuid.UUID, Connection]]:
    """The project of a read key (``credentials``: auth.loki_credentials, taken before the
    parameters are parsed, so that a request without a key is a 401 whatever it holds) and a
    connection to read it with: the key on the primary, as every read checks it, the lines on
    a replica when there is one. ``expensive``: a read that counts a whole window (as the
    histogram does), held as one of the key's expensive reads (web/expensive.py, a 429 past
    them)."""
    key, slug = credentials
    state = app_state(request)
    async with state.db.connection() as conn:
        principal = await authenticate(
            conn, key, Permission.READ, project_slug=slug, cache=state.keys
        )
        with state.expensive.hold(principal.key_id, expensive=expensive):
            async with state.db.read_connection(conn) as read:
                yield principal.project_id, read


def json_reply(value: Any) -> Response:
    return Response(_encoder.encode(value), media_type="application/json")


def success(data: Any) -> Response:
    """Loki's envelope of a successful read."""
    return json_reply({"status": "success", "data": data})
