"""The ClickHouse anchor of benchmarks/scale_ingest.py: the same lines in a MergeTree table, in
process (chdb), with its rows/s, its bytes on disk and the keyword pages of the hot project.

How it measures, and how to run it: docs/benchmarks.md, "scale_clickhouse".
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import scale_data as sd
from benchmarks import timing
from benchmarks.cpu import self_cpu
from benchmarks.results import percentiles

__all__ = ["clickhouse_missing", "load_clickhouse"]

CH_TABLE = """
CREATE TABLE bench.logs (
    project_id UUID,
    id UUID DEFAULT generateUUIDv7(),
    timestamp DateTime64(6, 'UTC') CODEC(Delta(8), ZSTD(1)),
    instance String CODEC(ZSTD(1)),
    level LowCardinality(String),
    source LowCardinality(String),
    raw_log String CODEC(ZSTD(1)),
    message Nullable(String) CODEC(ZSTD(1)),
    attributes JSON CODEC(ZSTD(1)),
    deployment_id UUID,
    function_id UUID,
    execution_id Nullable(String) CODEC(ZSTD(1)),
    INDEX idx_deployment_id deployment_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_function_id function_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_instance instance TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_level level TYPE set(0) GRANULARITY 4,
    INDEX idx_source source TYPE set(0) GRANULARITY 4
) ENGINE = MergeTree
PARTITION BY toYYYYMMDD(timestamp)
ORDER BY (project_id, function_id, timestamp)
"""
_CH_SCHEMA = (
    "timestamp String, level Nullable(String), source Nullable(String),"
    " instance Nullable(String), raw_log String, message Nullable(String), attributes JSON,"
    " deployment_id UUID, function_id UUID, execution_id Nullable(String)"
)
_CH_INSERT = (
    "INSERT INTO bench.logs (project_id, timestamp, instance, level, source, raw_log, message,"
    " attributes, deployment_id, function_id, execution_id)"
    " SELECT toUUID('{project}'), parseDateTime64BestEffort(timestamp, 6, 'UTC'),"
    " ifNull(instance, ''), ifNull(level, 'info'), ifNull(source, 'function'), raw_log, message,"
    " attributes, deployment_id, function_id, execution_id"
    f" FROM format(JSONEachRow, '{_CH_SCHEMA}', $${{body}}$$)"
    " SETTINGS max_query_size = 67108864"
)
_CH_PAGE = (
    "SELECT * FROM bench.logs WHERE project_id = '{project}'{where}"
    " ORDER BY timestamp DESC LIMIT 20"
)


def clickhouse_missing() -> str | None:
    """Why the ClickHouse part cannot run here, or None."""
    try:
        import chdb  # type: ignore[import-not-found,unused-ignore]  # noqa: F401
    except ImportError:
        return "chdb is not installed (pip install -e '.[bench]')"
    return None


def load_clickhouse(
    data: sd.Data, slices: timing.Slices, iterations: int, warmup: int
) -> dict[str, Any]:
    """Insert every body into a MergeTree table; its size on disk; pages of the hot project.

    One client: chdb runs one query at a time in a process, so more threads only wait (4
    threads measured no faster than 1, at 200k lines)."""
    from chdb import session

    folder = Path(tempfile.mkdtemp(prefix="chdb-", dir=sd.CACHE))
    # chdb is untyped: mypy --strict sees it only where the bench extra is installed.
    sessions: Any = session
    ch = sessions.Session(str(folder))
    try:
        ch.query("CREATE DATABASE bench")
        ch.query(CH_TABLE)
        cpu = self_cpu()
        slices.start()
        for batch, body in data.bodies():
            project = data.projects[batch.project].id
            ch.query(_CH_INSERT.format(project=project, body=body.decode()))
            slices.add(batch.lines)
        out = slices.summary() | {"cpu_s": self_cpu() - cpu}
        (row,) = _ch_rows(
            ch,
            "SELECT sum(rows) AS rows, sum(bytes_on_disk) AS bytes, count() AS parts"
            " FROM system.parts WHERE database = 'bench' AND table = 'logs' AND active",
        )
        if int(row["rows"]) != data.spec.lines:
            raise RuntimeError(f"ClickHouse holds {row['rows']} rows of {data.spec.lines:,}")
        out |= {"bytes": int(row["bytes"]), "parts": int(row["parts"])}
        out["pages"] = _ch_pages(ch, data, iterations, warmup)
        return out
    finally:
        ch.close()
        shutil.rmtree(folder, ignore_errors=True)


def _ch_rows(ch: Any, sql: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(ch.query(sql, "JSON").bytes())["data"]
    return rows


def _ch_pages(ch: Any, data: sd.Data, iterations: int, warmup: int) -> dict[str, Any]:
    out = {}
    queries = {
        f"keyword, {label}": f" AND (raw_log ILIKE '%{word}%' OR message ILIKE '%{word}%')"
        for label, word in sd.KEYWORDS.items()
    } | {"no filter": ""}
    for name, where in queries.items():
        sql = _CH_PAGE.format(project=data.hot.id, where=where)
        rows = len(ch.query(sql, "JSONEachRow").bytes().splitlines())
        for _ in range(warmup):
            ch.query(sql, "JSONEachRow")
        samples = []
        for _ in range(iterations):
            started = time.perf_counter()
            ch.query(sql, "JSONEachRow")
            samples.append(time.perf_counter() - started)
        out[name] = {"rows": rows, **percentiles(samples)}
    return out
