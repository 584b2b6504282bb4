"""Server-sent events: a parser of ``text/event-stream`` bytes, fed as they arrive.

It follows the HTML standard's parsing rules
(https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation):
lines end with CRLF, LF or CR, even when a chunk ends between the CR and the LF; a line starting
with ``:`` is a comment (a heartbeat); ``field: value`` loses one space after the colon; a blank
line dispatches the event. ``id`` takes effect at dispatch, even for an event without data,
which is not dispatched: so :attr:`EventParser.last_event_id` only ever names an event received
whole, the position to resume after.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Event", "EventParser"]

_LINE_END = re.compile(rb"\r\n|\r|\n")
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class Event:
    """A dispatched event: its type (``message`` by default), its data (lines joined by LF)
    and the last event id when it was dispatched."""

    type: str
    data: str
    id: str


class EventParser:
    """Feed it bytes with :meth:`feed`; it returns the events those bytes completed."""

    def __init__(self, last_event_id: str = "") -> None:
        self.last_event_id = last_event_id
        # The reconnection time the server asked for (``retry:``), in milliseconds.
        self.retry: int | None = None
        self._buffer = b""
        self._started = False
        self._after_cr = False
        self._type = ""
        self._data: list[str] = []
        self._id = last_event_id

    def feed(self, chunk: bytes) -> list[Event]:
        if not chunk:
            return []
        if self._after_cr:
            # The LF of a CRLF whose CR ended the previous chunk: that line has been handled.
            if chunk.startswith(b"\n"):
                chunk = chunk[1:]
            self._after_cr = False
        buffer = self._buffer + chunk
        if not self._started:
            if len(buffer) < len(_BOM) and _BOM.startswith(buffer):
                self._buffer = buffer
                return []
            self._started = True
            if buffer.startswith(_BOM):
                buffer = buffer[len(_BOM) :]
        events: list[Event] = []
        start = 0
        for end in _LINE_END.finditer(buffer):
            event = self._line(buffer[start : end.start()].decode("utf-8", "replace"))
            if event is not None:
                events.append(event)
            start = end.end()
        self._buffer = buffer[start:]
        # Only a CR that ends the chunk may have its LF in the next one; a CR inside the chunk
        # was already seen with what follows it.
        self._after_cr = start == len(buffer) and buffer.endswith(b"\r")
        return events

    def _line(self, line: str) -> Event | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        field, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if field == "event":
            self._type = value
        elif field == "data":
            self._data.append(value)
        elif field == "id":
            if "\0" not in value:
                self._id = value
        elif field == "retry" and value.isascii() and value.isdigit():
            self.retry = int(value)
        return None

    def _dispatch(self) -> Event | None:
        self.last_event_id = self._id
        data, event_type = self._data, self._type
        self._data, self._type = [], ""
        if not data:
            return None
        return Event(event_type or "message", "\n".join(data), self.last_event_id)
