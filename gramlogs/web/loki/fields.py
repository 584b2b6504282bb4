"""The fields Logs Drilldown detects in a line: its structured metadata, and the keys of the
line itself when it is a JSON object or logfmt.

A field is named and valued as the pipeline's ``| json`` or ``| logfmt`` reads it (pipeline.py),
so that a query Drilldown builds on a field (``| json | status="500"``) finds it; a bare logfmt
word (no ``=``, an empty value) is not a field, or every plain-text line would be all fields.
A field's type is the narrowest of Loki's (``int``, ``float``, ``boolean``, ``duration``,
``bytes``, ``string``) that every sampled value fits.
"""

from __future__ import annotations

import re

from gramlogs.storage.rows import StoredRow
from gramlogs.web.loki.labels import structured_metadata
from gramlogs.web.loki.pipeline import parsed_pairs

__all__ = ["Found", "field_type", "line_fields"]

# (value, parser): parser None for structured metadata.
Found = dict[str, tuple[str, str | None]]

_INT = re.compile(r"[+-]?\d+\Z")
_FLOAT = re.compile(r"[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?\Z")
# Go's time.ParseDuration: one or more number-unit pairs.
_DURATION = re.compile(r"[+-]?((\d+(\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h))+\Z")
# humanize's byte sizes, as Loki's bytes type reads them: "10KB", "1.5 MiB".
_BYTES = re.compile(r"\d+(\.\d+)?\s?([KMGTPE]i?)?B\Z", re.IGNORECASE)


def line_fields(row: StoredRow) -> Found:
    """The fields of one line: its structured metadata, then the line's own (JSON when the
    line is an object, else logfmt); a structured metadata name wins."""
    line: str = row[5]
    found: Found = {}
    pairs = parsed_pairs("json", line)
    if pairs is not None:
        found = {name: (value, "json") for name, value in pairs}
    elif (pairs := parsed_pairs("logfmt", line)) is not None:
        found = {name: (value, "logfmt") for name, value in pairs if value}
    for name, value in structured_metadata(row).items():
        found[name] = (value, None)
    return found


def field_type(values: set[str]) -> str:
    """The narrowest of Loki's detected field types that every value fits."""
    for name, pattern in (
        ("int", _INT),
        ("float", _FLOAT),
        ("duration", _DURATION),
        ("bytes", _BYTES),
    ):
        if values and all(pattern.match(v) for v in values):
            return name
    if values and all(v in ("true", "false") for v in values):
        return "boolean"
    return "string"
