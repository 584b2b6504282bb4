"""``GET /rpc/logs.tail``: a project's new lines as server-sent events, exactly once.

An extension (docs/tail.md). Each line is an event whose ``id`` is a resume token (a position
in the tail journal: storage/journal.py) and whose ``data`` is the line as one entry of
``listToolExecutionLogs``. Lines come in the order their batches committed, each batch's in id
order. Sending the last token back (``Last-Event-ID``, as browsers' EventSource does on its own,
or ``last_event_id``) continues right after it. The stream ends with an ``end`` event carrying
the token when the client reads too slowly, at ``tail_max_s``, at shutdown, and when its key is
revoked (checked every ``stream_key_check_s``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hashlib
import logging
import struct
import uuid

import msgspec
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from gramlogs.core.errors import BadRequest, Gone, InvalidFormat
from gramlogs.core.keys import Permission
from gramlogs.live.sessions import TailSession
from gramlogs.live.watchers import Frame, TailFilter
from gramlogs.storage import journal
from gramlogs.storage.access import authenticate
from gramlogs.storage.journal import Position
from gramlogs.storage.pages import PageRequest, StoredRow
from gramlogs.web import rendering
from gramlogs.web.endpoint import GRAM_SECURITY, Endpoint, Ok, Operation
from gramlogs.web.params import (
    GRAM_KEY,
    GRAM_PROJECT,
    first_values,
    gram_credentials,
    integer,
    string,
)
from gramlogs.web.reading import FILTERS, KEYWORD, Selection, parse_selection
from gramlogs.web.state import app_state
from gramlogs.web.streaming import Stuck, send_within, watching_disconnect

__all__ = ["ENDPOINT", "decode_token", "encode_token", "frame_line", "tail_logs"]

logger = logging.getLogger("gramlogs.tail")

MAX_LINES = 1000
# What EventSource waits before reconnecting after the stream ends (ms): the end event asks
# the client to come back, and a resume reads what it missed from the store.
RETRY_MS = 1000
# Cache-Control (no-store) is set with the other API headers (headers.py).
HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"x-accel-buffering", b"no"),
]

# -- resume tokens ------------------------------------------------------------------------------

_TOKEN = struct.Struct(">B4sQ16s")
_TOKEN_VERSION = 1
_TOKEN_PARAM = "last_event_id"  # noqa: S105 (a parameter name)
LINES = integer(
    "lines",
    f"Send the newest N matching lines first (0-{MAX_LINES}); ignored when resuming",
    minimum=0,
    maximum=MAX_LINES,
    default=0,
)
# The token is checked against the project once it is known (decode_token).
LAST_EVENT_ID = string(
    _TOKEN_PARAM, "Resume after this token (an event's id); the Last-Event-ID header wins"
)


# Every frame carries it: hashed once per project, not once per line.
@functools.lru_cache(maxsize=4096)
def _project_tag(project_id: uuid.UUID) -> bytes:
    return hashlib.blake2b(project_id.bytes, digest_size=4).digest()


def encode_token(project_id: uuid.UUID, position: Position) -> str:
    """An opaque, URL-safe token for ``position`` in ``project_id``'s tail."""
    raw = _TOKEN.pack(
        _TOKEN_VERSION, _project_tag(project_id), position.seq, position.after.to_bytes(16)
    )
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_token(project_id: uuid.UUID, token: str, source: str = _TOKEN_PARAM) -> Position:
    """The position of a token :func:`encode_token` made for ``project_id``; 400 otherwise."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        version, tag, seq, after = _TOKEN.unpack(raw)
    except (ValueError, struct.error):
        raise InvalidFormat.of(source, token, "a resume token of this tail") from None
    if version != _TOKEN_VERSION or tag != _project_tag(project_id):
        raise BadRequest(f"{source} is a resume token of another project's tail")
    return Position(seq, int.from_bytes(after))


# -- frames -------------------------------------------------------------------------------------

_encoder = msgspec.json.Encoder()


def frame_line(row: StoredRow, position: Position) -> bytes:
    """A line's event: its token (the line's project is row[8]) and its entry."""
    token = encode_token(row[8], position).encode()
    return b"id: " + token + b"\ndata: " + rendering.entry(row) + b"\n\n"


def _frame_end(project_id: uuid.UUID, position: Position, reason: str) -> bytes:
    token = encode_token(project_id, position)
    data = _encoder.encode({"reason": reason, "resume": token})
    return b"event: end\nid: " + token.encode() + b"\ndata: " + data + b"\n\n"


def _frame_position(project_id: uuid.UUID, position: Position) -> bytes:
    # An event without data is not dispatched, but its id becomes the client's last event id.
    return b"id: " + encode_token(project_id, position).encode() + b"\n\n"


# -- the endpoint -------------------------------------------------------------------------------


async def tail_logs(request: Request) -> EventStream:
    key, slug = gram_credentials(request)
    params = first_values(request)
    selection = parse_selection(params)
    tail_filter = TailFilter(equals=selection.equals, keyword=selection.keyword)
    lines = LINES.value(params)
    # The header wins: EventSource reconnects to the same URL, with the header added.
    token, source = request.headers.get("last-event-id", "").strip(), "Last-Event-ID"
    if not token and (v := LAST_EVENT_ID.get(params)) is not None:
        token, source = v, _TOKEN_PARAM
    state = app_state(request)
    db = state.db
    async with db.connection() as conn:
        principal = await authenticate(conn, key, Permission.READ, project_slug=slug)
        project_id = principal.project_id
        head = await journal.head(conn, project_id)
        backlog: list[bytes] = []
        if token:
            position = decode_token(project_id, token, source)
            if position.seq > head:
                raise BadRequest(f"{source} is past the end of this project's tail")
            await journal.check_kept(conn, project_id, position, head)
        else:
            position = Position(head)
            if lines:
                # The primary's page (a replica's could lack lines committed before the head).
                rows = await journal.newest_before(
                    conn, _backlog_request(project_id, selection, lines), head
                )
                backlog = [frame_line(row, position) for row in reversed(rows)]
    wake = asyncio.Event()
    stack = contextlib.AsyncExitStack()
    watcher = await stack.enter_async_context(
        state.watchers.watch(project_id, principal.key_id, wake)
    )
    tail = TailSession(state.watchers, watcher, tail_filter, position, wake, principal.key_id)
    return EventStream(tail, backlog, stack)


def _backlog_request(project_id: uuid.UUID, selection: Selection, lines: int) -> PageRequest:
    """The page of the newest ``lines`` matching lines: sent first (oldest first) by lines=N,
    each with the start's token, since the tail goes on from there."""
    return PageRequest(filter=selection.log_filter(project_id), per_page=lines)


