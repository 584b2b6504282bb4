"""A pushed Loki stream as rows: its labels mapped to columns, once per stream, its entries
checked one by one (docs/ingestion.md, "POST /loki/api/v1/push", says the rules).

- ``function_id`` and ``deployment_id``: the label when it is a uuid; else derived, so that the
  lines of one service group as one function with no gramlogs-specific labels:
  ``function_id = uuid5(NAMESPACE, service_name)`` and ``deployment_id = uuid5(NAMESPACE,
  "deployment:" + function_id)``. A label of either name that is not a uuid stays a pushed
  label.
- ``service_name``: the label, else the first of Loki's service discovery labels
  (:data:`SERVICE_LABELS`, the default of Loki's ``discover_service_name``), else
  ``unknown_service``; always kept among the pushed labels (labels.py reads it there).
- ``level``: the first of :data:`LEVEL_LABELS` whose value is a level or an alias
  (batch.normalise_level); else found in the line (:func:`detected_level`), else ``info``.
- ``source``: the label when it is one of batch.SOURCES (any case), else ``stdout``.
- ``instance``: the first of :data:`INSTANCE_LABELS`, else empty.
- ``execution_id``: the structured metadata's, else the label's.

A label named as the column it became (``level``, ``detected_level``, ``source``,
``instance``, ``execution_id``, a uuid ``function_id`` or ``deployment_id``) is not repeated in
the attributes; the others, aliases included (``host``, ``severity``, ``app``), are kept under
``labels`` (labels.LABELS_KEY), so that a query by them finds the line. Structured metadata is
kept at the top level of the attributes. raw_log is the line; message is None. Timestamps are
nanoseconds; rows hold microseconds (the nanoseconds past the microsecond are dropped).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import msgspec

from gramlogs.core import ids
from gramlogs.storage.batch import (
    MAX_NAME_BYTES,
    MAX_RAW_LOG_BYTES,
    SOURCES,
    BatchBuilder,
    EntryError,
    check_text,
    encode_attributes,
    normalise_level,
)
from gramlogs.web.loki.labels import LABELS_KEY
from gramlogs.web.loki.logproto import LABEL_NAME, Entry

__all__ = [
    "INSTANCE_LABELS",
    "LEVEL_LABELS",
    "NAMESPACE",
    "SERVICE_LABELS",
    "StreamColumns",
    "add_entry",
    "detected_level",
    "stream_columns",
]

# Ours, fixed for good: derived function ids must not change between releases, or a service's
# lines would split into two functions.
NAMESPACE = uuid.UUID("6b1b7c52-3c0e-5d7e-9a51-8f0e2f6c4a10")
# Loki's limits_config.discover_service_name default, in its order.
SERVICE_LABELS = (
    "service",
    "app",
    "application",
    "app_name",
    "name",
    "app_kubernetes_io_name",
    "container",
    "container_name",
    "k8s_container_name",
    "component",
    "workload",
    "job",
    "k8s_job_name",
)
UNKNOWN_SERVICE = "unknown_service"
LEVEL_LABELS = ("level", "detected_level", "severity", "lvl", "loglevel")
INSTANCE_LABELS = ("instance", "host", "hostname", "pod")
EXECUTION_ID = "execution_id"
_DEFAULT_SOURCE = "stdout"
_EPOCH = ids.MIN_TIMESTAMP
_MIN_NS = 0
_MAX_NS = (ids.MAX_TIMESTAMP - _EPOCH) // timedelta(microseconds=1) * 1000


@dataclass(frozen=True, slots=True)
class StreamColumns:
    """What a stream's labels say of each of its rows."""

    function_id: str
    deployment_id: str
    level: str | None  # None: found in each line
    source: str
    instance: str
    execution_id: str | None
    pushed: dict[str, str]  # kept under attributes["labels"]
    attributes: str  # the attributes of an entry without structured metadata


def _uuid_label(
    builder: BatchBuilder, labels: dict[str, str], pushed: dict[str, str], name: str
) -> str | None:
    """The label ``name`` as a canonical uuid, taken out of ``pushed``; None when it is absent
    or not a uuid (then it stays a pushed label)."""
    text = labels.get(name)
    if text is None:
        return None
    try:
        found = builder.uuid(name, text)
    except EntryError:
        return None
    del pushed[name]
    return found


def _first(labels: Mapping[str, str], names: Iterable[str]) -> tuple[str, str] | None:
    for name in names:
        value = labels.get(name)
        if value:
            return name, value
    return None


