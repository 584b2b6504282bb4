"""``GET /rpc/logs.export``: a filter's lines as NDJSON, streamed, at most ``limit`` of them.

An extension (docs/gram-api.md, "Export"). It takes listToolExecutionLogs' parameters (not
``per_page``) and sends each line as one entry of that endpoint's ``logs``, one per line, in
``sort`` order. The lines are read a page at a time (:data:`PAGE_ROWS` per statement, the last
id as the next cursor), a pooled connection borrowed for each page only, so memory and
connections stay bounded whatever the limit and however slowly the client reads.

Everything that can fail with a JSON error (parameters, the key, the first page) happens before
the first byte. A database failure later can no longer change the status: the stream is cut
(the chunked body never ends), which a client sees as an incomplete download. So is an export
whose key is revoked while it runs: the key is checked again before a page when
``stream_key_check_s`` has passed since the last check.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from gramlogs.core.config import Config
from gramlogs.core.errors import GramlogsError, Unauthorized
from gramlogs.core.keys import Permission
from gramlogs.storage.access import authenticate, in_force
from gramlogs.storage.database import Database
from gramlogs.storage.pages import PageRequest, StoredRow, fetch_page
from gramlogs.web import rendering
from gramlogs.web.endpoint import GRAM_SECURITY, Endpoint, Ok, Operation
from gramlogs.web.gram import LIST_PARAMS, PER_PAGE, parse_list_query
from gramlogs.web.observe import SCOPE_ERROR, request_id
from gramlogs.web.params import Param, first_values, gram_credentials, integer
from gramlogs.web.reading import LogEntry
from gramlogs.web.state import app_state
from gramlogs.web.streaming import SEND_TIMEOUT_S, Stuck, send_within, watching_disconnect

__all__ = [
    "DEFAULT_LIMIT",
    "ENDPOINT",
    "LIMIT_HEADER",
    "MEDIA_TYPE",
    "PAGE_ROWS",
    "export_logs",
    "limit_param",
]

logger = logging.getLogger("gramlogs.export")

MEDIA_TYPE = "application/x-ndjson"
LIMIT_HEADER = "Gramlogs-Export-Limit"
DEFAULT_LIMIT = 10_000
# Rows per statement: about 0.5 MB of NDJSON at typical line sizes, a few ms of index scan.
PAGE_ROWS = 1000


def limit_param(most: int) -> Param[int]:
    """``limit`` when GRAMLOGS_EXPORT_MAX_LINES is ``most`` (the document states the default)."""
    return integer(
        "limit",
        f"Most lines to send: 1 to GRAMLOGS_EXPORT_MAX_LINES ({most} unless set); "
        f"default {DEFAULT_LIMIT}, or that setting when it is lower",
        minimum=1,
        maximum=most,
        default=min(DEFAULT_LIMIT, most),
        int64=True,
    )


async def export_logs(request: Request) -> ExportStream:
    key, slug = gram_credentials(request)
    params = first_values(request)
    params.pop("per_page", None)  # the export pages by itself
    query = parse_list_query(params)
    state = app_state(request)
    limit = limit_param(state.config.export_max_lines).value(params)
    started = datetime.now(UTC)
    db = state.db
    # Keys are checked on the primary, so a revocation holds at once even on a lagging replica.
    async with db.connection() as conn:
        principal = await authenticate(conn, key, Permission.READ, project_slug=slug)
    # Held until the stream ends (web/expensive.py): released by ExportStream, or here when
    # the export fails before it is returned.
    state.expensive.acquire(principal.key_id)
    try:
        req = dataclasses.replace(query.page_request(principal.project_id), per_page=PAGE_ROWS)
        if not req.forward:
            req = await _before_cursor(db, req, limit)
        walk = _Walk(db, req, limit, principal.key_id, state.config.stream_key_check_s)
        first = await walk.next_page()
    except BaseException:
        state.expensive.release(principal.key_id)
        raise
    filename = f"gramlogs-{slug}-{started.strftime('%Y%m%dT%H%M%SZ')}.ndjson"
    headers = [
        (b"content-type", MEDIA_TYPE.encode()),
        (b"content-disposition", f'attachment; filename="{filename}"'.encode()),
        (LIMIT_HEADER.lower().encode(), str(limit).encode()),
    ]
    return ExportStream(walk, first, headers, lambda: state.expensive.release(principal.key_id))


def _bounded(req: PageRequest) -> PageRequest:
    """``req`` as a walk from the start of its range, the range ending just before the cursor
    (in sort order): the rows ``direction=prev`` may return."""
    f = req.filter
    if req.cursor is not None:
        c = req.cursor.int
        if req.ascending:
            f = dataclasses.replace(f, hi=min(f.hi, c - 1))
        else:
            f = dataclasses.replace(f, lo=max(f.lo, c + 1))
    return dataclasses.replace(req, filter=f, cursor=None, forward=True)


async def _before_cursor(db: Database, req: PageRequest, limit: int) -> PageRequest:
    """For ``direction=prev``: a forward walk over the ``limit`` rows just before the cursor
    (the last ``limit`` rows without one), so that they stream in sort order.

    Found by walking back from the cursor (ids only kept) to the ``limit``-th row: those rows
    are read twice, the price of sending them in order without holding them.
    """
    whole = _bounded(req)
    back = dataclasses.replace(whole, forward=False)
    counted, cursor = 0, None
    async with db.read_connection() as conn:
        while counted < limit:
            per_page = min(PAGE_ROWS, limit - counted)
            page = await fetch_page(
                conn, dataclasses.replace(back, per_page=per_page, cursor=cursor)
            )
            if not page.rows:
                break
            counted += len(page.rows)
            cursor = page.rows[0][0]  # walking back, a page's first row is the farthest
            if not page.has_more:
                break
    if counted < limit or cursor is None:
        return whole
    f = whole.filter
    if req.ascending:
        f = dataclasses.replace(f, lo=max(f.lo, cursor.int))
    else:
        f = dataclasses.replace(f, hi=min(f.hi, cursor.int))
    return dataclasses.replace(whole, filter=f)


class _Walk:
    """``req``'s rows in sort order (``req`` walks forward), a page at a time, ``limit`` at most."""

    def __init__(
        self, db: Database, req: PageRequest, limit: int, key_id: uuid.UUID, check_every: float
    ) -> None:
        self._db = db
        self._req = req
        self.left = limit
        self._done = False
        self._key_id = key_id
        self._check_every = check_every
        self._next_check = time.monotonic() + check_every

    async def next_page(self) -> list[StoredRow]:
        """The next rows; none once the walk is over. 401 when the key was revoked since."""
        if self._done or self.left <= 0:
            return []
        if time.monotonic() >= self._next_check:
            # On the primary: a revocation holds at once, whichever process made it.
            async with self._db.connection() as conn:
                if not await in_force(conn, self._key_id):
                    raise Unauthorized("the key was revoked while the export ran")
            self._next_check = time.monotonic() + self._check_every
        req = dataclasses.replace(self._req, per_page=min(PAGE_ROWS, self.left))
        # A connection per page: a client reading slowly holds none between pages.
        async with self._db.read_connection() as conn:
            page = await fetch_page(conn, req)
        rows: list[StoredRow] = list(page.rows)
        self.left -= len(rows)
        self._done = not page.has_more
        if rows:
            self._req = dataclasses.replace(self._req, cursor=rows[-1][0])
        return rows


