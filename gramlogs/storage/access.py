"""Who a request's key lets it act as: the key looked up by its hash, checked against a project.

401 when the key is missing, unknown or revoked; 403 when it may not act on what it names.
"""

from __future__ import annotations

import hmac
import uuid

import asyncpg

from gramlogs.core.errors import Forbidden, Unauthorized
from gramlogs.core.keys import KeyHolder, KeyScope, Permission, Principal, hash_key

__all__ = ["authenticate", "identify", "in_force"]

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
    needed: Permission,
    *,
    project_slug: str | None = None,
    project_id: uuid.UUID | None = None,
) -> Principal:
    """Check ``key`` may do what ``needed`` permits on the project named by slug or id.

    401 when the key is missing, unknown or revoked; 403 when the project is outside the key's
    organization or binding (whether or not it exists elsewhere), or the key's scope lacks the
    permission.
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
    scope = KeyScope(row["scope"])
    scope.require(needed)
    return Principal(key_id=row["id"], scope=scope, project_id=found)


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
        scope=KeyScope(row["scope"]),
        organization_id=row["organization_id"],
        bound_project_id=row["project_id"],
    )


async def in_force(conn: asyncpg.Connection, key_id: uuid.UUID) -> bool:
    """Whether the key ``key_id`` is still there and not revoked: what an open stream re-checks
    (on the primary, so that a revocation made through any server process is seen)."""
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT FROM api_keys WHERE id = $1 AND revoked_at IS NULL)", key_id
        )
    )
