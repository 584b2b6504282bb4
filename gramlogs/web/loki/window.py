"""Loki's times, as every Loki endpoint reads them: a point in time (``start``, ``end``,
``time``), a window of two, and a step (a duration) over a window.

Loki takes a point in time three ways, and so does gramlogs: an integer is Unix nanoseconds
(Grafana's backend sends these), or Unix seconds when it has 10 digits or fewer; a number with
a point is Unix seconds with a fraction; anything else must be RFC 3339. Without ``end`` the
window ends now; without ``start`` it begins an hour before its end (Loki's defaults).
A step is a Go/Prometheus duration (``30s``, ``1m30s``) or (fractional) seconds; without one,
Loki takes the window over 250 in whole seconds, at least a second, and refuses more than
:data:`MAX_POINTS` steps.
Times are kept in nanoseconds; the ids' resolution is a microsecond, so a window's id range
(:meth:`Window.id_range`) is widened to whole microseconds.
"""

from __future__ import annotations

import math
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
    "FORMS",
    "MAX_POINTS",
    "SECOND_NS",
    "START",
    "Window",
    "at_us",
    "instant",
    "now_ns",
    "parse_duration",
    "parse_instant",
    "parse_window",
    "step",
    "step_of",
    "unix_seconds",
]

SECOND_NS = 10**9
DEFAULT_SPAN_NS = 3600 * SECOND_NS
# Loki's limit on a range answer's points per series (its message is the same).
MAX_POINTS = 11_000
# Without a step, Loki takes one of (end - start) / 250, whole seconds, at least 1 s.
_STEP_DIVISOR = 250
_NS_PER_US = 1000
_MAX_NS = (ids.MAX_TIMESTAMP - ids.EPOCH).days * 86_400 * 10**9
FORMS = "Unix nanoseconds, Unix seconds (with a fraction or 10 digits or fewer) or RFC 3339"

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
        raise BadRequest(f"invalid {name} {value!r}: expected {FORMS}") from None
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


def instant(name: str, description: str) -> Param[int]:
    """A query parameter that is a point in time (:func:`parse_instant`)."""
    schema = {"type": "string", "pattern": "^[^\\u0000]*$"}
    return Param(name, "query", description, schema, parse_instant)


START = instant(
    "start",
    f"Start of the window, inclusive: {FORMS}; default an hour before end",
)
END = instant("end", f"End of the window, inclusive: {FORMS}; default now")


@dataclass(frozen=True, slots=True)
class Window:
    """A window ``[start_ns, end_ns]`` in Unix nanoseconds."""

    start_ns: int
    end_ns: int

    def id_range(self) -> tuple[int, int]:
        """The inclusive id range of the lines the window holds."""
        return id_bounds(at_us(self.start_ns // _NS_PER_US), at_us(self.end_ns // _NS_PER_US))


def unix_seconds(ns: int) -> int | float:
    """A sample's time as Loki writes it: Unix seconds, whole or to the millisecond."""
    return ns // SECOND_NS if ns % SECOND_NS == 0 else round(ns / SECOND_NS, 3)


def at_us(micros: int) -> datetime:
    """The time ``micros`` microseconds after the Unix epoch."""
    return ids.EPOCH + timedelta(microseconds=micros)


def parse_window(
    params: Mapping[str, str], start_param: Param[int] = START, end_param: Param[int] = END
) -> Window:
    """``start`` and ``end`` with Loki's defaults; 400 when start is after end. The parameters
    may be declared apart for the words an endpoint's document says of them."""
    end = end_param.get(params)
    end_ns = now_ns() if end is None else end
    start = start_param.get(params)
    start_ns = max(0, end_ns - DEFAULT_SPAN_NS) if start is None else start
    if start_ns > end_ns:
        raise BadRequest(f"start ({start_ns}) must not be after end ({end_ns})")
    return Window(start_ns, end_ns)


# -- steps --------------------------------------------------------------------------------------

_GO_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h|d|w|y)")
_UNITS = {
    "ns": 1,
    "us": 10**3,
    "µs": 10**3,
    "ms": 10**6,
    "s": SECOND_NS,
    "m": 60 * SECOND_NS,
    "h": 3600 * SECOND_NS,
    "d": 86_400 * SECOND_NS,
    "w": 7 * 86_400 * SECOND_NS,
    "y": 365 * 86_400 * SECOND_NS,
}


def parse_duration(name: str, value: str) -> int:
    """A step: float seconds or a duration (``30s``, ``1m30s``, ``1h``), in nanoseconds > 0."""
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        ns = _duration_ns(text)
    else:
        if not math.isfinite(seconds):
            raise BadRequest(f"invalid {name}: {text!r} is not a number of seconds") from None
        ns = round(seconds * SECOND_NS)
    if ns is None:
        raise BadRequest(f"invalid {name}: {text!r} is neither seconds nor a duration like 30s")
    if ns <= 0:
        # Loki's message.
        raise BadRequest(
            "zero or negative query resolution step widths are not accepted. Try a positive integer"
        )
    return ns


def _duration_ns(text: str) -> int | None:
    at, total = 0, 0.0
    for m in _GO_DURATION.finditer(text):
        if m.start() != at:
            return None
        total += float(m.group(1)) * _UNITS[m.group(2)]
        at = m.end()
    return round(total) if at == len(text) and text else None


def step(description: str) -> Param[int]:
    """The ``step`` query parameter (:func:`parse_duration`); ``description`` ends with what
    the endpoint does without it."""
    return Param("step", "query", description, {"type": "string"}, parse_duration)


def step_of(window: Window, step_ns: int | None) -> int:
    """``step_ns``, else Loki's default for ``window``; 400 when the window holds more than
    :data:`MAX_POINTS` steps."""
    if step_ns is None:
        step_ns = max((window.end_ns - window.start_ns) // SECOND_NS // _STEP_DIVISOR, 1)
        step_ns *= SECOND_NS
    if (window.end_ns - window.start_ns) // step_ns + 1 > MAX_POINTS:
        # Loki's message.
        raise BadRequest(
            f"exceeded maximum resolution of {MAX_POINTS:,} points per timeseries. Try "
            "increasing the value of the step parameter"
        )
    return step_ns
