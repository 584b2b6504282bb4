"""Reading a log query's lines over a window: the indexed read, then the line checks and the
pipeline, page after page.

The read is :func:`~gramlogs.storage.pages.fetch_page` over the selection's filter
(selection.py: an ``=`` on a column label and the first ``|=`` go through the indexes), in the
query's direction; each line it returns is checked (:meth:`Selection.matches`) and run through
the rest of the pipeline (pipeline.py). The read stops when ``limit`` lines passed, when the
window is done, or when :data:`MAX_EXAMINED` lines were examined: then :attr:`Found.truncated`
says so, and the answer carries a Loki warning.

Times are Loki's: nanoseconds since the epoch. A stored line's time is whole microseconds, so
the window ``[start_ns, end_ns)`` is the lines of the microseconds ``ceil(start_ns / 1000)`` to
``ceil(end_ns / 1000) - 1``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from gramlogs.core import ids
from gramlogs.storage.pages import PageRequest, fetch_page
from gramlogs.storage.rows import StoredRow
from gramlogs.web.loki.labels import line_labels
from gramlogs.web.loki.logql import LineFilter, LogQuery, Stage
from gramlogs.web.loki.pipeline import Pipeline, compile_pipeline
from gramlogs.web.loki.selection import Selection, select

__all__ = [
    "MAX_EXAMINED",
    "Found",
    "Line",
    "Plan",
    "Reader",
    "id_bounds",
    "piped",
    "piped_stages",
    "plan",
    "read_lines",
    "scans",
    "truncation_warning",
]

# A connection to read with: storage's (asyncpg's), which the web layer passes on unnamed.
Reader = Any

# The most lines one request examines (reads from storage and checks). At the ~5 µs a line
# costs to decode, check and run through a pipeline, about half a second: a query whose checks
# match few lines of a wide window answers what it found by then rather than hold a connection.
MAX_EXAMINED = 100_000
# Lines read per storage page (fetch_page), a few ms at this size.
_PAGE_LINES = 1000
_MAX_MICROS = (ids.MAX_TIMESTAMP - ids.EPOCH) // timedelta(microseconds=1)
_MICROSECOND = timedelta(microseconds=1)


def truncation_warning(examined: int) -> str:
    return (
        f"gramlogs examined {examined} lines, the most one query may (MAX_EXAMINED): the "
        "answer holds what was found among them; narrow the selector or the window"
    )


def id_at_micros(us: int) -> int:
    """The lowest id of the microsecond ``us`` (clamped to the ids' range of times)."""
    us = min(max(us, 0), _MAX_MICROS)
    return ids.lowest_id(ids.EPOCH + timedelta(microseconds=us)).int


def id_bounds(start_ns: int, end_ns: int) -> tuple[int, int]:
    """The inclusive id range of the lines in ``[start_ns, end_ns)`` (empty when lo > hi)."""
    first_us = -(-start_ns // 1000)
    end_us = -(-end_ns // 1000)  # the first microsecond not in the window
    if end_us <= first_us or end_us <= 0 or first_us > _MAX_MICROS:
        return 1, 0
    hi = (1 << 128) - 1 if end_us > _MAX_MICROS else id_at_micros(end_us) - 1
    return id_at_micros(first_us), hi


def line_ns(row: StoredRow) -> int:
    """A stored line's time in nanoseconds since the epoch."""
    micros: int = (row[1] - ids.EPOCH) // _MICROSECOND
    return micros * 1000


@dataclass(frozen=True, slots=True)
class Plan:
    """How a log query reads: the indexed selection and the pipeline of the stages it left."""

    selection: Selection
    pipeline: Pipeline
    rest: int  # stages left to the pipeline

    @property
    def indexed_only(self) -> bool:
        """Every check is in the read itself: the lines it returns all pass."""
        s = self.selection
        return not s.label_checks and not s.line_checks and self.rest == 0

    @property
    def scans(self) -> bool:
        """The read may go through many lines that fail (a keyword's or a check's)."""
        return self.selection.filter.keyword is not None or not self.indexed_only


def piped_stages(query: LogQuery) -> tuple[Stage, ...]:
    """The stages after the leading line filters, which the selection checks (selection.py):
    the pipeline's."""
    stages = query.stages
    leading = 0
    while leading < len(stages) and isinstance(stages[leading], LineFilter):
        leading += 1
    return tuple(stages[leading:])


def plan(query: LogQuery, project_id: uuid.UUID, start_ns: int, end_ns: int) -> Plan:
    lo, hi = id_bounds(start_ns, end_ns)
    selection = select(query, project_id, lo, hi)
    rest = piped_stages(query)
    return Plan(selection, compile_pipeline(rest), len(rest))


def scans(query: LogQuery) -> bool:
    """:attr:`Plan.scans` of ``query``, which its project and window do not change."""
    return plan(query, uuid.UUID(int=0), 0, 1).scans


@dataclass(slots=True)
class Line:
    """A line that passed the query: its time, its text after the pipeline, and its labels by
    kind (``labels`` is all of them, as a stream's labels without categorize-labels)."""

    ns: int
    text: str
    labels: dict[str, str]
    stream: dict[str, str]
    metadata: dict[str, str]
    parsed: dict[str, str]
    size: int  # UTF-8 bytes of the stored line (bytes_over_time)


@dataclass(slots=True)
class Found:
    lines: list[Line] = field(default_factory=list)
    examined: int = 0
    truncated: bool = False


def _line(row: StoredRow, p: Plan) -> Line | None:
    if not p.selection.line_passes(row):
        return None
    stream, metadata = line_labels(row)
    if not p.selection.labels_pass(stream):
        return None
    return piped(row, p.pipeline, (stream, metadata))


def piped(
    row: StoredRow,
    pipeline: Pipeline,
    known: tuple[dict[str, str], dict[str, str]] | None = None,
) -> Line | None:
    """``row`` after ``pipeline`` (its selector's checks already passed), or None when a stage
    drops it; ``known``: its labels and metadata, when the caller has them already."""
    stream, metadata = known if known is not None else line_labels(row)
    labels = {**metadata, **stream}
    outcome = pipeline.run(row[5], labels)
    if outcome is None:
        return None
    final = outcome.labels
    parsed = {k: final[k] for k in outcome.parsed if k in final}
    return Line(
        ns=line_ns(row),
        text=outcome.line,
        labels=final,
        stream={k: final[k] for k in stream if k in final and k not in outcome.parsed},
        metadata={
            k: final[k]
            for k in metadata
            if k in final and k not in stream and k not in outcome.parsed
        },
        parsed=parsed,
        size=len(row[5].encode()),
    )


async def read_lines(
    conn: Reader,
    p: Plan,
    *,
    limit: int | None,
    forward: bool,
    max_examined: int = MAX_EXAMINED,
    sink: Callable[[Line], None] | None = None,
) -> Found:
    """The lines of ``p`` in time order (``forward``: oldest first), at most ``limit``; given
    to ``sink`` one by one instead of kept, when there is one (a metric query keeps counts, not
    up to MAX_EXAMINED lines)."""
    found = Found()
    if p.selection.empty:
        return found
    f = p.selection.filter
    if f.lo > f.hi:
        return found
    cursor: uuid.UUID | None = None
    while True:
        per_page = min(_PAGE_LINES, max_examined - found.examined)
        if limit is not None and p.indexed_only:
            per_page = min(per_page, limit - len(found.lines))
        page = await fetch_page(
            conn, PageRequest(filter=f, per_page=per_page, ascending=forward, cursor=cursor)
        )
        for row in page.rows:
            found.examined += 1
            line = _line(row, p)
            if line is None:
                continue
            if sink is not None:
                sink(line)
                continue
            found.lines.append(line)
            if limit is not None and len(found.lines) >= limit:
                return found
        if not page.has_more or not page.rows:
            return found
        if found.examined >= max_examined:
            found.truncated = True
            return found
        cursor = page.rows[-1][0]
