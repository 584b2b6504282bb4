"""``gramlogs serve`` in a subprocess on a free loopback port, as a user runs it: the one runner
of the tests and the benchmarks."""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from testkit.ports import HOST, free_port

__all__ = ["LiveServer", "gramlogs_server", "live_server"]

_ROOT = Path(__file__).resolve().parent.parent
_started = itertools.count()


@dataclass
class LiveServer:
    process: subprocess.Popen[bytes]
    port: int
    stdout: Path
    stderr: Path

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def worker_pids(self) -> list[int]:
        """The processes that serve: the workers, or the server itself when it has none."""
        import psutil  # type: ignore[import-untyped,unused-ignore]

        children = psutil.Process(self.process.pid).children(recursive=True)
        return [c.pid for c in children] or [self.process.pid]

    def rss_mib(self) -> float:
        """Resident memory of the server and all its worker processes, in MiB (NaN once gone)."""
        import psutil  # type: ignore[import-untyped,unused-ignore]

        try:
            root = psutil.Process(self.process.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return float("nan")
        total = 0
        for p in procs:
            with contextlib.suppress(psutil.Error):
                total += p.memory_info().rss
        return total / 2**20

    def peak_rss_mib(self) -> dict[str, float]:
        """Peak resident memory (VmHWM) of the server and each worker process, in MiB."""
        import psutil  # type: ignore[import-untyped,unused-ignore]

        out: dict[str, float] = {}
        try:
            root = psutil.Process(self.process.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return out
        for p in procs:
            with contextlib.suppress(OSError, psutil.Error):
                for line in Path(f"/proc/{p.pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        out[f"pid{p.pid}"] = int(line.split()[1]) / 1024
        return out

    def logs(self) -> str:
        return self.stdout.read_text(errors="replace") + self.stderr.read_text(errors="replace")

    def raw(self, data: bytes, *, wait: float = 10.0) -> bytes:
        """Send ``data`` on a fresh connection; what came back before the server closed it."""
        with socket.create_connection((HOST, self.port), timeout=wait) as s:
            s.sendall(data)
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks)


@contextlib.contextmanager
def live_server(
    database_url: str,
    workdir: Path | None = None,
    *,
    module: str = "gramlogs",
    port: int | None = None,
    root: Path | None = None,
    small_pool: bool = True,
    settings: Mapping[str, str] | None = None,
    **env: str,
) -> Iterator[LiveServer]:
    """``gramlogs serve`` on ``database_url``, ready (``/healthz`` answers) when this yields;
    its output in ``workdir`` (by default a temporary folder, removed after); stopped with
    SIGTERM (then SIGKILL) on the way out. ``settings`` and ``env`` hold more ``GRAMLOGS_*``
    settings.
    ``module`` is what ``python -m`` runs with the argument ``serve``: another entry point of
    the same command line, such as ``testkit.crash``, or ``testkit.bare``. ``port``: a port of
    the caller's (another server on the same port after this one, as a restart is seen by its
    clients); a free one by default. ``root``: the checkout whose code runs (another one's, to
    compare before and after); this one by default. ``small_pool``: one to four connections a
    worker, so that many servers fit on one PostgreSQL; False (the benchmarks) keeps the
    defaults a user gets."""
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gramlogs-")))
        yield stack.enter_context(
            _serve(
                database_url,
                workdir,
                module,
                port,
                root or _ROOT,
                small_pool,
                {**(settings or {}), **env},
            )
        )


@contextlib.contextmanager
def _serve(
    database_url: str,
    workdir: Path,
    module: str,
    port: int | None,
    root: Path,
    small_pool: bool,
    env: dict[str, str],
) -> Iterator[LiveServer]:
    port = free_port() if port is None else port
    pool = {"GRAMLOGS_POOL_MIN": "1", "GRAMLOGS_POOL_MAX": "4"} if small_pool else {}
    environ = {
        **os.environ,
        "GRAMLOGS_DATABASE_URL": database_url,
        "GRAMLOGS_HOST": HOST,
        "GRAMLOGS_PORT": str(port),
        **pool,
        # Tests and benchmarks send many bad keys from one address on purpose.
        "GRAMLOGS_AUTH_FAILURES_PER_MINUTE": "0",
        # The checkout, so that a module of testkit/ runs wherever the caller stands.
        "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])),
        **env,
    }
    # Numbered: servers started one after another on one port keep their own logs.
    name = f"server-{port}-{next(_started)}"
    out, err = workdir / f"{name}.out", workdir / f"{name}.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            # Run from the checkout: ``python -m`` puts the working directory first on the path.
            [sys.executable, "-m", module, "serve"],
            env=environ,
            stdout=stdout,
            stderr=stderr,
            cwd=root,
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
            if httpx.get(server.url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"gramlogs serve did not come up in {limit} s:\n{server.logs()}")


@contextlib.contextmanager
def gramlogs_server(
    database_url: str, *, workers: int = 1, settings: Mapping[str, str] | None = None
) -> Iterator[LiveServer]:
    """``gramlogs serve`` as a user runs it (the default pool), quiet but for warnings: what the
    benchmarks measure. ``settings`` are more ``GRAMLOGS_*`` variables (docs/settings.md)."""
    env = {"GRAMLOGS_WORKERS": str(workers), "GRAMLOGS_LOG_LEVEL": "warning", **(settings or {})}
    with live_server(database_url, small_pool=False, settings=env) as server:
        yield server
