"""Which PostgreSQL the server uses: the configured one, or one this process starts locally."""

from __future__ import annotations

import atexit

from gramlogs.core.config import Config
from gramlogs.local import cluster
from gramlogs.local.embedded import embedded_url

__all__ = ["resolve_url"]


def resolve_url(config: Config) -> str:
    """The configured database, or the embedded one (or local Citus cluster) when none is.

    Nodes of the local cluster that this process starts are stopped when it exits.
    """
    if config.database_url:
        return config.database_url
    if config.local_citus_workers:
        local = cluster.LocalCluster(config.data_dir / "citus", config.local_citus_workers)
        atexit.register(local.stop_started)
        return local.start()
    return embedded_url(config.data_dir)
