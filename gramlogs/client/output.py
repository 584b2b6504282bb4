"""How ``gramlogs logs`` prints a log entry: one line each, as ``pretty``, ``jsonl`` or ``raw``.

An entry arrives as the JSON of one entry of listToolExecutionLogs' ``logs`` (a page's element,
or a live tail's ``data:``); each format turns it into the bytes of one output line.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Literal

import msgspec

__all__ = ["FORMATS", "Formatter", "use_color"]

FORMATS = ("pretty", "jsonl", "raw")
Format = Literal["pretty", "jsonl", "raw"]


class _Entry(msgspec.Struct):
    """The fields ``pretty`` and ``raw`` show; the others are ignored, missing ones are empty."""

    timestamp: str = ""
    level: str = ""
    source: str = ""
    instance: str = ""
    function_id: str = ""
    raw_log: str = ""
    message: str | None = None


_entry = msgspec.json.Decoder(_Entry)
_any = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()

# Logs are untrusted text bound for a terminal: control characters (an ESC starts a terminal
# command) and line breaks are shown escaped, so one log stays one line and cannot drive the
# terminal. Tab is kept.
_ESCAPES = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F, *range(0x80, 0xA0)] if c != 0x09}
_ESCAPES |= {0x0A: "\\n", 0x0D: "\\r", 0x2028: "\\u2028", 0x2029: "\\u2029"}

# SGR colours of the level (ECMA-48): debug dim, info green, warn yellow, error bold red.
_COLORS = {"debug": "2", "info": "32", "warn": "33", "error": "1;31"}


def _decode(entry: bytes | str) -> _Entry | str:
    """The entry, or its text when it is not one (a server of another version, a proxy's
    page): shown as it came rather than lost."""
    try:
        return _entry.decode(entry)
    except msgspec.DecodeError:
        return entry if isinstance(entry, str) else bytes(entry).decode("utf-8", "replace")


def escape(text: str) -> str:
    return text.translate(_ESCAPES)


def use_color(choice: str, *, isatty: bool, no_color: str | None) -> bool:
    """``--color``: ``auto`` colours a terminal unless ``NO_COLOR`` is set and not empty
    (https://no-color.org); ``always`` and ``never`` say so whatever the environment."""
    if choice == "auto":
        return isatty and not no_color
    return choice == "always"


class Formatter:
    """``line(entry_json)``: the output line of one entry, newline included."""

    def __init__(self, fmt: Format, *, color: bool = False, local: bool = False) -> None:
        self.format = fmt
        self.color = color
        self.local = local
        self.line: Callable[[bytes | str], bytes] = {
            "pretty": self._pretty,
            "jsonl": self._jsonl,
            "raw": self._raw,
        }[fmt]

    def tail_line(self, data: str) -> bytes:
        """The line of a live tail's event: with ``jsonl``, its ``data:`` exactly as sent."""
        if self.format == "jsonl":
            return data.encode() + b"\n"
        return self.line(data)

    @staticmethod
    def _jsonl(entry: bytes | str) -> bytes:
        # Decoded and encoded again: compact, keys and their order as the server sent them.
        return _encoder.encode(_any.decode(entry)) + b"\n"

    @staticmethod
    def _raw(entry: bytes | str) -> bytes:
        e = _decode(entry)
        return (e.raw_log if isinstance(e, _Entry) else e).encode() + b"\n"

    def _pretty(self, entry: bytes | str) -> bytes:
        e = _decode(entry)
        if not isinstance(e, _Entry):
            return escape(e).encode() + b"\n"
        level = f"{escape(e.level.upper()) or '-':<5}"
        if self.color and e.level in _COLORS:
            level = f"\x1b[{_COLORS[e.level]}m{level}\x1b[0m"
        text = e.raw_log if e.message is None else e.message
        fields = (
            self._timestamp(e.timestamp),
            level,
            f"{escape(e.source) or '-':<8}",
            escape(e.instance) or "-",
            escape(e.function_id[:8]) or "-",
            escape(text),
        )
        return " ".join(fields).encode() + b"\n"

    def _timestamp(self, text: str) -> str:
        try:
            ts = datetime.fromisoformat(text)
        except ValueError:
            return escape(text) or "-"
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=UTC)
        if self.local:
            return ts.astimezone().isoformat(timespec="microseconds")
        return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
