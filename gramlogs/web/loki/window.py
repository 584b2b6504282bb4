"""The time window of a Loki read: ``start`` and ``end`` as Loki's clients send them.

Loki takes a point in time three ways, and so does gramlogs: an integer is Unix nanoseconds
(Grafana's backend sends these), or Unix seconds when it has 10 digits or fewer; a number with
a point is Unix seconds with a fraction; anything else must be RFC 3339. Without ``end`` the
window ends now; without ``start`` it begins an hour before its end (Loki's defaults).
Times are kept in nanoseconds; the ids' resolution is a microsecond, so a window's id range
(:meth:`Window.id_range`) is widened to whole microseconds.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from gramlogs.core import ids
from gramlogs.core.errors import BadRequest
from gramlogs.web.params import Param
from gramlogs.web.reading import id_bounds

__all__ = [
    "DEFAULT_SPAN_NS",
    "END",
    "START",
    "Window",
    "at_us",
    "now_ns",
    "parse_instant",
    "parse_window",
]

DEFAULT_SPAN_NS = 3600 * 10**9
_NS_PER_US = 1000
_MAX_NS = (ids.MAX_TIMESTAMP - ids.EPOCH).days * 86_400 * 10**9
_FORMS = "Unix nanoseconds, Unix seconds (with a fraction or 10 digits or fewer) or RFC 3339"

_SECONDS = re.compile(r"(?=\.?\d)(\d*)\.(\d*)\Z")

# The clock of the default window; tests replace it to fix "now".
now_ns: Callable[[], int] = time.time_ns


def parse_instant(name: str, value: str) -> int:
    """``value`` as Unix nanoseconds; 400 naming ``name`` when it is none of Loki's forms."""
    text = value.strip()
    try:
        if (m := _SECONDS.match(text)) is not None:
            # Decimal digits, not a float: a float's 53 bits cannot hold nanoseconds since 1970.
            whole, fraction = m.groups()
            ns = int(whole or "0") * 10**9 + int((fraction + "0" * 9)[:9])
        elif text.lstrip("+-").isascii() and text.lstrip("+-").isdigit():
            number = int(text)
            ns = number * 10**9 if len(text.lstrip("+-")) <= 10 else number
        else:
            since = ids.parse_rfc3339(text) - ids.EPOCH
            ns = since // timedelta(microseconds=1) * _NS_PER_US + _fraction_ns(text)
    except (ValueError, ids.IdError, OverflowError):
        raise BadRequest(f"invalid {name} {value!r}: expected {_FORMS}") from None
    if not 0 <= ns <= _MAX_NS:
        raise BadRequest(f"{name} {value!r} is outside 1970-01-01 to 2100-01-01")
    return ns


def _fraction_ns(text: str) -> int:
    """The nanoseconds past the microsecond of an RFC 3339 time (Python keeps microseconds)."""
    point = text.find(".")
    if point < 0:
        return 0
    digits = ""
    for c in text[point + 1 :]:
        if not c.isdigit():
            break
        digits += c
    return int((digits + "000000000")[6:9]) if len(digits) > 6 else 0


def _instant(name: str, description: str) -> Param[int]:
    schema = {"type": "string", "pattern": "^[^\\u0000]*$"}
    return Param(name, "query", description, schema, parse_instant)


START = _instant(
    "start",
    f"Start of the window, inclusive: {_FORMS}; default an hour before end",
)
END = _instant("end", f"End of the window, inclusive: {_FORMS}; default now")


@dataclass(frozen=True, slots=True)
class Window:
    """A window ``[start_ns, end_ns]`` in Unix nanoseconds."""

    start_ns: int
    end_ns: int

    def id_range(self) -> tuple[int, int]:
        """The inclusive id range of the lines the window holds."""
        return id_bounds(at_us(self.start_ns // _NS_PER_US), at_us(self.end_ns // _NS_PER_US))


def at_us(micros: int) -> datetime:
    """The time ``micros`` microseconds after the Unix epoch."""
    return ids.EPOCH + timedelta(microseconds=micros)


def parse_window(params: Mapping[str, str]) -> Window:
    """``start`` and ``end`` with Loki's defaults; 400 when start is after end."""
    end = END.get(params)
    end_ns = now_ns() if end is None else end
    start = START.get(params)
    start_ns = max(0, end_ns - DEFAULT_SPAN_NS) if start is None else start
    if start_ns > end_ns:
        raise BadRequest(f"start ({start_ns}) must not be after end ({end_ns})")
    return Window(start_ns, end_ns)
