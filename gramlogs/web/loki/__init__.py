"""Loki's HTTP API, so that Grafana's stock Loki data source and Loki's log shippers work
unchanged: the query API over a LogQL subset (logql.py), the push API, and the live tail.

Labels are the line's columns and its pushed labels (labels.py); the key and project come the
ways Loki's clients send them (auth.py); errors are plain text, as Loki's are (observe.py).
"""

from __future__ import annotations

from gramlogs.web.endpoint import Endpoint
from gramlogs.web.loki import browse, drilldown, push, query

__all__ = ["ENDPOINTS"]

ENDPOINTS: tuple[Endpoint, ...] = (
    *query.ENDPOINTS,
    *browse.ENDPOINTS,
    *drilldown.ENDPOINTS,
    push.ENDPOINT,
)
