"""Sealing through crashes: a sealing process killed with SIGKILL inside or right after a seal's
or a merge's transaction, or PostgreSQL killed while sealing runs, loses no line and doubles
none, and sealing afterwards completes.

Each line is checked where it is stored: the ids of ``logs`` and the ids decoded from every
block of ``log_sealed`` together hold each seeded id exactly once, and a page walk returns
every line, in order, as it was seeded.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import psutil  # type: ignore[import-untyped,unused-ignore]  # types-psutil: a dev dependency
import pytest

from gramlogs.core.config import Config
from gramlogs.storage import codec, maintenance, schema, sealed, tenants
from gramlogs.storage.pages import LogFilter, PageRequest, fetch_page
from testkit.postgres import OwnPostgres
from testkit.postgres import own_postgres as own_postgres_server
from tests._support import connection, small_blocks, until
from tests.test_sealing import NOW, Line, counts, make_lines, seal, seed

LINES = 2000
# Sealed in-process first, blocks of 8 lines: small blocks for the process's merges.
PRESEALED_BLOCKS = 60
# The process's blocks: 32 lines, so blocks under 16 lines are merged (the 8-line ones).
BLOCK_ROWS = 32


async def _project(conn: asyncpg.Connection) -> uuid.UUID:
    org = await tenants.create_organization(conn, f"crash-{uuid.uuid4().hex[:8]}")
    return await tenants.create_project(conn, org, "crash")


async def _where_stored(conn: asyncpg.Connection, project_id: uuid.UUID) -> Counter[uuid.UUID]:
    """How many times each id is stored: as a row, or as a line of a block."""
    found: Counter[uuid.UUID] = Counter()
    for row in await conn.fetch("SELECT id FROM logs WHERE project_id = $1", project_id):
        found[row["id"]] += 1
    blocks = await conn.fetch(
        "SELECT function_id, lo, hi, lines, keys FROM log_sealed WHERE project_id = $1",
        project_id,
    )
    for block in blocks:
        keys = codec.decode_keys(block["keys"], block["function_id"])
        line_ids = [keys.id(i) for i in range(keys.lines)]
        assert (keys.lines, line_ids[0], line_ids[-1]) == (block["lines"], block["lo"], block["hi"])
        found.update(line_ids)
    return found


async def _walk(conn: asyncpg.Connection, project_id: uuid.UUID) -> list[tuple[object, ...]]:
    """Every line of the project, newest first, a page of 250 at a time."""
    walked: list[tuple[object, ...]] = []
    cursor = None
    while True:
        req = PageRequest(LogFilter(project_id), 250, cursor=cursor)
        page = await fetch_page(conn, req)
        walked += [tuple(row[:12]) for row in page.rows]
        if not page.has_more:
            return walked
        cursor = page.rows[-1][0]


async def _assert_each_line_once(
    conn: asyncpg.Connection, project_id: uuid.UUID, lines: list[Line]
) -> None:
    stored = await _where_stored(conn, project_id)
    seeded = {line.id for line in lines}
    missing = sorted(seeded - set(stored))
    doubled = sorted(i for i, n in stored.items() if n > 1)
    unknown = sorted(set(stored) - seeded)
    assert (missing, doubled, unknown) == ([], [], [])
    newest_first = sorted(lines, key=lambda line: -line.id.int)
    assert await _walk(conn, project_id) == [line.row(project_id) for line in newest_first]


def _run_sealer(url: str, kill: str, after: int) -> int:
    command = [sys.executable, "-m", "testkit.crash_seal", url, "--kill", kill]
    command += ["--after", str(after), "--block-rows", str(BLOCK_ROWS), "--now", NOW.isoformat()]
    return subprocess.run(command, timeout=300, check=False).returncode


async def _blocks(conn: asyncpg.Connection, project_id: uuid.UUID) -> int:
    count: int = await conn.fetchval(
        "SELECT count(*) FROM log_sealed WHERE project_id = $1", project_id
    )
    return count


# What is stored when the process dies at the 4th time it reaches the point (after=3). Its
# first round seals 4 blocks of 32 lines, then merges 4 runs of four 8-line blocks into one:
# an open transaction's work is gone, a committed one's is kept.
PRESEALED = PRESEALED_BLOCKS * 8
KILLS = {
    "seal-open": (LINES - PRESEALED - 3 * 32, PRESEALED + 3 * 32, PRESEALED_BLOCKS + 3),
    "seal-committed": (LINES - PRESEALED - 4 * 32, PRESEALED + 4 * 32, PRESEALED_BLOCKS + 4),
    "merge-open": (LINES - PRESEALED - 4 * 32, PRESEALED + 4 * 32, PRESEALED_BLOCKS + 4 - 3 * 3),
    "merge-committed": (
        LINES - PRESEALED - 4 * 32,
        PRESEALED + 4 * 32,
        PRESEALED_BLOCKS + 4 - 4 * 3,
    ),
}


@pytest.mark.parametrize("kill", list(KILLS))
async def test_a_sealer_killed_mid_seal_or_merge_loses_and_doubles_no_line(fresh_database, kill):
    lines = make_lines(25, LINES)
    async with asyncpg.create_pool(fresh_database, min_size=1, max_size=2) as pool:
        async with connection(pool) as conn:
            project_id = await _project(conn)
        await seed(pool, project_id, lines)
        with small_blocks(8):
            await seal(pool, project_id, PRESEALED_BLOCKS)

        assert await asyncio.to_thread(_run_sealer, fresh_database, kill, 3) == -signal.SIGKILL

        async with connection(pool) as conn:
            await _assert_each_line_once(conn, project_id, lines)
            blocks = await _blocks(conn, project_id)
        assert (*await counts(pool, project_id), blocks) == KILLS[kill]

        assert await asyncio.to_thread(_run_sealer, fresh_database, "none", 0) == 0

        assert await counts(pool, project_id) == (0, LINES)
        async with connection(pool) as conn:
            await _assert_each_line_once(conn, project_id, lines)


# -- PostgreSQL killed ----------------------------------------------------------------------------


@pytest.fixture
def own_postgres() -> Iterator[OwnPostgres]:
    with own_postgres_server("gramlogs-test-sealcrash-") as pg:
        yield pg


def _postmaster(pg: OwnPostgres) -> psutil.Process:
    pid = int((Path(pg.server.pgdata) / "postmaster.pid").read_text().split()[0])
    return psutil.Process(pid)


def _alive(process: psutil.Process) -> bool:
    try:
        return bool(process.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


class _Gate:
    """Holds the sealer inside the transaction of its ``at``-th block, once, block written
    and not committed, until :meth:`release`."""

    def __init__(self, at: int) -> None:
        self.at = at
        self.writes = 0
        self.holding = asyncio.Event()
        self._released = asyncio.Event()
        self._write = sealed.write

    async def write(self, conn: asyncpg.Connection, blocks: Any) -> None:
        await self._write(conn, blocks)
        self.writes += 1
        if self.writes == self.at:
            self.holding.set()
            await self._released.wait()

    def release(self) -> None:
        self._released.set()


async def test_postgres_killed_while_sealing_loses_and_doubles_no_line_and_sealing_resumes(
    own_postgres, monkeypatch
):
    url = own_postgres.url
    lines = make_lines(26, LINES)
    async with asyncpg.create_pool(url, min_size=1, max_size=2) as pool:
        async with connection(pool) as conn:
            await schema.migrate(conn)
            project_id = await _project(conn)
        await seed(pool, project_id, lines)

    gate = _Gate(at=5)
    monkeypatch.setattr(sealed, "write", gate.write)
    seen: dict[str, object] = {}

    async def watch() -> None:
        # What the database holds, as often as it answers; the waits below read it.
        while True:
            try:
                conn = await asyncpg.connect(url, timeout=5)
                try:
                    seen["counts"] = (
                        await conn.fetchval(
                            "SELECT count(*) FROM logs WHERE project_id = $1", project_id
                        ),
                        await conn.fetchval(
                            "SELECT coalesce(sum(lines), 0) FROM log_sealed WHERE project_id = $1",
                            project_id,
                        ),
                    )
                finally:
                    await conn.close()
            # Whatever the client raises while the server dies (seen once: asyncpg's
            # InternalClientError closing a connection broken mid-query): try again.
            except Exception as e:
                seen["counts"] = repr(e)
            await asyncio.sleep(0.05)

    with small_blocks(16):
        config = Config(database_url=url, seal_interval_s=0.05)
        sealer = asyncio.create_task(maintenance.seal_forever(url, config))
        watcher = asyncio.create_task(watch())
        try:
            await until(gate.holding.is_set, state=lambda: (sealer, seen))
            # Four blocks committed, the fifth written in an open transaction, rows left.
            conn = await asyncpg.connect(url)
            try:
                rows = await conn.fetchval(
                    "SELECT count(*) FROM logs WHERE project_id = $1", project_id
                )
                assert (rows, await _blocks(conn, project_id)) == (LINES - 4 * 16, 4)
            finally:
                await conn.close()

            postmaster = _postmaster(own_postgres)
            children = postmaster.children(recursive=True)
            postmaster.send_signal(signal.SIGKILL)
            # Reaped (it may be this process's child): a new postmaster refuses to start while
            # the old pid exists, zombie or not.
            await asyncio.to_thread(postmaster.wait, 60)
            # Its processes see it gone and exit; a new postmaster needs them gone too.
            await until(lambda: not any(map(_alive, children)), state=lambda: children)
            gate.release()
            await asyncio.to_thread(own_postgres.start)
            await until(
                lambda: seen.get("counts") == (0, LINES), state=lambda: (sealer, watcher, seen)
            )
            assert not sealer.done(), sealer
        finally:
            sealer.cancel()
            watcher.cancel()
            await asyncio.gather(sealer, watcher, return_exceptions=True)

    conn = await asyncpg.connect(url)
    try:
        await _assert_each_line_once(conn, project_id, lines)
    finally:
        await conn.close()
