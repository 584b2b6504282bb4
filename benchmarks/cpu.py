"""CPU seconds, read from /proc: of a server and its worker processes, of this process (the
benchmark's clients), and of a database's backends; what a benchmark's figures cost."""

from __future__ import annotations

import os
from pathlib import Path

import asyncpg

__all__ = ["CpuMeter", "self_cpu"]

_CLK = os.sysconf("SC_CLK_TCK")


def _cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _CLK


def _tree_cpu(root: int) -> float:
    """CPU seconds of a process and its children (uvicorn's worker processes)."""
    total = _cpu(root)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == root:
            total += _cpu(int(stat.parent.name))
    return total


def self_cpu() -> float:
    """CPU seconds of this process (the clients)."""
    t = os.times()
    return t.user + t.system


class CpuMeter:
    """CPU seconds of a server process, of this process, and of the database's backends."""

    def __init__(self, admin: asyncpg.Connection, database: str, server_pid: int | None) -> None:
        self.admin, self.database, self.server_pid = admin, database, server_pid

    async def _backends(self) -> dict[int, float]:
        rows = await self.admin.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            self.database,
        )
        return {r["pid"]: _cpu(r["pid"]) for r in rows}

    async def start(self) -> None:
        self._pg = await self._backends()
        self._server = _tree_cpu(self.server_pid) if self.server_pid else 0.0
        self._me = self_cpu()

    async def stop(self) -> dict[str, float]:
        pg = await self._backends()
        return {
            "server": (_tree_cpu(self.server_pid) - self._server) if self.server_pid else 0.0,
            "clients": self_cpu() - self._me,
            "postgres": sum(cpu - self._pg.get(pid, 0.0) for pid, cpu in pg.items()),
        }
