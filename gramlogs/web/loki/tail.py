"""``GET /loki/api/v1/tail``: Loki's live tail, a WebSocket, as Grafana's Explore "Live" opens it.

Parameters (Loki's): ``query`` (a log query: a stream selector, line filters and the pipeline),
``start`` (the backlog's beginning, as window.py reads a time; default an hour ago), ``limit``
(the backlog's most lines, default 100), ``delay_for`` (0-5 s, accepted: the tail journal already
delivers a late line exactly once, in commit order, so there is nothing to wait for).

The handshake is refused with an HTTP response, as Loki's is: 401/403 (the key), 400 (the query),
429 (too many tails of the key). Once accepted, each text message is
``{"streams": [{"stream": {labels}, "values": [["<ns>", "<line>"], ...]}], "dropped_entries": []}``:
first the newest ``limit`` matching lines since ``start``, oldest first, then each new line,
exactly once, in commit order (docs/tail.md). A line is sent as the pipeline (pipeline.py)
leaves it, with its stream's labels and the parsed ones; a line the pipeline drops is not sent.
Nothing is ever dropped for a slow client: one that falls ``tail_buffer_lines`` behind reads on
from the store (live/sessions.py), so ``dropped_entries`` is always empty. The server closes
the socket with 1000 after ``tail_max_s`` (Loki's ``tail_max_duration``), 1008 when the key is
revoked (checked every ``stream_key_check_s``), and 1012 at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import msgspec
from starlette.responses import Response
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from gramlogs.core import ids
from gramlogs.core.errors import BadRequest, GramlogsError
from gramlogs.core.keys import Permission
from gramlogs.live.sessions import TailSession
from gramlogs.live.watchers import Frame, Renderer, TailFilter
from gramlogs.storage import journal
from gramlogs.storage.access import authenticate
from gramlogs.storage.database import Connection
from gramlogs.storage.journal import Position
from gramlogs.storage.pages import PageRequest
from gramlogs.storage.rows import StoredRow
from gramlogs.web.loki import logql, window
from gramlogs.web.loki.auth import loki_credentials
from gramlogs.web.loki.labels import stream_labels
from gramlogs.web.loki.lines import line_ns, piped, piped_stages
from gramlogs.web.loki.pipeline import compile_pipeline
from gramlogs.web.loki.selection import Selection, select
from gramlogs.web.loki.window import DEFAULT_SPAN_NS, START, at_us
from gramlogs.web.observe import SCOPE_ERROR, SCOPE_PROJECT, error_response, request_id
from gramlogs.web.params import integer, parse_query
from gramlogs.web.state import AppState
from gramlogs.web.streaming import Stuck, send_within, watching_disconnect

__all__ = ["PATH", "ROUTE", "TailQuery", "parse_tail_query", "render_entry"]

logger = logging.getLogger("gramlogs.tail")

PATH = "/loki/api/v1/tail"
DEFAULT_LIMIT = 100
# Loki's max_entries_limit_per_query default: the backlog is one query's worth.
MAX_LIMIT = 5000
MAX_DELAY_S = 5  # Loki refuses a larger delay_for
# Lines per message: a catch-up reads up to ~5000 at once; smaller messages reach the browser
# sooner and bound what a client must buffer to parse one.
MESSAGE_LINES = 1000
# The backlog reads pages of at least this many lines, and stops after this many: a selector
# whose labels are checked line by line (a regex, a pushed label) may match few of them.
_BACKLOG_PAGE = 500
_BACKLOG_SCAN = 50_000
_TOP_ID = ids.highest_id(ids.MAX_TIMESTAMP).int

# WebSocket close codes (RFC 6455 7.4.1) by why the session ended.
_CLOSE = {
    "duration": (1000, "the tail lasted GRAMLOGS_TAIL_MAX_S; reconnect to go on"),
    "revoked": (1008, "the API key was revoked"),
    "shutdown": (1012, "the server is shutting down; reconnect"),
    "slow": (1008, "the client read too slowly"),  # not reached: a Loki tail catches up
}


# -- parameters ---------------------------------------------------------------------------------

LIMIT = integer(
    "limit", "The backlog's most lines", minimum=0, maximum=MAX_LIMIT, default=DEFAULT_LIMIT
)
DELAY_FOR = integer(
    "delay_for", "Accepted (seconds; nothing waits)", minimum=0, maximum=MAX_DELAY_S, default=0
)


@dataclass(frozen=True, slots=True)
class TailQuery:
    """What a tail asks for (module docstring)."""

    query: logql.LogQuery
    start_ns: int
    limit: int
    delay_for: int
    render: Renderer[Entry | None]  # a line's entry after the pipeline, None when it drops it


def parse_tail_query(params: Mapping[str, str], now_ns: int) -> TailQuery:
    """A tail's parameters (each its first value), ``start`` an hour before ``now_ns`` by
    default; 400 naming what is wrong, the parser's message for the query."""
    text = params.get("query", "")
    if not text:
        raise BadRequest('missing query: a log query such as {level="error"}')
    query = logql.parse(text)
    if not isinstance(query, logql.LogQuery):
        raise logql.LogQLError("the live tail takes a log query, not a metric query")
    start = START.get(params)
    return TailQuery(
        query=query,
        start_ns=max(0, now_ns - DEFAULT_SPAN_NS) if start is None else start,
        limit=LIMIT.value(params),
        delay_for=DELAY_FOR.value(params),
        render=_renderer(piped_stages(query)),
    )