class EventStream:
    """The ASGI response of a tail: headers, the backlog, then the tail until it ends or the
    client goes (noticed at once: a task listens for the disconnect)."""

    def __init__(
        self, tail: TailSession, backlog: list[bytes], stack: contextlib.AsyncExitStack
    ) -> None:
        self._tail = tail
        self._backlog = backlog
        self._stack = stack

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        tail = self._tail

        sent = tail.position

        async def emit(data: bytes) -> None:
            await send_within(send, {"type": "http.response.body", "body": data, "more_body": True})

        async def lines(frames: list[Frame]) -> None:
            nonlocal sent
            sent = frames[-1].position
            await emit(b"".join(f.rendered(frame_line) for f in frames))

        async def keep_alive(position: Position) -> None:
            nonlocal sent
            beat = b": keep-alive\n"
            if position != sent:
                # Lines that did not match moved the tail on: a resume need not read them again.
                sent = position
                beat += b"id: " + encode_token(tail.project_id, position).encode() + b"\n"
            await emit(beat + b"\n")

        try:
            async with watching_disconnect(receive, tail.hang_up), self._stack:
                await send_within(
                    send, {"type": "http.response.start", "status": 200, "headers": HEADERS}
                )
                start = _frame_position(tail.project_id, tail.position)
                await emit(b"retry: %d\n" % RETRY_MS + start + b"".join(self._backlog))
                reason = await tail.run(lines, keep_alive)
                if reason is not None:
                    await emit(_frame_end(tail.project_id, tail.position, reason))
                    await send_within(
                        send, {"type": "http.response.body", "body": b"", "more_body": False}
                    )
        except Stuck:
            pass  # the connection is dropped; the client resumes from the last id it read


# -- the declaration ----------------------------------------------------------------------------

# One event of the stream, as SSE parsers hand it over (data lines joined).
_EVENT = {
    "type": "object",
    "description": "An event: `message` (the default type) carries a line, `end` the reason "
    "the stream ends and the token to resume with. The first event has only an id (the start "
    "position) and is not dispatched by EventSource; it comes with `retry`.",
    "required": ["data", "event"],
    "properties": {
        "event": {"type": "string", "enum": ["message", "end"]},
        "data": {
            "type": "string",
            "description": "message: one LogEntry as JSON; end: "
            '{"reason": "slow" | "duration" | "shutdown" | "revoked", "resume": <token>}; '
            "revoked: the key was revoked while the stream was open (do not resume)",
        },
        "id": {"type": "string", "description": "The resume token after this event"},
        "retry": {"type": "integer", "description": "Milliseconds to wait before reconnecting"},
    },
}

ENDPOINT = Endpoint(
    "/rpc/logs.tail",
    tail_logs,
    (
        Operation(
            "GET",
            "tailLogs",
            "logs",
            "tail logs",
            "New log lines as server-sent events, exactly once, in commit order "
            "(docs/tail.md). Each line is an event whose id is a resume token and whose data is "
            "one entry of listToolExecutionLogs' logs; comments every GRAMLOGS_TAIL_HEARTBEAT_S. "
            "The stream ends with an `end` event ({reason, resume}) when the client reads too "
            "slowly, after GRAMLOGS_TAIL_MAX_S, and at shutdown: resume with its id; and when "
            "its key is revoked (reason revoked, within GRAMLOGS_STREAM_KEY_CHECK_S).",
            Ok(
                "The stream of events.",
                {"text/event-stream": _EVENT},
                {"X-Accel-Buffering": {"schema": {"type": "string", "enum": ["no"]}}},
            ),
            (
                *FILTERS,
                KEYWORD,
                LINES,
                LAST_EVENT_ID,
                string(
                    "Last-Event-ID", "Resume after this token (what EventSource sends)", "header"
                ),
                GRAM_KEY,
                GRAM_PROJECT,
            ),
            raises=(Gone,),
            security=GRAM_SECURITY,
        ),
    ),
)
