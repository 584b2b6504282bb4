"""The fields Logs Drilldown detects in a line: its structured metadata, and the keys of the
line itself when it is a JSON object or logfmt.

JSON keys are flattened as LogQL's ``| json`` names them (nested objects joined with ``_``);
logfmt is ``key=value`` pairs, a value bare or double-quoted. A field's type is the narrowest
of Loki's (``int``, ``float``, ``boolean``, ``duration``, ``bytes``, ``string``) that every
sampled value fits.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from gramlogs.storage.rows import StoredRow
from gramlogs.web.loki.labels import structured_metadata

__all__ = ["Found", "field_type", "line_fields"]

# (value, parser): parser None for structured metadata.
Found = dict[str, tuple[str, str | None]]

_decoder = msgspec.json.Decoder()
_LOGFMT = re.compile(r'([^\s="]+)=(?:"((?:[^"\\]|\\.)*)"|([^\s"]*))')
_INT = re.compile(r"[+-]?\d+\Z")
_FLOAT = re.compile(r"[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?\Z")
# Go's time.ParseDuration: one or more number-unit pairs.
_DURATION = re.compile(r"[+-]?((\d+(\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h))+\Z")
# humanize's byte sizes, as Loki's bytes type reads them: "10KB", "1.5 MiB".
_BYTES = re.compile(r"\d+(\.\d+)?\s?([KMGTPE]i?)?B\Z", re.IGNORECASE)


def _flatten(prefix: str, value: Any, out: Found) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(f"{prefix}_{key}" if prefix else str(key), inner, out)
    elif isinstance(value, list):
        return  # LogQL's json parser skips arrays without an expression
    elif value is not None and prefix:
        text = value if isinstance(value, str) else msgspec.json.encode(value).decode()
        out[prefix] = (text, "json")


def _json_fields(line: str) -> Found | None:
    if not line.startswith("{"):
        return None
    try:
        value = _decoder.decode(line)
    except msgspec.DecodeError:
        return None
    if not isinstance(value, dict):
        return None
    out: Found = {}
    _flatten("", value, out)
    return out


def _logfmt_fields(line: str) -> Found:
    out: Found = {}
    for m in _LOGFMT.finditer(line):
        quoted, bare = m.group(2), m.group(3)
        value = bare if quoted is None else quoted.replace('\\"', '"').replace("\\\\", "\\")
        out[m.group(1)] = (value, "logfmt")
    return out


def line_fields(row: StoredRow) -> Found:
    """The fields of one line: its structured metadata, then the line's own (JSON when the
    line is an object, else logfmt); a structured metadata name wins."""
    line: str = row[5]
    found = _json_fields(line)
    if found is None:
        found = _logfmt_fields(line)
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
