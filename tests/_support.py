"""Helpers for tests that need their own application settings or a real server process."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from gramlogs.app import create_app
from gramlogs.config import Config


@contextlib.asynccontextmanager
async def app_client(database_url: str, **settings: object) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process client on an application of its own, with ``settings`` over the defaults."""
    settings = {"pool_min": 1, "pool_max": 4, **settings}
    app = create_app(Config(database_url=database_url, **settings))  # type: ignore[arg-type]
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gramlogs.test") as c:
            yield c


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LiveServer:
    process: subprocess.Popen[bytes]
    port: int
    stdout: Path
    stderr: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def logs(self) -> str:
        return self.stdout.read_text(errors="replace") + self.stderr.read_text(errors="replace")

    def raw(self, data: bytes, *, wait: float = 10.0) -> bytes:
        """Send ``data`` on a fresh connection; what came back before the server closed it."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=wait) as s:
            s.sendall(data)
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks)


@contextlib.contextmanager
def live_server(database_url: str, workdir: Path, **env: str) -> Iterator[LiveServer]:
    """``gramlogs serve`` in a subprocess on a free loopback port; stopped (SIGTERM) at the end."""
    port = free_port()
    environ = {
        **os.environ,
        "GRAMLOGS_DATABASE_URL": database_url,
        "GRAMLOGS_HOST": "127.0.0.1",
        "GRAMLOGS_PORT": str(port),
        "GRAMLOGS_POOL_MIN": "1",
        "GRAMLOGS_POOL_MAX": "4",
        **env,
    }
    out, err = workdir / f"server-{port}.out", workdir / f"server-{port}.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "gramlogs", "serve"], env=environ, stdout=stdout, stderr=stderr
        )
    server = LiveServer(process, port, out, err)
    try:
        _wait_until_up(server)
        yield server
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_until_up(server: LiveServer, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"gramlogs serve exited early:\n{server.logs()}")
        try:
            if httpx.get(server.base_url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"gramlogs serve did not come up in {limit} s:\n{server.logs()}")


async def wait_for_lock_waiters(pool: asyncpg.Pool, count: int = 1, limit: float = 30.0) -> None:
    """Wait until ``count`` gramlogs sessions are blocked on a lock (a held-up request)."""
    import asyncio

    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        waiting = await pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE application_name = 'gramlogs' AND wait_event_type = 'Lock'"
            " AND datname = current_database()"
        )
        if waiting >= count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"no {count} gramlogs request(s) blocked on a lock within {limit} s")


def error(r: httpx.Response) -> dict[str, Any]:
    """The error body with its (random) id checked and removed."""
    body = r.json()
    assert isinstance(body.pop("id"), str)
    return body


def bad_request(message: str, name: str = "bad_request") -> dict[str, Any]:
    return {"name": name, "message": message, "temporary": False, "timeout": False, "fault": False}
