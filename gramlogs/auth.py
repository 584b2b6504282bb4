"""API keys: their format, their hash, and who a request's key lets it act as.

A key is ``glk_`` followed by 43 url-safe characters (256 random bits). Only its SHA-256 is
stored; the key itself is shown once, when it is created, and never logged.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass

import asyncpg

from gramlogs.errors import Forbidden, Unauthorized

__all__ = ["KeyHolder", "Principal", "Scope", "authenticate", "hash_key", "identify", "new_key"]

KEY_PREFIX = "glk_"


class Scope(enum.StrEnum):
    CONSUMER = "consumer"
    PRODUCER = "producer"

    def allows(self, needed: Scope) -> bool:
        """A producer may do all a consumer can."""
        return self is Scope.PRODUCER or needed is Scope.CONSUMER


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: uuid.UUID
    scope: Scope
    project_id: uuid.UUID


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


def bearer(value: str | None) -> str | None:
    """The key in a header value; a leading ``Bearer `` (any case) is tolerated."""
    if value is None:
        return None
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() == "bearer":
        return rest.strip() or None
    return value.strip() or None


_LOOKUP_BY_SLUG = """
SELECT k.id, k.scope, k.key_hash, k.project_id AS bound_project, p.id AS project_id
FROM api_keys k
LEFT JOIN projects p ON p.organization_id = k.organization_id AND p.slug = $2
WHERE k.key_hash = $1 AND k.revoked_at IS NULL
"""

_LOOKUP_BY_PROJECT = """
SELECT k.id, k.scope, k.key_hash, k.project_id AS bound_project, p.id AS project_id
FROM api_keys k
LEFT JOIN projects p ON p.organization_id = k.organization_id AND p.id = $2
WHERE k.key_hash = $1 AND k.revoked_at IS NULL
"""


async def authenticate(
    conn: asyncpg.Connection,
    key: str | None,
    needed: Scope,
    *,
    project_slug: str | None = None,
    project_id: uuid.UUID | None = None,
) -> Principal:
    """Check ``key`` may act with scope ``needed`` on the project named by slug or id.

    401 when the key is missing, unknown or revoked; 403 when the project is outside the key's
    organization or binding (whether or not it exists elsewhere), or the scope is too small.
    """
    if key is None:
        raise Unauthorized("missing API key")
    digest = hash_key(key)
    if project_slug is not None:
        row = await conn.fetchrow(_LOOKUP_BY_SLUG, digest, project_slug)
    else:
        row = await conn.fetchrow(_LOOKUP_BY_PROJECT, digest, project_id)
    # The row was found by its hash; comparing again in constant time costs nothing and keeps
    # the check independent of how the index compares.
    if row is None or not hmac.compare_digest(row["key_hash"], digest):
        raise Unauthorized("invalid or revoked API key")
    target = project_slug if project_slug is not None else str(project_id)
    found = row["project_id"]
    if found is None or (row["bound_project"] is not None and row["bound_project"] != found):
        raise Forbidden(f"this key may not access project {target!r}")
    scope = Scope(row["scope"])
    if not scope.allows(needed):
        raise Forbidden(f"this key has scope {scope.value!r}; {needed.value!r} is required")
    return Principal(key_id=row["id"], scope=scope, project_id=found)


@dataclass(frozen=True, slots=True)
class KeyHolder:
    """Who a key speaks for, before any project is named (the Poly dialect names a function)."""

    key_id: uuid.UUID
    scope: Scope
    organization_id: uuid.UUID
    bound_project_id: uuid.UUID | None  # the one project the key may use; None: any in the org

    def require(self, needed: Scope) -> None:
        if not self.scope.allows(needed):
            raise Forbidden(
                f"this key has scope {self.scope.value!r}; {needed.value!r} is required"
            )


async def identify(conn: asyncpg.Connection, key: str | None) -> KeyHolder:
    """The holder of ``key``; 401 when it is missing, unknown or revoked."""
    if key is None:
        raise Unauthorized("missing API key")
    digest = hash_key(key)
    row = await conn.fetchrow(
        "SELECT id, scope, key_hash, organization_id, project_id FROM api_keys"
        " WHERE key_hash = $1 AND revoked_at IS NULL",
        digest,
    )
    if row is None or not hmac.compare_digest(row["key_hash"], digest):
        raise Unauthorized("invalid or revoked API key")
    return KeyHolder(
        key_id=row["id"],
        scope=Scope(row["scope"]),
        organization_id=row["organization_id"],
        bound_project_id=row["project_id"],
    )
