"""Every endpoint of the HTTP API, once: app.py routes them and openapi.py documents them.

Each is declared beside its handler (web/endpoint.py says what a declaration holds). The
viewer's files are routed by app.py too but are no API operation, so not listed here.
"""

from __future__ import annotations

from gramlogs.web import export, gram, histogram, ingest, loki, ops, otlp, poly, tail
from gramlogs.web.endpoint import Endpoint

__all__ = ["ENDPOINTS"]

ENDPOINTS: tuple[Endpoint, ...] = (
    # Gram dialect
    gram.ENDPOINT,
    tail.ENDPOINT,
    export.ENDPOINT,
    histogram.ENDPOINT,
    # Ingestion
    ingest.ENDPOINT,
    otlp.ENDPOINT,
    # Poly dialect
    *poly.ENDPOINTS,
    # Loki's API (Grafana, log shippers)
    *loki.ENDPOINTS,
    # Operability
    *ops.ENDPOINTS,
)
