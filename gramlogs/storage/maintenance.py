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
from datetime import datetime

import asyncpg

from gramlogs.core.config import Config
from gramlogs.storage import blocks, idempotency, journal, partitions, retention

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
