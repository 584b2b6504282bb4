"""A line's Loki labels: which columns they are, and where the other labels are kept.

Every line has the stream labels of its columns (:data:`COLUMN_LABELS`): ``level`` and
``detected_level`` (both the line's level, so that Grafana colours the volume bars either way),
``source``, ``instance``, ``function_id``, ``deployment_id``, and ``service_name``, which Grafana's
Logs Drilldown groups by: the line's own service name when it has one, else its function id.

A pushed line's labels with no column are kept in its attributes, under :data:`LABELS_KEY` (an
object of strings), its structured metadata at the top level of the attributes beside them. So
``{"labels": {"app": "web"}, "trace_id": "…"}`` reads back as the stream label ``app="web"``
and, with ``categorize-labels``, the structured metadata ``trace_id``. A line stored by another
door (logs.ingest, OTLP) has no ``labels`` object: its string attributes are its structured
metadata.
"""

from __future__ import annotations

from typing import Any

import msgspec

from gramlogs.storage.rows import StoredRow

__all__ = [
    "COLUMN_LABELS",
    "INDEXED_LABELS",
    "LABELS_KEY",
    "SERVICE_KEYS",
    "line_labels",
    "service_name",
    "stream_labels",
    "structured_metadata",
]

# The labels every line has, from its columns.
COLUMN_LABELS = (
    "level",
    "detected_level",
    "source",
    "instance",
    "function_id",
    "deployment_id",
    "service_name",
)
# The labels a selector's "=" reads through an index (storage.filters.EQUALITY_FILTERS); the
# others, and the other operators, are matched line by line within the window.
INDEXED_LABELS = ("level", "detected_level", "source", "instance", "function_id", "deployment_id")
# Where a pushed line keeps its labels that have no column.
LABELS_KEY = "labels"
# A line's own service name, first found first: a pushed service_name label, then OTLP's
# attribute names for it.
SERVICE_KEYS = ("service_name", "service.name")

_decoder = msgspec.json.Decoder()


def _attributes(row: StoredRow) -> dict[str, Any]:
    text = row[7]
    if not text or text == "{}":
        return {}
    value = _decoder.decode(text)
    return value if isinstance(value, dict) else {}


def _pushed_labels(attributes: dict[str, Any]) -> dict[str, str]:
    labels = attributes.get(LABELS_KEY)
    if not isinstance(labels, dict):
        return {}
    return {k: v for k, v in labels.items() if isinstance(v, str)}


def service_name(row: StoredRow, attributes: dict[str, Any] | None = None) -> str:
    """The line's service name: its own when it has one, else its function id."""
    attributes = _attributes(row) if attributes is None else attributes
    pushed = _pushed_labels(attributes)
    for key in SERVICE_KEYS:
        value = pushed.get(key, attributes.get(key))
        if isinstance(value, str) and value:
            return value
    return str(row[10])


def stream_labels(row: StoredRow) -> dict[str, str]:
    """The line's stream labels: its columns', then its pushed labels (a column wins)."""
    return line_labels(row)[0]


def structured_metadata(row: StoredRow) -> dict[str, str]:
    """The line's structured metadata: its attributes with a string value, the pushed labels'
    object left out (they are stream labels)."""
    return _metadata(_attributes(row))


def line_labels(row: StoredRow) -> tuple[dict[str, str], dict[str, str]]:
    """The line's stream labels and structured metadata, its attributes decoded once (a
    query's read needs both for every line)."""
    attributes = _attributes(row)
    labels = _pushed_labels(attributes)
    labels.update(
        level=row[3],
        detected_level=row[3],
        source=row[4],
        instance=row[2],
        function_id=str(row[10]),
        deployment_id=str(row[9]),
        service_name=service_name(row, attributes),
    )
    return labels, _metadata(attributes)


def _metadata(attributes: dict[str, Any]) -> dict[str, str]:
    return {
        k: v
        for k, v in attributes.items()
        if isinstance(v, str) and k != LABELS_KEY and k not in SERVICE_KEYS
    }