# -- messages -----------------------------------------------------------------------------------

# A line as the tail sends it: its labels (JSON, sorted) and its ``["<ns>", "line"]``.
Entry = tuple[bytes, bytes]
# Sorted keys: one label set is one stream, whatever order its labels came in.
_labels_encoder = msgspec.json.Encoder(order="sorted")
_encoder = msgspec.json.Encoder()


def render_entry(row: StoredRow, position: Position) -> Entry:
    """A line as Loki's tail sends it: its stream's labels (JSON) and its ``["<ns>", "line"]``."""
    ns = str(line_ns(row))
    return _labels_encoder.encode(stream_labels(row)), _encoder.encode((ns, row[5]))


@functools.lru_cache(maxsize=256)
def _renderer(stages: tuple[logql.Stage, ...]) -> Renderer[Entry | None]:
    """The renderer of a tail whose pipeline is ``stages``: one function for every tail of the
    same pipeline, so that a frame (live/watchers.py) runs it once for all of them. Without a
    stage, :func:`render_entry`, which the tails of every selector share."""
    if not stages:
        return render_entry
    pipeline = compile_pipeline(stages)  # a LogQLError (400) for what cannot run

    def render(row: StoredRow, position: Position) -> Entry | None:
        line = piped(row, pipeline)
        if line is None:
            return None
        # The labels query_range answers without categorize-labels, but for structured
        # metadata, which the tail leaves out as it does without a pipeline.
        labels = {**line.stream, **line.parsed}
        return _labels_encoder.encode(labels), _encoder.encode((str(line.ns), line.text))

    return render


def _message(entries: Sequence[Entry]) -> str:
    """One message of ``entries``: grouped by stream, in their order within each stream."""
    streams: dict[bytes, list[bytes]] = {}
    for labels, value in entries:
        streams.setdefault(labels, []).append(value)
    parts = [
        b'{"stream":' + labels + b',"values":[' + b",".join(values) + b"]}"
        for labels, values in streams.items()
    ]
    return (b'{"streams":[' + b",".join(parts) + b'],"dropped_entries":[]}').decode()


def _messages(entries: Sequence[Entry]) -> list[str]:
    return [_message(entries[i : i + MESSAGE_LINES]) for i in range(0, len(entries), MESSAGE_LINES)]


# -- the handshake ------------------------------------------------------------------------------


def _tail_filter(selection: Selection) -> TailFilter:
    if selection.empty:
        return TailFilter(check=lambda row: False)
    checks = selection.label_checks or selection.line_checks
    return TailFilter(
        equals=selection.filter.equals,
        keyword=selection.filter.keyword,
        check=selection.matches if checks else None,
    )


