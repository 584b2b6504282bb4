"""Prometheus metrics, served at ``/metrics``: one place that defines every series.

Requests are counted by ``observe.py`` for every route, so a new route needs no code here. Other
modules report through the small functions below (``ingested``, ``rejected``, ...) rather than
touching prometheus-client objects.

With several worker processes each has its own counters; ``gramlogs serve --workers N`` sets
``PROMETHEUS_MULTIPROC_DIR`` before the workers start, so that prometheus-client's multiprocess
mode sums them at scrape time (gauges of live processes only). That variable must be set before
this module is first imported in a process.
"""

from __future__ import annotations

import os

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.exposition import choose_encoder

__all__ = [
    "connection_acquired",
    "connection_released",
    "db_failure",
    "ingested",
    "pool_opened",
    "refused",
    "rejected",
    "render",
    "sealed",
]

# The *_created series double the output and no dashboard of ours reads them.
# prometheus-client leaves this function unannotated.
disable_created_metrics()  # type: ignore[no-untyped-call]

# Route labels are templates ("/functions/server/{id}/logs"), never raw paths, so the number of
# series stays fixed whatever clients send; unknown paths share one label.
UNMATCHED_ROUTE = "<unmatched>"

REQUESTS = Counter(
    "gramlogs_http_requests",
    "HTTP requests answered, by route template, method and status",
    ["route", "method", "status"],
)
LATENCY = Histogram(
    "gramlogs_http_request_duration_seconds",
    "Time from the request's arrival at the application to the end of its response",
    ["route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
IN_FLIGHT = Gauge(
    "gramlogs_http_requests_in_flight",
    "Requests being handled now",
    multiprocess_mode="livesum",
)
REFUSED = Counter(
    "gramlogs_http_refused",
    "Requests refused or connections closed before reaching the application, by reason",
    ["reason"],
)
POOL_SIZE = Gauge(
    "gramlogs_db_pool_connections",
    "Open database connections in the pool",
    multiprocess_mode="livesum",
)
POOL_IN_USE = Gauge(
    "gramlogs_db_pool_connections_in_use",
    "Database connections lent to requests now",
    multiprocess_mode="livesum",
)
POOL_MAX = Gauge(
    "gramlogs_db_pool_max_connections",
    "Most connections the pool may open",
    multiprocess_mode="livesum",
)
DB_FAILURES = Counter(
    "gramlogs_db_failures",
    "Requests answered 503 because of the database, by kind (unavailable, timeout, busy)",
    ["kind"],
)
TAILS_OPEN = Gauge("gramlogs_tails_open", "Live tails streaming now", multiprocess_mode="livesum")
TAIL_WATCHERS = Gauge(
    "gramlogs_tail_watchers",
    "Projects being watched for live tails (each is one read of the journal per poll)",
    multiprocess_mode="livesum",
)
TAIL_ENDS = Counter(
    "gramlogs_tail_ends",
    "Live tails the server ended, by reason (slow, duration, shutdown, revoked)",
    ["reason"],
)
INGESTED = Counter("gramlogs_ingested_lines", "Log lines stored")
SEALED = Counter("gramlogs_sealed_lines", "Log lines sealed into compressed blocks")
SEAL_SECONDS = Counter(
    "gramlogs_seal_seconds",
    "Time spent in sealing runs (reading rows, encoding, writing blocks, merging)",
)
REJECTED = Counter("gramlogs_rejected_lines", "Log lines refused, by reason", ["reason"])


def ingested(lines: int) -> None:
    """Count ``lines`` log lines stored (call once the transaction has committed)."""
    INGESTED.inc(lines)


def sealed(lines: int, seconds: float) -> None:
    SEALED.inc(lines)
    SEAL_SECONDS.inc(seconds)


def rejected(reason: str, lines: int = 1) -> None:
    """Count refused log lines; ``reason`` is a short fixed word (``too_long``, ``disabled``)."""
    REJECTED.labels(reason).inc(lines)


def refused(reason: str) -> None:
    """Count a request turned away by the HTTP server itself (``server.py``)."""
    REFUSED.labels(reason).inc()


def pool_opened(max_size: int) -> None:
    POOL_MAX.set(max_size)


def connection_acquired(pool_size: int) -> None:
    POOL_IN_USE.inc()
    POOL_SIZE.set(pool_size)


def connection_released(pool_size: int) -> None:
    POOL_IN_USE.dec()
    POOL_SIZE.set(pool_size)


def db_failure(kind: str) -> None:
    """Count a 503 caused by the database: ``unavailable``, ``timeout`` or ``busy``."""
    DB_FAILURES.labels(kind).inc()


def tail_opened(new_watcher: bool) -> None:
    TAILS_OPEN.inc()
    if new_watcher:
        TAIL_WATCHERS.inc()


def tail_closed(last_of_watcher: bool) -> None:
    TAILS_OPEN.dec()
    if last_of_watcher:
        TAIL_WATCHERS.dec()


def tail_ended(reason: str) -> None:
    """Count a tail the server ended: ``slow``, ``duration``, ``shutdown`` or ``revoked``."""
    TAIL_ENDS.labels(reason).inc()


def render(accept: str = "") -> tuple[bytes, str]:
    """The exposition of this process (or of all workers in multiprocess mode) and its content
    type: Prometheus text 0.0.4 unless ``accept`` asks for OpenMetrics."""
    encode, content_type = choose_encoder(accept)
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        # prometheus-client leaves this constructor unannotated.
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return encode(registry), content_type
    return encode(REGISTRY), content_type
