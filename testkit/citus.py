"""Citus for development and CI: built once per environment from a source tarball into the
embedded PostgreSQL, and a local cluster for the test suite.

``python -m testkit.citus build`` builds and installs Citus when it is missing, from the tarball
named by ``CITUS_SOURCE`` (about 2 minutes on 2 cores), and does nothing when it is installed.
Users install Citus from their platform's packages instead (docs/storage.md).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg

from gramlogs.local.cluster import HOST, LocalCluster, citus_installed, embedded_bin
from testkit import postgres

__all__ = ["CitusServer", "build", "local_cluster", "prepare_database"]

# The embedded PostgreSQL was compiled by a newer gcc than Debian 12's: its pg_config names
# -Wmissing-variable-declarations, which gcc 12 rejects, so the flags are given in full.
_CFLAGS = (
    "-O2 -fPIC -fvisibility=hidden -std=gnu99 -fno-strict-aliasing -fwrapv"
    " -fexcess-precision=standard -Wno-format-truncation -Wno-stringop-truncation"
)


def build(source: Path | None) -> str:
    """Install Citus into the embedded PostgreSQL unless it is there; what was done."""
    if citus_installed():
        return "Citus is installed in the embedded PostgreSQL"
    if source is None or not source.is_file():
        raise SystemExit(
            "Citus is not installed and CITUS_SOURCE names no tarball: set CITUS_SOURCE to a"
            " Citus source tarball (v14, from github.com/citusdata/citus) to build it"
        )
    pg_config = embedded_bin() / "pg_config"
    with tempfile.TemporaryDirectory(prefix="gramlogs-citus-build-") as tmp:
        with tarfile.open(source) as archive:
            archive.extractall(tmp, filter="data")
        (top,) = [p for p in Path(tmp).iterdir() if p.is_dir()]
        log = Path(tmp) / "build.log"
        without = ["--without-libcurl", "--without-lz4", "--without-zstd"]
        steps = [
            ["./configure", f"PG_CONFIG={pg_config}", *without],
            ["make", f"-j{os.cpu_count() or 2}", f"CFLAGS={_CFLAGS}"],
            ["make", "install"],
        ]
        for step in steps:
            with log.open("a") as out:
                done = subprocess.run(step, cwd=top, stdout=out, stderr=subprocess.STDOUT)
            if done.returncode != 0:
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
                raise SystemExit(f"building Citus failed at {' '.join(step[:2])}:\n{tail}")
    return f"built and installed Citus from {source.name}"


class CitusServer:
    """A local cluster the tests create their databases on (each on every node)."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self.url = f"postgresql://postgres@{HOST}:{cluster.coordinator.port}/postgres"
        self.workers = [(HOST, node.port) for node in cluster.worker_nodes()]


@contextlib.contextmanager
def local_cluster(workers: int = 2) -> Iterator[CitusServer]:
    """A coordinator and ``workers`` workers in a new temporary folder, deleted afterwards."""
    root = Path(tempfile.mkdtemp(prefix="gramlogs-citus-"))
    cluster = LocalCluster(root, workers)
    try:
        cluster.start()
        yield CitusServer(cluster)
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


async def prepare_database(
    coordinator_url: str, workers: list[tuple[str, int]], name: str, *, create: bool
) -> None:
    """Create (or drop, when not ``create``) database ``name`` on every node; when created,
    with the citus extension everywhere and the workers known to the coordinator."""
    host_urls = [coordinator_url] + [f"postgresql://postgres@{h}:{p}/postgres" for h, p in workers]
    for url in host_urls:
        if create:
            await postgres.execute_on(url, f"CREATE DATABASE {name}")
        else:
            await postgres.execute_on(url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    if not create:
        return
    for url in reversed(host_urls):  # workers first: the coordinator connects to them
        conn = await asyncpg.connect(url.rsplit("/", 1)[0] + "/" + name)
        try:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS citus")
            if url == coordinator_url:
                port = int(coordinator_url.rsplit(":", 1)[1].split("/")[0])
                await conn.execute("SELECT citus_set_coordinator_host($1, $2)", HOST, port)
                for host, worker_port in workers:
                    await conn.execute("SELECT citus_add_node($1, $2)", host, worker_port)
        finally:
            await conn.close()


def main(argv: list[str]) -> int:
    if argv[:1] != ["build"]:
        print("usage: python -m testkit.citus build", file=sys.stderr)
        return 2
    source = os.environ.get("CITUS_SOURCE")
    print(build(Path(source) if source else None))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