@dataclass
class _Opened:
    session: TailSession
    backlog: list[Entry]
    render: Renderer[Entry | None]


async def _open(websocket: WebSocket, state: AppState, stack: contextlib.AsyncExitStack) -> _Opened:
    """Check the handshake and open the session: the errors here refuse it."""
    key, slug = loki_credentials(websocket)
    websocket.scope[SCOPE_PROJECT] = slug
    tail = parse_tail_query(parse_query(websocket.scope["query_string"]), window.now_ns())
    async with state.db.connection() as conn:
        principal = await authenticate(conn, key, Permission.READ, project_slug=slug)
        project_id = principal.project_id
        lowest = ids.lowest_id(at_us(tail.start_ns // 1000)).int
        selection = select(tail.query, project_id, lowest, _TOP_ID)
        head = await journal.head(conn, project_id)
        backlog = await _backlog(conn, tail, selection, Position(head))
    wake = asyncio.Event()
    watcher = await stack.enter_async_context(
        state.watchers.watch(project_id, principal.key_id, wake)
    )
    session = TailSession(
        state.watchers,
        watcher,
        _tail_filter(selection),
        Position(head),
        wake,
        principal.key_id,
        catch_up_when_slow=True,
    )
    return _Opened(session, backlog, tail.render)


async def _backlog(
    conn: Connection, tail: TailQuery, selection: Selection, head: Position
) -> list[Entry]:
    """The newest ``tail.limit`` lines before ``head`` that pass the query, oldest first."""
    if not tail.limit or selection.empty:
        return []
    rendered: dict[object, Entry] = {}

    def passes(row: StoredRow) -> bool:
        entry = tail.render(row, head) if selection.matches(row) else None
        if entry is not None:
            rendered[row[0]] = entry
        return entry is not None

    # The primary's pages (a replica's could lack lines committed before the head).
    request = PageRequest(selection.filter, max(tail.limit, _BACKLOG_PAGE))
    rows = await journal.newest_matching_before(
        conn, request, head.seq, passes, tail.limit, _BACKLOG_SCAN
    )
    return [rendered[row[0]] for row in reversed(rows)]


async def _refuse(websocket: WebSocket, error: GramlogsError) -> None:
    """Refuse the handshake with ``error``'s HTTP response (plain text, as on every Loki route)."""
    websocket.scope[SCOPE_ERROR] = error.name  # for the access log (observe.py)
    body, content_type = error_response(error, request_id(websocket.scope), PATH)
    headers = dict(error.headers or {})
    response = Response(body, error.status, headers, media_type=content_type.decode())
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(response)
    else:
        # A server without the denial extension answers a close before accept with 403.
        await websocket.close(1008, error.message[:120])


# -- the session --------------------------------------------------------------------------------


async def loki_tail(websocket: WebSocket) -> None:
    state: AppState = websocket.app.state.gramlogs
    async with contextlib.AsyncExitStack() as stack:
        try:
            opened = await _open(websocket, state, stack)
        except GramlogsError as exc:
            await _refuse(websocket, exc)
            return
        await websocket.accept()
        session = opened.session

        async def send_text(text: str) -> None:
            await send_within(websocket.send, {"type": "websocket.send", "text": text})

        async def lines(frames: list[Frame]) -> None:
            rendered = (f.rendered(opened.render) for f in frames)
            for text in _messages([entry for entry in rendered if entry is not None]):
                await send_text(text)

        try:
            async with watching_disconnect(websocket.receive, session.hang_up):
                for text in _messages(opened.backlog):
                    await send_text(text)
                reason = await session.run(lines)
                if reason is not None:
                    code, why = _CLOSE[reason]
                    await websocket.close(code, why)
        except (Stuck, OSError, WebSocketDisconnect):
            pass  # the client is gone or takes nothing: the connection is dropped


ROUTE = WebSocketRoute(PATH, loki_tail)
