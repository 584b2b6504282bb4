"""``GET /loki/api/v1/tail``: Loki's live tail, a WebSocket, as Grafana's Explore "Live" opens it.

Parameters (Loki's): ``query`` (a log query: a stream selector and line filters), ``start`` (the
backlog's beginning: nanoseconds, seconds or RFC 3339; default an hour ago), ``limit`` (the
backlog's most lines, default 100), ``delay_for`` (0-5 s, accepted: the tail journal already
delivers a late line exactly once, in commit order, so there is nothing to wait for).

The handshake is refused with an HTTP response, as Loki's is: 401/403 (the key), 400 (the query),
429 (too many tails of the key). Once accepted, each text message is
``{"streams": [{"stream": {labels}, "values": [["<ns>", "<line>"], ...]}], "dropped_entries": []}``:
first the newest ``limit`` matching lines since ``start``, oldest first, then each new line,
exactly once, in commit order (docs/tail.md). Nothing is ever dropped: a client that falls
``tail_buffer_lines`` behind reads on from the store (live/sessions.py), so ``dropped_entries`` is
always empty. The server closes the socket with 1000 after ``tail_max_s`` (Loki's
``tail_max_duration``), 1008 when the key is revoked (checked every ``stream_key_check_s``),
and 1012 at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import msgspec
from starlette.responses import Response
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from gramlogs.core import ids
from gramlogs.core.errors import BadRequest, GramlogsError
from gramlogs.core.keys import Permission
from gramlogs.live.sessions import TailSession
from gramlogs.live.watchers import Frame, TailFilter
from gramlogs.storage import journal
from gramlogs.storage.access import authenticate
from gramlogs.storage.journal import Position
from gramlogs.storage.pages import PageRequest
from gramlogs.storage.rows import StoredRow
from gramlogs.web.loki import logql
from gramlogs.web.loki.auth import loki_credentials
from gramlogs.web.loki.labels import stream_labels
from gramlogs.web.loki.selection import Selection, select
from gramlogs.web.observe import SCOPE_ERROR, SCOPE_PROJECT, error_response, request_id
from gramlogs.web.state import AppState
from gramlogs.web.streaming import Stuck, send_within, watching_disconnect

__all__ = ["PATH", "ROUTE", "TailQuery", "parse_tail_query", "render_entry"]

logger = logging.getLogger("gramlogs.tail")

PATH = "/loki/api/v1/tail"
DEFAULT_LIMIT = 100
# Loki's max_entries_limit_per_query default: the backlog is one query's worth.
MAX_LIMIT = 5000
MAX_DELAY_S = 5  # Loki refuses a larger delay_for
DEFAULT_SINCE = timedelta(hours=1)
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

_INTEGER = re.compile(r"-?\d+")
_DECIMAL = re.compile(r"-?\d+\.\d*")


def _timestamp(text: str, name: str) -> datetime:
    """A Loki timestamp: an integer of up to 10 digits is seconds, a longer one nanoseconds, a
    decimal is seconds, anything else RFC 3339; clamped to the ids' range."""
    try:
        if _INTEGER.fullmatch(text):
            value = int(text)
            micros = value * 1_000_000 if len(text.lstrip("-")) <= 10 else value // 1000
        elif _DECIMAL.fullmatch(text):
            micros = round(float(text) * 1_000_000)
        else:
            return max(ids.MIN_TIMESTAMP, min(ids.parse_rfc3339(text), ids.MAX_TIMESTAMP))
        micros = max(0, min(micros, _micros(ids.MAX_TIMESTAMP)))
        return ids.EPOCH + timedelta(microseconds=micros)
    except (ids.IdError, OverflowError, ValueError):
        raise BadRequest(
            f"invalid {name} {text!r}: a Unix time in seconds or nanoseconds, or RFC 3339"
        ) from None


def _micros(ts: datetime) -> int:
    return (ts - ids.EPOCH) // timedelta(microseconds=1)


