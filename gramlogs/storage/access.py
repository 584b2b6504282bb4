"""Who a request's key lets it act as: the key looked up by its hash, checked against a project.

401 when the key is missing, unknown or revoked; 403 when it may not act on what it names.

A lookup is a round trip to the primary, as long as a small page's own reads; a worker keeps
its successful lookups for ``key_cache_s`` (:class:`KeyCache`), so that a client paging through
lines pays it about once a second. What bounds a revoked key (docs/operations.md, "Security
model"):

- an answer is reused only while younger than the bound, counted from the moment its lookup
  was *sent*: a revocation that commits later than that is later than the answer's snapshot,
  so no worker accepts a revoked key longer than the bound after the revocation committed,
  whichever process revoked it;
- a lookup that finds nothing (unknown or revoked) is never kept, and drops what was kept for
  the same question: a failure is always asked again;
- at most :data:`KeyCache.ENTRIES` answers are kept, the least recently used going first, and
  only answers for keys that exist: a flood of random keys keeps nothing.

Streams (the live tails, the export) look their key up every time they open: one round trip
is nothing beside a stream, and a revoked key then opens none (those open re-check it with
:func:`in_force`).
"""

from __future__ import annotations

import hmac
import time
import uuid
from collections.abc import Callable

import asyncpg

from gramlogs.core.errors import Forbidden, Unauthorized
from gramlogs.core.keys import KeyHolder, KeyScope, Permission, Principal, hash_key

__all__ = ["KeyCache", "authenticate", "identify", "in_force"]

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


_LOOKUP_HOLDER = """
SELECT id, scope, key_hash, organization_id, project_id FROM api_keys
WHERE key_hash = $1 AND revoked_at IS NULL
"""

# What a lookup asked: the key's hash and the project it named (by slug, by id, or none).
_Question = tuple[bytes, str, object]


class KeyCache:
    """A worker's successful key lookups, each reused for ``seconds`` (the module says why
    that is safe). ``clock`` is monotonic seconds; tests pass their own."""

    ENTRIES = 10_000

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self.clock = clock
        self._answers: dict[_Question, tuple[float, asyncpg.Record]] = {}

    def __len__(self) -> int:
        return len(self._answers)

    async def lookup(
        self, conn: asyncpg.Connection, question: _Question, sql: str
    ) -> asyncpg.Record | None:
        """The row of ``sql`` for ``question`` (its hash and, when it names one, its project),
        from an answer younger than ``seconds``, else from the database."""
        now = self.clock()
        kept = self._answers.pop(question, None)
        if kept is not None and now - kept[0] < self.seconds:
            self._answers[question] = kept  # the most recently used last
            return kept[1]
        args = (question[0],) if question[1] == "holder" else (question[0], question[2])
        row = await conn.fetchrow(sql, *args)
        # The row was found by its hash; comparing again in constant time costs nothing and
        # keeps the check independent of how the index compares.
        if row is None or not hmac.compare_digest(row["key_hash"], question[0]):
            return None
        if self.seconds > 0:
            self._answers[question] = (now, row)  # ``now``: before the lookup was sent
            while len(self._answers) > self.ENTRIES:
                del self._answers[next(iter(self._answers))]
        return row


_UNCACHED = KeyCache(0)


async def authenticate(
    conn: asyncpg.Connection,
    key: str | None,
    needed: Permission,
    *,
    project_slug: str | None = None,
    project_id: uuid.UUID | None = None,
    cache: KeyCache = _UNCACHED,
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
        row = await cache.lookup(conn, (digest, "slug", project_slug), _LOOKUP_BY_SLUG)
    else:
        row = await cache.lookup(conn, (digest, "id", project_id), _LOOKUP_BY_PROJECT)
    if row is None:
        raise Unauthorized("invalid or revoked API key")
    target = project_slug if project_slug is not None else str(project_id)
    found = row["project_id"]
    if found is None or (row["bound_project"] is not None and row["bound_project"] != found):
        raise Forbidden(f"this key may not access project {target!r}")
    scope = KeyScope(row["scope"])
    scope.require(needed)
    return Principal(key_id=row["id"], scope=scope, project_id=found)


async def identify(
    conn: asyncpg.Connection, key: str | None, *, cache: KeyCache = _UNCACHED
) -> KeyHolder:
    """The holder of ``key``; 401 when it is missing, unknown or revoked."""
    if key is None:
        raise Unauthorized("missing API key")
    row = await cache.lookup(conn, (hash_key(key), "holder", None), _LOOKUP_HOLDER)
    if row is None:
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
