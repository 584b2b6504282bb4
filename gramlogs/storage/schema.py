"""Schema versions: ``schema.sql`` creates version 1; ``migrations/NNNN_*.sql`` upgrade in place.

``migrate`` is idempotent and safe to run from several processes at once (an advisory lock
serialises them); each step runs in its own transaction together with its version record.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

__all__ = ["Step", "current_version", "migrate", "steps"]

_LOCK_KEY = 0x6772616D6C6F6773  # "gramlogs"
_STEP_RE = re.compile(r"(\d{4})_[a-z0-9_]+\.sql\Z")


@dataclass(frozen=True)
class Step:
    version: int
    name: str
    sql: str


def _sql_dir() -> Path:
    # Installed wheels carry the files in gramlogs/sql/; a source checkout has them at the top.
    package = Path(__file__).parent.parent
    packaged = package / "sql"
    return packaged if (packaged / "schema.sql").exists() else package.parent


def steps() -> list[Step]:
    """Every schema step in order: the baseline, then each migration file."""
    root = _sql_dir()
    found = [Step(1, "schema.sql", (root / "schema.sql").read_text())]
    for path in sorted((root / "migrations").glob("*.sql")):
        m = _STEP_RE.match(path.name)
        if m is None:
            raise RuntimeError(f"migration file {path.name} is not named NNNN_name.sql")
        found.append(Step(int(m.group(1)), path.name, path.read_text()))
    versions = [s.version for s in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"schema steps must be numbered 1, 2, 3, ... without gaps: {versions}")
    return found


async def current_version(conn: asyncpg.Connection) -> int:
    exists = await conn.fetchval("SELECT to_regclass('gramlogs_schema') IS NOT NULL")
    if not exists:
        return 0
    version: int = await conn.fetchval("SELECT coalesce(max(version), 0) FROM gramlogs_schema")
    return version


async def migrate(conn: asyncpg.Connection) -> list[Step]:
    """Apply the steps the database lacks; return those applied."""
    applied: list[Step] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS gramlogs_schema ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        have = await current_version(conn)
        for step in steps():
            if step.version <= have:
                continue
            async with conn.transaction():
                await conn.execute(step.sql)
                await conn.execute(
                    "INSERT INTO gramlogs_schema (version, name) VALUES ($1, $2)",
                    step.version,
                    step.name,
                )
            applied.append(step)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    return applied
