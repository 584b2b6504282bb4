"""``GET /rpc/logs.histogram``: how many lines each stretch of a window holds (an extension).

For a viewer's bars above the log table (docs/histogram.md). The filters are
listToolExecutionLogs' and mean the same; the window (``ts_start``, ``ts_end``) is required.
The server picks the bucket width: the narrowest of :data:`WIDTHS` that covers the window in
at most ``buckets`` buckets, aligned to whole multiples of the width since the Unix epoch, so
that the bars stay put as the window moves. Every bucket is in the answer, empty ones too,
oldest first; the first and the last may reach outside the window, and count only the lines
inside it. The counts are exact: they add up to the lines a page walk over the same request
visits.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated

import msgspec
from msgspec import Meta
from starlette.requests import Request
from starlette.responses import Response

from gramlogs.core import ids
from gramlogs.core.errors import BadRequest
from gramlogs.core.keys import Permission
from gramlogs.storage import histogram
from gramlogs.storage.access import authenticate
from gramlogs.storage.pages import LogFilter
from gramlogs.web.endpoint import GRAM_SECURITY, Endpoint, Ok, Operation
from gramlogs.web.params import GRAM_KEY, GRAM_PROJECT, first_values, gram_credentials, integer
from gramlogs.web.reading import (
    FILTERS,
    KEYWORD,
    Selection,
    iso,
    parse_selection,
    window_end,
)
from gramlogs.web.state import app_state

__all__ = [
    "DEFAULT_BUCKETS",
    "ENDPOINT",
    "MAX_BUCKETS",
    "WIDTHS",
    "Bucket",
    "HistogramQuery",
    "HistogramResult",
    "histogram_logs",
    "parse_histogram_query",
]

DEFAULT_BUCKETS = 60
MAX_BUCKETS = 1000
_MINUTE, _HOUR, _DAY = 60, 3600, 86_400
# Bucket widths in seconds, the ones a reader of a time axis expects (Grafana's and Kibana's
# steps), each a multiple of the one before it but 15 s and 15 min, so that a bucket's edges
# fall on a clock's round figures. Seven days is the widest: with 1000 buckets, 19 years.
WIDTHS = (
    1, 2, 5, 10, 15, 30,
    _MINUTE, 2 * _MINUTE, 5 * _MINUTE, 10 * _MINUTE, 15 * _MINUTE, 30 * _MINUTE,
    _HOUR, 2 * _HOUR, 3 * _HOUR, 6 * _HOUR, 12 * _HOUR,
    _DAY, 7 * _DAY,
)  # fmt: skip

_MICROSECOND = timedelta(microseconds=1)
_DATE_TIME = {"format": "date-time"}


class Bucket(msgspec.Struct, kw_only=True):
    """One bucket of a histogram"""

    start: Annotated[
        datetime,
        Meta(
            description="Start of the bucket (UTC, Z), a whole multiple of bucket_seconds since "
            "the Unix epoch; the bucket holds the lines from start, inclusive, to start + "
            "bucket_seconds, exclusive, that lie within [ts_start, ts_end]",
            extra_json_schema=_DATE_TIME,
        ),
    ]
    count: Annotated[int, Meta(ge=0, description="Lines of the bucket that match the filters")]


class HistogramResult(msgspec.Struct, kw_only=True):
    """Counts of matching lines over time"""

    bucket_seconds: Annotated[
        int, Meta(ge=1, description=f"Width of every bucket, one of {', '.join(map(str, WIDTHS))}")
    ]
    buckets: Annotated[
        list[Bucket],
        Meta(
            description="Every bucket that meets the window, oldest first, empty ones "
            "included; the first starts at or before ts_start, the last ends after ts_end"
        ),
    ]
    total: Annotated[int, Meta(ge=0, description="Sum of the counts: the window's lines")]


_encoder = msgspec.json.Encoder()


_BOUNDS = "between 1970-01-01T00:00:00Z and 2100-01-01T00:00:00Z"
# The window: both ends required.
WINDOW = (
    window_end(
        "ts_start",
        f"Start of the window, inclusive (RFC 3339), {_BOUNDS}; required (400 bad_request "
        "without it)",
        missing="ts_start is required (an RFC 3339 date-time): a histogram needs a window",
    ),
    window_end(
        "ts_end",
        f"End of the window, inclusive (RFC 3339), {_BOUNDS}; required; before ts_start is a "
        "400 bad_request",
        missing="ts_end is required (an RFC 3339 date-time): a histogram needs a window",
    ),
)
BUCKETS = integer(
    "buckets",
    f"Most buckets wanted (1-{MAX_BUCKETS}); a window that needs more even "
    f"{WIDTHS[-1] // _DAY} days wide is a 400 bad_request",
    minimum=1,
    maximum=MAX_BUCKETS,
    default=DEFAULT_BUCKETS,
)


@dataclass(frozen=True, slots=True)
class HistogramQuery:
    """A validated histogram request, before the project is known."""

    selection: Selection
    width_s: int
    first_us: int  # start of the first bucket, microseconds since the epoch
    buckets: int

    def starts(self) -> list[datetime]:
        step = timedelta(seconds=self.width_s)
        first = ids.EPOCH + timedelta(microseconds=self.first_us)
        return [first + i * step for i in range(self.buckets)]

    def log_filter(self, project_id: uuid.UUID) -> LogFilter:
        return self.selection.log_filter(project_id)

    def edges(self) -> list[int]:
        """The first id of each bucket but the first: where the window's id range is cut."""
        return [ids.lowest_id(start).int for start in self.starts()[1:]]


