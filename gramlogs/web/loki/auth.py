"""Who a Loki request is: the key and the project, however Loki's clients send them.

Grafana's Loki data source and the log shippers authenticate as their settings say, so each of
these works (the first found is used):

- gramlogs' own headers, ``Gram-Key`` and ``Gram-Project`` (custom headers on the data source);
- HTTP basic auth: the user is the project's slug, the password the API key;
- ``Authorization: Bearer <key>`` with ``X-Scope-OrgID: <project slug>`` (Loki's tenant header).

The key itself is found by :func:`~gramlogs.web.params.presented_key`, as the rate limiter finds
it; a handler checks the pair with ``storage.access.authenticate`` as every handler does.
"""

from __future__ import annotations

from starlette.requests import HTTPConnection

from gramlogs.core.errors import Unauthorized
from gramlogs.core.keys import basic
from gramlogs.web.params import header_text, presented_key

__all__ = ["loki_credentials"]

_HOW = (
    "send the API key as basic auth's password with the project slug as its user, or as "
    "Gram-Key with Gram-Project, or as a Bearer token with X-Scope-OrgID"
)


def loki_credentials(request: HTTPConnection) -> tuple[str, str]:
    """The key and project slug of a Loki request (or WebSocket handshake); 401 naming what is
    missing."""
    key = presented_key(request.scope)
    if key is None:
        raise Unauthorized(f"missing API key: {_HOW}")
    headers = request.headers
    slug = headers.get("gram-project", "").strip()
    if not slug and (pair := basic(headers.get("authorization"))) is not None:
        slug = pair[0].strip()
    if not slug:
        slug = headers.get("x-scope-orgid", "").strip()
    if not slug:
        raise Unauthorized(f"missing project: {_HOW}")
    return key, header_text("project", slug)