def _bounded(params: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    text = params.get(name, "")
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise BadRequest(f"invalid {name} {text!r}: an integer") from None
    if not low <= value <= high:
        raise BadRequest(f"{name} must be between {low} and {high}, got {value}")
    return value


@dataclass(frozen=True, slots=True)
class TailQuery:
    """What a tail asks for (module docstring)."""

    query: logql.LogQuery
    start: datetime
    limit: int
    delay_for: int


def parse_tail_query(params: dict[str, str], now: datetime) -> TailQuery:
    """A tail's parameters (each its first value), ``start`` an hour before ``now`` by default;
    400 naming what is wrong, the parser's message for the query."""
    text = params.get("query", "")
    if not text:
        raise BadRequest('missing query: a log query such as {level="error"}')
    query = logql.parse(text)
    if not isinstance(query, logql.LogQuery):
        raise logql.LogQLError("the live tail takes a log query, not a metric query")
    for stage in query.stages:
        if not isinstance(stage, logql.LineFilter):
            # web/loki/pipeline.py (parsers, label filters, line_format) is not on this branch.
            raise logql.LogQLError(
                f"the live tail does not support {_describe(stage)} yet: "
                "only a stream selector and line filters"
            )
    start_text = params.get("start", "")
    start = _timestamp(start_text, "start") if start_text else now - DEFAULT_SINCE
    return TailQuery(
        query=query,
        start=max(start, ids.MIN_TIMESTAMP),
        limit=_bounded(params, "limit", DEFAULT_LIMIT, 0, MAX_LIMIT),
        delay_for=_bounded(params, "delay_for", 0, 0, MAX_DELAY_S),
    )


def _describe(stage: logql.Stage) -> str:
    if isinstance(stage, logql.Parser):
        return f"| {stage.kind}"
    if isinstance(stage, logql.Drop):
        return "| drop"
    if isinstance(stage, logql.LineFormat):
        return "| line_format"
    return "label filters"


# -- messages -----------------------------------------------------------------------------------

# Sorted keys: one label set is one stream, whatever order its labels came in.
_labels_encoder = msgspec.json.Encoder(order="sorted")
_encoder = msgspec.json.Encoder()


def render_entry(row: StoredRow, position: Position) -> tuple[bytes, bytes]:
    """A line as Loki's tail sends it: its stream's labels (JSON) and its ``["<ns>", "line"]``."""
    ns = str(_micros(row[1]) * 1000)
    return _labels_encoder.encode(stream_labels(row)), _encoder.encode((ns, row[5]))


def _message(entries: Sequence[tuple[bytes, bytes]]) -> str:
    """One message of ``entries``: grouped by stream, in their order within each stream."""
    streams: dict[bytes, list[bytes]] = {}
    for labels, value in entries:
        streams.setdefault(labels, []).append(value)
    parts = [
        b'{"stream":' + labels + b',"values":[' + b",".join(values) + b"]}"
        for labels, values in streams.items()
    ]
    return (b'{"streams":[' + b",".join(parts) + b'],"dropped_entries":[]}').decode()


def _messages(entries: Sequence[tuple[bytes, bytes]]) -> list[str]:
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
    backlog: list[tuple[bytes, bytes]]


async def _open(websocket: WebSocket, state: AppState, stack: contextlib.AsyncExitStack) -> _Opened:
    """Check the handshake and open the session: the errors here refuse it."""
    key, slug = loki_credentials(websocket)
    websocket.scope[SCOPE_PROJECT] = slug
    params = {k: v for k, v in reversed(websocket.query_params.multi_items())}
    tail = parse_tail_query(params, datetime.now(UTC))
    async with state.db.connection() as conn:
        principal = await authenticate(conn, key, Permission.READ, project_slug=slug)
        project_id = principal.project_id
        selection = select(tail.query, project_id, ids.lowest_id(tail.start).int, _TOP_ID)
        head = await journal.head(conn, project_id)
        rows = []
        if tail.limit and not selection.empty:
            # The primary's pages (a replica's could lack lines committed before the head).
            request = PageRequest(selection.filter, max(tail.limit, _BACKLOG_PAGE))
            rows = await journal.newest_matching_before(
                conn, request, head, selection.matches, tail.limit, _BACKLOG_SCAN
            )
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
    return _Opened(session, [render_entry(row, Position(head)) for row in reversed(rows)])


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
            for text in _messages([f.rendered(render_entry) for f in frames]):
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
