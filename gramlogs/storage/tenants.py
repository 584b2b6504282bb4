"""Organizations, projects and API keys: the administrative records around the logs."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import uuid6

from gramlogs.core.keys import KEY_PREFIX, KeyScope, hash_key, new_key

__all__ = [
    "CreatedKey",
    "KeyInfo",
    "TenantError",
    "create_key",
    "create_organization",
    "create_project",
    "list_keys",
    "revoke_key",
    "set_retention",
]

SLUG_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,62}\Z")


class TenantError(ValueError):
    """A request the administrative commands refuse; the message says why."""


@dataclass(frozen=True)
class CreatedKey:
    id: uuid.UUID
    key: str
    scope: KeyScope
    organization_id: uuid.UUID
    project_id: uuid.UUID | None


@dataclass(frozen=True)
class KeyInfo:
    id: uuid.UUID
    name: str
    prefix: str
    scope: str
    organization_id: uuid.UUID
    project_slug: str | None
    created_at: datetime
    revoked_at: datetime | None


async def create_organization(
    conn: asyncpg.Connection, name: str, *, org_id: uuid.UUID | None = None
) -> uuid.UUID:
    """A new organization; ``org_id`` fixes its id (seeded data), else a fresh UUIDv7."""
    org_id = org_id or uuid6.uuid7()
    await conn.execute("INSERT INTO organizations (id, name) VALUES ($1, $2)", org_id, name)
    return org_id


async def resolve_organization(conn: asyncpg.Connection, ref: str) -> uuid.UUID:
    """An organization by id or by its (unique) name."""
    row: uuid.UUID | None
    try:
        row = await conn.fetchval("SELECT id FROM organizations WHERE id = $1", uuid.UUID(ref))
    except ValueError:
        row = None
    if row is None:
        rows = await conn.fetch("SELECT id FROM organizations WHERE name = $1", ref)
        if len(rows) != 1:
            raise TenantError(f"no single organization named or with id {ref!r}")
        row = rows[0]["id"]
    return row


async def create_project(
    conn: asyncpg.Connection,
    organization_id: uuid.UUID,
    slug: str,
    name: str | None = None,
    *,
    project_id: uuid.UUID | None = None,
) -> uuid.UUID:
    """A new project; ``project_id`` fixes its id (seeded data), else a fresh UUIDv7."""
    if not SLUG_RE.match(slug):
        raise TenantError(
            f"project slug {slug!r} must be 1-63 lower-case letters, digits or '-', "
            "starting with a letter or digit"
        )
    project_id = project_id or uuid6.uuid7()
    try:
        await conn.execute(
            "INSERT INTO projects (id, organization_id, slug, name) VALUES ($1, $2, $3, $4)",
            project_id,
            organization_id,
            slug,
            name or slug,
        )
    except asyncpg.UniqueViolationError:
        raise TenantError(f"the organization already has a project {slug!r}") from None
    return project_id


async def set_retention(conn: asyncpg.Connection, project_id: uuid.UUID, days: int | None) -> None:
    """Keep the project's lines ``days`` days; ``None``: the server's default."""
    await conn.execute("UPDATE projects SET retention_days = $2 WHERE id = $1", project_id, days)


async def resolve_project(
    conn: asyncpg.Connection, organization_id: uuid.UUID, slug: str
) -> uuid.UUID:
    project_id: uuid.UUID | None = await conn.fetchval(
        "SELECT id FROM projects WHERE organization_id = $1 AND slug = $2", organization_id, slug
    )
    if project_id is None:
        raise TenantError(f"the organization has no project {slug!r}")
    return project_id


async def create_key(
    conn: asyncpg.Connection,
    organization_id: uuid.UUID,
    scope: KeyScope,
    *,
    project_id: uuid.UUID | None = None,
    name: str = "",
) -> CreatedKey:
    key = new_key()
    key_id = uuid6.uuid7()
    await conn.execute(
        "INSERT INTO api_keys (id, organization_id, project_id, name, scope, key_hash, key_prefix)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)",
        key_id,
        organization_id,
        project_id,
        name,
        scope.value,
        hash_key(key),
        key[: len(KEY_PREFIX) + 6],
    )
    return CreatedKey(key_id, key, scope, organization_id, project_id)


async def list_keys(
    conn: asyncpg.Connection, organization_id: uuid.UUID | None = None
) -> list[KeyInfo]:
    rows = await conn.fetch(
        "SELECT k.id, k.name, k.key_prefix, k.scope, k.organization_id, p.slug,"
        " k.created_at, k.revoked_at"
        " FROM api_keys k LEFT JOIN projects p ON p.id = k.project_id"
        " WHERE $1::uuid IS NULL OR k.organization_id = $1 ORDER BY k.created_at, k.id",
        organization_id,
    )
    return [KeyInfo(*row) for row in rows]


async def revoke_key(conn: asyncpg.Connection, key_id: uuid.UUID) -> bool:
    """Revoke a key; False when there is no such unrevoked key. Effective on the next request."""
    status = await conn.execute(
        "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL", key_id
    )
    return status == "UPDATE 1"