def stream_columns(builder: BatchBuilder, labels: dict[str, str]) -> StreamColumns:
    """The columns of a stream's rows; EntryError naming the label that cannot be stored."""
    for name, value in labels.items():
        if not LABEL_NAME.fullmatch(name):
            raise EntryError("labels", f"{name!r} is not a label name ([a-zA-Z_][a-zA-Z0-9_]*)")
        check_text(f"labels.{name}", value)
    pushed = dict(labels)
    found = _first(labels, ("service_name", *SERVICE_LABELS))
    service = found[1] if found else UNKNOWN_SERVICE
    pushed["service_name"] = service
    function_id = _uuid_label(builder, labels, pushed, "function_id") or str(
        uuid.uuid5(NAMESPACE, service)
    )
    deployment_id = _uuid_label(builder, labels, pushed, "deployment_id") or str(
        uuid.uuid5(NAMESPACE, "deployment:" + function_id)
    )
    level = None
    for name in LEVEL_LABELS:
        if name in labels and (level := normalise_level(labels[name])) is not None:
            break
    source = labels.get("source", "").strip().lower()
    if source in SOURCES:
        del pushed["source"]
    else:
        source = _DEFAULT_SOURCE
    instance = _first(labels, INSTANCE_LABELS)
    execution_id = labels.get(EXECUTION_ID)
    for name in ("level", "detected_level", "instance", EXECUTION_ID):
        pushed.pop(name, None)
    return StreamColumns(
        function_id,
        deployment_id,
        level,
        source,
        check_text("instance", instance[1], MAX_NAME_BYTES) if instance else "",
        None if execution_id is None else check_text(EXECUTION_ID, execution_id, MAX_NAME_BYTES),
        pushed,
        encode_attributes({LABELS_KEY: pushed}, "labels"),
    )


# -- The level of a line whose labels give none ----------------------------------------------
# As Loki's detected_level does, for the four levels gramlogs has: a level field of a JSON or
# logfmt line, else a level word anywhere in the line, the most severe first.
_LEVEL_FIELDS = ("level", "lvl", "severity", "loglevel")
# On the line in lower case: one pass of C instead of a case-insensitive regex.
_LOGFMT_LEVEL = re.compile(r'(?:^|\s)(?:level|lvl|severity|loglevel)=("?)([a-z]+)\1(?=\s|$)')
_WORDS = (
    ("error", re.compile(r"\b(?:error|err|fatal|critical|crit|panic|emerg)\b")),
    ("warn", re.compile(r"\b(?:warn|warning)\b")),
    ("debug", re.compile(r"\b(?:debug|dbg|trace)\b")),
)
# Substrings that every word above holds: most lines have none, and are told so by a few
# substring tests in C (a regex search costs ~10 times more).
_HINTS = ("err", "fatal", "crit", "panic", "emerg", "warn", "debug", "dbg", "trace")
_LOGFMT_HINTS = ("level=", "lvl=", "severity=")
_json = msgspec.json.Decoder(dict[str, object])


def detected_level(line: str) -> str:
    """The level of a line whose labels give none (module docstring); ``info`` by default."""
    if line.startswith("{"):
        try:
            fields = _json.decode(line)
        except (msgspec.DecodeError, RecursionError):
            pass
        else:
            lowered = {k.lower(): v for k, v in fields.items()}
            for name in _LEVEL_FIELDS:
                value = lowered.get(name)
                if isinstance(value, str) and (level := normalise_level(value)):
                    return level
    lower = line.lower()
    if (
        any(hint in lower for hint in _LOGFMT_HINTS)
        and (m := _LOGFMT_LEVEL.search(lower))
        and (level := normalise_level(m[2]))
    ):
        return level
    if any(hint in lower for hint in _HINTS):
        for level, words in _WORDS:
            if words.search(lower):
                return level
    return "info"


# -- Entries ------------------------------------------------------------------------------------


def timestamp_of(ns: int | None) -> datetime:
    """The row time of a Unix nanoseconds timestamp (to the microsecond, rounded down)."""
    if ns is None:
        raise EntryError("timestamp", "is required")
    if not _MIN_NS <= ns < _MAX_NS:
        raise EntryError(
            "timestamp",
            f"{ns} ns is outside {ids.MIN_TIMESTAMP.isoformat()} .. "
            f"{ids.MAX_TIMESTAMP.isoformat()}",
        )
    return _EPOCH + timedelta(microseconds=ns // 1000)


def add_entry(builder: BatchBuilder, columns: StreamColumns, entry: Entry) -> None:
    """One entry of a stream as a row; EntryError naming the field that cannot be stored."""
    ns, line, metadata = entry
    ts = timestamp_of(ns)
    execution_id = columns.execution_id
    attributes = columns.attributes
    if metadata:
        if LABELS_KEY in metadata:
            raise EntryError(
                "structuredMetadata",
                f"may not be named {LABELS_KEY!r} (where gramlogs keeps the stream's labels)",
            )
        extra = dict(metadata)
        if EXECUTION_ID in extra:
            execution_id = check_text(EXECUTION_ID, extra.pop(EXECUTION_ID), MAX_NAME_BYTES)
        if extra:
            attributes = encode_attributes(
                {**extra, LABELS_KEY: columns.pushed}, "structuredMetadata"
            )
    builder.add(
        ts,
        check_text("line", line, MAX_RAW_LOG_BYTES),
        columns.level or detected_level(line),
        columns.source,
        columns.instance,
        None,
        attributes,
        columns.function_id,
        columns.deployment_id,
        execution_id,
    )
