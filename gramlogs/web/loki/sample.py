"""The newest lines of a window that a selector matches: what the label browser and Logs
Drilldown read when the answer is in the lines rather than in the columns.

Pushed labels, ``service_name``, structured metadata and the fields of a line have no column
and no index, so they are learnt from a sample: the newest :data:`SAMPLE_LINES` lines of the
window that the selector's indexed part passes (storage.pages.fetch_page, rows and sealed
blocks alike), each then checked against the rest of the selector (selection.Selection).
A sample that reached the window's oldest line is ``complete``: what it says holds for the
whole window.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from gramlogs.storage.database import Connection
from gramlogs.storage.filters import LogFilter
from gramlogs.storage.pages import PageRequest, fetch_page
from gramlogs.storage.rows import StoredRow
from gramlogs.web.loki.logql import LogQLError, LogQuery, parse
from gramlogs.web.loki.selection import Selection, select
from gramlogs.web.loki.window import Window

__all__ = ["SAMPLE_LINES", "Sample", "log_query", "sample_lines", "selection_of"]

# Lines read at most (Grafana's detected fields and Loki's own sample a thousand, too): a few
# pages, some milliseconds, whatever the window holds.
SAMPLE_LINES = 1000
_PAGE = 250


@dataclass(frozen=True, slots=True)
class Sample:
    """The lines read (``read``, newest first) and those the selector matches (``rows``)."""

    rows: list[StoredRow]
    read: int
    complete: bool


def log_query(name: str, text: str) -> LogQuery:
    """``text`` (the parameter ``name``) as a log query; a metric query is a 400."""
    query = parse(text)
    if not isinstance(query, LogQuery):
        raise LogQLError(f"{name} must be a log query (a stream selector), not a metric query")
    return query


def selection_of(query: LogQuery | None, project_id: uuid.UUID, window: Window) -> Selection:
    """What ``query`` reads within ``window``; without a query, every line of the window."""
    lo, hi = window.id_range()
    if query is None:
        whole = LogFilter(project_id=project_id, lo=lo, hi=hi)
        return Selection(filter=whole, empty=lo > hi, label_checks=(), line_checks=())
    return select(query, project_id, lo, hi)


async def sample_lines(conn: Connection, selection: Selection, most: int | None = None) -> Sample:
    """The newest lines of ``selection`` among the newest ``most`` (default
    :data:`SAMPLE_LINES`) its filter passes."""
    most = SAMPLE_LINES if most is None else most
    if selection.empty or selection.filter.lo > selection.filter.hi:
        return Sample(rows=[], read=0, complete=True)
    rows: list[StoredRow] = []
    read = 0
    cursor: uuid.UUID | None = None
    while read < most:
        page = await fetch_page(
            conn,
            PageRequest(selection.filter, per_page=min(_PAGE, most - read), cursor=cursor),
        )
        read += len(page.rows)
        rows += [row for row in page.rows if selection.matches(row)]
        if not page.has_more or not page.rows:
            return Sample(rows=rows, read=read, complete=True)
        cursor = page.rows[-1][0]
    return Sample(rows=rows, read=read, complete=False)
