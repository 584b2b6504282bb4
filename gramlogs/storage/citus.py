"""What differs on Citus (distributed PostgreSQL), in one place.

gramlogs runs unchanged on a Citus coordinator once its tables are distributed: ``logs`` by
``project_id`` (the tenant: every statement names one project, so every page and every write
is a router query to the one shard that holds the project), and the small tables it joins
(organizations, projects, api_keys, functions) as reference tables, copied to every node.

Three things differ. Two are set here on each new pooled connection (:func:`prepare_connection`):

- Plans. Citus cannot plan a distributed statement whose parameters are unknown (a generic
  plan): "could not create distributed plan". On Citus the pools plan every statement for its
  values (``force_custom_plan``); the coordinator's plan is a router plan, and each worker plans
  its shard's statement with the values in it. Except a page's rows: that statement spans the
  shard's time partitions, whose planning was most of a page's time, so the pools' connections
  call a function instead, distributed beside ``logs`` (:data:`DELEGATED_FUNCTIONS`), which
  Citus runs on the shard's worker, where its plan is kept (routing.py).
- Session settings. The keyword page's ``SET LOCAL`` lines must reach the worker that runs the
  page: ``citus.propagate_set_commands = local`` sends them along within the transaction.

The third is an error's class: a duplicate found by a multi-shard COPY comes back as an internal
error with the shard's message (:func:`is_unique_violation`), which the writer handles as it
does a unique violation.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass

import asyncpg

from gramlogs.storage import routing

__all__ = [
    "DELEGATED_FUNCTIONS",
    "REFERENCE_TABLES",
    "Topology",
    "add_worker",
    "distribute",
    "is_unique_violation",
    "isolate",
    "prepare_connection",
    "rebalance",
    "shard_placements",
    "topology",
]

logger = logging.getLogger("gramlogs.citus")

DISTRIBUTED_TABLE = "logs"
DISTRIBUTION_COLUMN = "project_id"
# Tables written in the same transaction as a project's lines: distributed by project_id too and
# colocated with logs, so that a batch stays one transaction on one worker. Each entry names a
# table made by schema.sql or a migration; ``distribute`` skips one the database does not have.
COLOCATED_TABLES: tuple[str, ...] = (
    "log_blocks",
    "log_sealed",
    "idempotency_keys",
    "tail_heads",
    "tail_journal",
)
# Joined with logs or read by every request: a copy on every node keeps each statement local
# to the shard it names.
REFERENCE_TABLES = ("organizations", "projects", "api_keys", "functions", "gramlogs_schema")
# Functions Citus runs whole on the worker holding the project named by their first argument
# (routing.py): distributed by it and colocated with logs. ``force_delegation``: a call inside a
# transaction (a page's snapshot) is delegated too, and that transaction's other statements go
# to the same worker, as a page's do (they name the same project).
DELEGATED_FUNCTIONS = (routing.FUNCTION,)

_DELEGATED = (
    "SELECT EXISTS (SELECT 1 FROM pg_dist_object WHERE classid = 'pg_proc'::regclass"
    " AND objid = to_regprocedure($1) AND colocationid IS NOT NULL"
    " AND distribution_argument_index = 0)"
)

_HAS_CITUS = "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')"
_CITUS_SET = "SET plan_cache_mode = force_custom_plan; SET citus.propagate_set_commands = local"


@dataclass(frozen=True, slots=True)
class Topology:
    """Where the database is: one PostgreSQL, or a Citus coordinator (and whether ``logs`` is
    distributed yet)."""

    citus_version: str | None = None
    distributed: bool = False

    @property
    def citus(self) -> bool:
        return self.citus_version is not None


async def topology(conn: asyncpg.Connection) -> Topology:
    version = await conn.fetchval("SELECT extversion FROM pg_extension WHERE extname = 'citus'")
    if version is None:
        return Topology()
    distributed = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM pg_dist_partition"
        " WHERE logicalrelid = to_regclass($1) AND partmethod = 'h')",
        DISTRIBUTED_TABLE,
    )
    return Topology(citus_version=version, distributed=bool(distributed))


async def prepare_connection(conn: asyncpg.Connection) -> None:
    """Give a new pooled connection Citus's settings when it is on a Citus node.

    Once per connection, not per request; a session setting, which the pools keep (they skip
    asyncpg's RESET ALL on release: database.py). A :class:`routing.RoutedConnection` also learns
    whether pages call their function (it is distributed: :func:`distribute`).
    """
    if await conn.fetchval(_HAS_CITUS):
        await conn.execute(_CITUS_SET)
        if await conn.fetchval(_DELEGATED, routing.FUNCTION):
            routing.delegate_pages(conn)


def is_unique_violation(exc: asyncpg.PostgresError) -> bool:
    """Whether ``exc`` is a unique violation that Citus passed on from a worker during a COPY.

    Citus re-raises a shard's error in a multi-shard COPY as an internal error (SQLSTATE
    XX000) with the shard's message, so the class alone does not say it was a duplicate.
    """
    return isinstance(exc, asyncpg.UniqueViolationError) or (
        exc.sqlstate == "XX000" and str(exc).startswith("duplicate key value violates unique")
    )


async def distribute(conn: asyncpg.Connection, *, shard_count: int | None = None) -> list[str]:
    """Distribute gramlogs' tables on a Citus coordinator; return what was done.

    Safe to run again (what is distributed already is left alone). On a database that already
    holds logs, Citus copies each table's rows to its shards: writes to a table wait while it is
    copied, reads go on; an acknowledged line is never lost (the copy is one transaction).
    """
    topo = await topology(conn)
    if not topo.citus:
        raise RuntimeError(
            "this database has no Citus extension: run CREATE EXTENSION citus on a coordinator"
        )
    done: list[str] = []
    for table in REFERENCE_TABLES:
        is_reference = await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM pg_dist_partition"
            " WHERE logicalrelid = to_regclass($1) AND partmethod = 'n')",
            table,
        )
        if not is_reference:
            await conn.execute("SELECT create_reference_table($1)", table)
            done.append(f"{table}: reference table")
    if not topo.distributed:
        if shard_count is None:
            await conn.execute(
                "SELECT create_distributed_table($1, $2)", DISTRIBUTED_TABLE, DISTRIBUTION_COLUMN
            )
        else:
            await conn.execute(
                "SELECT create_distributed_table($1, $2, shard_count => $3)",
                DISTRIBUTED_TABLE,
                DISTRIBUTION_COLUMN,
                shard_count,
            )
        done.append(f"{DISTRIBUTED_TABLE}: distributed by {DISTRIBUTION_COLUMN}")
    for table in COLOCATED_TABLES:
        distributed = await conn.fetchval(
            "SELECT to_regclass($1) IS NULL OR EXISTS (SELECT 1 FROM pg_dist_partition"
            " WHERE logicalrelid = to_regclass($1))",
            table,
        )
        if not distributed:
            await conn.execute(
                "SELECT create_distributed_table($1, $2, colocate_with => $3)",
                table,
                DISTRIBUTION_COLUMN,
                DISTRIBUTED_TABLE,
            )
            done.append(
                f"{table}: distributed by {DISTRIBUTION_COLUMN}, beside {DISTRIBUTED_TABLE}"
            )
    for function in DELEGATED_FUNCTIONS:
        made = await conn.fetchval("SELECT to_regprocedure($1) IS NOT NULL", function)
        if made and not await conn.fetchval(_DELEGATED, function):
            await conn.execute(
                "SELECT create_distributed_function($1, '$1', colocate_with => $2,"
                " force_delegation => true)",
                function,
                DISTRIBUTED_TABLE,
            )
            done.append(f"{function.split('(')[0]}: run beside {DISTRIBUTED_TABLE}")
    # The copy leaves the local rows behind in the coordinator's own (now hidden) tables.
    for table in (DISTRIBUTED_TABLE, *COLOCATED_TABLES):
        if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", table):
            await conn.execute("SELECT truncate_local_data_after_distributing_table($1)", table)
    return done


async def add_worker(conn: asyncpg.Connection, host: str, port: int) -> int:
    """Add a worker (it gets a copy of the reference tables); its node id."""
    node_id: int = await conn.fetchval("SELECT citus_add_node($1, $2)", host, port)
    return node_id


async def isolate(conn: asyncpg.Connection, project_id: uuid.UUID) -> int:
    """Give one project's lines a shard of their own (a hot tenant), online; that shard's id.

    The project's shard is split in three, the middle one holding only the project; the
    rebalancer may then move it to a worker of its own. Safe to run again.
    """
    isolated: int | None = await conn.fetchval(
        "SELECT shardid FROM pg_dist_shard"
        " WHERE shardid = get_shard_id_for_distribution_column($1, $2::uuid)"
        " AND shardminvalue = shardmaxvalue",
        DISTRIBUTED_TABLE,
        project_id,
    )
    if isolated is not None:
        return isolated
    shard_id: int = await conn.fetchval(
        "SELECT isolate_tenant_to_new_shard($1, $2::uuid, 'CASCADE',"
        " shard_transfer_mode => 'auto')",
        DISTRIBUTED_TABLE,
        project_id,
    )
    return shard_id


async def rebalance(conn: asyncpg.Connection, *, poll_s: float = 1.0) -> int:
    """Move shards until every worker holds its share, online; return the moves made.

    Shards move by logical replication: reads and writes go on while a shard is copied, and
    writes to it wait only for the moment its last changes are applied and it switches over.
    """
    job_id = await conn.fetchval("SELECT citus_rebalance_start(shard_transfer_mode => 'auto')")
    if job_id is None:
        return 0
    while True:
        state = await conn.fetchval(
            "SELECT state::text FROM pg_dist_background_job WHERE job_id = $1", job_id
        )
        if state in ("finished", "failed", "cancelled"):
            break
        await asyncio.sleep(poll_s)
    if state != "finished":
        message = await conn.fetchval(
            "SELECT string_agg(message, '; ') FROM pg_dist_background_task"
            " WHERE job_id = $1 AND message <> ''",
            job_id,
        )
        raise RuntimeError(f"the rebalance {state}: {message or 'no message'}")
    moves: int = await conn.fetchval(
        "SELECT count(*) FROM pg_dist_background_task WHERE job_id = $1", job_id
    )
    return moves


async def shard_placements(conn: asyncpg.Connection) -> dict[str, int]:
    """Shards of ``logs`` per worker (``host:port``)."""
    rows = await conn.fetch(
        "SELECT nodename || ':' || nodeport AS node, count(*) AS shards FROM citus_shards"
        " WHERE table_name = $1::regclass GROUP BY 1 ORDER BY 1",
        DISTRIBUTED_TABLE,
    )
    return {row["node"]: row["shards"] for row in rows}
