"""What an endpoint declares: its path, its handler and, for each method, its operation.

An operation names its parameters (:class:`~gramlogs.web.params.Param`, which its handler
parses with), its 200 response, its request body, the errors it raises beyond those of any
request, and its security. web/api.py lists every endpoint once: app.py makes a route of each
and openapi.py a path item, so the two cannot drift apart (tests/test_openapi.py checks it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.routing import Route
from starlette.types import ASGIApp

from gramlogs.core.errors import Forbidden, GramlogsError, Unauthorized, Unavailable
from gramlogs.web.body import REPLAYED
from gramlogs.web.params import EXTENSION, Json, Param

__all__ = [
    "BASIC",
    "BEARER",
    "BEARER_SECURITY",
    "CONTENT_ENCODING",
    "GRAM_KEY_SCHEME",
    "GRAM_SECURITY",
    "KEYED",
    "ORG_ID_SCHEME",
    "PROJECT_SCHEME",
    "REPLAYED_HEADER",
    "SECURITY_SCHEMES",
    "Body",
    "Endpoint",
    "Handler",
    "Ok",
    "Operation",
    "Schema",
    "component",
]

# A schema where one goes in /openapi.json; a Struct class stands for its component there.
Schema = Json | type[msgspec.Struct]
Handler = Callable[[Request], Awaitable[ASGIApp]]

# What a keyed operation can answer besides its own errors: the key is missing or unknown
# (401), may not do this (403), and is looked up in the database, which may be away (503).
KEYED: tuple[type[GramlogsError], ...] = (Unauthorized, Forbidden, Unavailable)

# Security requirements, by the names of components.securitySchemes (Gram's names for Gram's).
GRAM_KEY_SCHEME = "apikey_header_Gram-Key"
PROJECT_SCHEME = "project_slug_header_Gram-Project"
BEARER = "bearer_Authorization"
# Loki's clients: basic auth (user: project slug, password: key), or a Bearer token with Loki's
# tenant header naming the project (web/loki/auth.py).
BASIC = "basic_Authorization"
ORG_ID_SCHEME = "project_slug_header_X-Scope-OrgID"
GRAM_SECURITY: tuple[Json, ...] = ({GRAM_KEY_SCHEME: [], PROJECT_SCHEME: []},)
BEARER_SECURITY: tuple[Json, ...] = ({BEARER: []},)
SECURITY_SCHEMES: Json = {
    GRAM_KEY_SCHEME: {
        "type": "apiKey",
        "description": "key based auth.",
        "name": "Gram-Key",
        "in": "header",
    },
    PROJECT_SCHEME: {
        "type": "apiKey",
        "description": "project slug header auth.",
        "name": "Gram-Project",
        "in": "header",
    },
    # The Poly dialect's (and OTLP exporters') way: Authorization: Bearer <key>, the same keys.
    BEARER: {
        "type": "http",
        "scheme": "bearer",
        "description": "Authorization: Bearer <key>, the same API keys as Gram-Key.",
        EXTENSION: True,
    },
    BASIC: {
        "type": "http",
        "scheme": "basic",
        "description": "Loki's clients: the project slug as the user, an API key as the password.",
        EXTENSION: True,
    },
    ORG_ID_SCHEME: {
        "type": "apiKey",
        "description": "Loki's tenant header: the project slug, with Authorization: Bearer.",
        "name": "X-Scope-OrgID",
        "in": "header",
        EXTENSION: True,
    },
}


def component(name: str) -> Json:
    """A reference to a schema of components.schemas that no Struct generates (OTLP's)."""
    return {"$ref": "#/components/schemas/" + name}


@dataclass(frozen=True, slots=True)
class Ok:
    """The success response: a schema per media type (none: no body), and headers beyond those
    every response has (X-Request-Id and web/headers.py's)."""

    description: str
    content: Mapping[str, Schema]
    headers: Json = field(default_factory=dict)
    status: int = 200


@dataclass(frozen=True, slots=True)
class Body:
    """A request body (always required): a schema per media type."""

    content: Mapping[str, Schema]
    description: str | None = None


@dataclass(frozen=True, slots=True)
class Operation:
    """One method of an endpoint. ``raises``: the errors it can answer beyond those of any
    request and those of a key (:data:`KEYED`, when it has ``security``)."""

    method: str
    operation_id: str
    tag: str
    summary: str
    description: str
    ok: Ok
    params: tuple[Param[Any], ...] = ()
    raises: tuple[type[GramlogsError], ...] = ()
    security: tuple[Json, ...] = ()
    body: Body | None = None
    extension: bool = True  # not in Gram's API
    extra: Json = field(default_factory=dict)  # more keys of the Operation Object

    @property
    def statuses(self) -> set[int]:
        keyed = KEYED if self.security else ()
        return {error.status for error in (*self.raises, *keyed)}


@dataclass(frozen=True, slots=True)
class Endpoint:
    path: str
    handler: Handler
    operations: tuple[Operation, ...]
    path_params: tuple[Param[Any], ...] = ()

    def route(self) -> Route:
        return Route(self.path, self.handler, methods=[op.method for op in self.operations])


# -- Shared by the write doors (logs.ingest and OTLP) ---------------------------------------
# body.read_body: gzip (x-gzip) or deflate (zlib), else a 415; a body that does not inflate
# is a 400. Said in the operations' descriptions rather than as a header parameter: a generator
# of requests would set the header on a body it does not compress.
CONTENT_ENCODING = (
    " The body may be compressed (Content-Encoding: gzip, x-gzip or deflate, the zlib "
    "format; identity or none: as is); any other encoding is a 415, a body that does not "
    "inflate a 400. The limit GRAMLOGS_MAX_BODY_BYTES (default 8 MiB) holds on the wire and "
    "again inflated (413). The key is checked before the body is read. When the server's "
    "process holds GRAMLOGS_MAX_BODY_BYTES_IN_FLIGHT bytes of bodies being read, a 503 with "
    "Retry-After: 1."
)
REPLAYED_HEADER: Json = {
    REPLAYED: {
        "description": "true when this is the recorded reply to an earlier request with the same "
        "Idempotency-Key (nothing was stored this time); absent otherwise.",
        "required": False,
        "schema": {"type": "string", "enum": ["true"]},
    }
}
