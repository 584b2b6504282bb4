"""The server's background upkeep: partitions ahead of time, expired idempotency keys and the
tail journal's old batches (hourly), block summaries of lines stored before schema version 3
(blocks.summarise_pending), and retention when enabled.

Each worker process runs the loop; the maintenance lock (``partitions.maintenance_lock``) lets
one of them do the work and the others skip. A failed run is logged and tried again later.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg

from gramlogs.core import metrics
from gramlogs.core.config import Config
from gramlogs.storage import blocks, idempotency, journal, partitions, retention, sealing

__all__ = [
    "ensure_partitions",
    "expire_idempotency_keys",
    "expire_tail_journal",
    "run_forever",
    "run_retention",
]

logger = logging.getLogger("gramlogs.maintenance")

# Partitions are made a week ahead (partitions_ahead_days), so an hourly look is plenty.
PARTITION_CHECK_S = 3600.0


async def ensure_partitions(
    conn: asyncpg.Connection, config: Config, *, now: datetime | None = None
) -> list[str]:
    created = await partitions.ensure(
        conn,
        default_retention_days=config.retention_days,
        ahead_days=config.partitions_ahead_days,
        width_days=config.partition_days,
        now=now,
    )
    if created:
        shown = created[0] if len(created) == 1 else f"{created[0]} .. {created[-1]}"
        logger.info("created %d logs partition(s): %s", len(created), shown)
    return created


async def expire_idempotency_keys(conn: asyncpg.Connection, config: Config) -> int:
    deleted = await idempotency.delete_expired(conn, hours=config.idempotency_hours)
    if deleted:
        logger.info("deleted %d expired idempotency key(s)", deleted)
    return deleted


async def expire_tail_journal(conn: asyncpg.Connection, config: Config) -> int:
    deleted = await journal.delete_expired(conn, hours=config.tail_resume_hours)
    if deleted:
        logger.info("deleted %d tail journal batch(es) past resuming", deleted)
    return deleted


async def run_retention(conn: asyncpg.Connection, config: Config) -> retention.Report:
    report = await retention.apply_retention(conn, default_days=config.retention_days)
    if report.dropped or report.deleted_rows:
        logger.info(
            "retention: dropped %s, deleted %d row(s) of shorter-lived projects",
            ", ".join(report.dropped) or "no partition",
            report.deleted_rows,
        )
    return report


# One process seals at a time (a session lock on the sealing connection): two would encode
# the same rows, and one of them would find its rows gone.
_SEAL_LOCK = 0x6772616D7365616C  # "gramseal"


async def seal(conn: asyncpg.Connection, *, now: datetime | None = None) -> sealing.Report:
    """One sealing run: due rows sealed, then small blocks merged (the lock taken by the caller
    or not needed)."""
    now = now or datetime.now(UTC)
    report = await sealing.seal_some(conn, now=now)
    merged = await sealing.merge_some(conn)
    report.merged_blocks = merged.merged_blocks
    report.merges = merged.blocks
    return report


async def seal_forever(url: str, config: Config) -> None:
    """Seal every ``seal_interval_s``, and at once again after a run that did all it may; on a
    connection of its own, in one process at a time."""
    while True:
        try:
            async with _connection(url) as conn:
                held = False
                while True:
                    busy = False
                    held = held or await conn.fetchval(
                        "SELECT pg_try_advisory_lock($1)", _SEAL_LOCK
                    )
                    if held:
                        started = time.perf_counter()
                        report = await seal(conn)
                        metrics.sealed(report.sealed_lines, time.perf_counter() - started)
                        busy = (
                            report.blocks >= sealing.MAX_BLOCKS
                            or report.merges >= sealing.MAX_MERGES
                        )
                    if not busy:
                        await asyncio.sleep(config.seal_interval_s)
        except Exception:
            # Whatever a run meets (a connection broken mid-statement can surface as asyncpg's
            # InternalClientError), sealing goes on: a stopped sealer would let rows pile up.
            logger.warning("sealing run failed; trying again later", exc_info=True)
            await asyncio.sleep(config.seal_interval_s)


async def run_forever(url: str, config: Config) -> None:
    """Partitions, expired idempotency keys and tail journal batches at once and hourly;
    retention at once and every ``retention_interval_s``.

    Each run opens a connection of its own rather than borrowing one from the request pool:
    DDL may wait for locks, and requests must never wait for upkeep (nor upkeep for a full pool).
    """
    next_partitions = next_retention = next_summary = time.monotonic()
    while True:
        now = time.monotonic()
        try:
            if now >= next_partitions:
                next_partitions = now + PARTITION_CHECK_S
                async with _connection(url) as conn:
                    await ensure_partitions(conn, config)
                    # An expired key is ignored when looked up: this only reclaims its row.
                    await expire_idempotency_keys(conn, config)
                    await expire_tail_journal(conn, config)
            if now >= next_summary:
                async with _connection(url) as conn:
                    done = await blocks.summarise_pending(conn)
                # Until none is left, a round every second; then an hourly look.
                next_summary = now + (1.0 if done else PARTITION_CHECK_S)
                if done:
                    logger.info("summarised %d line(s) stored before schema version 3", done)
            if config.retention_interval_s and now >= next_retention:
                next_retention = now + config.retention_interval_s
                async with _connection(url) as conn:
                    await run_retention(conn, config)
        except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError, TimeoutError):
            logger.warning("maintenance run failed; trying again later", exc_info=True)
        wake = min(next_partitions, next_summary)
        if config.retention_interval_s:
            wake = min(wake, next_retention)
        await asyncio.sleep(max(wake - time.monotonic(), 1.0))


@contextlib.asynccontextmanager
async def _connection(url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(url, timeout=10, server_settings={"application_name": "gramlogs"})
    try:
        yield conn
    finally:
        await conn.close(timeout=10)
