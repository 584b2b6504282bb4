"""Functions: the per-function settings kept beside the logs (Poly's ``logsEnabled``).

A function is known to a project once a line of it has been stored there (or an administrator
set its logsEnabled); it starts enabled.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import asyncpg

from gramlogs.storage import sealed, sealing

__all__ = [
    "DELETE_BATCH",
    "FunctionRef",
    "delete_logs",
    "disabled_among",
    "find_function",
    "function_projects",
    "register_functions",
    "set_logs_enabled",
]

# Rows removed per DELETE statement: each stays far inside the statement time limit (5 s by
# default) however many lines the function has; all batches share one transaction.
DELETE_BATCH = 10_000


@dataclass(frozen=True, slots=True)
class FunctionRef:
    project_id: uuid.UUID
    project_slug: str
    id: uuid.UUID
    logs_enabled: bool


async def register_functions(
    conn: asyncpg.Connection, project_id: uuid.UUID, function_ids: Iterable[uuid.UUID | str]
) -> None:
    """Record functions the project has not seen before (enabled)."""
    wanted = {str(function_id) for function_id in function_ids}
    # Read before writing: nearly every batch brings only known functions, and a write to
    # ``functions`` locks its rows (on Citus, a reference table: a transaction on every node).
    known = await conn.fetch(
        "SELECT id FROM functions WHERE project_id = $1 AND id = ANY($2::uuid[])",
        project_id,
        list(wanted),
    )
    new = wanted - {str(row["id"]) for row in known}
    if new:
        await conn.execute(
            "INSERT INTO functions (project_id, id) SELECT $1, unnest($2::uuid[])"
            " ON CONFLICT (project_id, id) DO NOTHING",
            project_id,
            sorted(new),
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


_FUNCTION_PROJECTS = (
    "SELECT f.project_id, p.slug, f.id, f.logs_enabled"
    " FROM functions f JOIN projects p ON p.id = f.project_id"
    " WHERE f.id = $1 AND p.organization_id = $2 AND ($3::uuid IS NULL OR f.project_id = $3)"
    # First registered first; the project id breaks a tie (two registrations in one instant).
    " ORDER BY f.created_at, f.project_id"
)


async def function_projects(
    conn: asyncpg.Connection,
    organization_id: uuid.UUID,
    function_id: uuid.UUID,
    *,
    project_id: uuid.UUID | None = None,
) -> list[FunctionRef]:
    """The organization's projects (only ``project_id``, when given) that know the function,
    in the order they registered it."""
    rows = await conn.fetch(_FUNCTION_PROJECTS, function_id, organization_id, project_id)
    return [FunctionRef(*row) for row in rows]


async def find_function(
    conn: asyncpg.Connection,
    organization_id: uuid.UUID,
    function_id: uuid.UUID,
    *,
    project_id: uuid.UUID | None = None,
) -> FunctionRef | None:
    """The function a Poly route names: in ``project_id`` (a bound key's project) when given,
    else in the project of the organization that registered it first.

    Function ids are chosen by whoever writes the lines, so any key that may write to one
    project can register any id there. Were every project that knows the id a candidate, one
    such line would make the function ambiguous for the organization's other keys; the first
    registration keeps it, and a later one elsewhere can neither take it over nor hide it.
    """
    rows = await conn.fetch(
        _FUNCTION_PROJECTS + " LIMIT 1", function_id, organization_id, project_id
    )
    return FunctionRef(*rows[0]) if rows else None


async def delete_logs(
    conn: asyncpg.Connection,
    project_id: uuid.UUID,
    function_id: uuid.UUID,
    *,
    sources: Sequence[str] = (),
    batch: int = DELETE_BATCH,
) -> int:
    """Delete the function's stored lines, rows and sealed (only those of ``sources``, when
    given); return how many.

    All or nothing: the batches share one transaction. Lines stored after the call began with a
    later id than any before it are left alone, so a busy writer cannot keep the loop going.
    Each batch walks down the id range from where the last one stopped, so no batch rereads the
    index entries of rows already deleted.
    """
    only = " AND source = ANY($3::text[])" if sources else ""
    extra: list[object] = [list(sources)] if sources else []
    # $3 is the sources when given; the walk's bound and batch size come after.
    n = 4 if sources else 3
    doomed_sql = (
        f"SELECT id FROM logs WHERE project_id = $1 AND function_id = $2{only}"
        f" AND id <= ${n} ORDER BY id DESC LIMIT ${n + 1}"
    )
    # By primary key, planned for its values: the planner sees the ids and the partitions'
    # sizes as they are. A generic plan (or a join with the ids) made while a partition was
    # empty may read the project's whole partition for every id.
    delete_sql = (
        "DELETE FROM logs WHERE project_id = $1 AND id BETWEEN $2 AND $3 AND id = ANY($4::uuid[])"
    )
    top_sql = (
        f"SELECT id FROM logs WHERE project_id = $1 AND function_id = $2{only}"
        " ORDER BY id DESC LIMIT 1"
    )
    total = 0
    async with conn.transaction():
        await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
        # Held off: sealing, which would move rows into blocks between the two deletes.
        await sealed.lock_project(conn, project_id)
        total += await sealing.delete_sealed(
            conn, project_id, function_id=function_id, sources=sources
        )
        top = await conn.fetchval(top_sql, project_id, function_id, *extra)
        while top is not None:
            rows = await conn.fetch(doomed_sql, project_id, function_id, *extra, top, batch)
            doomed = [row[0] for row in rows]
            if not doomed:
                break
            status = await conn.execute(delete_sql, project_id, doomed[-1], doomed[0], doomed)
            total += int(status.split()[-1])
            if len(doomed) < batch or doomed[-1].int == 0:
                break
            top = uuid.UUID(int=doomed[-1].int - 1)
    return total