class ExportStream:
    """The ASGI response of an export: headers, the first page (read before them), then a page
    at a time until the walk ends or the client goes (a task listens for the disconnect)."""

    def __init__(
        self,
        walk: _Walk,
        first: list[StoredRow],
        headers: list[tuple[bytes, bytes]],
        release: Callable[[], None],
    ) -> None:
        self._walk = walk
        self._first = first
        self._headers = headers
        self._release = release
        self._gone = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self._stream(scope, receive, send)
        finally:
            self._release()

    async def _stream(self, scope: Scope, receive: Receive, send: Send) -> None:
        sent = 0
        try:
            async with watching_disconnect(receive, self._hang_up):
                await send_within(
                    send, {"type": "http.response.start", "status": 200, "headers": self._headers}
                )
                rows = self._first if scope["method"] != "HEAD" else []
                while rows and not self._gone:
                    body = rendering.entry_lines(rows)
                    await send_within(
                        send, {"type": "http.response.body", "body": body, "more_body": True}
                    )
                    sent += len(rows)
                    rows = await self._walk.next_page()
                if not self._gone:
                    await send_within(
                        send, {"type": "http.response.body", "body": b"", "more_body": False}
                    )
        except Stuck:
            logger.info(
                "export id=%s: the client took nothing for %s s; dropped after %d lines",
                request_id(scope),
                SEND_TIMEOUT_S,
                sent,
            )
        except GramlogsError as exc:
            # The status was sent: the body is left unfinished, so the client sees a broken
            # download rather than a complete-looking short one.
            scope[SCOPE_ERROR] = exc.name
            logger.warning("export id=%s: cut after %d lines: %s", request_id(scope), sent, exc)

    def _hang_up(self) -> None:
        self._gone = True


ENDPOINT = Endpoint(
    "/rpc/logs.export",
    export_logs,
    (
        Operation(
            "GET",
            "exportToolExecutionLogs",
            "logs",
            "export logs",
            "The lines listToolExecutionLogs would page through, as NDJSON: one "
            "ToolExecutionLog per line, in sort order (from the cursor, in its direction), at most "
            "`limit` of them, streamed. Exactly `limit` lines means the export may have stopped "
            "at the cap (docs/gram-api.md, Export). An error after the first byte cuts the "
            "stream: the chunked body does not end.",
            Ok(
                "The lines, one ToolExecutionLog (JSON) per line.",
                {MEDIA_TYPE: LogEntry},
                {
                    "Content-Disposition": {
                        "description": 'attachment; filename="gramlogs-<project>-<UTC '
                        'time>.ndjson"',
                        "required": True,
                        "schema": {"type": "string"},
                    },
                    LIMIT_HEADER: {
                        "description": "The limit this export ran with",
                        "required": True,
                        "schema": {"type": "string", "pattern": "^[1-9][0-9]*$"},
                    },
                },
            ),
            # listToolExecutionLogs' but per_page (the export pages by itself), then limit.
            (
                *(p for p in LIST_PARAMS if p is not PER_PAGE),
                limit_param(Config().export_max_lines),
            ),
            security=GRAM_SECURITY,
        ),
    ),
)