def _micros(ts: datetime) -> int:
    return (ts - ids.EPOCH) // _MICROSECOND


def choose_width(start_us: int, end_us: int, most: int) -> tuple[int, int, int] | None:
    """The narrowest width of :data:`WIDTHS` whose aligned buckets over ``[start_us, end_us]``
    are at most ``most``: (width in seconds, first bucket's start in µs, buckets); None when
    even the widest needs more."""
    for width in WIDTHS:
        step = width * 1_000_000
        first = start_us // step
        count = end_us // step - first + 1
        if count <= most:
            return width, first * step, count
    return None


def parse_histogram_query(params: Mapping[str, str]) -> HistogramQuery:
    """Validate the query string; each error names its parameter."""
    selection = parse_selection(params, WINDOW)
    most = BUCKETS.value(params)
    assert selection.window is not None  # WINDOW's ends are required
    ts_start, ts_end = selection.window
    if ts_start > ts_end:
        raise BadRequest(f"ts_start ({iso(ts_start)}) must not be after ts_end ({iso(ts_end)})")
    chosen = choose_width(_micros(ts_start), _micros(ts_end), most)
    if chosen is None:
        widest = WIDTHS[-1]
        raise BadRequest(
            f"the window from ts_start to ts_end needs more than {most} buckets (buckets) even "
            f"{widest // _DAY} days wide: ask for a shorter window or more buckets (at most "
            f"{MAX_BUCKETS})"
        )
    width, first_us, count = chosen
    return HistogramQuery(selection=selection, width_s=width, first_us=first_us, buckets=count)


def render(query: HistogramQuery, counts: list[int]) -> HistogramResult:
    buckets = [
        Bucket(start=start, count=count)
        for start, count in zip(query.starts(), counts, strict=True)
    ]
    return HistogramResult(bucket_seconds=query.width_s, buckets=buckets, total=sum(counts))


async def histogram_logs(request: Request) -> Response:
    key, slug = gram_credentials(request)
    query = parse_histogram_query(first_values(request))
    state = app_state(request)
    db = state.db
    # As listToolExecutionLogs: the key on the primary, the counts on a replica when there is one.
    async with db.connection() as conn:
        principal = await authenticate(
            conn, key, Permission.READ, project_slug=slug, cache=state.keys
        )
        with state.expensive.hold(principal.key_id):  # a whole window counted
            async with db.read_connection(conn) as reader:
                counts = await histogram.count_ranges(
                    reader, query.log_filter(principal.project_id), query.edges()
                )
    return Response(_encoder.encode(render(query, counts)), media_type="application/json")


ENDPOINT = Endpoint(
    "/rpc/logs.histogram",
    histogram_logs,
    (
        Operation(
            "GET",
            "histogramLogs",
            "logs",
            "histogram of logs",
            "How many lines match the filters in each bucket of the window "
            "[ts_start, ts_end] (docs/histogram.md). The server picks the narrowest bucket "
            f"width of {', '.join(map(str, WIDTHS))} seconds that covers the window in at most "
            "`buckets` buckets, aligned to whole multiples of the width since the Unix epoch "
            "(UTC). Every bucket is listed, empty ones too, oldest first; the first and last "
            "may reach outside the window and count only the lines inside it. The counts are "
            "exact: they add up to the lines listToolExecutionLogs pages through for the same "
            "filters and window. With a keyword every line of the window is read (a 503 with "
            "timeout: true when that takes longer than GRAMLOGS_STATEMENT_TIMEOUT_MS).",
            Ok("The buckets.", {"application/json": HistogramResult}),
            (*WINDOW, *FILTERS, KEYWORD, BUCKETS, GRAM_KEY, GRAM_PROJECT),
            security=GRAM_SECURITY,
        ),
    ),
)
