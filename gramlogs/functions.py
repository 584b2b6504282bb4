"""Functions: the per-function settings kept beside the logs (Poly's ``logsEnabled``).

A function is known to a project once a line of it has been stored there; it starts enabled.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

import asyncpg

__all__ = ["disabled_among", "register_functions", "set_logs_enabled"]


async def register_functions(
    conn: asyncpg.Connection, project_id: uuid.UUID, function_ids: Iterable[uuid.UUID]
) -> None:
    """Record functions the project has not seen before (enabled)."""
    await conn.execute(
        "INSERT INTO functions (project_id, id) SELECT $1, unnest($2::uuid[])"
        " ON CONFLICT (project_id, id) DO NOTHING",
        project_id,
        sorted(set(function_ids)),
    )


async def disabled_among(
    conn: asyncpg.Connection, project_id: uuid.UUID, function_ids: Iterable[uuid.UUID]
) -> set[uuid.UUID]:
    """Which of ``function_ids`` have logs turned off in the project."""
    rows = await conn.fetch(
        "SELECT id FROM functions WHERE project_id = $1 AND id = ANY($2::uuid[])"
        " AND NOT logs_enabled",
        project_id,
        list(set(function_ids)),
    )
    return {row["id"] for row in rows}


async def set_logs_enabled(
    conn: asyncpg.Connection, project_id: uuid.UUID, function_id: uuid.UUID, enabled: bool
) -> None:
    """Turn a function's logs on or off (registering it if it is new)."""
    await conn.execute(
        "INSERT INTO functions (project_id, id, logs_enabled) VALUES ($1, $2, $3)"
        " ON CONFLICT (project_id, id) DO UPDATE SET logs_enabled = EXCLUDED.logs_enabled",
        project_id,
        function_id,
        enabled,
    )
